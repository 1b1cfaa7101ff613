"""Alignment metrics of parallel text in numpy: bitext retrieval (P@1, xsim), the multilingual
pool, the alignment gap and a language-identification probe.

Every function takes the embeddings of N *units* (sentences, paragraphs, articles) in L languages,
`emb` float [L, N, D], where unit i of every language is a translation of unit i of every other
(fully parallel; `hybrid_jax.data.udhr` gives such data). Similarities are cosines, computed in
float64 from the L2-normalised rows. Ties follow `retrieval_metrics` (pessimistic: a translation
tied with a non-translation is ranked after it). The definitions, with their sources:

* **Bitext P@1** (X->Y, every ordered pair, X != Y): the share of units i of X whose nearest unit
  of Y by cosine is its translation y_i (Artetxe & Schwenk 2019's "nearest neighbour" retrieval);
  a tie with another unit counts as a miss.
* **xsim error rate** (X->Y): LASER's multilingual similarity search error with the ratio margin,
  k = 4 (Artetxe & Schwenk 2019, "Margin-based parallel corpus mining with multilingual sentence
  embeddings", ACL, Eq. 2; `facebookresearch/LASER` source/xsim.py, checked line by line): with
  NN_k(x, Y) the k nearest units of Y to x by cosine and avg_k(x, Y) their mean cosine,

      margin(x, y) = cos(x, y) / ((avg_k(x, Y) + avg_k(y, X)) / 2),

  x_i's prediction is the y in NN_k(x_i, Y) with the largest margin (LASER scores only those k
  candidates), and the error rate is the share of i whose prediction is not y_i. Ties in the
  k-NN list go to the lower index (`np.argsort` stable), and the first largest margin wins, as
  LASER's `argmax` over the list.
* **Multilingual pool** (`pool_metrics`): every unit of every language is a query against the
  other L*N - 1 units (itself excluded); its L - 1 translations are relevant. Per query: AP, the
  pessimistic rank of every translation, Recall@k = #{translations ranked <= k} / (L - 1),
  max-min rank over its translations (the language-bias figure of Huang et al. 2023 used by
  Elmahdy et al. 2024), and the own-language share of its top k against the uniform share
  (N - 1) / (L*N - 1) (LAReQA's, Roy et al. 2020). AP, ranks and shares are
  `retrieval_metrics.average_precision` / `ranks_of_relevant` / `own_share_at_k`. LAReQA's rank
  gap needs a relevant candidate in the query's own language; here that would be the query
  itself, so it is not defined and not reported.
* **Alignment gap** (`alignment_gap`): mean cosine of translation pairs (x_i, y_i), X != Y, minus
  the mean cosine of non-translations (x_i, y_j), i != j, over every pair of languages including
  X = Y; 0 when translations are no closer than unrelated text, larger = better aligned. Per
  language X: the same over pairs with one side in X; per pair (X, Y): over x in X, y in Y.
  (Defined by hybrid-jax issue 25; the "alignment" of Wang & Isola 2020 is its first term.)
* **Language-identification probe** (`language_id_probe`): the accuracy of a multinomial logistic
  regression (scikit-learn, standardised features, C = 1) that predicts a unit's language from its
  embedding, cross-validated over folds of *units* (every translation of a unit is in the same
  fold, so the probe never sees the test content in another language), folds drawn from `seed`.
  Chance is 1/L; lower = more language-agnostic (Libovický et al. 2020 use such probes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hybrid_jax import retrieval_metrics

XSIM_K = 4
POOL_RECALL_KS = (10, 100)
POOL_TOP_K = 10
PROBE_FOLDS = 5
PROBE_C = 1.0
PROBE_MAX_ITER = 2000


def normalize(emb) -> np.ndarray:
  """float64 [L, N, D] with unit-norm rows.

  Raises:
    ValueError: not [L, N, D] with L >= 2 and N >= 2, a non-finite value, or a zero row.
  """
  emb = np.asarray(emb, np.float64)
  if emb.ndim != 3 or emb.shape[0] < 2 or emb.shape[1] < 2:
    raise ValueError(f"embeddings must be [languages >= 2, units >= 2, dim], got {emb.shape}")
  if not np.all(np.isfinite(emb)):
    raise ValueError("embeddings must be finite")
  norms = np.linalg.norm(emb, axis=-1, keepdims=True)
  if np.any(norms == 0):
    lang, unit = np.argwhere(norms[..., 0] == 0)[0]
    raise ValueError(f"embedding of language {lang} unit {unit} is all zeros")
  return emb / norms


def _blocks(emb: np.ndarray, x: int) -> np.ndarray:
  """float64 [L, N, N]: cos(x_i, y_j) for every target language y (emb normalised)."""
  return np.einsum("id,ljd->lij", emb[x], emb)


def bitext_metrics(emb, k: int = XSIM_K) -> dict[str, np.ndarray]:
  """Bitext retrieval X->Y for every ordered pair of languages (module docstring).

  Args:
    emb: float [L, N, D], fully parallel; N >= k.
    k: neighbours of the xsim ratio margin (LASER's default 4).

  Returns:
    {"p_at_1": float64 [L, L], "xsim_error": float64 [L, L]} (rates in [0, 1]; NaN on the
    diagonal).
  """
  emb = normalize(emb)
  num_langs, num_units, _ = emb.shape
  if not 1 <= k <= num_units:
    raise ValueError(f"xsim: k={k} must be in [1, units={num_units}]")
  p_at_1 = np.full((num_langs, num_langs), np.nan)
  xsim = np.full((num_langs, num_langs), np.nan)
  diagonal = np.eye(num_units, dtype=bool)
  units = np.arange(num_units)
  for x in range(num_langs):
    cos = _blocks(emb, x)  # [L(y), N(x_i), N(y_j)]
    gold = cos[:, units, units]
    best_other = np.max(np.where(diagonal, -np.inf, cos), axis=2)
    hit = gold > best_other
    # xsim: the k nearest y of each x_i (stable: lower index first on ties), and the mean cosine
    # of the k nearest of each side.
    neighbours = np.argsort(-cos, axis=2, kind="stable")[:, :, :k]  # [L, N, k]
    cos_neighbours = np.take_along_axis(cos, neighbours, axis=2)
    avg_xy = cos_neighbours.mean(axis=2)  # [L, N]: over the k NN of x_i in Y
    avg_yx = -np.sort(-cos, axis=1)[:, :k, :].mean(axis=1)  # [L, N]: k NN of y_j in X
    avg_y_of_neighbour = np.take_along_axis(avg_yx[:, None, :].repeat(num_units, 1), neighbours,
                                            axis=2)
    margin = cos_neighbours / ((avg_xy[:, :, None] + avg_y_of_neighbour) / 2)
    predicted = np.take_along_axis(neighbours,
                                   np.argmax(margin, axis=2)[:, :, None], axis=2)[..., 0]
    error = predicted != units
    for y in range(num_langs):
      if y != x:
        p_at_1[x, y] = hit[y].mean()
        xsim[x, y] = error[y].mean()
  return {"p_at_1": p_at_1, "xsim_error": xsim}


def pool_metrics(emb, *, recall_ks: Sequence[int] = POOL_RECALL_KS,
                 top_k: int = POOL_TOP_K) -> dict[str, np.ndarray]:
  """The multilingual pool of all L*N units, each query's translations relevant, itself excluded
  (module docstring).

  Args:
    emb: float [L, N, D], fully parallel.
    recall_ks: cut-offs of Recall@k (each <= L*N - 1).
    top_k: cut-off of the own-language share.

  Returns:
    Per query, float64 [L, N]: "ap", "rank_range" (max - min rank of the L - 1 translations),
    "own_share" (own-language share of the top `top_k`), "recall@k" for k in recall_ks; and
    "uniform_share" (float): (N - 1) / (L*N - 1).
  """
  emb = normalize(emb)
  num_langs, num_units, dim = emb.shape
  flat = emb.reshape(num_langs * num_units, dim)
  cand_lang = np.repeat(np.arange(num_langs), num_units)
  cand_unit = np.tile(np.arange(num_units), num_langs)
  out = {
      key: np.zeros((num_langs, num_units))
      for key in ("ap", "rank_range", "own_share", *(f"recall@{k}" for k in recall_ks))
  }
  for x in range(num_langs):
    keep = np.ones((num_units, num_langs * num_units), bool)
    keep[np.arange(num_units), x * num_units + np.arange(num_units)] = False  # the query itself
    scores = (emb[x] @ flat.T)[keep].reshape(num_units, -1)
    other_unit = np.broadcast_to(cand_unit, keep.shape)[keep].reshape(num_units, -1)
    other_lang = np.broadcast_to(cand_lang, keep.shape)[keep].reshape(num_units, -1)
    relevant = other_unit == np.arange(num_units)[:, None]
    out["ap"][x] = retrieval_metrics.average_precision(scores, relevant)
    ranks = retrieval_metrics.ranks_of_relevant(scores, relevant).astype(np.float64)
    out["rank_range"][x] = (
        np.max(np.where(relevant, ranks, -np.inf), axis=1)
        - np.min(np.where(relevant, ranks, np.inf), axis=1))
    out["own_share"][x] = retrieval_metrics.own_share_at_k(scores, other_lang == x, top_k)
    for k in recall_ks:
      out[f"recall@{k}"][x] = np.sum(relevant & (ranks <= k), axis=1) / (num_langs - 1)
  out["uniform_share"] = (num_units - 1) / (num_langs * num_units - 1)
  return out


def alignment_gap(emb) -> dict[str, np.ndarray | float]:
  """Mean cosine of translations minus that of non-translations (module docstring).

  Returns:
    {"translation_cosine": float (X != Y), "other_cosine": float (i != j, all language pairs),
    "gap": float, "gap_language": float64 [L], "gap_pairs": float64 [L, L] (NaN on the
    diagonal)}.
  """
  emb = normalize(emb)
  num_langs, num_units, _ = emb.shape
  sums = np.einsum("xd,yd->xy", emb.sum(axis=1), emb.sum(axis=1))  # sum_ij cos(x_i, y_j)
  diag = np.einsum("xid,yid->xy", emb, emb)  # sum_i cos(x_i, y_i)
  off = sums - diag  # sum over i != j
  pairs_other = num_units * (num_units - 1)
  cross = ~np.eye(num_langs, dtype=bool)
  gap_pairs = np.where(cross, diag / num_units - off / pairs_other, np.nan)
  # Per language x: translations (x, y != x) both ways, non-translations (x, any y) both ways.
  trans_x = (diag * cross).sum(axis=1) + (diag * cross).sum(axis=0)
  other_x = off.sum(axis=1) + off.sum(axis=0) - np.diag(off)
  gap_language = (
      trans_x / (2 * (num_langs - 1) * num_units) - other_x / ((2 * num_langs - 1) * pairs_other))
  translation = diag[cross].sum() / (num_langs * (num_langs - 1) * num_units)
  other = off.sum() / (num_langs * num_langs * pairs_other)
  return {
      "translation_cosine": float(translation), "other_cosine": float(other),
      "gap": float(translation - other), "gap_language": gap_language, "gap_pairs": gap_pairs
  }


def probe_folds(num_units: int, folds: int, seed: int) -> np.ndarray:
  """int64 [N]: the fold of every unit, a seeded permutation dealt round-robin (sizes differ by at
  most 1).

  Raises:
    ValueError: folds < 2 or more folds than units.
  """
  if not 2 <= folds <= num_units:
    raise ValueError(f"language-ID probe: folds={folds} must be in [2, units={num_units}]")
  fold = np.empty(num_units, np.int64)
  fold[np.random.default_rng(seed).permutation(num_units)] = np.arange(num_units) % folds
  return fold


def language_id_probe(emb, *, folds: int = PROBE_FOLDS, seed: int = 0, c: float = PROBE_C,
                      max_iter: int = PROBE_MAX_ITER) -> dict[str, np.ndarray | float]:
  """Cross-validated accuracy of a linear language classifier on the embeddings (module
  docstring).

  Args:
    emb: float [L, N, D], fully parallel (rows are L2-normalised first).
    folds: folds of units (`probe_folds`).
    seed: draws the folds.
    c: inverse L2 regularisation of the logistic regression (scikit-learn's C).
    max_iter: lbfgs iterations.

  Returns:
    {"accuracy": float, "accuracy_language": float64 [L] (the share of X's units predicted X),
    "chance": 1/L, "predicted": int64 [L, N]}.
  """
  from sklearn.linear_model import LogisticRegression
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler

  emb = normalize(emb)
  num_langs, num_units, dim = emb.shape
  features = emb.reshape(num_langs * num_units, dim)
  labels = np.repeat(np.arange(num_langs), num_units)
  fold = np.tile(probe_folds(num_units, folds, seed), num_langs)
  predicted = np.empty(len(labels), np.int64)
  for f in range(folds):
    test = fold == f
    model = make_pipeline(StandardScaler(),
                          LogisticRegression(C=c, max_iter=max_iter, random_state=seed))
    model.fit(features[~test], labels[~test])
    predicted[test] = model.predict(features[test])
  correct = (predicted == labels).reshape(num_langs, num_units)
  return {
      "accuracy": float(correct.mean()), "accuracy_language": correct.mean(axis=1),
      "chance": 1.0 / num_langs, "predicted": predicted.reshape(num_langs, num_units)
  }


def per_language(bitext: Mapping, pool: Mapping, gap: Mapping, probe: Mapping) -> dict:
  """The per-language value of every metric, float64 [L] each: p_at_1, xsim_error, pool_map,
  pool_recall@k, rank_range, own_share, alignment_gap, probe_accuracy.

  Bitext: the mean over the other languages Y of the two directions X->Y and Y->X. Pool: the mean
  over the queries of X. Gap: `alignment_gap`'s "gap_language". Probe: the share of X's units
  predicted X.
  """

  def both_directions(matrix):
    matrix = np.asarray(matrix, np.float64)
    return (np.nansum(matrix, axis=1) + np.nansum(matrix, axis=0)) / (2 * (len(matrix) - 1))

  out = {
      "p_at_1": both_directions(bitext["p_at_1"]),
      "xsim_error": both_directions(bitext["xsim_error"]),
      "pool_map": pool["ap"].mean(axis=1),
      "rank_range": pool["rank_range"].mean(axis=1),
      "own_share": pool["own_share"].mean(axis=1),
      "alignment_gap": np.asarray(gap["gap_language"], np.float64),
      "probe_accuracy": np.asarray(probe["accuracy_language"], np.float64),
  }
  for key in pool:
    if key.startswith("recall@"):
      out[f"pool_{key}"] = pool[key].mean(axis=1)
  return out
