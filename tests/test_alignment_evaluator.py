"""The alignment evaluator: `udhr:` specs route to it, it equals `alignment_metrics` on plainly
encoded embeddings, the in-training hook writes its report and scalars, and the report (tables,
heatmap) holds at 87 languages."""

import json
import os

import ml_collections
import numpy as np
import pytest

from conftest import EVAL_BATCH_SIZE as BATCH_SIZE
from conftest import plain_encode
from hybrid_jax import alignment_metrics
from hybrid_jax import config_lib
from hybrid_jax import encoding
from hybrid_jax import eval_report
from hybrid_jax import evaluators
from hybrid_jax import models
from hybrid_jax import retrievers
from hybrid_jax import sharding
from hybrid_jax.data import udhr
from hybrid_jax.errors import UserError
from hybrid_jax.models import tokenizer as tokenizer_lib

SPEC = "udhr:xlmr:en+de+ar+sw"
UNIT_MAX_LEN = 64  # within the conftest model's 80 positions; buckets 32, 64


def test_udhr_equals_metrics_on_plain_embeddings(eval_model, eval_tokenizer, tmp_path):
  model, tokenizer = eval_model, eval_tokenizer
  encoder = encoding.Encoder(*models.split_for_encoding(model), sharding.make_mesh(), BATCH_SIZE,
                             show_progress=False)
  retriever = retrievers.DenseRetriever(encoder, tokenizer, query_max_len=UNIT_MAX_LEN,
                                        passage_max_len=UNIT_MAX_LEN)
  config = ml_collections.ConfigDict({
      "seed": 3, "data": {"languages": "en+de", "eval_languages": "en+de+ar"}
  })
  assert evaluators.is_alignment(SPEC) and not evaluators.is_alignment("xquad_r:eval")
  results = evaluators.evaluate(retriever, SPEC, model_name="tiny", step=2, config=config,
                                output_dir=str(tmp_path))
  assert results["task"] == "alignment" and results["languages"] == ["en", "de", "ar", "sw"]
  # Reference: every unit tokenised and encoded in one unbucketed batch, metrics in float64.
  data = udhr.load_udhr(tags=["en", "de", "ar", "sw"])
  tokens = tokenizer_lib.tokenize_queries(tokenizer, data.queries.T.ravel().tolist(), UNIT_MAX_LEN)
  emb = plain_encode(model, "query", tokens).reshape(4, 30, -1)
  values = alignment_metrics.per_language(
      alignment_metrics.bitext_metrics(emb), alignment_metrics.pool_metrics(emb),
      alignment_metrics.alignment_gap(emb), alignment_metrics.language_id_probe(emb, seed=3))
  got = results["metrics"]
  for key, per_language in values.items():
    for j, x in enumerate(results["languages"]):
      assert got["per_language"][key][x] == pytest.approx(per_language[j], abs=2e-3), (key, x)
  split = got["groups"]["trained"]
  assert split["trained"]["languages"] == ["en", "de"]
  assert split["zero-shot"]["languages"] == ["ar"]
  assert split["unseen"]["pool_map"] == pytest.approx(got["per_language"]["pool_map"]["sw"])
  # Other groupings from the language table: en, de Indo-European; sw Atlantic-Congo.
  family = got["groups"]["family"]
  assert family["Indo-European"]["languages"] == ["en", "de"]
  assert family["Indo-European"]["p_at_1"] == pytest.approx(
      (got["per_language"]["p_at_1"]["en"] + got["per_language"]["p_at_1"]["de"]) / 2)
  assert got["probe"]["chance"] == 0.25 and got["probe"]["seed"] == 3
  saved = json.loads((tmp_path / eval_report.JSON_NAME).read_text())
  assert saved["metrics"]["p_at_1"]["en"]["en"] is None  # no pair with itself
  assert set(saved["timing"]) >= {"encode_seconds", "bitext_seconds", "probe_seconds"}
  markdown = (tmp_path / eval_report.MARKDOWN_NAME).read_text()
  assert "| trained (2: en de) |" in markdown and "| sw |" in markdown
  assert os.path.getsize(tmp_path / eval_report.HEATMAP_NAME) > 10_000
  scalars = evaluators.alignment_scalars(results)
  assert scalars["eval_alignment/p_at_1"] == pytest.approx(got["mean"]["p_at_1"])
  assert "eval_alignment/unseen/xsim_error" in scalars


def test_in_training_hook_writes_the_alignment_report(eval_model, eval_tokenizer, tmp_path):
  config = config_lib.default_config("model=tiny,langs=en+de")
  config.data.eval = ""  # alignment only
  config.eval.alignment = "udhr:xlmr:en+de+fr"
  config.eval.alignment_max_len = UNIT_MAX_LEN
  config.eval.batch_size = BATCH_SIZE
  assert evaluators.has_evaluation(config)
  encode_fn, params = models.split_for_encoding(eval_model)
  out = evaluators.evaluate_in_training(encode_fn, params, eval_tokenizer, config,
                                        sharding.make_mesh(), str(tmp_path), 7)
  assert "results" not in out and out["alignment"]["step"] == 7
  assert out["alignment"]["retriever"]["query_max_len"] == UNIT_MAX_LEN
  assert out["alignment"]["metrics"]["groups"]["trained"]["unseen"]["languages"] == ["fr"]
  assert out["scalars"]["eval_alignment/pool_map"] == pytest.approx(
      out["alignment"]["metrics"]["mean"]["pool_map"])
  report = tmp_path / "eval" / "udhr_xlmr_en_de_fr" / "step_7"
  assert sorted(os.listdir(report)) == ["heatmap.png", "results.json", "results.md"]


def test_alignment_needs_dense_embeddings_and_parallel_units(tmp_path):
  with pytest.raises(UserError, match="alignment needs dense embeddings"):
    evaluators.evaluate_checkpoint("tfidf", "udhr:xlmr", output_dir=str(tmp_path))
  data = udhr.load_udhr(tags=["en", "de"])
  positives = data.positives.copy()
  positives[0, 1] = -1
  gapped = data.__class__(data.name, data.languages, data.ids, data.queries, positives,
                          data.candidates)
  with pytest.raises(UserError, match="units present in every language"):
    evaluators.evaluate_alignment(None, gapped)


class _FixedEmbeddings:
  """A retriever whose query embeddings are given (any texts)."""

  def __init__(self, emb):
    self.emb = emb

  def embed_queries(self, texts):
    assert len(texts) == len(self.emb)
    return self.emb


def test_report_at_87_languages_is_readable(tmp_path):
  """87 languages x 5 units: the heatmap has a row and column per language, cells of >= 12
  pixels, every language labelled; the markdown has a row per language and per group."""
  from PIL import Image

  languages = [code.split("-")[0] for code, _ in udhr.XLMR_FILES]
  data = udhr.load_udhr().select_languages(languages)
  data = data.__class__(data.name, data.languages, data.ids[:5], data.queries[:5],
                        data.positives[:5], data.candidates)
  rng = np.random.default_rng(0)
  emb = rng.standard_normal((1, 5, 16)) + 0.7 * rng.standard_normal((87, 5, 16))
  groups = evaluators.alignment_groups(languages, ["trained"], ["ar", "de", "en"],
                                       ["ar", "de", "en", "el"])
  metrics, timing = evaluators.evaluate_alignment(
      _FixedEmbeddings(emb.reshape(-1, 16)), data, groups)
  results = {
      "task": "alignment", "dataset": "udhr:xlmr", "model": "random", "step": None,
      "languages": languages, "metrics": metrics, "timing": timing
  }
  files = eval_report.write_report(results, str(tmp_path))
  markdown = open(files["markdown"]).read()
  # all, then the trained grouping's 3 groups and all, then the languages: each with a header.
  assert markdown.count("\n| ") == 2 + 5 + 1 + 87
  assert "| unseen (83: af am az " in markdown
  width, height = Image.open(files["heatmap"]).size
  assert width / 87 >= 12 and height / 87 >= 12


def _dense_retriever(model, tokenizer):
  encoder = encoding.Encoder(*models.split_for_encoding(model), sharding.make_mesh(), BATCH_SIZE,
                             show_progress=False)
  return retrievers.DenseRetriever(encoder, tokenizer, query_max_len=UNIT_MAX_LEN,
                                   passage_max_len=UNIT_MAX_LEN)


def test_tatoeba_pairs_equal_bitext_metrics_of_each_pair(eval_model, eval_tokenizer, tmp_path):
  """tatoeba: specs are scored pair by pair with English (LASER's protocol): each language's P@1
  and xsim are `alignment_metrics.bitext_metrics` of that pair's plainly encoded units."""
  from hybrid_jax.data import load
  sentences = {
      "deu": [f"Satz Nummer {i} über das Wetter." for i in range(12)],
      "fra": [f"Phrase numéro {i} sur la ville." for i in range(9)]
  }
  for xxx, lines in sentences.items():
    (tmp_path / f"tatoeba.{xxx}-eng.{xxx}").write_text("\n".join(lines) + "\n")
    (tmp_path / f"tatoeba.{xxx}-eng.eng").write_text("\n".join(
        f"Sentence {i} of {xxx}." for i in range(len(lines))) + "\n")
  spec = f"tatoeba:{tmp_path}"
  results = evaluators.evaluate(
      _dense_retriever(eval_model, eval_tokenizer), spec, output_dir=str(tmp_path / "out"))
  assert results["task"] == "bitext" and results["languages"] == ["en", "de", "fr"]
  data = load(spec)
  for j, x in ((1, "de"), (2, "fr")):
    rows = np.flatnonzero(data.available[:, j])
    texts = data.queries[rows, j].tolist() + data.queries[rows, 0].tolist()
    tokens = tokenizer_lib.tokenize_queries(eval_tokenizer, texts, UNIT_MAX_LEN)
    bitext = alignment_metrics.bitext_metrics(
        plain_encode(eval_model, "query", tokens).reshape(2, len(rows), -1))
    got = results["metrics"]["per_language"][x]
    assert got["units"] == len(rows)
    assert got["p_at_1_to_pivot"] == pytest.approx(bitext["p_at_1"][0, 1], abs=1e-6)
    assert got["xsim_error_from_pivot"] == pytest.approx(bitext["xsim_error"][1, 0], abs=1e-6)
  markdown = (tmp_path / "out" / "results.md").read_text()
  assert "| de | 12 |" in markdown and "| fr | 9 |" in markdown


def test_xnli_probe_routes_and_reports(eval_model, eval_tokenizer, tmp_path):
  """xnli: specs run the NLI probe: trained on the English dev pairs, accuracy per test
  language, as `nli_probe.evaluate_nli_probe` gives on the same retriever."""
  from hybrid_jax import nli_probe
  from hybrid_jax.data import xnli
  header = "language\tgold_label\tsentence1\tsentence2\tpairID"
  for split in ("dev", "test"):
    lines = [header]
    for lang, word in (("en", "cat"), ("de", "Katze")):
      for i in range(9):
        label = xnli.LABELS[i % 3]
        hypothesis = {0: f"a {word} {i}", 1: f"maybe {i}", 2: f"no {word} {i}"}[i % 3]
        lines.append(f"{lang}\t{label}\tthe {word} {i} sleeps\t{hypothesis}\t{split}{i}")
    (tmp_path / f"xnli.{split}.tsv").write_text("\n".join(lines) + "\n")
  retriever = _dense_retriever(eval_model, eval_tokenizer)
  results = evaluators.evaluate(retriever, f"xnli:{tmp_path}", output_dir=str(tmp_path / "out"))
  assert results["task"] == "nli_probe" and results["languages"] == ["en", "de"]
  expected = nli_probe.evaluate_nli_probe(retriever, xnli.load_xnli(str(tmp_path), "dev"),
                                          xnli.load_xnli(str(tmp_path), "test"))
  assert results["metrics"]["accuracy"] == pytest.approx(expected["accuracy"])
  assert results["counts"] == {"train_pairs": 9, "test_pairs": 9}
  assert "| de |" in (tmp_path / "out" / "results.md").read_text()
