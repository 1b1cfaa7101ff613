"""Tests of the JSON Lines loader and writer (hybrid_jax/data/jsonl.py)."""

import json
import logging

import numpy as np
import pytest

from hybrid_jax.data.jsonl import load_jsonl, write_jsonl
from hybrid_jax.data.parallel_qa import DataError
from hybrid_jax.data.registry import load


@pytest.fixture(scope="module")
def xquad_r_eval():
  return load("xquad_r:eval")


def _same_partition(a, b):
  """Whether two equal-shape integer arrays group entries identically (-1 = missing)."""
  pairs = set(zip(a.ravel().tolist(), b.ravel().tolist()))
  return len(pairs) == len({x for x, _ in pairs}) == len({y for _, y in pairs})


@pytest.mark.parametrize("file_name", ["eval.jsonl", "eval.jsonl.gz"])
def test_round_trip_keeps_queries_positives_and_passage_keys(tmp_path, xquad_r_eval, file_name):
  data = xquad_r_eval
  path = tmp_path / file_name
  assert write_jsonl(data, path) == int(data.available.sum())
  loaded = load_jsonl(path)
  assert loaded.languages == data.languages
  assert list(loaded.ids) == list(data.ids)
  np.testing.assert_array_equal(loaded.queries, data.queries)
  for field in ("text", "context"):
    np.testing.assert_array_equal(
        getattr(loaded.candidates, field)[loaded.positives],
        getattr(data.candidates, field)[data.positives])
  assert _same_partition(loaded.passage_keys, data.passage_keys)
  assert len(loaded.candidates) == len(np.unique(data.positives))
  assert loaded.skipped == {}


def _records(data, count):
  """The first `count` JSONL records of `data` (as write_jsonl writes them)."""
  out = []
  for i in range(data.num_examples):
    for j, lang in enumerate(data.languages):
      p = data.positives[i, j]
      out.append({
          "id": data.ids[i], "lang": lang, "query": data.queries[i, j],
          "passage": data.candidates.text[p], "context": data.candidates.context[p]
      })
  return out[:count]


def _write_lines(path, lines):
  path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
  return path


def test_partial_examples_shared_passages_and_several_files(tmp_path, xquad_r_eval):
  records = _records(xquad_r_eval.select_languages(["en", "de"]), 6)  # 3 ids x (en, de)
  first = _write_lines(tmp_path / "a.jsonl", [json.dumps(r) for r in records[:3]] + ["  "])
  renamed = {**records[4], "id": 12345}  # an integer id is taken as its string
  sharing = {
      "id": "extra", "lang": "en", "query": "Which passage?", "passage": records[0]["passage"]
  }  # the first en passage, without its context
  second = _write_lines(tmp_path / "b.jsonl", [json.dumps(renamed), json.dumps(sharing)])
  data = load_jsonl([first, second])
  assert data.name == f"{first},{second}"
  assert list(data.ids) == [records[0]["id"], records[2]["id"], "12345", "extra"]
  assert data.languages == ("en", "de")
  assert data.available.tolist() == [[True, True], [True, False], [True, False], [True, False]]
  assert data.candidates.context[data.positives[3, 0]] == ""
  assert data.positives[3, 0] != data.positives[0, 0]  # same passage, other context
  sharing["context"] = records[0]["context"]
  _write_lines(second, [json.dumps(renamed), json.dumps(sharing)])
  assert load_jsonl([first, second]).positives[3, 0] == data.positives[0, 0]


# Each case: (edit of one real record's JSON line, counted reason, text the message must name).
BAD_LINES = {
    "malformed": (lambda r: json.dumps(r)[:-2], "malformed JSON", "column"),
    "missing query": (lambda r: json.dumps({k: v for k, v in r.items() if k != "query"}),
                      "missing field 'query'", "field 'query'"),
    "empty query": (lambda r: json.dumps({**r, "query": " "}), "empty query", "field 'query'"),
    "empty passage":
        (lambda r: json.dumps({**r, "passage": ""}), "empty passage", "field 'passage'"),
    "number as query":
        (lambda r: json.dumps({**r, "query": 3}), "field 'query' is not a string", "field 'query'"),
    "unknown language":
        (lambda r: json.dumps({**r, "lang": "dn"}), "unknown language code", "field 'lang'"),
    "duplicate id": (lambda r: json.dumps({**r, "id": "dup"}), "duplicate id", "field 'id'"),
    "missing id": (lambda r: json.dumps({**r, "id": None}), "missing field 'id'", "field 'id'"),
    "not an object": (lambda r: json.dumps([r["id"]]), "record is not a JSON object", ""),
    # Said only "missing field 'passage'" next to the record's own 'pasage'.
    "misspelt passage":
        (lambda r: json.dumps({("pasage" if k == "passage" else k): v for k, v in r.items()}),
         "missing field 'passage'", "the record has 'pasage'"),
}


def test_malformed_json_names_the_column_on_its_line(tmp_path, xquad_r_eval):
  # A line cut short was reported at "column 1" (of the line after its newline).
  del xquad_r_eval
  path = _write_lines(tmp_path / "cut.jsonl", ['{"id": "x", "lang": "en",  '])
  with pytest.raises(DataError, match=r"cut\.jsonl:1: malformed JSON \(column 26: Expecting "):
    load_jsonl(path)


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_line_raises_or_is_skipped_and_counted(tmp_path, xquad_r_eval, case, caplog):
  edit, reason, field_text = BAD_LINES[case]
  records = _records(xquad_r_eval, 4)
  records[0]["id"] = records[1]["id"] = "dup"
  records[1]["lang"] = "de"  # a clean record for (dup, de)
  lines = [json.dumps(r) for r in records]
  lines[3] = edit({**records[3], "lang": "de"} if case == "duplicate id" else records[3])
  path = _write_lines(tmp_path / "bad.jsonl", lines)
  with pytest.raises(DataError) as error:
    load_jsonl(path)
  message = str(error.value)
  assert f"{path}:4" in message and reason in message and field_text in message

  with caplog.at_level(logging.WARNING):
    data = load_jsonl(path, on_error="skip")
  assert data.skipped == {reason: 1}
  assert int(data.available.sum()) == 3
  assert reason in caplog.text


def test_a_line_that_is_not_utf8_is_a_malformed_record(tmp_path, xquad_r_eval):
  good = json.dumps(_records(xquad_r_eval, 1)[0]).encode()
  path = tmp_path / "latin1.jsonl"
  path.write_bytes(good + b"\n" + '{"id": "é"}'.encode("latin-1") + b"\n")
  with pytest.raises(DataError, match=r"latin1\.jsonl:2: malformed JSON \(not UTF-8"):
    load_jsonl(path)
  assert load_jsonl(path, on_error="skip").skipped == {"malformed JSON": 1}


@pytest.mark.parametrize("field", ["query", "passage", "context", "id", "lang"])
def test_a_lone_surrogate_is_rejected_naming_file_line_and_field(tmp_path, xquad_r_eval, field):
  # json.dumps writes the lone surrogate as the escape "\ud800", which json.loads accepts; the
  # tokenizer trainer later died on it with a UnicodeEncodeError naming no file.
  records = _records(xquad_r_eval, 3)
  records[1][field] = records[1][field][:2] + "\ud800"
  path = _write_lines(tmp_path / "s.jsonl", [json.dumps(r) for r in records])
  assert "\\ud800" in path.read_text()
  for on_error in ("raise", "skip"):  # never skipped silently: the file itself is broken
    with pytest.raises(
        DataError, match=rf"s\.jsonl:2 .*field '{field}': text is not valid "
        r"Unicode: lone surrogate '\\ud800' at character 2"):
      load_jsonl(path, on_error=on_error)


def test_a_misspelt_optional_field_warns_with_counts_or_fails_when_strict(
    tmp_path, xquad_r_eval, caplog):
  records = _records(xquad_r_eval, 4)
  for record in records:
    record["contxt"] = record.pop("context")
  path = _write_lines(tmp_path / "m.jsonl", [json.dumps(r) for r in records])
  with caplog.at_level(logging.WARNING):
    data = load_jsonl(path)
  assert set(data.candidates.context) == {""}  # what the typo costs: no passage has a context
  assert ("4 record(s) have the unknown field 'contxt', ignored (first: "
          f"{path}:1 (did you mean 'context'?))") in caplog.text
  with pytest.raises(
      DataError, match=r"m\.jsonl:1: unknown field 'contxt' \(did you mean "
      r"'context'\?\); known fields: \['id', "):
    load_jsonl(path, strict=True)
  with pytest.raises(DataError, match="unknown field 'contxt'"):
    load(f"jsonl:{path}", strict=True)


def test_skip_names_the_first_skipped_records(tmp_path, xquad_r_eval, caplog):
  records = _records(xquad_r_eval, 12)
  bad = (2, 4, 5, 6, 7, 8, 10)
  for i in bad:
    records[i]["query"] = ""
  path = _write_lines(tmp_path / "k.jsonl", [json.dumps(r) for r in records])
  with caplog.at_level(logging.WARNING):
    data = load_jsonl(path, on_error="skip")
  assert data.skipped == {"empty query": len(bad)}
  named = [line + 1 for line in bad[:5]]
  assert all(f"{path}:{n} (id " in caplog.text for n in named), caplog.text
  assert f"{path}:{bad[5] + 1} " not in caplog.text and f"{path}:{bad[6] + 1} " not in caplog.text
