"""Host input pipeline: the right texts for the sampler's ids and languages, process slices that
concatenate to the global batch, paragraph hard negatives, the in-order prefetch thread that
hands over global device arrays (or builds on the caller's thread), and worker processes (Grain)
that build the same batches and fail in one line when one dies."""

import multiprocessing
import os
import signal
import threading
import time

import jax
import ml_collections
import numpy as np
import pytest

from hybrid_jax import data as data_lib
from hybrid_jax import input_pipeline
from hybrid_jax import sharding
from hybrid_jax.data.parallel_qa import Example, assemble
from hybrid_jax.errors import UserError
from hybrid_jax.models import tokenizer as tokenizer_lib
from hybrid_jax.sampler import HybridBatchSampler

BATCH = 16


@pytest.fixture(scope="module")
def setup():
  data = data_lib.load("xquad_r:eval", languages=("en", "de", "zh"))
  tokenizer = tokenizer_lib.train_default_tokenizer(data.texts(), vocab_size=1000)
  sampler = HybridBatchSampler(data.available, data.languages, BATCH, 0.5, 0,
                               passage_keys=data.passage_keys)
  return data, tokenizer, sampler


def _builder(setup, **kwargs):
  data, tokenizer, sampler = setup
  return input_pipeline.BatchBuilder(data, sampler, tokenizer, query_max_len=16, passage_max_len=48,
                                     **kwargs)


def test_batch_holds_the_sampled_texts(setup):
  data, tokenizer, sampler = setup
  for step in range(4):
    batch, b = _builder(setup)(step), sampler.batch(step)
    expected_q = tokenizer_lib.tokenize_queries(tokenizer, data.queries[b.example_ids,
                                                                        b.query_lang].tolist(), 16)
    np.testing.assert_array_equal(batch["query_input_ids"], expected_q["input_ids"])
    positives = data.positives[b.example_ids, b.passage_lang]
    np.testing.assert_array_equal(batch["passage_keys"], data.passage_keys[b.example_ids,
                                                                           b.passage_lang])
    expected_p = tokenizer_lib.tokenize_passages(tokenizer,
                                                 data.candidates.text[positives].tolist(),
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
  np.testing.assert_array_equal(batch["query_input_ids"],
                                tokenizer_lib.tokenize_queries(tokenizer, queries, 16)["input_ids"])
  positives = data.positives[b.example_ids, b.passage_lang]
  sentences = ["passage: " + s for s in data.candidates.text[positives].tolist()]
  np.testing.assert_array_equal(
      batch["passage_input_ids"],
      tokenizer_lib.tokenize_passages(tokenizer, sentences,
                                      data.candidates.context[positives].tolist(), 48)["input_ids"])
  assert not np.array_equal(batch["query_input_ids"], _builder(setup)(1)["query_input_ids"])


@pytest.mark.parametrize("step", [3, 5])
def test_process_slices_concatenate_to_global_batch(setup, step):
  """Hard negatives too: every per-row draw is keyed by (seed, step, global row)."""
  whole = _builder(setup, num_hard_negatives=2, seed=1)(step)
  for count in (2, 4):
    parts = [
        _builder(setup, num_hard_negatives=2, seed=1, process_index=i, process_count=count)(step)
        for i in range(count)
    ]
    for key, value in whole.items():
      np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), value)


def test_hard_negatives_are_other_sentences_of_the_paragraph(setup):
  data = setup[0]
  batch = _builder(setup, num_hard_negatives=2, seed=1)(2)
  assert batch["hard_negative_input_ids"].shape == (BATCH, 2, 48)
  cands = data.candidates
  keys = data.candidate_keys
  for pos, negs in zip(batch["passage_keys"], batch["hard_negative_keys"]):
    assert pos not in negs and len(set(negs)) == 2 and np.all(keys[negs] == negs)
    assert all(cands.language[n] == cands.language[pos] for n in negs)
    same_paragraph = [cands.context[n] == cands.context[pos] for n in negs]
    others = {keys[c] for c in np.flatnonzero(cands.context == cands.context[pos])} - {pos}
    # Paragraph sentences first; random same-language fillers only when there are too few.
    assert sum(same_paragraph) == min(2, len(others))
  again = _builder(setup, num_hard_negatives=2, seed=1)(2)
  np.testing.assert_array_equal(again["hard_negative_keys"], batch["hard_negative_keys"])


def test_a_duplicated_passage_is_one_key_and_no_hard_negative_of_itself():
  """Two rows with the same language, sentence and context (a paragraph under two articles) are
  one passage: one key, and never each other's hard negative."""
  text = ["A.", "B.", "C.", "A.", "B.", "C."]
  data = assemble("copies", [Example("q1", "en", "Who?", 0),
                             Example("q2", "en", "What?", 3)], ["en"] * 6, text, ["A. B. C."] * 6)
  assert data.candidate_keys.tolist() == [0, 1, 2, 0, 1, 2]
  assert data.passage_keys[:, 0].tolist() == [0, 0]
  table = input_pipeline.hard_negative_table(data)
  assert [t.tolist() for t in table] == [[1, 2], [0, 2], [0, 1]] * 2


def _config(batch_size, mono_prob=1.0, scope="batch", languages="en"):
  return ml_collections.ConfigDict({
      "seed": 0, "train": {"global_batch_size": batch_size}, "sampler": {
          "mono_prob": mono_prob, "language_scope": scope
      }, "data": {"query_max_len": 16, "passage_max_len": 32, "languages": languages},
      "loss": {"num_hard_negatives": 0}, "model": {"query_prefix": "", "passage_prefix": ""}
  })


def test_equal_queries_never_share_a_batch():
  """Two records with one query text and different positives are not each other's negatives
  (batch 2 of 3 records: without query keys they meet in about a third of the batches)."""
  data = assemble("same-question", [
      Example("a", "en", "Who?", 0),
      Example("b", "en", "Who?", 1),
      Example("c", "en", "Where?", 2)
  ], ["en"] * 3, ["He.", "She.", "There."], [""] * 3)
  builder = input_pipeline.make_batch_builder(_config(2), data, tokenizer=None)
  together = [
      set(builder.sampler.batch(step).example_ids.tolist()) == {0, 1} for step in range(200)
  ]
  assert not any(together)
  unkeyed = HybridBatchSampler(data.available, data.languages, 2, 1.0, 0)
  assert sum(set(unkeyed.batch(step).example_ids.tolist()) == {0, 1} for step in range(200)) > 30


def test_a_language_too_small_for_one_batch_is_a_user_error():
  examples = [Example(str(i), "en", f"q{i}?", i) for i in range(40)]
  examples += [Example(str(i), "fr", f"f{i}?", 40 + i) for i in range(20)]
  examples += [Example(str(i), "de", f"w{i}?", 60 + i) for i in range(3)]
  data = assemble("small-de", examples, ["en"] * 40 + ["fr"] * 20 + ["de"] * 3,
                  [f"s{i}." for i in range(63)], [""] * 63)
  with pytest.raises(
      UserError, match=r"small-de.*de \(3 examples\).*never be drawn: lower "
      r"config\.train\.global_batch_size, or set config\.sampler\.language_scope="
      r"'example', or drop those languages from config\.data\.languages$"):
    input_pipeline.make_batch_builder(_config(8, 0.5, languages="en+fr+de"), data, tokenizer=None)
  builder = input_pipeline.make_batch_builder(
      _config(8, 0.5, "example", "en+fr+de"), data, tokenizer=None)
  assert any(2 in builder.sampler.batch(step).query_lang for step in range(200))


@pytest.mark.parametrize("size", [0, 2])
def test_prefetcher_in_order_and_propagates_errors(size):
  """size 0 builds on the caller's thread (and counts the building as waiting)."""
  built_on = set()

  def build(step):
    built_on.add(threading.get_ident())
    time.sleep(0.01)
    return {"x": np.full(2, step)}

  p = input_pipeline.Prefetcher(build, 3, 8, size=size)
  assert [(s, int(b["x"][0])) for s, b in p] == [(s, s) for s in range(3, 8)]
  assert (built_on == {threading.get_ident()}) == (size == 0)
  if size == 0:
    assert p.wait_seconds >= 5 * 0.01
  p.close()

  def failing(step):
    if step == 2:
      raise KeyError("bad record")
    return step

  p = input_pipeline.Prefetcher(failing, 0, 5, size=size)
  assert next(p) == (0, 0) and next(p) == (1, 1)
  with pytest.raises(RuntimeError, match="input pipeline failed"):
    next(p)
  p.close()


@pytest.mark.parametrize("size", [0, 2])
def test_start_global_yields_the_builders_batches_as_sharded_device_arrays(setup, size):
  """The global batch of 8 devices, each holding its rows; equal to the builder's numpy."""
  builder, mesh = _builder(setup), sharding.make_mesh(8)
  batches = input_pipeline.start_global(builder, mesh, 2, 4, size=size)
  steps = []
  for step, batch in batches:
    steps.append(step)
    expected = builder(step)
    assert batch.keys() == expected.keys()
    for key, value in batch.items():
      assert isinstance(value, jax.Array) and value.sharding == sharding.batch_sharding(mesh)
      assert len(value.addressable_shards) == 8
      np.testing.assert_array_equal(np.asarray(value), expected[key])
  assert steps == [2, 3]


def test_worker_processes_build_the_same_batches_and_a_dead_worker_is_one_line(setup):
  """Two Grain worker processes from step 3 (a resumed run's start), hard negatives on: each
  step's global arrays equal the builder's own batch bitwise; a worker killed with SIGKILL fails
  the iteration within seconds with one line (`InputWorkerError`, a `UserError`)."""
  builder, mesh = _builder(setup, num_hard_negatives=1, seed=3), sharding.make_mesh(8)
  batches = input_pipeline.start_global(builder, mesh, 3, 1000, size=2, workers=2)
  try:
    for expected_step in range(3, 7):
      step, batch = next(batches)
      assert step == expected_step
      expected = builder(step)
      assert batch.keys() == expected.keys()
      for key, value in batch.items():
        assert value.sharding == sharding.batch_sharding(mesh)
        np.testing.assert_array_equal(np.asarray(value), expected[key], err_msg=key)
    workers = multiprocessing.active_children()
    assert len(workers) >= 2, workers
    os.kill(workers[0].pid, signal.SIGKILL)
    killed = time.perf_counter()
    with pytest.raises(input_pipeline.InputWorkerError) as error:
      for _ in batches:
        pass
    assert time.perf_counter() - killed < 10
    assert isinstance(error.value, UserError) and "\n" not in str(error.value)
    assert "input worker process died" in str(error.value), error.value
  finally:
    batches.close()


def test_input_workers_default_to_half_the_cores_from_4():
  config = ml_collections.ConfigDict({"train": {"input_workers": -1}})
  assert [input_pipeline.input_workers(config, n) for n in (1, 2, 3, 4, 8, 96)
         ] == [0, 0, 0, 2, 4, 16]
  config.train.input_workers = 0
  assert input_pipeline.input_workers(config, 8) == 0
