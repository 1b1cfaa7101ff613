"""Tests for hybrid_jax/sampler.py: every invariant of the module docstring, against independent
counts (brute-force walks over steps, pool sizes computed here from `available`)."""

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from hybrid_jax import data as data_lib
from hybrid_jax import sampler as sampler_lib

HybridBatchSampler = sampler_lib.HybridBatchSampler
SAMPLER_PATH = os.path.abspath(sampler_lib.__file__)
LANGS4 = ("en", "de", "ar", "zh")


def batches_per_epoch(sampler, source: int = 0, mono: bool = True) -> int:
  """Batches in one epoch of the sampler's (source, mono|cross) stream: the sum over its pools."""
  kind = sampler_lib._MONO if mono else sampler_lib._CROSS
  return sum(p.num_batches for p in sampler._pools[source][kind])


def _unequal_available(seed=0, num_examples=400):
  """bool [400, 4]: languages hold about 100%, 60%, 35%, 20% of the examples (every row >= 1)."""
  rng = np.random.default_rng(seed)
  available = rng.random((num_examples, len(LANGS4))) < np.array([1.0, 0.6, 0.35, 0.2])
  return available


@pytest.fixture(scope="module")
def xquad_r():
  """The full embedded XQuAD-R (1190 questions x 11 languages): its passage keys are the answer
  sentences, shared by many questions (603 to 818 distinct per language)."""
  return data_lib.load("xquad_r:all")


def _walk(sampler, num_steps):
  return [sampler.batch(step) for step in range(num_steps)]


@pytest.mark.parametrize("scope", sampler_lib.LANGUAGE_SCOPES)
@pytest.mark.parametrize("mono_prob", [0.0, 0.5, 1.0])
def test_every_batch_is_valid(scope, mono_prob):
  available = _unequal_available()
  sampler = HybridBatchSampler(available, LANGS4, 16, mono_prob, seed=3, language_scope=scope)
  for b in _walk(sampler, 300):
    assert b.example_ids.dtype == np.int64 and b.example_ids.shape == (16,)
    assert b.query_lang.dtype == np.int32 and b.passage_lang.dtype == np.int32
    assert len(set(b.example_ids.tolist())) == 16
    assert available[b.example_ids, b.query_lang].all()
    assert available[b.example_ids, b.passage_lang].all()
    if b.is_mono:
      assert np.array_equal(b.query_lang, b.passage_lang)
    else:
      assert np.all(b.query_lang != b.passage_lang)
    if scope == "batch":
      assert len(set(zip(b.query_lang.tolist(), b.passage_lang.tolist()))) == 1
    assert b.source == 0
  if scope == "example":  # languages really vary inside a batch
    assert any(len(set(b.query_lang.tolist())) > 1 for b in _walk(sampler, 20))


@pytest.mark.parametrize("mono_prob", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_mono_fraction(mono_prob):
  sampler = HybridBatchSampler(_unequal_available(), LANGS4, 16, mono_prob, seed=11,
                               language_scope="example")
  is_mono = np.array([b.is_mono for b in _walk(sampler, 4000)])
  assert abs(is_mono.mean() - mono_prob) <= 0.03
  # At every block boundary the running mono count is floor(t * p + u): within 1 of t * p.
  block = 256
  counts_at_blocks = np.cumsum(is_mono)[block - 1::block]
  t = np.arange(1, len(counts_at_blocks) + 1) * block
  assert np.all(np.abs(counts_at_blocks - t * mono_prob) < 1)


def test_one_language_needs_mono_prob_one():
  available = np.ones((50, 1), bool)
  with pytest.raises(ValueError, match="one language.*mono_prob must be 1"):
    HybridBatchSampler(available, ("en",), 8, 0.5, seed=0)
  b = HybridBatchSampler(available, ("en",), 8, 1.0, seed=0).batch(7)
  assert b.is_mono and np.all(b.query_lang == 0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(available=np.ones((40, 3), bool)), "num_languages=4"),
    (dict(available=np.ones((40, 4), np.int32)), "must be bool"),
    (dict(languages=("en", "de", "ar", "en")), "distinct"),
    (dict(global_batch_size=41), "exceeds the 40 examples"),
    (dict(global_batch_size=0), "positive int"),
    (dict(mono_prob=1.5), r"mono_prob must be in \[0, 1\]"),
    (dict(mono_prob=-0.1), r"mono_prob must be in \[0, 1\]"),
    (dict(seed=-1), "seed must be a non-negative int"),
    (dict(language_scope="pair"), "unknown language_scope 'pair'"),
    (dict(passage_keys=np.zeros((40, 3), np.int64)), "passage_keys"),
    (dict(passage_keys=np.zeros((40, 4), np.float32)), "passage_keys"),
    (dict(source_weights=[1.0, 2.0]), "source_weights"),
    (dict(block_size=0), "block_size"),
    (dict(available=np.eye(4, dtype=bool)[np.arange(40) % 4]), "no cross-lingual pool"),
])
def test_bad_arguments_raise(kwargs, match):
  args = dict(
      available=np.ones((40, 4), bool), languages=LANGS4, global_batch_size=8, mono_prob=0.5,
      seed=0)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    HybridBatchSampler(**args)


def test_bad_step_raises():
  sampler = HybridBatchSampler(np.ones((40, 4), bool), LANGS4, 8, 0.5, seed=0)
  with pytest.raises(ValueError, match="step must be a non-negative int"):
    sampler.batch(-1)


def _same(a, b):
  return (np.array_equal(a.example_ids, b.example_ids)
          and np.array_equal(a.query_lang, b.query_lang)
          and np.array_equal(a.passage_lang, b.passage_lang)
          and (a.is_mono, a.source, a.step) == (b.is_mono, b.source, b.step))


@pytest.mark.parametrize("scope", sampler_lib.LANGUAGE_SCOPES)
def test_batch_is_a_pure_function_of_step(scope):
  args = (_unequal_available(), LANGS4, 16, 0.5, 5)
  in_order = HybridBatchSampler(*args, language_scope=scope)
  # A fresh sampler called in a scrambled order.
  scrambled = HybridBatchSampler(*args, language_scope=scope)
  steps = list(range(600)) + [10**6 + i for i in range(50)]
  expected = [in_order.batch(s) for s in steps]
  order = np.random.default_rng(0).permutation(len(steps))
  for i in order:
    assert _same(scrambled.batch(steps[i]), expected[i])
  other_seed = HybridBatchSampler(*args[:4], 6, language_scope=scope)
  assert not all(_same(other_seed.batch(s), e) for s, e in zip(steps[:20], expected[:20]))


def test_threads_share_a_sampler():
  """A prefetch thread and the main thread may call batch() at once (they share the block cache)."""
  args = (_unequal_available(), LANGS4, 16, 0.5, 5)
  shared = HybridBatchSampler(*args, language_scope="example")
  reference = HybridBatchSampler(*args, language_scope="example")
  steps = np.random.default_rng(1).permutation(2000).tolist()
  results = {}

  def work(part):
    for step in part:
      results[step] = shared.batch(step)

  threads = [threading.Thread(target=work, args=(steps[i::2],)) for i in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert all(_same(results[step], reference.batch(step)) for step in steps)


_STANDALONE_LOADER = """
import importlib.util, sys
for name in ("jax", "flax", "hybrid_jax"):
  sys.modules[name] = None
spec = importlib.util.spec_from_file_location("copied_sampler", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
"""


def test_standalone_import_without_jax_flax_or_package(monkeypatch):
  blocked = ("jax", "flax", "hybrid_jax")
  for name in [n for n in sys.modules if n.split(".")[0] in blocked] + list(blocked):
    monkeypatch.setitem(sys.modules, name, None)
  with pytest.raises(ImportError):
    __import__("jax")  # the block is effective
  spec = importlib.util.spec_from_file_location("copied_sampler", SAMPLER_PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  sampler = module.HybridBatchSampler(_unequal_available(), LANGS4, 16, 0.5, seed=2)
  reference = HybridBatchSampler(_unequal_available(), LANGS4, 16, 0.5, seed=2)
  assert all(_same(sampler.batch(s), reference.batch(s)) for s in range(50))


# Run verbatim here and in a fresh interpreter, given `Sampler` and `steps`.
_BATCHES_SCRIPT = """
import numpy as np
rng = np.random.default_rng(0)
available = rng.random((400, 4)) < np.array([1.0, 0.6, 0.35, 0.2])
keys = rng.integers(0, 150, (400, 4))
batches = {}
for scope in ("batch", "example"):
  s = Sampler([available, available[:200]], ("en", "de", "ar", "zh"), 16, 0.5, 9,
              language_scope=scope, passage_keys=[keys, None])
  for step in steps:
    b = s.batch(step)
    batches[f"{scope}:{step}"] = [b.example_ids.tolist(), b.query_lang.tolist(),
                                  b.passage_lang.tolist(), bool(b.is_mono), b.source]
"""


def test_same_batches_in_another_process():
  """A fresh interpreter (other hash seed, standalone copy of the file, other call order) gives
  the same batches."""
  steps = [0, 1, 2, 255, 256, 4097, 10**6, 10**6 + 17]
  code = (
      _STANDALONE_LOADER.format(path=SAMPLER_PATH)
      + f"Sampler = module.HybridBatchSampler\nsteps = {steps!r}\n" + _BATCHES_SCRIPT
      + "import json\nprint(json.dumps(batches))\n")
  env = dict(os.environ, PYTHONHASHSEED="12345")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True)
  ours = {"Sampler": HybridBatchSampler, "steps": steps[::-1]}
  exec(_BATCHES_SCRIPT, ours)
  assert json.loads(result.stdout) == ours["batches"]


def test_shards_concatenate_to_the_global_batch():
  sampler = HybridBatchSampler(_unequal_available(), LANGS4, 16, 0.5, seed=1,
                               language_scope="example")
  for step in (0, 3, 999):
    b = sampler.batch(step)
    for count in (1, 2, 4, 8, 16):
      shards = [b.shard(i, count) for i in range(count)]
      assert all(len(s.example_ids) == 16 // count for s in shards)
      assert all((s.is_mono, s.source, s.step) == (b.is_mono, b.source, b.step) for s in shards)
      for field in ("example_ids", "query_lang", "passage_lang"):
        assert np.array_equal(
            np.concatenate([getattr(s, field) for s in shards]), getattr(b, field))
  with pytest.raises(ValueError, match="not divisible by process_count 3"):
    b.shard(0, 3)
  with pytest.raises(ValueError, match="process_index must be in"):
    b.shard(4, 4)


@pytest.mark.parametrize("scope", sampler_lib.LANGUAGE_SCOPES)
def test_no_shared_positive_in_a_batch_on_xquad_r(scope, xquad_r):
  keys, available = xquad_r.passage_keys, xquad_r.available

  def max_copies(passage_keys, num_steps):
    sampler = HybridBatchSampler(available, xquad_r.languages, 32, 0.5, seed=4,
                                 language_scope=scope, passage_keys=passage_keys)
    worst = 0
    for b in _walk(sampler, num_steps):
      # (passage language, key) must be unique; the loader's keys are unique across languages
      # anyway, but the sampler only promises uniqueness within a language.
      batch_keys = np.stack([b.passage_lang, keys[b.example_ids, b.passage_lang]], axis=1)
      worst = max(worst, np.unique(batch_keys, axis=0, return_counts=True)[1].max())
    return worst, sampler

  worst, sampler = max_copies(keys, 400)
  assert worst == 1
  # Coverage is barely reduced: the largest key group is far smaller than 1190 // 32 batches.
  assert batches_per_epoch(sampler, mono=True) == (11 if scope == "batch" else 1) * (1190 // 32)
  unconstrained_worst, _ = max_copies(None, 400)
  assert unconstrained_worst > 1  # XQuAD-R's shared positives do collide without the keys


def test_heavily_shared_keys_still_pack_full_batches():
  # 100 examples, one key held by 30 of them: every batch of 10 holds at most one of those 30.
  keys = np.arange(100)[:, None]
  keys[:30] = -5
  sampler = HybridBatchSampler(np.ones((100, 1), bool), ("en",), 10, 1.0, seed=0, passage_keys=keys)
  assert batches_per_epoch(sampler) == 10
  for b in _walk(sampler, 70):
    assert np.sum(keys[b.example_ids, 0] == -5) <= 1
    assert len(set(b.example_ids.tolist())) == 10


@pytest.mark.parametrize("scope", sampler_lib.LANGUAGE_SCOPES)
def test_keys_replace_exactly_the_repeats(scope, xquad_r):
  """The stated coverage with keys: a batch is the keyless batch with every repeat of a passage
  key (after its first occurrence) replaced by pool members with new keys and ids."""
  keys, available = xquad_r.passage_keys, xquad_r.available
  args = (available, xquad_r.languages, 32, 0.5, 4)
  keyless = HybridBatchSampler(*args, language_scope=scope)
  keyed = HybridBatchSampler(*args, language_scope=scope, passage_keys=keys)
  replaced = 0
  for step in range(300):
    a, b = keyless.batch(step), keyed.batch(step)
    assert (a.is_mono, a.source) == (b.is_mono, b.source)
    seen, kept = set(), []
    for example, query_lang, passage_lang in zip(a.example_ids.tolist(), a.query_lang.tolist(),
                                                 a.passage_lang.tolist()):
      if (passage_lang, keys[example, passage_lang]) not in seen:
        seen.add((passage_lang, keys[example, passage_lang]))
        kept.append((example, query_lang, passage_lang))
    rows = list(zip(b.example_ids.tolist(), b.query_lang.tolist(), b.passage_lang.tolist()))
    assert rows[:len(kept)] == kept
    new = rows[len(kept):]
    replaced += len(new)
    assert len({(p, keys[i, p]) for i, _, p in rows}) == len({i for i, _, _ in rows}) == 32
    assert all(available[i, q] and available[i, p] and (q == p) == b.is_mono for i, q, p in new)
    if scope == "batch":
      assert all((q, p) == (b.query_lang[0], b.passage_lang[0]) for _, q, p in new)
  # XQuAD-R shares answer sentences a lot (603 to 818 distinct of 1190 per language). A batch of B
  # random members of a pool holds C(B, 2) * sum(g (g - 1)) / (n (n - 1)) pairs of one key (key
  # groups of size g), about one replacement each; with language_scope="example" a pair must
  # also share its passage language, about 11 times rarer.
  expected = 0.0
  for j in range(len(xquad_r.languages)):
    n = available[:, j].sum()
    groups = np.unique(keys[available[:, j], j], return_counts=True)[1]
    expected += 300 * 32 * 31 / 2 * np.sum(groups * (groups - 1)) / (n * (n - 1)) / 11
  if scope == "example":  # each language (fully parallel data) with probability 1/11
    expected /= 11
  # Pseudo-random permutations: as many collisions as random batches.
  assert (0.75 if scope == "batch" else 0.4) * expected < replaced < (1.25 if scope == "batch" else
                                                                      1.6) * expected
  print(f"scope={scope}: {replaced} of {300 * 32} rows replaced, {expected:.0f} key pairs "
        f"expected in random batches")


def test_query_keys_keep_equal_queries_apart():
  """Examples with one query key in their query language never share a batch."""
  available = np.ones((300, 2), bool)
  query_keys = np.arange(300)[:, None] // 3 * np.ones((1, 2), np.int64)  # triples of one query

  def max_copies(**kwargs):
    sampler = HybridBatchSampler(available, ("en", "de"), 16, 0.5, seed=1, **kwargs)
    return max(
        np.unique(
            np.stack([b.query_lang, query_keys[b.example_ids, b.query_lang]]), axis=1,
            return_counts=True)[1].max() for b in _walk(sampler, 200))

  assert max_copies(query_keys=query_keys) == 1
  assert max_copies() > 1
  passage_keys = np.arange(300)[:, None] % 50 * np.ones((1, 2), np.int64)
  sampler = HybridBatchSampler(available, ("en", "de"), 16, 0.5, seed=1, query_keys=query_keys,
                               passage_keys=passage_keys, language_scope="example")
  for b in _walk(sampler, 200):
    for lang, keys in ((b.query_lang, query_keys), (b.passage_lang, passage_keys)):
      pairs = set(zip(lang.tolist(), keys[b.example_ids, lang].tolist()))
      assert len(pairs) == 16


def test_pool_without_enough_distinct_keys_raises():
  keys = (np.arange(40) % 5)[:, None]  # 5 distinct passages for batches of 8
  sampler = HybridBatchSampler(np.ones((40, 1), bool), ("en",), 8, 1.0, seed=0, passage_keys=keys)
  with pytest.raises(ValueError, match="fewer than global_batch_size=8 examples with distinct"):
    sampler.batch(0)


def test_language_too_small_for_a_batch_fails_with_counts():
  """A language that no pool of one batch holds would never be drawn: the constructor says so."""
  available = np.zeros((40, 3), bool)
  available[:, 0] = True
  available[:30, 1] = True
  available[:3, 2] = True  # 3 examples in sw, batch 8
  languages = ("en", "de", "sw")
  with pytest.raises(ValueError, match=r"sw \(3 examples\) are in no pool of at least one batch"):
    HybridBatchSampler(available, languages, 8, 0.5, seed=0)
  sampler = HybridBatchSampler(available, languages, 8, 0.5, seed=0, language_scope="example")
  emitted = set()
  for b in _walk(sampler, 300):
    emitted |= set(b.query_lang.tolist()) | set(b.passage_lang.tolist())
  assert emitted == {0, 1, 2}


@pytest.mark.parametrize("n", [1, 2, 3, 5, 64, 65, 1000, 4099])
def test_permutation_is_a_bijection(n):
  for key in range(3):
    image = sampler_lib._Permutation(n, key)(np.arange(n))
    assert image.dtype == np.int64 and np.array_equal(np.sort(image), np.arange(n))
  if n >= 64:
    assert not np.array_equal(
        sampler_lib._Permutation(n, 0)(np.arange(n)),
        sampler_lib._Permutation(n, 1)(np.arange(n)))


def test_permutation_scatters_consecutive_positions_like_a_random_one():
  """A batch is B consecutive positions: their images must be as spread as a random subset's
  (close pairs, |difference| <= 3, counted against numpy permutations)."""
  n, size = 1190, 32

  def close_pairs(image):
    chunks = np.sort(image[:n // size * size].reshape(-1, size), axis=1)
    return np.sum(np.diff(chunks, axis=1) <= 3)

  ours = sum(close_pairs(sampler_lib._Permutation(n, key)(np.arange(n))) for key in range(100))
  rng = np.random.default_rng(0)
  reference = sum(close_pairs(rng.permutation(n)) for _ in range(100))
  assert 0.85 < ours / reference < 1.15


@pytest.fixture(scope="module")
def million():
  """1M examples x 9 languages, each language on ~90% of them; 10% of the passage keys (per
  language) drawn from n/20 shared ones (groups of ~2), 5% of the query keys from n/40."""
  rng = np.random.default_rng(0)
  n, num_langs = 1_000_000, 9
  available = rng.random((n, num_langs)) < 0.9
  available[~available.any(axis=1), 0] = True
  passage_keys = np.where(
      rng.random((n, num_langs)) < 0.1, rng.integers(0, n // 20, (n, num_langs)),
      np.arange(n)[:, None] + n)
  query_keys = np.where(
      rng.random((n, 1)) < 0.05, rng.integers(0, n // 40, (n, 1)),
      np.arange(n)[:, None] + n) * np.ones((1, num_langs), np.int64)
  return available, passage_keys, query_keys


@pytest.mark.parametrize("scope", sampler_lib.LANGUAGE_SCOPES)
def test_invariants_at_one_million_examples(scope, million):
  available, passage_keys, query_keys = million
  languages = tuple(f"l{j}" for j in range(9))
  start = time.perf_counter()
  sampler = HybridBatchSampler(available, languages, 1024, 0.5, seed=7, language_scope=scope,
                               passage_keys=passage_keys, query_keys=query_keys)
  print(f"constructor {time.perf_counter() - start:.2f} s")
  steps = np.random.default_rng(0).integers(0, 10**7, 150).tolist() + list(range(50))
  mono = 0
  for step in steps:
    b = sampler.batch(step)
    assert sampler.batch(step).example_ids.tolist() == b.example_ids.tolist()  # pure
    ids, query_lang, passage_lang = b.example_ids, b.query_lang, b.passage_lang
    assert len(np.unique(ids)) == 1024
    assert available[ids, query_lang].all() and available[ids, passage_lang].all()
    assert np.all((query_lang == passage_lang) == b.is_mono)
    for lang, keys in ((passage_lang, passage_keys), (query_lang, query_keys)):
      assert len(set(zip(lang.tolist(), keys[ids, lang].tolist()))) == 1024
    assert np.array_equal(np.concatenate([b.shard(i, 8).example_ids for i in range(8)]), ids)
    mono += b.is_mono
  assert 0.35 < mono / len(steps) < 0.65


def test_whole_epoch_coverage_at_one_million_examples():
  """One whole mono epoch over 1M examples: a 1M and a 100k pool, each covered exactly once but
  for its n mod B remainder."""
  available = np.ones((1_000_000, 2), bool)
  available[100_000:, 1] = False
  sampler = HybridBatchSampler(available, ("en", "de"), 1024, 1.0, seed=3)
  epoch = batches_per_epoch(sampler)
  assert epoch == 1_000_000 // 1024 + 100_000 // 1024
  seen = [np.zeros(1_000_000, np.int64), np.zeros(1_000_000, np.int64)]
  for step in range(epoch):
    b = sampler.batch(step)
    np.add.at(seen[int(b.query_lang[0])], b.example_ids, 1)
  for lang, size in ((0, 1_000_000), (1, 100_000)):
    assert seen[lang].max() == 1 and seen[lang][size:].sum() == 0
    assert seen[lang].sum() == size - size % 1024


def _stream(sampler, num_steps, mono):
  return [b for b in _walk(sampler, num_steps) if b.is_mono == mono]


@pytest.mark.parametrize("mono", [True, False])
def test_epoch_coverage_per_pool(mono):
  available, batch_size = _unequal_available(), 16
  sampler = HybridBatchSampler(available, LANGS4, batch_size, 0.5, seed=8)
  pairs = [(x, y) for x in range(4) for y in range(4) if (x == y) == mono]
  pool_ids = {
      p: set(np.flatnonzero(available[:, p[0]] & available[:, p[1]]).tolist()) for p in pairs
  }
  num_batches = {p: len(ids) // batch_size for p, ids in pool_ids.items()}
  epoch_length = sum(num_batches.values())
  assert batches_per_epoch(sampler, mono=mono) == epoch_length
  stream = _stream(sampler, 2 * epoch_length * 2 + 600, mono)
  assert len(stream) >= 2 * epoch_length
  for epoch in range(2):
    seen = {p: [] for p in pairs}
    for b in stream[epoch * epoch_length:(epoch + 1) * epoch_length]:
      seen[(int(b.query_lang[0]), int(b.passage_lang[0]))].extend(b.example_ids.tolist())
    for p in pairs:
      assert len(seen[p]) == len(set(seen[p])) == num_batches[p] * batch_size  # no repeat
      assert len(pool_ids[p] - set(seen[p])) == len(pool_ids[p]) % batch_size  # remainder


@pytest.mark.parametrize("mono", [True, False])
def test_epoch_coverage_example_scope(mono):
  available, batch_size = _unequal_available(), 16
  sampler = HybridBatchSampler(available, LANGS4, batch_size, 0.5, seed=8, language_scope="example")
  pool = set(np.flatnonzero(available.sum(axis=1) >= (1 if mono else 2)).tolist())
  epoch_length = len(pool) // batch_size
  assert batches_per_epoch(sampler, mono=mono) == epoch_length
  stream = _stream(sampler, 6 * epoch_length + 200, mono)
  for epoch in range(2):
    seen = [
        i for b in stream[epoch * epoch_length:(epoch + 1) * epoch_length]
        for i in b.example_ids.tolist()
    ]
    assert len(seen) == len(set(seen))
    assert len(pool - set(seen)) == len(pool) % batch_size


def _chi_square(observed, expected_probs):
  expected = np.asarray(expected_probs) * np.sum(observed)
  return float(np.sum((np.asarray(observed) - expected)**2 / expected))


@pytest.mark.parametrize("mono", [True, False])
def test_pools_chosen_in_proportion_to_size(mono):
  available, batch_size = _unequal_available(), 16
  sampler = HybridBatchSampler(available, LANGS4, batch_size, 0.5, seed=21)
  pairs = [(x, y) for x in range(4) for y in range(4) if (x == y) == mono]
  sizes = np.array([np.sum(available[:, x] & available[:, y]) for x, y in pairs])
  probs = (sizes // batch_size) / np.sum(sizes // batch_size)
  stream = _stream(sampler, 4000, mono)
  observed = [
      sum((int(b.query_lang[0]), int(b.passage_lang[0])) == p for b in stream) for p in pairs
  ]
  # 99.9% quantile of chi-square with 3 (mono) / 11 (cross) degrees of freedom: 16.3 / 31.3.
  assert _chi_square(observed, probs) < (16.3 if mono else 31.3)
  # ... and the pools differ enough that uniform choice would fail.
  assert _chi_square(observed, np.full(len(pairs), 1 / len(pairs))) > 100
  # Pools are interleaved, not run one after the other: consecutive batches of the stream change
  # pool about as often as independent draws would (1 - sum(p^2)).
  pools = [(int(b.query_lang[0]), int(b.passage_lang[0])) for b in stream]
  switches = np.mean([a != b for a, b in zip(pools[:-1], pools[1:])])
  assert abs(switches - (1 - np.sum(probs**2))) < 0.08


def test_example_scope_draws_languages_uniformly():
  available, batch_size = _unequal_available(), 16
  sampler = HybridBatchSampler(available, LANGS4, batch_size, 1.0, seed=2, language_scope="example")
  counts = np.zeros(4)
  expected = np.zeros(4)
  for b in _walk(sampler, 1000):
    rows = available[b.example_ids]
    counts += np.bincount(b.query_lang, minlength=4)
    expected += (rows / rows.sum(axis=1, keepdims=True)).sum(axis=0)
  assert _chi_square(counts, expected / expected.sum()) < 16.3


def test_sources_mix_by_weight_and_by_size():
  available = _unequal_available()
  small = available[:100]
  keys_small = np.arange(100)[:, None] * np.ones((1, 4), np.int64)
  weighted = HybridBatchSampler([available, small], LANGS4, 16, 0.5, seed=3,
                                passage_keys=[None, keys_small], source_weights=[1.0, 3.0])
  batches = _walk(weighted, 4000)
  source = np.array([b.source for b in batches])
  assert abs(np.mean(source == 1) - 0.75) <= 0.02
  for s, data in ((0, available), (1, small)):
    of_source = [b for b in batches if b.source == s]
    assert abs(np.mean([b.is_mono for b in of_source]) - 0.5) <= 0.04
    for b in of_source:
      assert b.example_ids.max() < len(data)
      assert data[b.example_ids, b.query_lang].all() and data[b.example_ids, b.passage_lang].all()
  by_size = HybridBatchSampler([available, small], LANGS4, 16, 0.5, seed=3)
  source = np.array([by_size.batch(step).source for step in range(4000)])
  assert abs(np.mean(source == 1) - 100 / 500) <= 0.02


def test_only_given_languages_are_emitted():
  available = _unequal_available()
  available[:, 2] = False  # a language the data lacks is never chosen
  sampler = HybridBatchSampler(available, LANGS4, 16, 0.5, seed=0, language_scope="example")
  emitted = set()
  for b in _walk(sampler, 500):
    emitted |= set(b.query_lang.tolist()) | set(b.passage_lang.tolist())
  assert emitted == {0, 1, 3}


def test_random_access_is_fast_near_step_one_million(xquad_r):
  for scope in sampler_lib.LANGUAGE_SCOPES:
    sampler = HybridBatchSampler(xquad_r.available, xquad_r.languages, 32, 0.5, seed=0,
                                 language_scope=scope, passage_keys=xquad_r.passage_keys)
    start = time.perf_counter()
    sampler.batch(10**6)
    first_call = time.perf_counter() - start
    start = time.perf_counter()
    for i in np.random.default_rng(0).permutation(1000):
      sampler.batch(10**6 + int(i))
    per_call = (time.perf_counter() - start) / 1000
    print(f"scope={scope}: first call {first_call * 1e3:.1f} ms, "
          f"amortised {per_call * 1e6:.1f} us per call")
    assert per_call < 2e-3  # the 1M x 9, batch 1024 target of benchmarks/sampler_scale.py


def test_too_few_examples_names_the_changes_that_help():
  """Each shortage lists only the changes that fill the batches, and the advice works."""
  available = np.zeros((40, 2), bool)
  available[:, 0] = True
  available[:5, 1] = True  # 5 examples in en and de, 35 in en only
  with pytest.raises(sampler_lib.TooFewExamplesError) as error:
    HybridBatchSampler(available, ("en", "de"), 8, 0.5, seed=0)
  assert error.value.fixes == ("global_batch_size", "language_scope", "mono_prob=1")
  with pytest.raises(sampler_lib.TooFewExamplesError) as error:
    HybridBatchSampler(available, ("en", "de"), 8, 1.0, seed=0)
  assert error.value.fixes == ("global_batch_size", "language_scope", "languages")
  assert "de (5 examples)" in str(error.value)
  HybridBatchSampler(available, ("en", "de"), 4, 0.5, seed=0)  # a smaller batch is drawn
  apart = np.zeros((40, 2), bool)
  apart[:20, 0] = apart[20:, 1] = True  # no example in both languages: no cross-lingual batch
  with pytest.raises(sampler_lib.TooFewExamplesError) as error:
    HybridBatchSampler(apart, ("en", "de"), 8, 0.5, seed=0)
  assert error.value.fixes == ("mono_prob=1",)
  assert str(error.value).endswith(
      "no cross-lingual pool with enough examples for one batch (0 examples in two or more "
      "languages), but its probability is 0.5: set mono_prob to 1 (monolingual batches only)")
  HybridBatchSampler(apart, ("en", "de"), 8, 1.0, seed=0)
  with pytest.raises(sampler_lib.TooFewExamplesError) as error:
    HybridBatchSampler(apart, ("en", "de"), 41, 1.0, seed=0)
  assert error.value.fixes == ("global_batch_size",)
