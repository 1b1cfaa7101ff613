"""Host input pipeline: the right texts for the sampler's ids and languages, process slices that
concatenate to the global batch, paragraph hard negatives, and an in-order prefetch thread."""

import numpy as np
import pytest

from hybrid_jax import data as data_lib
from hybrid_jax import input_pipeline
from hybrid_jax.models import tokenizer as tokenizer_lib
from hybrid_jax.sampler import HybridBatchSampler

BATCH = 16


@pytest.fixture(scope="module")
def setup():
  data = data_lib.load("xquad_r:eval", languages=("en", "de", "zh"))
  tokenizer = tokenizer_lib.train_default_tokenizer(tokenizer_lib.parallel_qa_texts(data),
                                                    vocab_size=1000)
  sampler = HybridBatchSampler(data.available, data.languages, BATCH, 0.5, 0,
                               passage_keys=data.passage_keys)
  return data, tokenizer, sampler


def _builder(setup, **kwargs):
  data, tokenizer, sampler = setup
  return input_pipeline.BatchBuilder(data, sampler, tokenizer, query_max_len=16,
                                     passage_max_len=48, **kwargs)


def test_batch_holds_the_sampled_texts(setup):
  data, tokenizer, sampler = setup
  for step in range(4):
    batch, b = _builder(setup)(step), sampler.batch(step)
    expected_q = tokenizer_lib.tokenize_queries(
        tokenizer, data.queries[b.example_ids, b.query_lang].tolist(), 16)
    np.testing.assert_array_equal(batch["query_input_ids"], expected_q["input_ids"])
    positives = data.positives[b.example_ids, b.passage_lang]
    np.testing.assert_array_equal(batch["passage_keys"], positives)
    expected_p = tokenizer_lib.tokenize_passages(
        tokenizer, data.candidates.text[positives].tolist(),
        data.candidates.context[positives].tolist(), 48)
    np.testing.assert_array_equal(batch["passage_input_ids"], expected_p["input_ids"])
    assert batch["query_input_ids"].dtype == np.int32
    assert batch["passage_attention_mask"].shape == (BATCH, 48)
    is_mono, qlang, plang = _builder(setup).describe(step)
    assert is_mono == (qlang == plang) == bool(b.is_mono)


def test_prefixes_go_before_queries_and_passage_sentences(setup):
  data, tokenizer, sampler = setup
  batch = _builder(setup, query_prefix="query: ", passage_prefix="passage: ")(1)
  b = sampler.batch(1)
  queries = ["query: " + q for q in data.queries[b.example_ids, b.query_lang].tolist()]
  np.testing.assert_array_equal(batch["query_input_ids"], tokenizer_lib.tokenize_queries(
      tokenizer, queries, 16)["input_ids"])
  positives = data.positives[b.example_ids, b.passage_lang]
  sentences = ["passage: " + s for s in data.candidates.text[positives].tolist()]
  np.testing.assert_array_equal(batch["passage_input_ids"], tokenizer_lib.tokenize_passages(
      tokenizer, sentences, data.candidates.context[positives].tolist(), 48)["input_ids"])
  assert not np.array_equal(batch["query_input_ids"], _builder(setup)(1)["query_input_ids"])


def test_process_slices_concatenate_to_global_batch(setup):
  whole = _builder(setup)(3)
  parts = [_builder(setup, process_index=i, process_count=4)(3) for i in range(4)]
  for key, value in whole.items():
    np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), value)


def test_hard_negatives_are_other_sentences_of_the_paragraph(setup):
  data = setup[0]
  batch = _builder(setup, num_hard_negatives=2, seed=1)(2)
  assert batch["hard_negative_input_ids"].shape == (BATCH, 2, 48)
  cands = data.candidates
  for pos, negs in zip(batch["passage_keys"], batch["hard_negative_keys"]):
    assert pos not in negs and len(set(negs)) == 2
    assert all(cands.language[n] == cands.language[pos] for n in negs)
    same_paragraph = [cands.context[n] == cands.context[pos] for n in negs]
    others = [c for c in np.flatnonzero(cands.context == cands.context[pos]) if c != pos]
    # Paragraph sentences first; random same-language fillers only when there are too few.
    assert sum(same_paragraph) == min(2, len(others))
  again = _builder(setup, num_hard_negatives=2, seed=1)(2)
  np.testing.assert_array_equal(again["hard_negative_keys"], batch["hard_negative_keys"])


def test_prefetcher_in_order_and_propagates_errors():
  p = input_pipeline.Prefetcher(lambda s: {"x": np.full(2, s)}, 3, 8, size=2)
  assert [(s, int(b["x"][0])) for s, b in p] == [(s, s) for s in range(3, 8)]

  def failing(step):
    if step == 2:
      raise KeyError("bad record")
    return step

  p = input_pipeline.Prefetcher(failing, 0, 5)
  assert next(p) == (0, 0) and next(p) == (1, 1)
  with pytest.raises(RuntimeError, match="input pipeline failed"):
    next(p)
  p.close()
