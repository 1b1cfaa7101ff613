"""Evaluators: the pipeline equals metrics computed from plainly encoded embeddings, BEIR is
scored as BEIR scores it, languages a data set lacks are one clear error, and an evaluation in
other languages or at other lengths gets its own report directory."""

import json
import os

import ml_collections
import numpy as np
import pytest

from conftest import EVAL_BATCH_SIZE as BATCH_SIZE
from conftest import EVAL_LANGUAGES as LANGUAGES
from conftest import EVAL_PASSAGE_MAX_LEN as PASSAGE_MAX_LEN
from conftest import EVAL_QUERY_MAX_LEN as QUERY_MAX_LEN
from conftest import plain_encode
from hybrid_jax import config_lib
from hybrid_jax import encoding
from hybrid_jax import eval_report
from hybrid_jax import evaluators
from hybrid_jax import models
from hybrid_jax import retrieval_metrics
from hybrid_jax import retrievers
from hybrid_jax import sharding
from hybrid_jax.errors import UserError
from hybrid_jax.models import tokenizer as tokenizer_lib


def test_evaluate_equals_metrics_on_plain_embeddings(eval_model, eval_tokenizer, eval_data,
                                                     tmp_path):
  model, tokenizer, data = eval_model, eval_tokenizer, eval_data
  encoder = encoding.Encoder(*models.split_for_encoding(model), sharding.make_mesh(), BATCH_SIZE,
                             show_progress=False)
  retriever = retrievers.DenseRetriever(encoder, tokenizer, query_max_len=QUERY_MAX_LEN,
                                        passage_max_len=PASSAGE_MAX_LEN)
  config = ml_collections.ConfigDict({"data": {"languages": "en+de", "train": "xquad_r:train"}})
  results = evaluators.evaluate(retriever, "xquad_r:eval", languages=LANGUAGES, model_name="tiny",
                                step=3, output_dir=str(tmp_path), config=config)
  # Independent reference: every language's queries and all candidates encoded unbucketed,
  # unsharded, scored by the numpy default of lareqa_metrics.
  passages = tokenizer_lib.tokenize_passages(tokenizer, data.candidates.text,
                                             data.candidates.context, PASSAGE_MAX_LEN)
  cand_emb = plain_encode(model, "passage", passages)
  query_emb = np.zeros((data.num_examples, len(LANGUAGES), cand_emb.shape[1]), np.float32)
  for j in range(len(LANGUAGES)):
    rows = np.flatnonzero(data.available[:, j])
    tokens = tokenizer_lib.tokenize_queries(tokenizer, data.queries[rows, j], QUERY_MAX_LEN)
    query_emb[rows, j] = plain_encode(model, "query", tokens)
  expected = evaluators.lareqa_results(
      retrieval_metrics.lareqa_metrics(query_emb, data.available, cand_emb,
                                       data.candidates.language, data.positives, LANGUAGES))
  got = results["metrics"]
  for x in LANGUAGES:
    for y in LANGUAGES:
      assert got["map_xy"][x][y] == pytest.approx(expected["map_xy"][x][y], abs=1e-3)
    assert got["map_multi"][x] == pytest.approx(expected["map_multi"][x], abs=1e-3)
  assert got["map_mono"] == pytest.approx(expected["map_mono"], abs=1e-3)
  # ar is evaluated but was not trained on: reported apart as a zero-shot language.
  trained = got["groups"]["trained"]
  assert trained["zero-shot"]["languages"] == ["ar"]
  assert trained["zero-shot"]["map_mono"] == pytest.approx(got["map_xy"]["ar"]["ar"])
  assert trained["trained"]["map_multi_mean"] == pytest.approx(
      (got["map_multi"]["en"] + got["map_multi"]["de"]) / 2)
  assert "zero-shot (1: ar)" in (tmp_path / eval_report.MARKDOWN_NAME).read_text()

  saved = json.loads((tmp_path / eval_report.JSON_NAME).read_text())
  assert saved["step"] == 3 and saved["languages"] == list(LANGUAGES)
  assert saved["counts"]["en"]["examples"] == int(data.available[:, 0].sum())
  assert set(saved["timing"]) >= {
      "tokenize_seconds", "encode_seconds", "score_metrics_seconds", "total_seconds",
      "candidates_per_second"
  }
  assert os.path.exists(tmp_path / eval_report.HEATMAP_NAME)

  scalars = evaluators.scalars(results)
  assert scalars["eval/mono_map"] == pytest.approx(got["map_mono"])
  assert {
      "eval/cross_map", "eval/multilingual_map", "eval/rank_gap", "eval/own_language_share@10",
      "eval/rank_range", "eval/recall@1", "eval/recall@10",
      "eval/group/trained/zero-shot/multilingual_map", "eval/group/family/Afro-Asiatic/mono_map"
  } <= set(scalars)


def test_train_test_overlap():
  assert evaluators.train_test_overlap("xquad_r:train", "xquad_r:all")
  assert evaluators.train_test_overlap("xquad_r:all", "xquad_r:eval")
  assert evaluators.train_test_overlap("xquad_r:train", "xquad_r:eval") is None
  assert evaluators.train_test_overlap("squad:/x", "xquad_r:all") is None


def test_dataset_name():
  assert evaluators.dataset_name("xquad_r:eval") == "xquad_r_eval"
  assert evaluators.dataset_name("beir:/data/miracl-de/") == "beir_miracl-de"
  assert evaluators.dataset_name("mlqa_r:/d/MLQA_V1") == "mlqa_r_MLQA_V1"


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

  corpus = {
      "a": "apple banana cherry", "b": "dog elephant fox", "ra": "apple banana grape",
      "rb": "dog elephant goat", "x": "unrelated words here"
  }
  queries = {"a": "apple banana cherry", "b": "dog elephant fox", "e": ""}
  qrels = {"a": {"ra": 1, "gone": 1}, "b": {"rb": 1}, "e": {"x": 1}}
  _write_beir(tmp_path / "beir", corpus, queries, qrels)
  spec = f"beir:{tmp_path / 'beir'}"
  dropped = evaluators.evaluate(retrievers.TfidfRetriever(), spec)
  kept = evaluators.evaluate(retrievers.TfidfRetriever(), spec, ignore_identical_ids=False)

  retriever = retrievers.TfidfRetriever()
  doc_emb = retriever.embed_passages(list(corpus.values()), [""] * len(corpus))
  scores = np.asarray(
      retriever.score_fn(len(corpus))(retriever.embed_queries(list(queries.values())), doc_emb))
  full = {q: {d: float(s) for d, s in zip(corpus, row)} for q, row in zip(queries, scores)}
  for results, run in ((dropped, {
      q: {d: s for d, s in docs.items() if d != q} for q, docs in full.items()
  }), (kept, full)):
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


def test_languages_the_data_lacks_are_named_with_the_flag_that_works(eval_data):
  # eval_data has en, de, ar; the run was evaluated in en+es+de.
  with pytest.raises(UserError) as error:
    evaluators.select_languages(eval_data, "D", ("en", "es", "de"),
                                run_languages=("en", "es", "de"))
  assert str(error.value) == ("D has no es data (the run's evaluation languages: en+es+de; it "
                              "has en+de+ar): pass --languages=en+de")
  with pytest.raises(
      UserError, match=r"D has no zh\+th data \(the languages asked for: zh\+th; "
      r"it has en\+de\+ar\): pass --languages=en\+de\+ar"):
    evaluators.select_languages(eval_data, "D", ("zh", "th"), run_languages=("en",))
  kept = evaluators.select_languages(eval_data, "D", ("de", "en"))
  assert kept.languages == ("de", "en") and evaluators.select_languages(eval_data, "D",
                                                                        None) is (eval_data)


def test_other_languages_or_lengths_get_their_own_report_directory():
  run, lengths = ("en", "de", "es"), (24, 64)
  variants = {
      (None, lengths): "",
      (run, lengths): "",  # the run's own evaluation: its directory
      (("en", "de"), lengths): "en_de",
      (run, (32, 96)): "q32_p96",
      (("de", "en", "es"), (24, 96)): "de_en_es_q24_p96",
  }
  dirs = set()
  for (languages, lens), want in variants.items():
    variant = evaluators.variant_name(languages, run, lens, lengths)
    assert variant == want
    dirs.add(evaluators.output_dir_for("/w", "xquad_r:eval", 6, variant=variant))
  assert evaluators.output_dir_for("/w", "xquad_r:eval", 6) == "/w/eval/xquad_r_eval/step_6"
  assert len(dirs) == 4 and "/w/eval/xquad_r_eval/step_6_en_de" in dirs
  # A model without a run: languages given, or lengths other than the default config's.
  default = (config_lib.DEFAULT_QUERY_MAX_LEN, config_lib.DEFAULT_PASSAGE_MAX_LEN)
  assert evaluators.variant_name(None, None, default, default) == ""
  assert evaluators.variant_name(("en",), None, (32, 96), default) == "en_q32_p96"
  assert evaluators.output_dir_for("/w", "beir:/d/x", None, "tfidf",
                                   "en") == ("/w/eval/beir_x/tfidf_en")


def test_default_lengths_are_the_default_configs():
  config = config_lib.default_config()
  assert (config.data.query_max_len, config.data.passage_max_len, config.eval.batch_size) == (
      config_lib.DEFAULT_QUERY_MAX_LEN, config_lib.DEFAULT_PASSAGE_MAX_LEN,
      config_lib.DEFAULT_EVAL_BATCH_SIZE) == (24, 64, 128)
