"""Arrow-backed ParallelQA: `prepare` (streamed JSONL/parquet, or any spec written out) gives the
same data as the in-memory loaders, the batch builder gives the same token arrays from it, bad
records follow the JSONL loader's rules, and the command line."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hybrid_jax import data as data_lib
from hybrid_jax import input_pipeline
from hybrid_jax.data import __main__ as data_main
from hybrid_jax.data.arrow import ArrowStrings
from hybrid_jax.errors import UserError
from hybrid_jax.models import tokenizer as tokenizer_lib
from hybrid_jax.sampler import HybridBatchSampler


def _same(a, b):
  """a and b hold the same ParallelQA (lazy texts compared as lists)."""
  assert a.languages == b.languages
  assert np.asarray(a.ids).tolist() == np.asarray(b.ids).tolist()
  np.testing.assert_array_equal(a.positives, b.positives)
  assert a.queries.tolist() == b.queries.tolist()
  np.testing.assert_array_equal(a.candidates.language, b.candidates.language)
  assert a.candidates.text.tolist() == b.candidates.text.tolist()
  assert a.candidates.context.tolist() == b.candidates.context.tolist()
  assert a.skipped == b.skipped


@pytest.fixture(scope="module")
def xquad(tmp_path_factory):
  """(a JSONL file's in-memory data, its prepared copy, the file)."""
  root = tmp_path_factory.mktemp("arrow")
  path = root / "x.jsonl"
  data_lib.write_jsonl(data_lib.load("xquad_r:eval", languages=("en", "de", "zh")), path)
  return (data_lib.load(f"jsonl:{path}"), data_lib.prepare(f"jsonl:{path}", str(root / "p")), path)


def test_prepared_jsonl_equals_jsonl_loader(xquad):
  data, prepared, _ = xquad
  _same(prepared, data)
  assert isinstance(prepared.queries, ArrowStrings)


def test_arrow_spec_loads_the_prepared_directory(tmp_path):
  data = data_lib.load("xquad_r:eval")  # 11 languages, with the distractor sentences
  data_lib.prepare("xquad_r:eval", str(tmp_path / "p"))
  loaded = data_lib.load(f"arrow:{tmp_path / 'p'}", languages="de,en")
  _same(loaded, data.select_languages(("de", "en")))
  assert loaded.name == f"arrow:{tmp_path / 'p'}"


def test_batches_from_arrow_equal_in_memory(xquad):
  """Same sampler, same steps: identical token arrays, keys and hard negatives."""
  data, prepared, _ = xquad
  tokenizer = tokenizer_lib.train_default_tokenizer(data.texts(), vocab_size=1000)
  assert prepared.texts() == data.texts()
  builders = [
      input_pipeline.BatchBuilder(
          d, HybridBatchSampler(d.available, d.languages, 16, 0.5, 0, passage_keys=d.passage_keys),
          tokenizer, query_max_len=16, passage_max_len=48, num_hard_negatives=2, seed=3)
      for d in (data, prepared)
  ]
  for step in (0, 1, 7):
    memory, arrow = (b(step) for b in builders)
    assert memory.keys() == arrow.keys()
    for key in memory:
      np.testing.assert_array_equal(memory[key], arrow[key], err_msg=key)


def test_arrow_strings_index_like_numpy(xquad):
  data, prepared, _ = xquad
  expected = data.queries
  rng = np.random.default_rng(0)
  rows, cols = rng.integers(0, len(expected), 20), rng.integers(0, 3, 20)
  assert prepared.queries[rows, cols].tolist() == expected[rows, cols].tolist()
  assert prepared.queries[3, 1] == expected[3, 1]
  mask = rng.random(len(expected)) < 0.3
  assert prepared.queries[:, [2, 0]][mask].tolist() == expected[:, [2, 0]][mask].tolist()
  np.testing.assert_array_equal(np.asarray(prepared.queries[:5]), expected[:5])
  assert prepared.queries.shape == expected.shape and len(prepared.ids) == len(data.ids)


BAD_RECORDS = [
    {"id": "a", "lang": "en", "query": "q a", "passage": "p a", "context": "c"},
    {"id": "a", "lang": "de", "query": "q a de", "passage": "p a de"},  # no context
    {"id": "7", "lang": "en", "query": "q 7", "passage": "p a", "context": "c"},  # shares a passage
    {"id": "b", "lang": "en", "query": "  ", "passage": "p b"},  # empty query
    {"id": "c", "lang": "xx", "query": "q c", "passage": "p c"},  # unknown language
    {"id": "a", "lang": "en", "query": "again", "passage": "p z"},  # duplicate (a, en)
    {"id": "", "lang": "en", "query": "q", "passage": "p"},  # missing id
    {"id": "d", "lang": "de", "query": "q d", "passage": None},  # missing passage
]


def _write_records(path, records):
  with open(path, "w") as f:
    for record in records:
      f.write(json.dumps(record) + "\n")


def test_bad_records_skip_like_the_jsonl_loader(tmp_path):
  path = tmp_path / "bad.jsonl"
  _write_records(path, BAD_RECORDS)
  prepared = data_lib.prepare(f"jsonl:{path}", str(tmp_path / "p"), on_error="skip")
  expected = data_lib.load(f"jsonl:{path}", on_error="skip")
  _same(prepared, expected)
  assert sum(prepared.skipped.values()) == 5 and prepared.passage_keys[1, 0] == 0


def test_integer_ids_and_mixed_types(tmp_path):
  path = tmp_path / "ids.jsonl"
  _write_records(path, [{"id": i, "lang": "en", "query": f"q{i}", "passage": "p"} for i in (3, 1)])
  prepared = data_lib.prepare(f"jsonl:{path}", str(tmp_path / "p"))
  _same(prepared, data_lib.load(f"jsonl:{path}"))
  assert prepared.ids.tolist() == ["3", "1"]
  _write_records(path, [{"id": 1, "lang": "en", "query": "q", "passage": "p"},
                        {"id": "b", "lang": "en", "query": "q", "passage": "p"}])
  with pytest.raises(UserError, match="field 'id' holds values of several JSON types"):
    data_lib.prepare(f"jsonl:{path}", str(tmp_path / "p2"))


def test_bad_record_raises_naming_file_record_and_field(tmp_path):
  path = tmp_path / "bad.jsonl"
  _write_records(path, BAD_RECORDS[:4])
  with pytest.raises(data_lib.DataError, match=r"bad.jsonl: record 4 \(id 'b'\) field 'query'"
                     r": empty query"):
    data_lib.prepare(f"jsonl:{path}", str(tmp_path / "p"))


def test_parquet_input_streams_like_jsonl(tmp_path, xquad):
  _, _, jsonl_path = xquad
  records = [json.loads(line) for line in open(jsonl_path)]
  half = len(records) // 2
  paths = []
  for i, part in enumerate((records[:half], records[half:])):
    paths.append(str(tmp_path / f"part{i}.parquet"))
    pq.write_table(pa.Table.from_pylist(part), paths[-1])
  spec = "parquet:" + ",".join(paths)
  prepared = data_lib.prepare(spec, str(tmp_path / "p"))
  _same(prepared, data_lib.load(f"jsonl:{jsonl_path}"))
  _same(data_lib.load(spec), data_lib.load(f"jsonl:{jsonl_path}"))


def test_command_line(tmp_path, capsys, xquad):
  _, _, path = xquad
  out = tmp_path / "cli"
  assert data_main.main(["--prepare", f"jsonl:{path}", "--out", str(out)]) == 0
  printed = capsys.readouterr().out
  assert "265 parallel examples, 3 languages" in printed and f"arrow:{out}" in printed
  assert data_main.main(["--describe", f"arrow:{out}"]) == 0
  assert "265 parallel examples" in capsys.readouterr().out
  # An existing non-empty directory is never overwritten; a missing one is named.
  for argv in (["--prepare", f"jsonl:{path}", "--out",
                str(out)], ["--describe", f"arrow:{tmp_path / 'nowhere'}"]):
    with pytest.raises(SystemExit) as exit_info:  # cli.fail: one line, status 2
      data_main.main(argv)
    assert exit_info.value.code == 2
  first, err = capsys.readouterr().err.strip().split("\n", 1)
  assert "exists and is not empty" in first
  assert "--prepare SPEC --out" in err and len(err.strip().splitlines()) == 1
  (tmp_path / "x.txt").write_text("{}")
  with pytest.raises(UserError, match=r"x.txt is not one of \.jsonl"):
    data_lib.prepare(f"jsonl:{tmp_path / 'x.txt'}", str(tmp_path / "other"))
  with pytest.raises(UserError, match=r"no record has the field\(s\) \['id', 'lang', 'query'"):
    data_lib.prepare(f"jsonl:{out / 'parallel_qa.json'}", str(tmp_path / "other"))


def _fails_with_one_line(capsys, argv) -> str:
  """The one stderr line of a command that must exit with status 2 (cli.fail)."""
  with pytest.raises(SystemExit) as exit_info:
    data_main.main(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and len(err.splitlines()) == 1, err
  return err


def test_command_line_empty_input_and_paths_with_spaces(tmp_path, capsys):
  """An empty or blank input file is one line and leaves --out as it was, so the same command
  runs once the file is fixed; the printed spec is quoted for the shell."""
  source = tmp_path / "my data" / "qa.jsonl"
  source.parent.mkdir()
  out, existing = tmp_path / "my out", tmp_path / "empty dir"
  existing.mkdir()
  for text in ("", "\n  \n"):
    source.write_text(text)
    for directory in (out, existing):
      err = _fails_with_one_line(capsys, ["--prepare", f"jsonl:{source}", "--out", str(directory)])
      assert f"{source}: no records (the file is empty or holds only blank lines)" in err
    assert not out.exists() and existing.is_dir() and not list(existing.iterdir())
  source.write_text(
      json.dumps(
          {"id": "a", "lang": "en", "query": "Who?", "passage": "He.", "context": "He. She."})
      + "\n")
  assert data_main.main(["--prepare", f"jsonl:{source}", "--out", str(out)]) == 0
  assert f"--config.data.train='arrow:{out}'" in capsys.readouterr().out
  err = _fails_with_one_line(capsys, ["--describe", f"arrow:{tmp_path / 'no where'}"])
  assert f"--out '{tmp_path / 'no where'}'" in err


@pytest.mark.parametrize("argv, message", [
    ([], "give --describe SPEC [SPEC...] or --prepare SPEC --out DIR"),
    (["--describe"], "--describe needs at least one SPEC"),
    (["--prepare", "xquad_r:eval"], "--prepare needs --out DIR"),
    (["--prepare", "xquad_r:eval", "xquad_r:train", "--out", "x"], "also given: xquad_r:train"),
    (["--describe", "xquad_r:eval", "--colour"], "Unknown command line flag 'colour'"),
    (["--describe", "xquad_r:eval", "--on_error=ignore"], "--on_error"),
])
def test_command_line_usage_errors_are_one_line(capsys, argv, message):
  assert message in _fails_with_one_line(capsys, argv)
