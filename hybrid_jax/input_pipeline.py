"""Host input: sampler ids + languages -> token arrays (numpy) -> global jax.Arrays, prefetched.

Each process builds only its own contiguous slice of the global batch
(`sampler.batch(step).shard(process_index, process_count)`), tokenises it on the host and hands it
to `sharding.host_local_to_global`. Every host derives the same global batch from the step, so
they agree on the batch type and languages by construction.
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np

from hybrid_jax.data import ParallelQA
from hybrid_jax.models import tokenizer as tokenizer_lib
from hybrid_jax.sampler import HybridBatchSampler


def hard_negative_table(data: ParallelQA) -> list[np.ndarray]:
  """For each candidate: the other candidates of its paragraph (same language and context)."""
  groups: dict[tuple[int, str], list[int]] = {}
  for c, (lang, context) in enumerate(zip(data.candidates.language, data.candidates.context)):
    groups.setdefault((int(lang), context), []).append(c)
  table = [np.zeros(0, np.int64)] * len(data.candidates)
  for members in groups.values():
    members = np.asarray(members, np.int64)
    for c in members:
      table[c] = members[members != c]
  return table


class BatchBuilder:
  """step -> this process's slice of the global batch, as numpy arrays.

  Queries are tokenized as `query_prefix + query`, passages as the pair
  (`passage_prefix + answer sentence`, context).

  Output (b = global_batch_size / process_count, k = num_hard_negatives):
    query_input_ids, query_attention_mask, query_token_type_ids: int32 [b, query_max_len]
    passage_input_ids, passage_attention_mask, passage_token_type_ids: int32 [b, passage_max_len]
    passage_keys: int32 [b], candidate index of each positive (equal = same passage)
    hard_negative_*: int32 [b, k, passage_max_len] and hard_negative_keys int32 [b, k] when k > 0
  and `describe(step)` -> (is_mono, query language, passage language) for logging.
  """

  def __init__(self, data: ParallelQA, sampler: HybridBatchSampler, tokenizer, *,
               query_max_len: int, passage_max_len: int, num_hard_negatives: int = 0,
               seed: int = 0, process_index: int = 0, process_count: int = 1,
               query_prefix: str = "", passage_prefix: str = ""):
    self.data = data
    self.query_prefix = query_prefix
    self.passage_prefix = passage_prefix
    self.sampler = sampler
    self.tokenizer = tokenizer
    self.query_max_len = query_max_len
    self.passage_max_len = passage_max_len
    self.num_hard_negatives = num_hard_negatives
    self.seed = seed
    self.process_index = process_index
    self.process_count = process_count
    self._hard_negatives = hard_negative_table(data) if num_hard_negatives else None

  def describe(self, step: int) -> tuple[bool, str, str]:
    b = self.sampler.batch(step)
    langs = self.data.languages
    q = langs[b.query_lang[0]] if len(set(b.query_lang.tolist())) == 1 else "mixed"
    p = langs[b.passage_lang[0]] if len(set(b.passage_lang.tolist())) == 1 else "mixed"
    return bool(b.is_mono), q, p

  def _passages(self, candidate_ids: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    cands = self.data.candidates
    flat = candidate_ids.reshape(-1)
    tokens = tokenizer_lib.tokenize_passages(
        self.tokenizer, tokenizer_lib.with_prefix(self.passage_prefix, cands.text[flat].tolist()),
        cands.context[flat].tolist(),
        self.passage_max_len)
    return {f"{prefix}_{k}": v.reshape(candidate_ids.shape + (self.passage_max_len,))
            for k, v in tokens.items()}

  def _sample_hard_negatives(self, step: int, positives: np.ndarray) -> np.ndarray:
    """int64 [b, k]: other sentences of each positive's paragraph (random ones of the same
    language when the paragraph has fewer than k), drawn from (seed, step, process)."""
    rng = np.random.default_rng([self.seed, 0x4A4E, step, self.process_index])
    lang_of = self.data.candidates.language
    out = np.empty((len(positives), self.num_hard_negatives), np.int64)
    for row, pos in enumerate(positives):
      pool = self._hard_negatives[pos]
      if len(pool) < self.num_hard_negatives:
        same_lang = np.flatnonzero(lang_of == lang_of[pos])
        extra = rng.choice(same_lang[same_lang != pos], self.num_hard_negatives - len(pool),
                           replace=False)
        pool = np.concatenate([pool, extra])
      out[row] = rng.choice(pool, self.num_hard_negatives, replace=False)
    return out

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    shard = self.sampler.batch(step).shard(self.process_index, self.process_count)
    ids, qlang, plang = shard.example_ids, shard.query_lang, shard.passage_lang
    queries = tokenizer_lib.with_prefix(self.query_prefix, self.data.queries[ids, qlang].tolist())
    positives = self.data.positives[ids, plang]
    batch = {f"query_{k}": v for k, v in tokenizer_lib.tokenize_queries(
        self.tokenizer, queries, self.query_max_len).items()}
    batch.update(self._passages(positives, "passage"))
    batch["passage_keys"] = positives.astype(np.int32)
    if self.num_hard_negatives:
      negatives = self._sample_hard_negatives(step, positives)
      batch.update(self._passages(negatives, "hard_negative"))
      batch["hard_negative_keys"] = negatives.astype(np.int32)
    return batch


def make_batch_builder(config, data: ParallelQA, tokenizer, *, process_index: int = 0,
                       process_count: int = 1) -> BatchBuilder:
  """The sampler and batch builder a training config describes (`config.sampler`, `.train`,
  `.data`, `.loss`, `.seed`), for this process's slice of every global batch."""
  sampler = HybridBatchSampler(
      data.available, data.languages, config.train.global_batch_size, config.sampler.mono_prob,
      config.seed, language_scope=config.sampler.language_scope, passage_keys=data.passage_keys)
  return BatchBuilder(
      data, sampler, tokenizer, query_max_len=config.data.query_max_len,
      passage_max_len=config.data.passage_max_len,
      num_hard_negatives=config.loss.num_hard_negatives, seed=config.seed,
      process_index=process_index, process_count=process_count,
      **{f"{tower}_prefix": prefix
         for tower, prefix in tokenizer_lib.prompts(config.model).items()})


class Prefetcher:
  """Builds batches for steps [start, stop) on a background thread, `size` ahead.

  Iterating yields (step, batch); `wait_seconds` accumulates the time the consumer waited, so the
  trainer can report whether input ever stalls the step.
  """

  def __init__(self, build_fn, start: int, stop: int, size: int = 2):
    self._queue: queue.Queue = queue.Queue(maxsize=max(1, size))
    self._stop = threading.Event()
    self.wait_seconds = 0.0
    self._thread = threading.Thread(target=self._run, args=(build_fn, start, stop), daemon=True)
    self._thread.start()

  def _run(self, build_fn, start, stop):
    try:
      for step in range(start, stop):
        item = (step, build_fn(step))
        while not self._stop.is_set():
          try:
            self._queue.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
        if self._stop.is_set():
          return
    except BaseException as e:  # pylint: disable=broad-except
      self._queue.put(e)
      return
    self._queue.put(StopIteration())

  def __iter__(self):
    return self

  def __next__(self):
    start = time.perf_counter()
    item = self._queue.get()
    self.wait_seconds += time.perf_counter() - start
    if isinstance(item, StopIteration):
      raise item
    if isinstance(item, BaseException):
      raise RuntimeError("input pipeline failed") from item
    return item

  def close(self):
    self._stop.set()
    self._thread.join(timeout=5)
