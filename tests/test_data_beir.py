"""BEIR loader on the XQuAD-R fixture, its error messages, and BEIR metrics vs pytrec_eval."""

import importlib.util
import pathlib
import shutil

import numpy as np
import pytest
import pytrec_eval

from hybrid_jax import retrieval_metrics as metrics
from hybrid_jax.data.beir import load_beir
from hybrid_jax.errors import UserError

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "beir_xquad"


def test_fixture_loads():
  data = load_beir(FIXTURE)
  assert len(data.corpus_ids) == len(data.corpus_text) == len(data.corpus_title) == 231
  assert len(data.query_ids) == len(data.query_text) == len(data.qrels) == 66
  assert {d[:2] for d in data.corpus_ids} == {"en", "de", "zh"}
  for qid in data.query_ids:
    grades = data.qrels[qid]
    assert sorted(d[:2] for d in grades) == ["de", "en", "zh"]
    assert {grades[d] for d in grades if d.startswith("en")} == {2}
  # The English answer sentence holds the answer to its question (spot check of the builder).
  texts = dict(zip(data.corpus_ids, data.corpus_text))
  queries = dict(zip(data.query_ids, data.query_text))
  assert "money" in queries["57286dfa2ca10214002da332"]
  assert "1279" in texts[next(d for d in data.qrels["57286dfa2ca10214002da332"] if d[:2] == "en")]


def test_fixture_is_what_build_py_makes(tmp_path):
  spec = importlib.util.spec_from_file_location("build_beir_xquad", FIXTURE / "build.py")
  build = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(build)
  build.build(tmp_path)
  for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
    assert (tmp_path / name).read_bytes() == (FIXTURE / name).read_bytes(), name


def copy_fixture(tmp_path):
  out = tmp_path / "beir"
  shutil.copytree(FIXTURE, out)
  return out


def edit_line(path, line_number, new_text):
  lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
  lines[line_number - 1] = new_text
  path.write_text("".join(lines), encoding="utf-8")


@pytest.mark.parametrize(
    "file, line, text, message",
    [
        ("corpus.jsonl", 3, "{not json\n", r"corpus.jsonl:3: not valid JSON"),
        ("corpus.jsonl", 5, '{"_id": "x", "text": 7}\n', r"corpus.jsonl:5: field 'text' must be"),
        ("corpus.jsonl", 6, '{"_id": "en-36-0-0", "text": "dup"}\n',
         r"corpus.jsonl:6: duplicate _id 'en-36-0-0'"),
        ("queries.jsonl", 2, '["a list"]\n', r"queries.jsonl:2: expected a JSON object"),
        ("qrels/test.tsv", 1, "qid\tdocid\tscore\n", r"test.tsv:1: expected the header"),
        ("qrels/test.tsv", 5, "zzz\ten-36-0-0\t1\n", r"test.tsv:5: query-id 'zzz' is not in"),
        ("qrels/test.tsv", 6, "57286dfa2ca10214002da332\ten-36-0-0\thigh\n",
         r"test.tsv:6: score 'high' is not an integer"),
        ("qrels/test.tsv", 7, "a\tb\n", r"test.tsv:7: expected 3 tab-separated fields"),
        # A JSON escape of a lone surrogate parses, but no tokenizer or UTF-8 writer takes it.
        ("corpus.jsonl", 4, '{"_id": "x", "title": "\\ud800", "text": "t"}\n',
         r"corpus.jsonl:4 field 'title': text is not valid Unicode: lone surrogate"),
        ("queries.jsonl", 3, '{"_id": "x", "text": "a \\udfff b"}\n',
         r"queries.jsonl:3 field 'text': text is not valid Unicode: lone surrogate .* character 2"),
    ])
def test_malformed_input_names_file_and_line(tmp_path, file, line, text, message):
  path = copy_fixture(tmp_path)
  edit_line(path / file, line, text)
  with pytest.raises(UserError, match=message):
    load_beir(path)


@pytest.mark.parametrize("file, line", [("corpus.jsonl", 7), ("queries.jsonl", 2),
                                        ("qrels/test.tsv", 5)])
def test_bytes_that_are_not_utf8_name_file_and_line(tmp_path, file, line):
  path = copy_fixture(tmp_path)
  lines = (path / file).read_bytes().splitlines(keepends=True)
  lines[line - 1] = lines[line - 1][:6] + b"\xff\xfe" + lines[line - 1][6:]  # Latin-1 style bytes
  (path / file).write_bytes(b"".join(lines))
  with pytest.raises(UserError, match=rf"{file}:{line}: not UTF-8 \(invalid start byte at byte 6"):
    load_beir(path)


def test_qrels_of_documents_missing_from_the_corpus_are_kept_with_a_warning(tmp_path):
  path = copy_fixture(tmp_path)
  qid = load_beir(FIXTURE).query_ids[0]
  with open(path / "qrels" / "test.tsv", "a") as f:
    f.write(f"{qid}\tgone-1\t1\n{qid}\tgone-2\t0\n")
  data = load_beir(path)
  assert data.qrels[qid]["gone-1"] == 1 and data.qrels[qid]["gone-2"] == 0
  assert [w for w in data.warnings if "missing from corpus.jsonl" in w] == [
      f"{path / 'qrels' / 'test.tsv'}: 2 judgement(s) name documents missing from corpus.jsonl "
      "(1 relevant; e.g. 'gone-1', 'gone-2'); scored as BEIR does: relevant documents never "
      "retrieved"
  ]


def test_empty_queries_and_unknown_fields_are_reported(tmp_path):
  path = copy_fixture(tmp_path)
  edit_line(path / "queries.jsonl", 1, '{"_id": "57286dfa2ca10214002da332", "text": " "}\n')
  edit_line(path / "corpus.jsonl", 1, '{"_id": "en-36-0-0", "text": "t", "titel": "x"}\n')
  data = load_beir(path)
  assert any("1 judged quer(y/ies) with empty text ('57286dfa2ca10214002da332')" in w
             for w in data.warnings), data.warnings
  assert any("1 record(s) have the unknown field 'titel'" in w for w in data.warnings)
  assert load_beir(FIXTURE).warnings == ()


def test_missing_split_and_unjudged_queries(tmp_path):
  with pytest.raises(UserError, match="dev.tsv"):
    load_beir(FIXTURE, split="dev")
  path = copy_fixture(tmp_path)
  lines = (path / "qrels" / "test.tsv").read_text().splitlines(keepends=True)
  dropped = lines[1].split("\t")[0]
  (path / "qrels" / "test.tsv").write_text("".join(
      line for line in lines if not line.startswith(dropped)))
  data = load_beir(path)
  assert len(data.query_ids) == 65 and dropped not in data.query_ids


def write_trec_run(path, run):
  with open(path, "w") as f:
    for qid, docs in run.items():
      for rank, (docid, score) in enumerate(sorted(docs.items(), key=lambda kv: -kv[1])):
        f.write(f"{qid} Q0 {docid} {rank + 1} {score!r} test\n")


@pytest.mark.parametrize("num_levels", [None, 4])
def test_beir_metrics_on_fixture_match_pytrec_eval_run_file(tmp_path, num_levels):
  data = load_beir(FIXTURE)
  rng = np.random.default_rng(0)
  shape = (len(data.query_ids), len(data.corpus_ids))
  scores = (rng.integers(0, num_levels, shape) if num_levels else rng.standard_normal(shape))
  k_values = (1, 10, 100)
  run = metrics.scores_to_run(
      scores.astype(np.float32), data.query_ids, data.corpus_ids, top_k=shape[1])
  write_trec_run(tmp_path / "run.trec", run)
  with open(tmp_path / "run.trec") as f:
    run_from_file = pytrec_eval.parse_run(f)
  measures = {"ndcg_cut.1,10,100", "recall.1,10,100"}
  want = pytrec_eval.RelevanceEvaluator(data.qrels, measures).evaluate(run_from_file)
  got = metrics.beir_per_query(run_from_file, data.qrels, k_values)
  for qid in data.query_ids:
    for k in k_values:
      np.testing.assert_allclose(got[qid][f"ndcg@{k}"], want[qid][f"ndcg_cut_{k}"], rtol=1e-12)
      np.testing.assert_allclose(got[qid][f"recall@{k}"], want[qid][f"recall_{k}"], rtol=1e-12)
  averaged = metrics.beir_metrics(
      scores.astype(np.float32), data.qrels, k_values, query_ids=data.query_ids,
      corpus_ids=data.corpus_ids)
  np.testing.assert_allclose(averaged["ndcg@10"],
                             np.mean([m["ndcg_cut_10"] for m in want.values()]), rtol=1e-12)
  np.testing.assert_allclose(averaged["recall@100"],
                             np.mean([m["recall_100"] for m in want.values()]), rtol=1e-12)
