"""Hybrid batch sampler: which (example, query language, passage language) fill each global batch.

Hybrid batch training (Elmahdy et al. 2024, arXiv:2408.10536) trains a multilingual dual encoder
with in-batch negatives where every *global* batch is either monolingual (every pair has
query_lang == passage_lang) with probability `mono_prob`, or cross-lingual (every pair has
query_lang != passage_lang). mono_prob=1 is the monolingual-only baseline, mono_prob=0 the
cross-lingual-only one. The languages of a batch come from its *pool*:

  language_scope="batch"    one pool per language (mono) or ordered pair X != Y (cross): the whole
                            batch shares one language (pair), pools chosen in proportion to size.
  language_scope="example"  one pool per stream; each example gets its own language (mono) or
                            ordered pair of its available languages (cross), drawn every epoch.

API (numpy + standard library only):

  s = HybridBatchSampler(available, languages, global_batch_size, mono_prob, seed,
                         language_scope="batch", passage_keys=None, source_weights=None,
                         query_keys=None)
  b = s.batch(step)           # HybridBatch, a pure function of (constructor args, step)
  b.example_ids               # int64 [B], distinct, rows of that source's `available`
  b.query_lang, b.passage_lang  # int32 [B], indices into `languages`
  b.is_mono, b.source         # bool, int
  b.shard(process_index, process_count)  # contiguous slice; the slices concatenate to b

`available` is bool [num_examples, num_languages] (example i exists in language j; at most 64
languages), or a list of such arrays, one per *source* (e.g. two data sets with the same language
columns); every batch comes from one source, chosen in proportion to `source_weights` (default:
number of examples with any language), and its example_ids index that source. `passage_keys`
(int, same shape(s), or a list with None entries) makes each batch free of two examples sharing a
passage key in their passage language, so no positive is also another query's in-batch negative
(cf. sentence-transformers' NoDuplicatesBatchSampler); `query_keys` likewise keeps two examples
with one query key in their query language (e.g. the same question text) out of one batch.

Invariants (tests/test_sampler.py checks each):
  * every (example, query_lang) and (example, passage_lang) emitted is available; only indices of
    `languages` are emitted; no example id twice in a batch; no passage key and no query key twice
    in a batch (when given).
  * each batch is mono with probability mono_prob (and from source s with its weight) marginally,
    and the realised counts track the probabilities tightly: after every multiple t of
    block_size K, the number of mono batches among the first t (of a source's stream) is
    floor(t * p + u), within 1 of t * p; inside a block the K positions are shuffled, so any
    window deviates by at most one block's hypergeometric fluctuation (about sqrt(K)/2 batches).
  * epochs: each (source, mono|cross) stream is a sequence of epochs. An epoch holds, for every
    pool of n examples, k = n // B batches made of a fresh pseudo-random permutation of the pool,
    so without keys no example repeats within a pool's epoch and the n mod B examples left out
    are chosen anew each epoch. Pools with fewer than B examples yield no batch. The epoch's
    (pool, batch) rows are shuffled, so a batch's pool is drawn with probability k/sum(k) (about
    n/sum(n): the paper's "sampled based on dataset size").
  * with keys, each batch is the batch the same sampler draws without keys, except that every
    example whose passage (or query) key already occurred earlier in the batch is replaced by the
    next pool member, along a second keyed permutation of the pool, that repeats no id or key of
    the batch. So an epoch covers every example of the keyless epoch but the replaced ones (about
    one per pair of one key in a random batch: C(B, 2) * sum(g (g - 1)) / (n (n - 1)) per batch
    for key groups of size g; 1.7% of the rows on XQuAD-R, B=32), and a replacement may appear a
    second time in that epoch. A pool with fewer than B distinct keys cannot fill a batch:
    `batch` raises ValueError naming it.
  * every language with an example is drawn in some pool of a stream of positive probability;
    else the constructor raises ValueError with the counts (e.g. a language with fewer examples
    than one batch, language_scope="batch").

O(batch) random access. `batch(step)` never replays history and builds no epoch:
  1. Splitter: a stream index t goes left with long-run frequency p. Steps form blocks of K
     (`block_size`); `left_before(b) = floor(b*K*p + u)` with u ~ U[0,1) fixed by the seed, so block
     b sends `left_before(b+1) - left_before(b)` of its K steps left, at positions drawn by
     default_rng([seed, tag, ..., b]). A step's index within its branch is the branch count before
     its block plus its rank within the block. Chained splitters pick the source (source i vs the
     rest), then mono vs cross, and give each batch its index j in its (source, kind) stream.
  2. j -> (epoch e = j // E, row j % E), E = sum of k over the stream's pools. A keyed bijection of
     [0, E) (`_Permutation`: a Feistel network with cycle-walking, keyed by seed, stream and e)
     maps the row to a chunk c; a binary search of the pools' cumulative k maps c to (pool, chunk
     i in the pool). The batch is the pool members at positions sigma(i*B), ..., sigma(i*B+B-1) of
     the pool's keyed bijection sigma for epoch e: only these B positions are evaluated.
  3. Pools are never materialised: the examples are sorted once by availability pattern (the set
     of languages they have; real data has few), and a pool is the concatenation of the pattern
     segments it contains, so its j-th member is one binary search over those segments away.
  4. With language_scope="example", an example's language (pair) in epoch e comes from a hash of
     (seed, stream, e, example): argmax (and second argmax) of keyed scores over its languages.
  5. Keys: a sort of the batch's (language, key) pairs finds every repeat; each is dropped and the
     batch refilled from positions i*B, i*B+1, ... of a second keyed bijection of the pool
     (probing in blocks, skipping members that repeat an id or key of the batch).
  Cost per call: O(K) for a splitter block (cached, 1024 blocks) plus O(B log B + B log(patterns));
  memory: the inputs (kept by reference) plus one int32 id per example, the P <= min(N, 2^L)
  distinct patterns (P * L bytes), a few numbers per pool (L^2 pools: 4,032 at 64 languages), and
  a 32 MB cache of pool layouts (16 bytes per pattern of the pool; built in O(P) on a miss, so a
  call costs O(B log B + P) at worst). Keeping every layout would cost 16 * P * L^2 bytes: 1.1 GB
  at 20k examples x 64 languages of scattered availability.
  At 1M examples x 9 languages, B=1024, with passage keys: about 0.2 s to construct and ~1 ms per
  call on this project's 2-core CPU (benchmarks/sampler_scale.py; BENCHMARKS.md, "Sampler at
  scale"). Measure it with:
      s.batch(10**6)
      t0 = time.perf_counter(); [s.batch(int(i)) for i in np.random.randint(0, 10**9, 1000)]
      (time.perf_counter() - t0) / 1000                        # amortised seconds per call

Copying: this file imports only numpy and the standard library (Python >= 3.10); copy it into any
project as is, or load it from a path with importlib.util.spec_from_file_location (it works
whether or not the module is registered in sys.modules).
"""

import collections
import dataclasses
import numbers
import math
import threading
from typing import Callable, Sequence

import numpy as np

LANGUAGE_SCOPES = ("batch", "example")
MAX_LANGUAGES = 64
_MONO, _CROSS = 0, 1
_KIND_NAMES = ("mono", "cross")
# One tag per random decision keeps the streams independent.
_TAG_SOURCE_SPLIT, _TAG_MONO_SPLIT, _TAG_POOL, _TAG_EPOCH_ORDER, _TAG_LANGUAGE, _TAG_PROBE = range(
    1, 7)
_MASK64 = (1 << 64) - 1
_FEISTEL_ROUNDS = 4

# What helps when the data cannot fill the batches asked for, by the argument to change.
FIXES = {
    "global_batch_size": "lower global_batch_size",
    "language_scope": "use language_scope='example'",
    "languages": "drop those languages",
    "mono_prob=1": "set mono_prob to 1 (monolingual batches only)",
    "mono_prob=0": "set mono_prob to 0 (cross-lingual batches only)",
}


class TooFewExamplesError(ValueError):
  """The data cannot fill the batches the sampler is asked for.

  Attributes:
    problem: what is missing, with the counts.
    fixes: keys of `FIXES`, the changes that help (the message lists them).
  """

  def __init__(self, problem: str, fixes: Sequence[str]):
    self.problem, self.fixes = problem, tuple(fixes)
    super().__init__(f"{problem}: " + ", or ".join(FIXES[fix] for fix in self.fixes))


@dataclasses.dataclass(frozen=True)
class HybridBatch:
  """One global batch (or one process's shard of it).

  Attributes:
    example_ids: int64 [batch], rows of the source's `available` (distinct).
    query_lang: int32 [batch], index into the sampler's `languages`.
    passage_lang: int32 [batch], index into the sampler's `languages`.
    is_mono: the whole global batch is monolingual (else every pair is cross-lingual).
    source: which source (index into the list of `available` arrays) the batch came from.
    step: the training step it was drawn for.
  """

  example_ids: np.ndarray
  query_lang: np.ndarray
  passage_lang: np.ndarray
  is_mono: bool
  source: int
  step: int

  def shard(self, process_index: int, process_count: int) -> "HybridBatch":
    """The contiguous slice of this process; slices of processes 0..count-1 concatenate to self."""
    size = len(self.example_ids)
    if not (isinstance(process_count, (int, np.integer)) and process_count >= 1):
      raise ValueError(f"shard: process_count must be a positive int, got {process_count!r}")
    if not (isinstance(process_index, (int, np.integer)) and 0 <= process_index < process_count):
      raise ValueError(f"shard: process_index must be in [0, {process_count}), got "
                       f"{process_index!r}")
    if size % process_count:
      raise ValueError(f"shard: global batch size {size} is not divisible by process_count "
                       f"{process_count}")
    local = size // process_count
    part = slice(process_index * local, (process_index + 1) * local)
    return dataclasses.replace(self, example_ids=self.example_ids[part],
                               query_lang=self.query_lang[part],
                               passage_lang=self.passage_lang[part])


class _LRU:
  """Thread-safe least-recently-used cache of values of total `size` up to `capacity` (keeps at
  least the newest), so a prefetch thread and the main thread can share a sampler."""

  def __init__(self, capacity: int, size: Callable[[object], int] = lambda value: 1):
    self._capacity = capacity
    self._size = size
    self._total = 0
    self._items = collections.OrderedDict()
    self._lock = threading.Lock()

  def __getstate__(self):  # a copy in another process (an input worker) starts empty
    return {"capacity": self._capacity, "size": self._size}

  def __setstate__(self, state):
    self.__init__(state["capacity"], state["size"])

  def get(self, key, build: Callable[[], object]):
    """The cached value of `key`, else `build()` (cached, evicting the least recently used)."""
    with self._lock:
      if key in self._items:
        self._items.move_to_end(key)
        return self._items[key]
      value = self._items[key] = build()
      self._total += self._size(value)
      while self._total > self._capacity and len(self._items) > 1:
        self._total -= self._size(self._items.popitem(last=False)[1])
      return value


class _Splitter:
  """Maps a stream index t to (goes_left, index within its branch); left frequency p exactly per
  block of `block_size` steps up to one step (see the module docstring, step 1)."""

  def __init__(self, p: float, seed_key: tuple[int, ...], block_size: int, cache: _LRU):
    self._p = min(max(p, 0.0), 1.0)
    self._seed_key = seed_key
    self._block_size = block_size
    self._cache = cache
    self._offset = np.random.default_rng([*seed_key, 0]).random()  # u ~ U[0, 1)

  def _left_before_block(self, block: int) -> int:
    return math.floor(block * self._block_size * self._p + self._offset)

  def _block_layout(self, block: int) -> np.ndarray:
    """int32 [K + 1]: number of left positions before each position of the block."""
    num_left = self._left_before_block(block + 1) - self._left_before_block(block)
    positions = np.random.default_rng([*self._seed_key, 1, block]).permutation(self._block_size)
    is_left = np.zeros(self._block_size, np.int32)
    is_left[positions[:num_left]] = 1
    return np.concatenate([[0], np.cumsum(is_left)])

  def __call__(self, t: int) -> tuple[bool, int]:
    if self._p in (0.0, 1.0):
      return self._p == 1.0, t
    block, pos = divmod(t, self._block_size)
    left_before = self._cache.get((self._seed_key, block), lambda: self._block_layout(block))
    goes_left = bool(left_before[pos + 1] > left_before[pos])
    if goes_left:
      return True, self._left_before_block(block) + int(left_before[pos])
    right_block_start = block * self._block_size - self._left_before_block(block)
    return False, right_block_start + pos - int(left_before[pos])


def _splitmix64(z: int) -> int:
  """splitmix64's output function (Steele et al. 2014) on a Python int, mod 2^64."""
  z = (z + 0x9E3779B97F4A7C15) & _MASK64
  z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
  z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
  return z ^ (z >> 31)


def _hash(*values: int) -> int:
  """A 64-bit key from a tuple of non-negative ints (chained splitmix64)."""
  h = 0
  for v in values:
    h = _splitmix64(h ^ (int(v) & _MASK64))
  return h


def _splitmix64_array(z: np.ndarray) -> np.ndarray:
  """`_splitmix64` elementwise on uint64 [n] (wrapping arithmetic)."""
  z = z + np.uint64(0x9E3779B97F4A7C15)
  z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return z ^ (z >> np.uint64(31))


class _Permutation:
  """A keyed bijection of [0, n), evaluated at any positions in O(len(positions)).

  A Feistel network on the mixed-radix domain [0, a*b), a = ceil(sqrt(n)), b = ceil(n / a)
  (Black and Rogaway 2002, "FE2"): a position x = L*b + R with L in [0, a), R in [0, b) maps to
  R*a + (L + F(R)) mod a, and the radices swap for the next round. F is the top 32 bits of a
  multiply-xorshift-multiply hash of R ^ round key (splitmix64's last two steps); the round keys
  are splitmix64's sequence seeded with the key. (One multiply alone, nearly affine in R, left
  consecutive positions visibly correlated: see the test against numpy permutations.)
  Cycle-walking (ibid.) makes it a bijection of [0, n): an output >= n is encrypted again until
  it lands in [0, n); as a*b - n < a, that is rare.
  """

  def __init__(self, n: int, key: int):
    self.n = n
    first = math.isqrt(n - 1) + 1 if n > 1 else 1  # ceil(sqrt(n))
    second = -(-n // first)
    self._rounds = []
    for r in range(_FEISTEL_ROUNDS):
      round_key = _splitmix64((key + r * 0x9E3779B97F4A7C15) & _MASK64)
      self._rounds.append((np.uint64(first), np.uint64(second), np.uint64(round_key)))
      first, second = second, first

  def _encrypt(self, x: np.ndarray) -> np.ndarray:
    for first, second, round_key in self._rounds:
      left, right = np.divmod(x, second)
      hashed = (right ^ round_key) * np.uint64(0xBF58476D1CE4E5B9)
      hashed = (hashed ^ (hashed >> np.uint64(31))) * np.uint64(0x94D049BB133111EB)
      x = right * first + (left + (hashed >> np.uint64(32))) % first
    return x

  def __call__(self, positions: np.ndarray) -> np.ndarray:
    """int64 [m]: the images of `positions` (int [m], each in [0, n))."""
    out = self._encrypt(np.asarray(positions).astype(np.uint64))
    outside = np.flatnonzero(out >= self.n)
    while len(outside):
      out[outside] = self._encrypt(out[outside])
      outside = outside[out[outside] >= self.n]
    return out.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class _Pool:
  """Examples that batches of one pool are drawn from: the pattern segments it contains, in
  pattern order (their layout is built on demand, `_Source.layout`).

  Attributes:
    languages: (query, passage) language index for a fixed pair, or None to draw per example.
    min_languages: with `languages` None, the pool holds the patterns of at least this many
      languages (1: mono, 2: cross); with a pair, the patterns holding both.
    size: n, the number of examples.
    num_batches: k = n // B, batches of this pool in every epoch.
  """

  languages: tuple[int, int] | None
  min_languages: int
  size: int
  num_batches: int


# Bytes of pool layouts (16 per pattern segment) kept per source. Scattered availability gives
# up to one pattern per example, and L^2 pools each hold most patterns: keeping every layout
# would cost 16 * P * L^2 bytes (1 GB at 20k examples x 64 languages); a layout is rebuilt in
# O(P) when it is not cached.
_LAYOUT_CACHE_BYTES = 32 << 20


class _Source:
  """One source's arrays: the inputs (by reference) and its examples grouped by availability.

  Attributes:
    available: bool [N, L]; passage_keys, query_keys: int [N, L] or None.
    ids_by_pattern: int32 (int64 past 2^31 examples) [N], example ids sorted by pattern, stable.
    patterns: bool [P, L] (column-major), the distinct availability rows, in the order of
      `ids_by_pattern`.
    pattern_start: int64 [P + 1], where each pattern's ids start in `ids_by_pattern`.
  """

  def __init__(self, available: np.ndarray, passage_keys, query_keys):
    self.available = available
    self.passage_keys, self.query_keys = passage_keys, query_keys
    num_langs = available.shape[1]
    code_type = np.uint16 if num_langs <= 16 else np.uint32 if num_langs <= 32 else np.uint64
    code = np.zeros(len(available), code_type)
    for j in range(num_langs):
      code |= available[:, j].astype(code_type) << code_type(j)
    order = np.argsort(code, kind="stable")  # a radix sort for 16-bit codes
    self.ids_by_pattern = order.astype(np.int32 if len(code) < 2**31 else np.int64)
    sorted_code = code[order]
    starts = np.flatnonzero(np.r_[True, sorted_code[1:] != sorted_code[:-1]]) if len(code) else []
    self.pattern_start = np.r_[starts, len(code)].astype(np.int64)
    codes = sorted_code[self.pattern_start[:-1]]
    bits = code_type(1) << np.arange(num_langs, dtype=code_type)
    self.patterns = np.asfortranarray((codes[:, None] & bits[None, :]) != 0)
    self._layouts = _LRU(_LAYOUT_CACHE_BYTES, size=lambda layout: layout[0].nbytes * 2)

  def pair_sizes(self) -> np.ndarray:
    """int64 [L, L]: examples holding both languages x and y (x == y: holding x)."""
    sizes = np.diff(self.pattern_start).astype(np.float64)
    patterns = self.patterns.astype(np.float64)
    return np.rint((patterns * sizes[:, None]).T @ patterns).astype(np.int64)  # exact < 2^53

  def _in_pool(self, languages, min_languages: int) -> np.ndarray:
    """bool [P]: the patterns a pool holds (see `_Pool`)."""
    if languages is None:
      return self.patterns.sum(axis=1) >= min_languages
    return self.patterns[:, languages[0]] & self.patterns[:, languages[1]]

  def pool(self, languages, min_languages: int, batch_size: int, size: int | None = None) -> _Pool:
    """The pool of `languages` (a pair) or of the patterns of at least `min_languages`; `size`
    when already known (`pair_sizes`)."""
    if size is None:
      size = int(np.diff(self.pattern_start)[self._in_pool(languages, min_languages)].sum())
    return _Pool(languages, min_languages, size, size // batch_size)

  def layout(self, pool: _Pool) -> tuple[np.ndarray, np.ndarray]:
    """(segment_start, segment_base), int64 [segments] each: the first member index of each
    pattern segment of `pool`, and the offset such that member j of segment s is
    `ids_by_pattern[segment_base[s] + j]`. O(P) to build; cached."""

    def build():
      chosen = np.flatnonzero(self._in_pool(pool.languages, pool.min_languages))
      sizes = np.diff(self.pattern_start)[chosen]
      segment_start = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64)
      return segment_start, self.pattern_start[chosen] - segment_start

    return self._layouts.get((pool.languages, pool.min_languages), build)

  def members(self, pool: _Pool, positions: np.ndarray) -> np.ndarray:
    """int64 [m]: the example ids at member `positions` (int [m]) of `pool`."""
    segment_start, segment_base = self.layout(pool)
    segment = np.searchsorted(segment_start, positions, side="right") - 1
    return self.ids_by_pattern[segment_base[segment] + positions].astype(np.int64)


def _draw_languages(available_rows: np.ndarray, ids: np.ndarray, key: int,
                    mono: bool) -> tuple[np.ndarray, np.ndarray]:
  """(query_lang, passage_lang), int64 [m] each: per example a uniform available language (mono)
  or a uniform ordered pair of two different available languages (cross), as the argmax (and
  second argmax) of scores hashed from (key, example id, language)."""
  num_langs = available_rows.shape[1]
  cells = ids.astype(np.uint64)[:, None] * np.uint64(MAX_LANGUAGES) + np.arange(
      num_langs, dtype=np.uint64)[None, :]
  scores = np.where(available_rows,
                    (_splitmix64_array(cells ^ np.uint64(key)) >> np.uint64(1)) + np.uint64(1),
                    np.uint64(0))
  query_lang = np.argmax(scores, axis=1)
  if mono:
    return query_lang, query_lang
  scores[np.arange(len(scores)), query_lang] = 0
  return query_lang, np.argmax(scores, axis=1)


def _repeats(columns) -> np.ndarray:
  """bool [m]: element i repeats, in some column, the (language, key) of an element before it.

  Args:
    columns: (language int [m], key int [m]) pairs.
  """
  repeat = None
  for lang, key in columns:
    order = np.lexsort((np.arange(len(key)), key, lang))
    same = np.zeros(len(key), bool)
    same[order[1:]] = (lang[order[1:]] == lang[order[:-1]]) & (key[order[1:]] == key[order[:-1]])
    repeat = same if repeat is None else repeat | same
  return repeat


class HybridBatchSampler:
  """Deterministic, random-access hybrid batch sampler (see the module docstring)."""

  def __init__(self, available, languages: Sequence[str], global_batch_size: int, mono_prob: float,
               seed: int, language_scope: str = "batch", passage_keys=None,
               source_weights: Sequence[float] | None = None, block_size: int = 256,
               query_keys=None):
    """Groups every source's examples by availability and lays out its pools; draws nothing.

    Args:
      available: bool [num_examples, num_languages], or a list of them (one per source; a
        list is always read as sources, so pass one source as a numpy array).
      languages: the language codes of the columns (only these indices are ever emitted).
      global_batch_size: B, pairs per global batch (over all processes).
      mono_prob: probability that a batch is monolingual, in [0, 1] (1 with one language); or one
        per source (a source without two languages on one example can only give mono batches:
        give it 1).
      seed: non-negative int; every random choice derives from it.
      language_scope: "batch" (one language (pair) per batch) or "example" (per example).
      passage_keys: None, or int [num_examples, num_languages] (a list, with None entries, for
        several sources): no batch holds two examples with one key in its passage language.
      source_weights: relative source frequencies (default: examples with any language).
      block_size: K, steps per splitter block (window accuracy ~1/K, cost per call O(K)).
      query_keys: like passage_keys, for the query language (e.g. equal for equal query text).

    Raises:
      ValueError: a malformed argument, a stream of positive probability without a pool of B
        examples, or a language with examples that no such pool ever draws (with the counts).
    """
    self.languages = tuple(languages)
    self.global_batch_size = global_batch_size
    self.mono_prob = mono_prob
    self.seed = seed
    self.language_scope = language_scope
    several = isinstance(available, (list, tuple))
    availables = list(available) if several else [available]
    keys_lists = []
    for keys in (passage_keys, query_keys):
      if several:
        keys_lists.append([None] * len(availables) if keys is None else list(keys))
      else:
        keys_lists.append([keys])
    self._check_args(availables, keys_lists, source_weights, block_size)
    self._source_mono_probs = self._mono_probs(len(availables))
    self._sources = [
        _Source(np.asarray(a), *(None if k is None else np.asarray(k) for k in keys))
        for a, *keys in zip(availables, *keys_lists)
    ]
    self._pools = [
        [self._make_pools(source, kind) for kind in (_MONO, _CROSS)] for source in self._sources
    ]
    self._cumulative_batches = [[
        np.r_[0, np.cumsum([p.num_batches for p in pools])].astype(np.int64) for pools in by_kind
    ] for by_kind in self._pools]
    self._check_every_language_drawn()
    if source_weights is None:
      source_weights = [int(a.any(axis=1).sum()) for a in availables]
    weights = np.asarray(source_weights, np.float64) / np.sum(source_weights)
    self.source_probs = tuple(float(w) for w in weights)
    self._block_cache = _LRU(1024)
    rest = np.cumsum(weights[::-1])[::-1]  # weight of sources i, i+1, ...
    self._source_splitters = [
        _Splitter(
            float(weights[i] / rest[i]), (seed, _TAG_SOURCE_SPLIT, i), block_size,
            self._block_cache) for i in range(len(weights) - 1)
    ]
    self._mono_splitters = [
        _Splitter(self._source_mono_probs[s], (seed, _TAG_MONO_SPLIT, s), block_size,
                  self._block_cache) for s in range(len(weights))
    ]

  def _mono_probs(self, num_sources: int) -> list[float]:
    """`mono_prob` per source; ValueError unless each is in [0, 1]."""
    probs = ([self.mono_prob] * num_sources if isinstance(self.mono_prob, numbers.Real) else
             list(self.mono_prob) if isinstance(self.mono_prob, (list, tuple)) else [])
    if len(probs) != num_sources or not all(
        isinstance(p, numbers.Real) and 0.0 <= p <= 1.0 for p in probs):
      raise ValueError(f"HybridBatchSampler: mono_prob must be in [0, 1], or a list of one such "
                       f"per source ({num_sources}), got {self.mono_prob!r}")
    return [float(p) for p in probs]

  def _check_args(self, availables, keys_lists, source_weights, block_size):
    where = "HybridBatchSampler"
    num_langs = len(self.languages)
    if num_langs == 0 or len(set(self.languages)) != num_langs:
      raise ValueError(f"{where}: languages must be non-empty and distinct, got {self.languages}")
    if num_langs > MAX_LANGUAGES:
      raise ValueError(f"{where}: at most {MAX_LANGUAGES} languages, got {num_langs}")
    if not availables:
      raise ValueError(f"{where}: available is an empty list of sources")
    if not (isinstance(self.global_batch_size, (int, np.integer)) and self.global_batch_size > 0):
      raise ValueError(f"{where}: global_batch_size must be a positive int, got "
                       f"{self.global_batch_size!r}")
    for name, keys_list in zip(("passage_keys", "query_keys"), keys_lists):
      if len(keys_list) != len(availables):
        raise ValueError(f"{where}: {len(keys_list)} {name} for {len(availables)} sources")
    for s, avail in enumerate(availables):
      avail = np.asarray(avail)
      if avail.ndim != 2 or avail.shape[1] != num_langs or avail.dtype != bool:
        raise ValueError(f"{where}: available[source {s}] must be bool [num_examples, "
                         f"num_languages={num_langs}], got {avail.dtype} {avail.shape}")
      for name, keys_list in zip(("passage_keys", "query_keys"), keys_lists):
        if keys_list[s] is not None:
          keys = np.asarray(keys_list[s])
          if keys.shape != avail.shape or not np.issubdtype(keys.dtype, np.integer):
            raise ValueError(f"{where}: {name}[source {s}] must be int {avail.shape} like "
                             f"available, got {keys.dtype} {keys.shape}")
      if self.global_batch_size > avail.any(axis=1).sum():
        raise TooFewExamplesError(
            f"{where}: global_batch_size={self.global_batch_size} exceeds "
            f"the {avail.any(axis=1).sum()} examples of source {s}", ["global_batch_size"])
    if num_langs == 1 and any(p != 1 for p in self._mono_probs(len(availables))):
      raise ValueError(f"{where}: with one language ({self.languages[0]}) every batch is "
                       f"monolingual: mono_prob must be 1, got {self.mono_prob}")
    if not (isinstance(self.seed, (int, np.integer)) and self.seed >= 0):
      raise ValueError(f"{where}: seed must be a non-negative int, got {self.seed!r}")
    if self.language_scope not in LANGUAGE_SCOPES:
      raise ValueError(f"{where}: unknown language_scope {self.language_scope!r}; expected one "
                       f"of {LANGUAGE_SCOPES}")
    if source_weights is not None:
      weights = np.asarray(source_weights, np.float64)
      if weights.shape != (len(availables),) or not np.all(np.isfinite(weights) & (weights > 0)):
        raise ValueError(f"{where}: source_weights must be {len(availables)} positive numbers, "
                         f"got {source_weights!r}")
    if not (isinstance(block_size, (int, np.integer)) and block_size > 0):
      raise ValueError(f"{where}: block_size must be a positive int, got {block_size!r}")

  def _make_pools(self, source: _Source, kind: int) -> list[_Pool]:
    """The pools of one (source, kind) stream that fill at least one batch, in a fixed order."""
    if self.language_scope == "example":
      pool = source.pool(None, 1 if kind == _MONO else 2, self.global_batch_size)
      return [pool] if pool.num_batches else []
    num_langs = len(self.languages)
    pairs = ([(x, x) for x in range(num_langs)] if kind == _MONO else
             [(x, y) for x in range(num_langs) for y in range(num_langs) if x != y])
    sizes = source.pair_sizes()
    pools = [
        source.pool((x, y), 1 if x == y else 2, self.global_batch_size, int(sizes[x, y]))
        for x, y in pairs
    ]
    return [pool for pool in pools if pool.num_batches]

  def _check_every_language_drawn(self):
    """Raises if a language with examples is in no pool of a stream of positive probability."""
    where = f"HybridBatchSampler (global_batch_size={self.global_batch_size}, " \
            f"language_scope={self.language_scope!r})"
    scope_fix = ["language_scope"] if self.language_scope == "batch" else []
    for s, (source, by_kind) in enumerate(zip(self._sources, self._pools)):
      drawn = set()
      mono_prob = self._source_mono_probs[s]
      for kind, prob in ((_MONO, mono_prob), (_CROSS, 1.0 - mono_prob)):
        if prob > 0 and not by_kind[kind]:
          multilingual = int(np.diff(source.pattern_start) @ (source.patterns.sum(axis=1) >= 2))
          fixes = ["mono_prob=1" if kind == _CROSS else "mono_prob=0"]
          if kind == _MONO or multilingual:  # else no batch size or scope makes a cross batch
            fixes = ["global_batch_size", *scope_fix, *fixes]
          detail = f" ({multilingual} examples in two or more languages)" if kind == _CROSS else ""
          raise TooFewExamplesError(
              f"{where}: source {s} has no {_KIND_NAMES[kind]}-lingual pool with enough examples "
              f"for one batch{detail}, but its probability is {prob}", fixes)
        if prob > 0:
          for pool in by_kind[kind]:
            drawn |= set(range(len(self.languages)) if pool.languages is None else pool.languages)
      counts = np.diff(source.pattern_start) @ source.patterns
      never = [
          f"{self.languages[j]} ({counts[j]} examples)" for j in range(len(counts))
          if counts[j] and j not in drawn
      ]
      if never:
        raise TooFewExamplesError(
            f"{where}: source {s}: language(s) {', '.join(never)} are in no pool of at least one "
            f"batch, so they would never be drawn", ["global_batch_size", *scope_fix, "languages"])

  def _members(self, source: int, kind: int, pool: _Pool, positions: np.ndarray, epoch: int):
    """(example_ids, query_lang, passage_lang), int64 [m] each, of pool `positions` in `epoch`."""
    src = self._sources[source]
    ids = src.members(pool, positions)
    if pool.languages is not None:
      return ids, np.full(len(ids), pool.languages[0]), np.full(len(ids), pool.languages[1])
    key = _hash(self.seed, _TAG_LANGUAGE, source, kind, epoch)
    return (ids, *_draw_languages(src.available[ids], ids, key, mono=kind == _MONO))

  def _key_columns(self, source: int, ids, query_lang, passage_lang):
    """The (language, key) columns that must not repeat in a batch: ids, then the given keys."""
    src = self._sources[source]
    columns = [(np.zeros(len(ids), np.int64), ids)]
    for keys, lang in ((src.passage_keys, passage_lang), (src.query_keys, query_lang)):
      if keys is not None:
        columns.append((lang, keys[ids, lang]))
    return columns

  def _replace_repeats(self, source: int, kind: int, pool_index: int, chunk: int, epoch: int,
                       members):
    """`members` with every element repeating an earlier key replaced (module docstring)."""
    pool = self._pools[source][kind][pool_index]
    columns = lambda m: self._key_columns(source, *m)
    keep = ~_repeats(columns(members)[1:])  # ids are distinct: a permutation's positions
    if keep.all():
      return members
    kept = [column[keep] for column in members]
    probe = _Permutation(pool.size, _hash(self.seed, _TAG_PROBE, source, kind, pool_index, epoch))
    start, probed, size = chunk * self.global_batch_size, 0, self.global_batch_size
    while len(kept[0]) < size:
      if probed >= pool.size:
        raise ValueError(
            f"HybridBatchSampler: pool {pool_index} of the {_KIND_NAMES[kind]}-lingual stream of "
            f"source {source} (languages {pool.languages}) has fewer than global_batch_size="
            f"{size} examples with distinct passage and query keys")
      count = min(max(2 * (size - len(kept[0])), 64), pool.size - probed)
      positions = probe((start + probed + np.arange(count)) % pool.size)
      probed += count
      candidates = self._members(source, kind, pool, positions, epoch)
      both = [np.concatenate(pair) for pair in zip(kept, candidates)]
      fresh = np.flatnonzero(~_repeats(columns(both))[len(kept[0]):])[:size - len(kept[0])]
      kept = [np.concatenate([k, c[fresh]]) for k, c in zip(kept, candidates)]
    return kept

  def batch(self, step: int) -> HybridBatch:
    """The global batch of training step `step` (>= 0): a pure function of the arguments and step.

    Raises:
      ValueError: a bad step, or a pool without B distinct keys (see the module docstring).
    """
    if not (isinstance(step, (int, np.integer)) and step >= 0):
      raise ValueError(f"HybridBatchSampler.batch: step must be a non-negative int, got {step!r}")
    index, source = int(step), len(self._mono_splitters) - 1
    for i, splitter in enumerate(self._source_splitters):
      is_source_i, index = splitter(index)
      if is_source_i:
        source = i
        break
    is_mono, index = self._mono_splitters[source](index)
    kind = _MONO if is_mono else _CROSS
    cumulative = self._cumulative_batches[source][kind]
    epoch, row = divmod(index, int(cumulative[-1]))
    order = _Permutation(
        int(cumulative[-1]), _hash(self.seed, _TAG_EPOCH_ORDER, source, kind, epoch))
    chunk = int(order(np.array([row]))[0])
    pool_index = int(np.searchsorted(cumulative, chunk, side="right")) - 1
    pool, chunk = self._pools[source][kind][pool_index], chunk - int(cumulative[pool_index])
    size = self.global_batch_size
    permutation = _Permutation(pool.size,
                               _hash(self.seed, _TAG_POOL, source, kind, pool_index, epoch))
    positions = permutation(np.arange(chunk * size, (chunk + 1) * size))
    members = self._members(source, kind, pool, positions, epoch)
    src = self._sources[source]
    if src.passage_keys is not None or src.query_keys is not None:
      members = self._replace_repeats(source, kind, pool_index, chunk, epoch, members)
    ids, query_lang, passage_lang = members
    return HybridBatch(
        example_ids=ids.astype(np.int64), query_lang=query_lang.astype(np.int32),
        passage_lang=passage_lang.astype(np.int32), is_mono=is_mono, source=source, step=int(step))
