"""Retrievers: texts -> embeddings, and the exact scorer of their products, behind one interface
(`embed_passages`, `embed_queries`, `score_fn(num_candidates)`, `settings()`, `timing`).

* `DenseRetriever`: a tokenizer and an `encoding.Encoder` (a dual encoder's encode function);
  dense [N, D] embeddings scored by `DotScorer`.
* `TfidfRetriever`: the character 3-5-gram TF-IDF baseline (`hybrid_jax.tfidf`), sparse rows
  scored by `tfidf.sparse_scores`.

Scoring (`DotScorer`): exact dot products in JAX, `[Q, D] x [C, D] -> [Q, C]`, the candidate
table put on the device once, queries padded to a fixed chunk. The metrics see one query chunk at
a time: `query_chunk_size(C)` picks the chunk so that the score block and the metric's working
copies stay within `SCORE_MEMORY_BYTES` (peak ~ BYTES_PER_SCORE * chunk * C; a million-candidate
pool is scored ~44 queries at a time in 1 GiB).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_jax import encoding
from hybrid_jax.retrieval_metrics import ScoreFn

# Score memory: float32 scores plus the metrics' float64/bool working copies per (query, cand).
BYTES_PER_SCORE = 24
SCORE_MEMORY_BYTES = 1 << 30
MAX_QUERY_CHUNK = 1024
TFIDF = "tfidf"


@contextlib.contextmanager
def timed(timing: MutableMapping[str, float], key: str) -> Iterator[None]:
  """Adds the seconds (wall clock, `time.perf_counter`) the `with` block takes to timing[key]."""
  t0 = time.perf_counter()
  try:
    yield
  finally:
    timing[key] = timing.get(key, 0.0) + time.perf_counter() - t0


def query_chunk_size(num_candidates: int, memory_bytes: int = SCORE_MEMORY_BYTES) -> int:
  """Queries scored at a time so that ~BYTES_PER_SCORE * chunk * num_candidates <= memory."""
  return int(
      max(1, min(MAX_QUERY_CHUNK, memory_bytes // (BYTES_PER_SCORE * max(1, num_candidates)))))


@jax.jit
def _dot(queries: jax.Array, candidates: jax.Array) -> jax.Array:
  return jnp.dot(queries, candidates.T, precision=jax.lax.Precision.HIGHEST)


class DotScorer:
  """`score_fn(queries [Q, D], candidates [C, D]) -> float32 [Q, C]`: exact dot products in JAX.

  The candidate table is put on the device once and reused while the same array object is
  passed; queries go through in chunks of `chunk_size` rows, the last one padded, so every call
  reuses one compiled shape. Device memory: C*D + chunk_size*(D + C) floats.
  """

  def __init__(self, chunk_size: int = MAX_QUERY_CHUNK):
    self.chunk_size = chunk_size
    self._candidates = None
    self._device_candidates = None

  def __call__(self, queries, candidates) -> np.ndarray:
    if candidates is not self._candidates:
      self._candidates = candidates
      self._device_candidates = jnp.asarray(np.asarray(candidates, np.float32))
    queries = np.asarray(queries, np.float32)
    num_queries = len(queries)
    out = np.empty((num_queries, self._device_candidates.shape[0]), np.float32)
    chunk = min(self.chunk_size, max(num_queries, 1))
    for start in range(0, num_queries, chunk):
      block = queries[start:start + chunk]
      padded = np.zeros((chunk, queries.shape[1]), np.float32)
      padded[:len(block)] = block
      out[start:start + len(block)] = np.asarray(_dot(padded, self._device_candidates))[:len(block)]
    return out


class DenseRetriever:
  """A tokenizer + an `encoding.Encoder`: texts -> embeddings (dense [N, D]), scored by
  `DotScorer`.

  Queries are encoded as `query_prefix + query`, passages as (`passage_prefix + sentence`,
  context), as in training (`model.query_prefix` / `model.passage_prefix`).

  Args:
    encoder: encodes token arrays of either tower.
    tokenizer: a Hugging Face fast tokenizer.
    query_max_len, passage_max_len: padded token lengths (tokens).
    query_prefix, passage_prefix: prepended to every query / passage sentence.
    adapter_languages: the languages of a model with per-language LoRA adapters, in adapter
      order; a text in one of them is encoded with its adapter, any other with the shared adapter
      alone (`encoder.Adapters`); () = texts are encoded without language (every other model).

  Attributes:
    timing: seconds spent, {"tokenize_seconds", "encode_seconds"}, summed over calls.
  """

  def __init__(self, encoder: encoding.Encoder, tokenizer, *, query_max_len: int,
               passage_max_len: int, query_prefix: str = "", passage_prefix: str = "",
               adapter_languages: Sequence[str] = ()):
    from hybrid_jax.models import tokenizer as tokenizer_lib

    self._tokenizer_lib = tokenizer_lib
    self.prefixes = {"query": query_prefix, "passage": passage_prefix}
    self.tokenizer = tokenizer
    self.query_max_len = query_max_len
    self.passage_max_len = passage_max_len
    self.encoder = encoder
    self.adapter_languages = tuple(adapter_languages)
    self.timing = {"tokenize_seconds": 0.0, "encode_seconds": 0.0}

  def _adapter_language(self, languages: Sequence[str] | None) -> np.ndarray | None:
    """int32 [N]: each text's adapter index (-1 for none); None without per-language adapters."""
    if not self.adapter_languages or languages is None:
      return None
    index = {language: i for i, language in enumerate(self.adapter_languages)}
    return np.asarray([index.get(language, -1) for language in languages], np.int32)

  def settings(self) -> dict[str, Any]:
    smallest = self.encoder.smallest_bucket
    return {
        "kind": "dense", "query_max_len": self.query_max_len,
        "passage_max_len": self.passage_max_len, "batch_size": self.encoder.batch_size,
        "query_prefix": self.prefixes["query"], "passage_prefix": self.prefixes["passage"],
        "num_devices": int(self.encoder.mesh.size), "query_buckets": list(
            encoding.bucket_lengths(self.query_max_len, smallest)
        ), "passage_buckets": list(encoding.bucket_lengths(self.passage_max_len, smallest))
    }

  def embed_queries(self, texts: Sequence[str],
                    languages: Sequence[str] | None = None) -> np.ndarray:
    """[N, D] embeddings of `texts`; `languages`: each text's code (routes language adapters)."""
    with timed(self.timing, "tokenize_seconds"):
      tokens = self._tokenizer_lib.tokenize_queries(
          self.tokenizer, self._tokenizer_lib.with_prefix(self.prefixes["query"], texts),
          self.query_max_len)
    with timed(self.timing, "encode_seconds"):
      return self.encoder(tokens, "query", adapter_language=self._adapter_language(languages))

  def embed_passages(self, sentences: Sequence[str], contexts: Sequence[str],
                     languages: Sequence[str] | None = None) -> np.ndarray:
    """[N, D] embeddings of (sentence, context) pairs; `languages` as `embed_queries`."""
    with timed(self.timing, "tokenize_seconds"):
      tokens = self._tokenizer_lib.tokenize_passages(
          self.tokenizer, self._tokenizer_lib.with_prefix(self.prefixes["passage"], sentences),
          contexts, self.passage_max_len)
    with timed(self.timing, "encode_seconds"):
      return self.encoder(tokens, "passage", adapter_language=self._adapter_language(languages))

  def score_fn(self, num_candidates: int) -> ScoreFn:
    return DotScorer(query_chunk_size(num_candidates))


class TfidfRetriever:
  """The character 3-5-gram TF-IDF baseline (`hybrid_jax.tfidf`) behind the same interface.

  `embed_passages` fits the idf on the passages it is given (the candidate pool), so it must be
  called before `embed_queries`. A passage is "sentence context" (`tfidf.passage_texts`).
  """

  def __init__(self):
    from hybrid_jax import tfidf

    self._tfidf = tfidf
    self.encoder = tfidf.TfidfEncoder()
    self.timing = {"tokenize_seconds": 0.0, "encode_seconds": 0.0}

  def settings(self) -> dict[str, Any]:
    return {
        "kind": TFIDF, "ngram_range": list(self.encoder.ngram_range),
        "num_buckets": self.encoder.num_buckets
    }

  def embed_passages(self, sentences: Sequence[str], contexts: Sequence[str], languages=None):
    del languages  # one model for every language
    with timed(self.timing, "encode_seconds"):
      return self.encoder.fit_encode(self._tfidf.passage_texts(sentences, contexts))

  def embed_queries(self, texts: Sequence[str], languages=None):
    del languages
    with timed(self.timing, "encode_seconds"):
      return self.encoder.encode(texts)

  def score_fn(self, num_candidates: int) -> ScoreFn:
    del num_candidates  # sparse_scores bounds its own working memory
    return self._tfidf.sparse_scores
