"""Host input: sampler ids + languages -> token arrays (numpy) -> global jax.Arrays, prefetched.

Each process builds only its own contiguous slice of the global batch
(`sampler.batch(step).shard(process_index, process_count)`), tokenises it on the host (or gathers
the token ids stored with prepared data, `data.token_ids`), in worker processes on Grain when
`train.input_workers` > 0, and on the prefetch thread assembles the global device arrays
(`start_global`). Every host derives the same
global batch from the step, so they agree on the batch type and languages by construction.

Several training sources (`config.data.train` joined by '+') are mixed as the paper mixes its
data sets: each batch comes from one source, chosen with the source's weight (by size, given, or
size**alpha); a source with fewer than two of the configured languages on any example gives only
monolingual batches, so the realised mono fraction is sum_s weight_s * mono_prob_s, logged at
start by `make_batch_builder`.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import sys
import threading
import time
from typing import Sequence

from absl import logging
import numpy as np

from hybrid_jax import config_lib
from hybrid_jax import sharding
from hybrid_jax.data import ParallelQA
from hybrid_jax.data import load as load_data
from hybrid_jax.data import token_ids
from hybrid_jax.errors import UserError
from hybrid_jax.models import tokenizer as tokenizer_lib
from hybrid_jax.sampler import HybridBatchSampler, TooFewExamplesError


def hard_negative_table(data: ParallelQA) -> list[np.ndarray]:
  """For each candidate: the passage keys (`ParallelQA.candidate_keys`) of the other passages of
  its paragraph (same language and context), each once, its own key excluded."""
  keys = data.candidate_keys
  paragraphs = list(zip(data.candidates.language.tolist(), data.candidates.context))
  groups: dict[tuple[int, str], dict[int, None]] = {}  # dicts as ordered sets of keys
  for c, paragraph in enumerate(paragraphs):
    groups.setdefault(paragraph, {})[int(keys[c])] = None
  members = {paragraph: np.fromiter(group, np.int64) for paragraph, group in groups.items()}
  return [
      members[paragraph][members[paragraph] != keys[c]] for c, paragraph in enumerate(paragraphs)
  ]


def load_sources(config) -> list[ParallelQA]:
  """The training sources of `config.data.train`, each restricted to the configured languages
  it has (`config.data.languages` order).

  Raises:
    UserError: a source with none of the configured languages, or a configured language in no
      source (the message names the config keys and the sources' languages).
  """
  languages = config_lib.languages(config)
  sources = []
  for source in config_lib.train_sources(config):
    data = load_data(source.spec, on_error=config.data.on_error,
                     strict=config.data.get("strict", False))
    present = [lang for lang in languages if lang in data.languages]
    if not present:
      raise UserError(f"config.data.train source {source.spec!r} has none of the languages of "
                      f"config.data.languages={config.data.languages!r} (it has "
                      f"{'+'.join(data.languages)}): drop the source or add its languages")
    sources.append(data.select_languages(present))
  missing = [lang for lang in languages if not any(lang in d.languages for d in sources)]
  if missing:
    raise UserError(f"config.data.languages={config.data.languages!r}: {'+'.join(missing)} in no "
                    f"source of config.data.train={config.data.train!r} (languages: "
                    f"{'; '.join(d.name + ' ' + '+'.join(d.languages) for d in sources)})")
  return sources


def _language_columns(data: ParallelQA, languages: Sequence[str]) -> np.ndarray:
  """int64 [len(languages)]: the column of each language in `data`, -1 where absent."""
  return np.array(
      [data.languages.index(lang) if lang in data.languages else -1 for lang in languages],
      np.int64)


def _in_columns(values: np.ndarray, columns: np.ndarray, fill) -> np.ndarray:
  """[N, len(columns)]: `values[:, columns]`, with `fill` where a column is -1."""
  out = np.full((values.shape[0], len(columns)), fill, values.dtype)
  present = columns >= 0
  out[:, present] = values[:, columns[present]]
  return out


class BatchBuilder:
  """step -> this process's slice of the global batch, as numpy arrays.

  Queries are tokenized as `query_prefix + query`, passages as the pair
  (`passage_prefix + answer sentence`, context); for a source with `stored_tokens` (prepared data
  whose stored ids match the run: `token_ids.matching`) the same ids are gathered instead.

  Output (b = global_batch_size / process_count, k = num_hard_negatives):
    query_input_ids, query_attention_mask, query_token_type_ids: int32 [b, query_max_len]
    passage_input_ids, passage_attention_mask, passage_token_type_ids: int32 [b, passage_max_len]
    passage_keys: int32 [b], passage key of each positive in the batch's source
      (`ParallelQA.candidate_keys`: equal = same language, sentence and context; a batch never
      mixes sources)
    hard_negative_*: int32 [b, k, passage_max_len] and hard_negative_keys int32 [b, k] when k > 0
    query_language, passage_language: int32 [b], each text's index in `sampler.languages`, when
      `with_languages` (per-language LoRA adapters route by them; hard negatives share their
      positive's language)
  and `describe(step)` -> (is_mono, query language, passage language) for logging.

  `data` is one `ParallelQA` or a list, one per source of the sampler; the sampler's language
  indices refer to `sampler.languages`, and a source may hold a subset of them.
  """

  def __init__(self, data: ParallelQA | Sequence[ParallelQA], sampler: HybridBatchSampler,
               tokenizer, *, query_max_len: int, passage_max_len: int, num_hard_negatives: int = 0,
               seed: int = 0, process_index: int = 0, process_count: int = 1,
               query_prefix: str = "", passage_prefix: str = "",
               stored_tokens: Sequence[token_ids.StoredTokens | None] | None = None,
               with_languages: bool = False):
    self.sources = [data] if isinstance(data, ParallelQA) else list(data)
    self.stored_tokens = list(stored_tokens or [None] * len(self.sources))
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
    self.with_languages = with_languages
    self._columns = [_language_columns(d, sampler.languages) for d in self.sources]
    self._hard_negatives = ([hard_negative_table(d) for d in self.sources]
                            if num_hard_negatives else None)

  def describe(self, step: int) -> tuple[bool, str, str]:
    b = self.sampler.batch(step)
    langs = self.sampler.languages
    q = langs[b.query_lang[0]] if len(set(b.query_lang.tolist())) == 1 else "mixed"
    p = langs[b.passage_lang[0]] if len(set(b.passage_lang.tolist())) == 1 else "mixed"
    return bool(b.is_mono), q, p

  def _passages(self, source: int, candidate_ids: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    cands, stored = self.sources[source].candidates, self.stored_tokens[source]
    flat = candidate_ids.reshape(-1)
    if stored is not None:
      tokens = stored.encode("passage", cands.text[flat].rows)
    else:
      tokens = tokenizer_lib.tokenize_passages(
          self.tokenizer, tokenizer_lib.with_prefix(self.passage_prefix, cands.text[flat].tolist()),
          cands.context[flat].tolist(), self.passage_max_len)
    return {
        f"{prefix}_{k}": v.reshape(candidate_ids.shape + (self.passage_max_len,))
        for k, v in tokens.items()
    }

  def _sample_hard_negatives(self, step: int, source: int, rows: np.ndarray,
                             positives: np.ndarray) -> np.ndarray:
    """int64 [b, k]: passage keys of other sentences of each positive's paragraph (random other
    passages of the same language when the paragraph has fewer than k). Row r's draw comes from
    (seed, step, global row rows[r]) alone, so any process count builds the same global batch."""
    keys = self.sources[source].candidate_keys
    lang_of = self.sources[source].candidates.language
    out = np.empty((len(positives), self.num_hard_negatives), np.int64)
    for r, (row, pos) in enumerate(zip(rows.tolist(), positives.tolist())):
      rng = np.random.default_rng([self.seed, 0x4A4E, step, row])
      pool = self._hard_negatives[source][pos]
      if len(pool) < self.num_hard_negatives:
        same_lang = np.flatnonzero((lang_of == lang_of[pos]) & (keys == np.arange(len(keys))))
        fill = same_lang[(same_lang != keys[pos]) & ~np.isin(same_lang, pool)]
        pool = np.concatenate([
            pool, rng.choice(fill, self.num_hard_negatives - len(pool), replace=False)
        ])
      out[r] = rng.choice(pool, self.num_hard_negatives, replace=False)
    return out

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    shard = self.sampler.batch(step).shard(self.process_index, self.process_count)
    data, columns = self.sources[shard.source], self._columns[shard.source]
    ids, qlang, plang = shard.example_ids, columns[shard.query_lang], columns[shard.passage_lang]
    stored = self.stored_tokens[shard.source]
    if stored is not None:
      queries = stored.encode("query", data.queries[ids, qlang].rows)
    else:
      queries = tokenizer_lib.tokenize_queries(
          self.tokenizer,
          tokenizer_lib.with_prefix(self.query_prefix, data.queries[ids, qlang].tolist()),
          self.query_max_len)
    positives = data.positives[ids, plang]
    batch = {f"query_{k}": v for k, v in queries.items()}
    batch.update(self._passages(shard.source, positives, "passage"))
    batch["passage_keys"] = data.candidate_keys[positives].astype(np.int32)
    if self.num_hard_negatives:
      rows = self.process_index * len(ids) + np.arange(len(ids))
      negatives = self._sample_hard_negatives(step, shard.source, rows, positives)
      batch.update(self._passages(shard.source, negatives, "hard_negative"))
      batch["hard_negative_keys"] = negatives.astype(np.int32)
    if self.with_languages:
      batch["query_language"] = shard.query_lang.astype(np.int32)
      batch["passage_language"] = shard.passage_lang.astype(np.int32)
    return batch


def mixture_summary(sources: Sequence[ParallelQA], sampler: HybridBatchSampler,
                    mono_probs: Sequence[float], mono_prob: float) -> str:
  """One line per source (probability, languages, mono probability) and the realised mix."""
  lines = []
  for data, prob, mono in zip(sources, sampler.source_probs, mono_probs):
    kinds = "mono only (fewer than 2 languages per example)" if mono == 1.0 and mono_prob < 1 else (
        f"mono {mono:.3g} / cross {1 - mono:.3g}")
    lines.append(f"  {data.name}: p={prob:.4f}, {data.num_examples} examples, languages "
                 f"{'+'.join(data.languages)}, {kinds}")
  effective = float(np.dot(sampler.source_probs, mono_probs))
  lines.append(f"  realised mono fraction {effective:.4f} (config.sampler.mono_prob={mono_prob})")
  return "training mixture of %d source(s):\n" % len(sources) + "\n".join(lines)


# sampler.FIXES in config keys.
_CONFIG_FIXES = {
    "global_batch_size": "lower config.train.global_batch_size",
    "language_scope": "set config.sampler.language_scope='example'",
    "languages": "drop those languages from config.data.languages",
    "mono_prob=1": "set config.sampler.mono_prob=1 (monolingual batches only)",
    "mono_prob=0": "set config.sampler.mono_prob=0 (cross-lingual batches only)",
}


def make_batch_builder(config, data: ParallelQA | Sequence[ParallelQA], tokenizer, *,
                       process_index: int = 0, process_count: int = 1) -> BatchBuilder:
  """The sampler and batch builder a training config describes (`config.sampler`, `.train`,
  `.data`, `.loss`, `.seed`), for this process's slice of every global batch. Equal passages and
  equal queries (`ParallelQA.passage_keys`, `.query_keys`) never share a batch.

  `data`: one `ParallelQA` or the sources of `config.data.train` (`load_sources`), in order.
  Sources are weighed by `config_lib.source_weights`; a source where no example has two of the
  configured languages gets mono_prob 1 (the mix is logged). A prepared source with token ids
  stored for this tokenizer, these lengths and prefixes gathers them (`token_ids.matching`, which
  logs the decision per source).

  Raises:
    UserError: the sampler cannot draw from the data with these settings (a source that cannot
      fill a batch of the kind its probability asks for, a language with fewer examples than one
      batch and language_scope="batch"), with the counts and the config changes that help.
  """
  sources = [data] if isinstance(data, ParallelQA) else list(data)
  languages = config_lib.languages(config)
  columns = [_language_columns(d, languages) for d in sources]
  available = [_in_columns(d.available, c, False) for d, c in zip(sources, columns)]
  keys = [_in_columns(d.passage_keys, c, -1) for d, c in zip(sources, columns)]
  query_keys = [_in_columns(d.query_keys, c, -1) for d, c in zip(sources, columns)]
  mono_prob, mixed = config.sampler.mono_prob, len(sources) > 1
  mono_probs = [mono_prob if not mixed or np.any(a.sum(axis=1) >= 2) else 1.0 for a in available]
  weights = None
  if mixed:
    specs = config_lib.train_sources(config)
    if len(specs) != len(sources):
      raise ValueError(f"{len(sources)} sources for the {len(specs)} of config.data.train")
    weights = config_lib.source_weights(specs, [d.num_examples for d in sources],
                                        config.data.get("source_temperature_alpha", 1.0))
  try:  # one source is passed as arrays, so the sampler reads it as one
    sampler = HybridBatchSampler(
        available if mixed else available[0], languages, config.train.global_batch_size,
        mono_probs if mixed else mono_prob, config.seed,
        language_scope=config.sampler.language_scope, passage_keys=keys if mixed else keys[0],
        query_keys=query_keys if mixed else query_keys[0], source_weights=weights)
  except TooFewExamplesError as e:
    names = ", ".join(f"source {i} = {d.name}" for i, d in enumerate(sources))
    raise UserError(f"config.data.train ({names}): {e.problem}: "
                    + ", or ".join(_CONFIG_FIXES[fix] for fix in e.fixes)) from None
  if mixed:
    logging.info("%s", mixture_summary(sources, sampler, mono_probs, mono_prob))
  tokens = {
      "query_max_len": config.data.query_max_len, "passage_max_len": config.data.passage_max_len,
      **{
          f"{tower}_prefix": prefix
          for tower, prefix in tokenizer_lib.prompts(config.model).items()
      }
  }
  return BatchBuilder(sources, sampler, tokenizer,
                      num_hard_negatives=config.loss.num_hard_negatives, seed=config.seed,
                      process_index=process_index, process_count=process_count, stored_tokens=[
                          token_ids.matching(d, tokenizer, **tokens) for d in sources
                      ], with_languages=bool(
                          config.model.get("lora", {}).get("per_language", False)), **tokens)


class InputWorkerError(UserError):
  """An input worker process died (killed: out of memory, a signal). Reported as one line, as a
  user error is: nothing in the run is wrong, and the same command resumes it."""


class Prefetcher:
  """Yields (step, build_fn(step)) for steps [start, stop) in order: built on a background thread
  up to `size` steps ahead, or on the caller's thread when `size` is 0.

  `wait_seconds` accumulates the time the consumer waited for a batch (with `size` 0, all of the
  building), so the trainer can report whether input ever stalls the step. An error in
  `build_fn` is raised by the iteration as a RuntimeError ("input pipeline failed") from it; a
  `UserError` (`InputWorkerError`) as it is. `close()` stops the thread, then calls `on_close`.
  """

  def __init__(self, build_fn, start: int, stop: int, size: int = 2, on_close=None):
    self.wait_seconds = 0.0
    self._build_fn, self._next_step, self._stop_step = build_fn, start, stop
    self._on_close = on_close
    self._thread = None
    if size > 0:
      self._queue: queue.Queue = queue.Queue(maxsize=size)
      self._stop = threading.Event()
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

  def _build_here(self):
    if self._next_step >= self._stop_step:
      return StopIteration()
    step, self._next_step = self._next_step, self._next_step + 1
    try:
      return step, self._build_fn(step)
    except Exception as e:  # pylint: disable=broad-except
      return e

  def __iter__(self):
    return self

  def __next__(self):
    start = time.perf_counter()
    item = self._queue.get() if self._thread else self._build_here()
    self.wait_seconds += time.perf_counter() - start
    if isinstance(item, (StopIteration, UserError)):
      raise item
    if isinstance(item, BaseException):
      raise RuntimeError("input pipeline failed") from item
    return item

  def close(self):
    if self._thread:
      self._stop.set()
      self._thread.join(timeout=5)
    if self._on_close is not None:
      self._on_close()


def input_workers(config, cpu_count: int | None = None) -> int:
  """The worker processes of `config.train.input_workers`: -1 (the default) is half of the host's
  `cpu_count` cores, at most 16 (the other half runs the training process: the step's dispatch and
  host work, the device copies), and none below 4 cores, where the computation itself is on the
  CPU and needs every core (the default run tokenises 32 examples a step, milliseconds, while a
  worker costs a process start); a config without the field gets 0."""
  workers = config.train.get("input_workers", 0)
  if workers >= 0:
    return workers
  cores = cpu_count or os.cpu_count() or 2
  return 0 if cores < 4 else min(16, cores // 2)


class _StepBatch:
  """step -> (step, builder(step)), the function Grain's worker processes run (picklable)."""

  def __init__(self, builder: BatchBuilder):
    self.builder = builder

  def __call__(self, step):
    return int(step), self.builder(int(step))


def _worker_setup(worker_index: int, worker_count: int) -> None:
  """In each worker process: one core's worth of tokenising (no Rust thread pool per worker), and
  on Linux a SIGKILL when the training process dies (else a SIGKILLed or preempted training
  leaves its workers running, holding their memory)."""
  del worker_index, worker_count
  os.environ["TOKENIZERS_PARALLELISM"] = "false"
  if sys.platform.startswith("linux"):
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


_SHM_WARNING = "ignore:resource_tracker:UserWarning"


def worker_batches(builder: BatchBuilder, start: int, stop: int, workers: int):
  """An iterator of (step, builder(step)) for steps [start, stop) in order, built by `workers`
  processes (Grain's `mp_prefetch`: worker w builds steps start + w, start + w + workers, ...).
  Each worker holds a copy of `builder` (prepared data is memory-mapped again, not copied). Close
  it (`.close()`) to stop the workers."""
  import grain  # pylint: disable=g-import-not-at-top  (only with workers)
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():  # Grain reads absl flags; a library caller may not parse them
    flags.FLAGS.mark_as_parsed()
  # multiprocessing's resource tracker (a process started with this interpreter's -W options)
  # frees the shared memory of batches that a dead worker left unconsumed, with a warning that
  # would follow the one-line error; the only shared memory here is Grain's batches.
  if _SHM_WARNING not in sys.warnoptions:
    sys.warnoptions.append(_SHM_WARNING)
  # One thread per worker, no read-ahead inside it: a tokenizer is not thread-safe (its padding
  # and truncation are state set per call), and a batch is large; mp_prefetch's per-worker buffer
  # holds the steps built ahead.
  dataset = grain.MapDataset.range(start, stop).map(_StepBatch(builder)).to_iter_dataset(
      grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
  return iter(
      dataset.mp_prefetch(
          grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=2),
          worker_init_fn=_worker_setup))


def start_global(builder: BatchBuilder, mesh, start: int, stop: int, size: int = 2,
                 workers: int = 0) -> Prefetcher:
  """Global device batches for steps [start, stop), `size` ahead (big_vision `start_global`).

  With `workers` 0 the prefetch thread builds this process's slice of each batch (`builder`);
  with `workers` > 0, that many worker processes build the slices ahead (`worker_batches`, on
  Grain) and the thread only receives them. Either way the thread assembles the global
  batch-sharded `jax.Array`s (`sharding.host_local_to_global`), so the host-to-device copy
  overlaps the running step; with `size` 0 that happens on the caller's thread. Every step's
  batch is `builder(step)` whatever the number of workers.

  Yields:
    (step, batch): the leaves of `BatchBuilder`'s output as `jax.Array`s of the global batch,
    `[global_batch_size, ...]` with `sharding.batch_sharding(mesh)`.

  Raises (from the iteration):
    InputWorkerError: a worker process died (within about a second of its death).
  """
  if not workers:
    return Prefetcher(lambda step: sharding.host_local_to_global(mesh, builder(step)), start, stop,
                      size=size)
  batches = worker_batches(builder, start, stop, workers)

  def receive(step):
    try:
      built_step, batch = next(batches)
    except RuntimeError as e:
      if "terminated unexpectedly" in str(e):  # Grain's message for a dead worker
        cause = str(e).splitlines()[0].split(". Search the logs")[0]
        raise InputWorkerError(f"an input worker process died at step {step + 1} ({cause}; "
                               f"train.input_workers={workers}); the same command resumes "
                               "from the last checkpoint") from None
      raise
    assert built_step == step, (built_step, step)
    # Copied out of Grain's shared memory, which is then freed at once (device arrays may alias
    # host memory on CPU: they would keep the segments alive until exit).
    return sharding.host_local_to_global(mesh, {k: np.array(v) for k, v in batch.items()})

  return Prefetcher(receive, start, stop, size=size, on_close=batches.close)
