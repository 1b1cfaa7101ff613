"""Alignment metrics against brute-force references: pair-by-pair loops in float64, LASER's xsim
code transcribed (faiss's exact inner-product search replaced by a sort), the pool walked
candidate by candidate."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from hybrid_jax import alignment_metrics as am


def parallel_embeddings(rng, num_langs=4, num_units=9, dim=6, noise=0.8):
  """Translations near a shared unit vector, plus a language offset: imperfect alignment."""
  units = rng.standard_normal((1, num_units, dim))
  langs = rng.standard_normal((num_langs, 1, dim)) * 0.5
  return units + langs + noise * rng.standard_normal((num_langs, num_units, dim))


def cosines(emb):
  emb = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
  return emb


def laser_xsim_errors(x, y, k):
  """LASER source/xsim.py `_score_knn` + `score_margin` (ratio) + `calculate_error`, with
  `faiss.IndexFlatIP.search` replaced by an exact sort on the normalised rows."""

  def search(index_rows, queries, k):
    cos = queries @ index_rows.T
    idx = np.argsort(-cos, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(cos, idx, axis=1), idx

  x, y = cosines(x), cosines(y)
  cos_xy, idx_xy = search(y, x, k)
  cos_yx, _ = search(x, y, k)
  avg_xy, avg_yx = cos_xy.mean(axis=1), cos_yx.mean(axis=1)
  nbex = x.shape[0]
  scores = np.zeros((nbex, k))
  for i in range(nbex):
    for j in range(k):
      jj = idx_xy[i, j]
      a = cos_xy[i, j]
      b = (avg_xy[i] + avg_yx[jj]) / 2
      scores[i, j] = a / b
  best = scores.argmax(axis=1)
  indices = np.array([idx_xy[i, best[i]] for i in range(nbex)])
  return nbex - np.sum(indices == np.arange(nbex))


def test_bitext_matches_brute_force_and_laser():
  rng = np.random.default_rng(0)
  emb = parallel_embeddings(rng)
  got = am.bitext_metrics(emb, k=4)
  e = cosines(emb)
  num_langs, num_units, _ = emb.shape
  for x in range(num_langs):
    for y in range(num_langs):
      if x == y:
        assert np.isnan(got["p_at_1"][x, y]) and np.isnan(got["xsim_error"][x, y])
        continue
      hits = 0
      for i in range(num_units):
        gold = float(e[x, i] @ e[y, i])
        hits += all(gold > float(e[x, i] @ e[y, j]) for j in range(num_units) if j != i)
      assert got["p_at_1"][x, y] == hits / num_units
      assert got["xsim_error"][x, y] == laser_xsim_errors(emb[x], emb[y], 4) / num_units
  # The margin changes some decisions here (else the test would not tell xsim from 1 - P@1).
  assert np.nanmax(np.abs(got["xsim_error"] - (1 - got["p_at_1"]))) > 0


def test_bitext_tie_is_a_miss_and_perfect_alignment():
  emb = np.stack([np.eye(3), np.eye(3)])
  got = am.bitext_metrics(emb, k=2)
  assert got["p_at_1"][0, 1] == 1.0 and got["xsim_error"][0, 1] == 0.0
  tied = np.ones((2, 3, 3))  # every unit identical: the translation ties with the others
  assert am.bitext_metrics(tied, k=2)["p_at_1"][0, 1] == 0.0
  with pytest.raises(ValueError, match="k=4"):
    am.bitext_metrics(emb, k=4)


def brute_pool(emb, recall_ks, top_k):
  """Walks every query's ranking over the other L*N - 1 units (pessimistic ties)."""
  e = cosines(emb)
  num_langs, num_units, _ = emb.shape
  out = {key: np.zeros((num_langs, num_units)) for key in ("ap", "rank_range", "own_share")}
  for k in recall_ks:
    out[f"recall@{k}"] = np.zeros((num_langs, num_units))
  for x in range(num_langs):
    for i in range(num_units):
      cands = [(y, j) for y in range(num_langs) for j in range(num_units) if (y, j) != (x, i)]
      score = {c: float(e[x, i] @ e[c[0], c[1]]) for c in cands}
      order = sorted(cands, key=lambda c: (-score[c], c[1] == i))
      ranks = [r for r, c in enumerate(order, 1) if c[1] == i]
      out["ap"][x, i] = np.mean([(n + 1) / r for n, r in enumerate(ranks)])
      out["rank_range"][x, i] = max(ranks) - min(ranks)
      out["own_share"][x, i] = sum(c[0] == x for c in order[:top_k]) / top_k
      for k in recall_ks:
        out[f"recall@{k}"][x, i] = sum(r <= k for r in ranks) / (num_langs - 1)
  return out


def test_pool_matches_brute_force():
  rng = np.random.default_rng(1)
  emb = parallel_embeddings(rng, num_langs=3, num_units=7)
  got = am.pool_metrics(emb, recall_ks=(1, 5), top_k=4)
  want = brute_pool(emb, (1, 5), 4)
  for key, value in want.items():
    np.testing.assert_allclose(got[key], value, rtol=1e-12, err_msg=key)
  assert got["uniform_share"] == 6 / 20


def test_alignment_gap_matches_pair_loops():
  rng = np.random.default_rng(2)
  emb = parallel_embeddings(rng, num_langs=3, num_units=5)
  e = cosines(emb)
  got = am.alignment_gap(emb)
  num_langs, num_units, _ = emb.shape
  trans, other = [], []
  per_lang = {x: ([], []) for x in range(num_langs)}
  for x in range(num_langs):
    for y in range(num_langs):
      t_xy, o_xy = [], []
      for i in range(num_units):
        for j in range(num_units):
          c = float(e[x, i] @ e[y, j])
          if i == j and x != y:
            t_xy.append(c)
          elif i != j:
            o_xy.append(c)
      trans += t_xy
      other += o_xy
      for z in {x, y}:
        per_lang[z][0].extend(t_xy)
        per_lang[z][1].extend(o_xy)
      if x != y:
        np.testing.assert_allclose(got["gap_pairs"][x, y], np.mean(t_xy) - np.mean(o_xy))
  np.testing.assert_allclose(got["translation_cosine"], np.mean(trans))
  np.testing.assert_allclose(got["other_cosine"], np.mean(other))
  np.testing.assert_allclose(got["gap"], np.mean(trans) - np.mean(other))
  for x, (t, o) in per_lang.items():
    np.testing.assert_allclose(got["gap_language"][x], np.mean(t) - np.mean(o))


def test_probe_chance_when_agnostic_and_perfect_when_separable():
  rng = np.random.default_rng(3)
  units = rng.standard_normal((1, 12, 8))
  agnostic = np.repeat(units, 4, axis=0)  # every language the same vector: exactly 1 in 4 right
  # (The degenerate data never converges: few iterations suffice for the argument.)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    got = am.language_id_probe(agnostic, folds=4, seed=0, max_iter=20)
  assert got["accuracy"] == 0.25 and got["chance"] == 0.25
  separable = agnostic + 50 * np.eye(8)[:4, None, :]
  got = am.language_id_probe(separable, folds=4, seed=0)
  assert got["accuracy"] == 1.0
  np.testing.assert_array_equal(got["predicted"], np.repeat(np.arange(4)[:, None], 12, axis=1))


def test_probe_folds_are_seeded_balanced_partitions():
  a, b = am.probe_folds(23, 5, seed=0), am.probe_folds(23, 5, seed=1)
  np.testing.assert_array_equal(a, am.probe_folds(23, 5, seed=0))
  assert not np.array_equal(a, b)
  assert sorted(np.bincount(a)) == [4, 4, 5, 5, 5]
  with pytest.raises(ValueError, match="folds=1"):
    am.probe_folds(23, 1, seed=0)


def test_per_language():
  matrix = np.array([[np.nan, 1.0, 0.5], [0.0, np.nan, 1.0], [1.0, 0.5, np.nan]])
  pool = {"ap": np.array([[1.0, 0.5], [0.0, 0.0], [1.0, 1.0]]), "recall@10": np.ones((3, 2))}
  pool["rank_range"] = pool["own_share"] = pool["ap"]
  values = am.per_language({"p_at_1": matrix, "xsim_error": matrix}, pool,
                           {"gap_language": [0.1, 0.2, 0.3]},
                           {"accuracy_language": [1.0, 0.0, 0.5]})
  # en: en->de 1, en->fr 0.5, de->en 0, fr->en 1: mean 0.625; de: 0, 1, 1, 0.5.
  np.testing.assert_allclose(values["p_at_1"], [0.625, 0.625, 0.75])
  np.testing.assert_allclose(values["pool_map"], [0.75, 0.0, 1.0])
  assert values["pool_recall@10"].tolist() == [1.0, 1.0, 1.0]


def test_bad_embeddings():
  with pytest.raises(ValueError, match="languages >= 2"):
    am.normalize(np.ones((1, 3, 2)))
  with pytest.raises(ValueError, match="language 1 unit 2"):
    am.normalize(np.stack([np.ones((3, 2)), np.array([[1.0, 0], [1, 0], [0, 0]])]))
