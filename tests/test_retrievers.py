"""Retrievers: the JAX scorer equals numpy, chunks bound memory, prefixes go before the texts,
the timing helper adds up."""

import time

import numpy as np

from conftest import EVAL_BATCH_SIZE, EVAL_PASSAGE_MAX_LEN, EVAL_QUERY_MAX_LEN
from hybrid_jax import encoding
from hybrid_jax import models
from hybrid_jax import retrievers
from hybrid_jax import sharding


def test_dot_scorer_equals_numpy():
  rng = np.random.default_rng(1)
  queries = rng.normal(size=(37, 16)).astype(np.float32)
  scorer = retrievers.DotScorer(chunk_size=8)
  for num_candidates in (101, 50):  # a new candidate table replaces the cached one
    candidates = rng.normal(size=(num_candidates, 16)).astype(np.float32)
    expected = queries.astype(np.float64) @ candidates.astype(np.float64).T
    np.testing.assert_allclose(scorer(queries, candidates), expected, rtol=1e-5, atol=1e-5)


def test_query_chunk_size_bounds_memory():
  for num_candidates in (10, 13_014, 1_000_000, 10**9):
    chunk = retrievers.query_chunk_size(num_candidates)
    assert 1 <= chunk <= retrievers.MAX_QUERY_CHUNK
    if chunk > 1:
      assert chunk * num_candidates * retrievers.BYTES_PER_SCORE <= retrievers.SCORE_MEMORY_BYTES


def test_timed_adds_the_seconds_of_each_block_even_when_it_raises():
  timing = {"encode_seconds": 1.0}
  with retrievers.timed(timing, "encode_seconds"):
    time.sleep(0.02)
  try:
    with retrievers.timed(timing, "load_seconds"):
      time.sleep(0.01)
      raise KeyError("x")
  except KeyError:
    pass
  assert 1.02 <= timing["encode_seconds"] < 1.5 and 0.01 <= timing["load_seconds"] < 0.5


def test_prefixes_are_put_before_the_texts(eval_model, eval_tokenizer, eval_data):
  encoder = encoding.Encoder(*models.split_for_encoding(eval_model), sharding.make_mesh(),
                             EVAL_BATCH_SIZE, show_progress=False)
  kwargs = dict(query_max_len=EVAL_QUERY_MAX_LEN, passage_max_len=EVAL_PASSAGE_MAX_LEN)
  plain = retrievers.DenseRetriever(encoder, eval_tokenizer, **kwargs)
  prefixed = retrievers.DenseRetriever(encoder, eval_tokenizer, query_prefix="query: ",
                                       passage_prefix="passage: ", **kwargs)
  queries, sentences = eval_data.queries[:5, 0].tolist(), eval_data.candidates.text[:5].tolist()
  contexts = eval_data.candidates.context[:5].tolist()
  np.testing.assert_array_equal(
      prefixed.embed_queries(queries), plain.embed_queries(["query: " + q for q in queries]))
  np.testing.assert_array_equal(
      prefixed.embed_passages(sentences, contexts),
      plain.embed_passages(["passage: " + s for s in sentences], contexts))
  assert prefixed.settings()["query_prefix"] == "query: "
  assert prefixed.timing["tokenize_seconds"] > 0 and prefixed.timing["encode_seconds"] > 0
