"""Evaluation: bucketed/sharded encoding equals plain encoding, the JAX scorer equals numpy, the
pipeline equals metrics computed from plainly encoded embeddings, reports and the CLI work."""

import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from hybrid_jax import data as data_lib
from hybrid_jax import evaluate
from hybrid_jax import metrics as metrics_lib
from hybrid_jax import models
from hybrid_jax import report
from hybrid_jax import sharding
from hybrid_jax.models import tokenizer as tokenizer_lib
from hybrid_jax.models.config import model_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LANGUAGES = ("en", "de", "ar")
QUERY_MAX_LEN, PASSAGE_MAX_LEN = 32, 64  # buckets (32,) and (32, 64)
BATCH_SIZE = 16  # one batch shape throughout, so the compiled programs are shared by the tests


@pytest.fixture(scope="module")
def data():
  return data_lib.load("xquad_r:eval", languages=list(LANGUAGES))


@pytest.fixture(scope="module")
def tokenizer(data):
  return tokenizer_lib.train_default_tokenizer(data.texts(), vocab_size=1500)


@pytest.fixture(scope="module")
def model(tokenizer):
  config = model_config(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=80)
  return models.create_model(config, seed=0)


@pytest.fixture(scope="module")
def passage_tokens(data, tokenizer):
  """45 passages of mixed lengths: every third one with its context (full length), the others
  the sentence alone (short)."""
  rows = np.random.default_rng(0).choice(len(data.candidates), 45, replace=False)
  contexts = np.where(np.arange(45) % 3 == 0, data.candidates.context[rows], "")
  return tokenizer_lib.tokenize_passages(tokenizer, data.candidates.text[rows], contexts,
                                         PASSAGE_MAX_LEN)


def _plain_encode(model, tower, tokens):
  """Embeddings of all rows in one batch at the tokenizer's length (no buckets, no mesh)."""
  encode = nnx.jit(lambda m, ids, mask, types: (m.encode_queries if tower == "query" else m.encode_passages)(ids, mask, types))
  return np.asarray(encode(model, tokens["input_ids"], tokens["attention_mask"],
                           tokens["token_type_ids"]))


def test_bucket_lengths():
  assert evaluate.bucket_lengths(96) == (32, 64, 96)
  assert evaluate.bucket_lengths(32) == (32,)
  assert evaluate.bucket_lengths(256) == (32, 64, 128, 256)
  assert evaluate.bucket_lengths(20) == (20,)


def test_round_batch_size():
  mesh = sharding.make_mesh()
  assert evaluate.round_batch_size(13, mesh) == 16
  assert evaluate.round_batch_size(16, mesh) == 16


def test_encode_order_and_bucketing_invariance(model, passage_tokens):
  lengths = passage_tokens["attention_mask"].sum(1)
  assert lengths.min() <= 32 < lengths.max()  # both buckets are used
  # Reference: one unbucketed, unpadded batch at the full length, on one device.
  expected = _plain_encode(model, "passage", passage_tokens)
  # 45 rows in batches of BATCH_SIZE: a padded final batch in both buckets.
  encoder = evaluate.Encoder(model, sharding.make_mesh(), BATCH_SIZE, show_progress=False)
  np.testing.assert_allclose(encoder(passage_tokens, "passage"), expected, rtol=0, atol=2e-5)


def test_sharded_encode_equals_one_device(model, passage_tokens):
  one = evaluate.Encoder(model, sharding.make_mesh(1), BATCH_SIZE, show_progress=False)
  eight = evaluate.Encoder(model, sharding.make_mesh(8), BATCH_SIZE, show_progress=False)
  assert len(jax.devices()) == 8
  np.testing.assert_allclose(eight(passage_tokens, "passage"), one(passage_tokens, "passage"),
                             rtol=0, atol=2e-5)


def test_encoder_rejects_left_padding(model, passage_tokens):
  flipped = {key: value[:, ::-1].copy() for key, value in passage_tokens.items()}
  with pytest.raises(ValueError, match="right-padded"):
    evaluate.Encoder(model, sharding.make_mesh(1), BATCH_SIZE, show_progress=False)(flipped, "passage")


def test_dot_scorer_equals_numpy():
  rng = np.random.default_rng(1)
  queries = rng.normal(size=(37, 16)).astype(np.float32)
  scorer = evaluate.DotScorer(chunk_size=8)
  for num_candidates in (101, 50):  # a new candidate table replaces the cached one
    candidates = rng.normal(size=(num_candidates, 16)).astype(np.float32)
    expected = queries.astype(np.float64) @ candidates.astype(np.float64).T
    np.testing.assert_allclose(scorer(queries, candidates), expected, rtol=1e-5, atol=1e-5)


def test_query_chunk_size_bounds_memory():
  for num_candidates in (10, 13_014, 1_000_000, 10**9):
    chunk = evaluate.query_chunk_size(num_candidates)
    assert 1 <= chunk <= evaluate.MAX_QUERY_CHUNK
    if chunk > 1:
      assert chunk * num_candidates * evaluate.BYTES_PER_SCORE <= evaluate.SCORE_MEMORY_BYTES


def test_evaluate_equals_metrics_on_plain_embeddings(model, tokenizer, data, tmp_path):
  mesh = sharding.make_mesh()
  retriever = evaluate.DenseRetriever(model, tokenizer, mesh, query_max_len=QUERY_MAX_LEN,
                                      passage_max_len=PASSAGE_MAX_LEN, batch_size=BATCH_SIZE,
                                      show_progress=False)
  config = ml_collections.ConfigDict({"data": {"languages": "en+de", "train": "xquad_r:train"}})
  results = evaluate.evaluate(retriever, "xquad_r:eval", languages=LANGUAGES, model_name="tiny",
                              step=3, output_dir=str(tmp_path), config=config)
  # Independent reference: every language's queries and all candidates encoded unbucketed,
  # unsharded, scored by the numpy default of lareqa_metrics.
  passages = tokenizer_lib.tokenize_passages(tokenizer, data.candidates.text,
                                             data.candidates.context, PASSAGE_MAX_LEN)
  cand_emb = _plain_encode(model, "passage", passages)
  query_emb = np.zeros((data.num_examples, len(LANGUAGES), cand_emb.shape[1]), np.float32)
  for j in range(len(LANGUAGES)):
    rows = np.flatnonzero(data.available[:, j])
    tokens = tokenizer_lib.tokenize_queries(tokenizer, data.queries[rows, j], QUERY_MAX_LEN)
    query_emb[rows, j] = _plain_encode(model, "query", tokens)
  expected = evaluate.lareqa_results(metrics_lib.lareqa_metrics(
      query_emb, data.available, cand_emb, data.candidates.language, data.positives, LANGUAGES))
  got = results["metrics"]
  for x in LANGUAGES:
    for y in LANGUAGES:
      assert got["map_xy"][x][y] == pytest.approx(expected["map_xy"][x][y], abs=1e-3)
    assert got["map_multi"][x] == pytest.approx(expected["map_multi"][x], abs=1e-3)
  assert got["map_mono"] == pytest.approx(expected["map_mono"], abs=1e-3)
  # ar is evaluated but was not trained on: reported apart as a zero-shot language.
  assert got["zero_shot_languages"] == ["ar"]
  assert got["zero_shot"]["map_mono"] == pytest.approx(got["map_xy"]["ar"]["ar"])
  assert got["trained"]["map_multi_mean"] == pytest.approx(
      (got["map_multi"]["en"] + got["map_multi"]["de"]) / 2)
  assert "zero-shot (ar)" in (tmp_path / report.MARKDOWN_NAME).read_text()

  saved = report.load_results(str(tmp_path))
  assert saved["step"] == 3 and saved["languages"] == list(LANGUAGES)
  assert saved["counts"]["en"]["examples"] == int(data.available[:, 0].sum())
  assert set(saved["timing"]) >= {"tokenize_seconds", "encode_seconds", "score_metrics_seconds",
                                  "total_seconds", "candidates_per_second"}
  assert os.path.exists(tmp_path / report.HEATMAP_NAME)

  scalars = evaluate.scalars(results)
  assert scalars["eval/mono_map"] == pytest.approx(got["map_mono"])
  assert {"eval/cross_map", "eval/multilingual_map", "eval/rank_gap",
          "eval/own_language_share@10", "eval/rank_range", "eval/recall@1", "eval/recall@10",
          "eval/zero_shot_multilingual_map"} <= set(scalars)


def test_prefixes_are_put_before_the_texts(model, tokenizer, data):
  kwargs = dict(query_max_len=QUERY_MAX_LEN, passage_max_len=PASSAGE_MAX_LEN,
                batch_size=BATCH_SIZE, show_progress=False)
  mesh = sharding.make_mesh()
  plain = evaluate.DenseRetriever(model, tokenizer, mesh, **kwargs)
  prefixed = evaluate.DenseRetriever(model, tokenizer, mesh, query_prefix="query: ",
                                     passage_prefix="passage: ", **kwargs)
  queries, sentences = data.queries[:5, 0].tolist(), data.candidates.text[:5].tolist()
  contexts = data.candidates.context[:5].tolist()
  np.testing.assert_array_equal(prefixed.embed_queries(queries),
                                plain.embed_queries(["query: " + q for q in queries]))
  np.testing.assert_array_equal(
      prefixed.embed_passages(sentences, contexts),
      plain.embed_passages(["passage: " + s for s in sentences], contexts))
  assert prefixed.settings()["query_prefix"] == "query: "


def test_train_test_overlap():
  assert evaluate.train_test_overlap("xquad_r:train", "xquad_r:all")
  assert evaluate.train_test_overlap("xquad_r:all", "xquad_r:eval")
  assert evaluate.train_test_overlap("xquad_r:train", "xquad_r:eval") is None
  assert evaluate.train_test_overlap("squad:/x", "xquad_r:all") is None


def test_dataset_name():
  assert evaluate.dataset_name("xquad_r:eval") == "xquad_r_eval"
  assert evaluate.dataset_name("beir:/data/miracl-de/") == "beir_miracl-de"
  assert evaluate.dataset_name("mlqa_r:/d/MLQA_V1") == "mlqa_r_MLQA_V1"


def _run_cli(*args):
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  result = subprocess.run([sys.executable, "-m", "hybrid_jax.evaluate", *args], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


@pytest.mark.parametrize("kind", ["tfidf", "hf"])
def test_cli_end_to_end(kind, model, tokenizer, tmp_path):
  if kind == "hf":
    target = str(tmp_path / "hf")
    models.save_pretrained(model, target, tokenizer,
                           prompts={"query": "query: ", "passage": "passage: "})
  else:
    target = "tfidf"
  out = tmp_path / "out"
  _run_cli(f"--model={target}", "--dataset=xquad_r:eval", "--languages=en+de",
           f"--output_dir={out}", "--passage_max_len=32", "--batch_size=32")
  saved = json.loads((out / report.JSON_NAME).read_text())
  assert saved["model"] == target and saved["languages"] == ["en", "de"]
  assert all(0 <= saved["metrics"]["map_xy"][x][y] <= 1 for x in ("en", "de") for y in ("en", "de"))
  assert saved["retriever"]["kind"] == ("tfidf" if kind == "tfidf" else "dense")
  if kind == "hf":  # The exported sentence-transformers prompts are read back.
    assert saved["retriever"]["query_prefix"] == "query: "
    assert saved["retriever"]["passage_prefix"] == "passage: "
  assert (out / report.MARKDOWN_NAME).exists() and (out / report.HEATMAP_NAME).exists()


def test_cli_user_errors_print_one_line_and_exit_2(model, tokenizer, tmp_path):
  hf = tmp_path / "hf"
  models.save_pretrained(model, str(hf), tokenizer)  # XLM-R positions: 80 rows = 78 tokens
  (tmp_path / "a_file").write_text("")
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  cases = [
      ([f"--model={hf}", "--passage_max_len=79"], "--passage_max_len=79: longer than the "
       f"model's position table, which covers 78 tokens (the model of {hf}); use at most 78"),
      ([f"--workdir={tmp_path}/a_file"], f"{tmp_path}/a_file: neither a training run"),
      ([], "pass --workdir (a training run) or --model (HF_DIR or tfidf)"),
      (["--model=tfidf", f"--output_dir={tmp_path}/o", f"--dataset=beir:{tmp_path}/nope"],
       f"BEIR data: missing file {tmp_path}/nope/corpus.jsonl"),
      (["--model=tfidf", "--step=x"], "--step=x: invalid literal"),
  ]
  for args, message in cases:
    result = subprocess.run([sys.executable, "-m", "hybrid_jax.evaluate", *args], env=env,
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, (args, result.stderr[-3000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: " + message), result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def _write_beir(path, corpus, queries, qrels):
  (path / "qrels").mkdir(parents=True)
  with open(path / "corpus.jsonl", "w") as f:
    f.writelines(json.dumps({"_id": i, "text": t}) + "\n" for i, t in corpus.items())
  with open(path / "queries.jsonl", "w") as f:
    f.writelines(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries.items())
  with open(path / "qrels" / "test.tsv", "w") as f:
    f.write("query-id\tcorpus-id\tscore\n")
    f.writelines(f"{q}\t{d}\t{g}\n" for q, docs in qrels.items() for d, g in docs.items())


def test_beir_is_scored_as_beir_scores_it(tmp_path):
  """ArguAna-style data: queries are corpus documents too (BEIR drops a retrieved document whose
  id is the query's), a judgement names a document the corpus lacks (relevant, never retrieved),
  and a judged query has empty text (reported). Reference: pytrec_eval on the retriever's own
  scores with BEIR's rules applied by hand."""
  import pytrec_eval

  corpus = {"a": "apple banana cherry", "b": "dog elephant fox", "ra": "apple banana grape",
            "rb": "dog elephant goat", "x": "unrelated words here"}
  queries = {"a": "apple banana cherry", "b": "dog elephant fox", "e": ""}
  qrels = {"a": {"ra": 1, "gone": 1}, "b": {"rb": 1}, "e": {"x": 1}}
  _write_beir(tmp_path / "beir", corpus, queries, qrels)
  spec = f"beir:{tmp_path / 'beir'}"
  dropped = evaluate.evaluate(evaluate.TfidfRetriever(), spec)
  kept = evaluate.evaluate(evaluate.TfidfRetriever(), spec, ignore_identical_ids=False)

  retriever = evaluate.TfidfRetriever()
  doc_emb = retriever.embed_passages(list(corpus.values()), [""] * len(corpus))
  scores = np.asarray(retriever.score_fn(len(corpus))(
      retriever.embed_queries(list(queries.values())), doc_emb))
  full = {q: {d: float(s) for d, s in zip(corpus, row)} for q, row in zip(queries, scores)}
  for results, run in ((dropped, {q: {d: s for d, s in docs.items() if d != q}
                                  for q, docs in full.items()}), (kept, full)):
    want = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run)
    assert results["metrics"]["ndcg@10"] == pytest.approx(
        np.mean([m["ndcg_cut_10"] for m in want.values()]), rel=1e-12)
    assert results["metrics"]["recall@100"] == pytest.approx(
        np.mean([m["recall_100"] for m in want.values()]), rel=1e-12)
  assert dropped["metrics"]["ndcg@10"] > kept["metrics"]["ndcg@10"]
  assert dropped["counts"]["ignore_identical_ids"] and not kept["counts"]["ignore_identical_ids"]
  warnings = " | ".join(dropped["warnings"])
  assert "1 judgement(s) name documents missing from corpus.jsonl (1 relevant; e.g. 'gone')" in (
      warnings)
  assert "1 judged quer(y/ies) with empty text ('e')" in warnings
