"""Retrieval metrics in numpy: average precision, the LAReQA settings, language bias, BEIR.

Every function takes a score matrix (higher = more similar) or an embedding table plus a scorer,
and is exact: no sampling, ties resolved by a stated rule. The rules, copied into docs/evaluation.md:

* **Pessimistic ties (AP, ranks).** Candidates are ranked by decreasing score; a relevant
  candidate tied with irrelevant ones is ranked *after* all of them. With the relevant candidates
  of a query sorted by decreasing score, s_1 >= ... >= s_R, and
  m_k = #{irrelevant c : score(c) >= s_k},

      AP = (1/R) * sum_{k=1..R} k / (k + m_k),

  which is the usual AP (mean of precision@rank over the relevant candidates) on the ranking that
  puts every relevant candidate below the irrelevant ones it ties with. The order among tied
  relevant candidates does not change AP. A query without a relevant candidate has no AP: it is
  an error (ValueError naming the row), as is a non-finite score. mAP = mean of AP over queries.
* **Rank of a relevant candidate** (`ranks_of_relevant`):
  rank(c) = 1 + #{c' : score(c') > score(c)} + #{irrelevant c' : score(c') = score(c)},
  1-based; relevant candidates tied with each other share the best rank of their tie block, so
  that swapping two identical relevant candidates changes nothing.
* **Top-k ties** (`own_share_at_k`): a tie block straddling the k-th place contributes in
  proportion to the places left (the expectation under a uniformly random tie-break).
* **BEIR** (`beir_metrics`): trec_eval's rules, including its tie-break by doc id (see
  `beir_per_query`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import math

import numpy as np

ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _check_scores(scores: np.ndarray, relevant: np.ndarray) -> None:
  if scores.ndim != 2 or relevant.shape != scores.shape:
    raise ValueError(f"scores {scores.shape} and relevant {relevant.shape} must both be "
                     "[num_queries, num_candidates]")
  if relevant.dtype != bool:
    raise ValueError(f"relevant must be bool, got {relevant.dtype}")


def _row_searchsorted(sorted_rows: np.ndarray, values: np.ndarray, side: str) -> np.ndarray:
  """np.searchsorted of values[q] in sorted_rows[q] for every row q, by a vectorised binary search.

  Args:
    sorted_rows: [Q, C], each row ascending. values: [Q, R].
    side: "left" (count of entries < value) or "right" (count of entries <= value).
  """
  num_cols = sorted_rows.shape[1]
  lo = np.zeros(values.shape, np.int64)
  hi = np.full(values.shape, num_cols, np.int64)
  go_right_when = np.less if side == "left" else np.less_equal
  while np.any(lo < hi):
    mid = (lo + hi) // 2
    at_mid = np.take_along_axis(sorted_rows, np.minimum(mid, num_cols - 1), axis=1)
    go_right = (lo < hi) & go_right_when(at_mid, values)
    hi = np.where((lo < hi) & ~go_right, mid, hi)
    lo = np.where(go_right, mid + 1, lo)
  return lo


def _relevant_table(scores: np.ndarray, relevant: np.ndarray, first_row: int = 0):
  """The relevant candidates of each query row, padded to the largest count.

  Args:
    scores: float [Q, C], finite. relevant: bool [Q, C].
    first_row: row offset of this chunk, for error messages.

  Returns:
    cols int64 [Q, R] (candidate column), values [Q, R] (its score), m int64 [Q, R]
    (#{irrelevant c : score(c) >= value}), valid bool [Q, R] (False on padding).
  """
  if not np.all(np.isfinite(scores)):
    bad = first_row + int(np.flatnonzero(~np.all(np.isfinite(scores), axis=1))[0])
    raise ValueError(f"scores must be finite; query row {bad} has nan or inf")
  rows, cols = np.nonzero(relevant)
  counts = np.bincount(rows, minlength=len(scores))
  slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
  shape = (len(scores), int(counts.max(initial=0)))
  valid = np.zeros(shape, bool)
  valid[rows, slot] = True
  col_table = np.zeros(shape, np.int64)
  col_table[rows, slot] = cols
  values = np.full(shape, np.inf, scores.dtype)
  values[rows, slot] = scores[rows, cols]
  # Relevant entries become -inf (below every finite score), so they are never counted in m.
  irrelevant_sorted = np.sort(np.where(relevant, -np.inf, scores), axis=1)
  m = scores.shape[1] - _row_searchsorted(irrelevant_sorted, values, "left")
  return col_table, values, m, valid


def _ap_from_table(m: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """AP = (1/R) sum_k k / (k + m_k): m in decreasing-score order is m sorted ascending."""
  m_sorted = np.sort(np.where(valid, m, np.iinfo(np.int64).max // 2), axis=1)
  k = np.arange(1, m.shape[1] + 1, dtype=np.float64)
  num_relevant = valid.sum(axis=1)
  return np.sum(np.where(k <= num_relevant[:, None], k /
                         (k + m_sorted), 0.0), axis=1) / num_relevant


def _ranks_from_table(values: np.ndarray, m: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """rank = 1 + m + #{relevant with a strictly higher score}; int64 [Q, R] (0 on padding)."""
  relevant_sorted = np.sort(np.where(valid, values, -np.inf), axis=1)
  relevant_above = values.shape[1] - _row_searchsorted(relevant_sorted, values, "right")
  return np.where(valid, 1 + m + relevant_above, 0)


def _chunks(scores: np.ndarray, relevant: np.ndarray, chunk_size: int):
  """Yields (start, stop, relevant table of rows start:stop) over query chunks."""
  _check_scores(scores, relevant)
  for start in range(0, scores.shape[0], chunk_size):
    stop = min(start + chunk_size, scores.shape[0])
    yield start, stop, _relevant_table(
        np.asarray(scores[start:stop]), np.asarray(relevant[start:stop]), start)


def average_precision(scores: np.ndarray, relevant: np.ndarray, *,
                      chunk_size: int = 512) -> np.ndarray:
  """Average precision of every query, with pessimistic ties (module docstring).

  Args:
    scores: float [num_queries, num_candidates], finite; higher ranks first.
    relevant: bool [num_queries, num_candidates].
    chunk_size: query rows sorted at a time (bounds the working copies).

  Returns:
    float64 [num_queries]; mAP is its mean.

  Raises:
    ValueError: a query has no relevant candidate (its AP is undefined), or a score is not finite.
  """
  _check_scores(scores, relevant)
  empty = np.flatnonzero(~np.any(relevant, axis=1))
  if len(empty):
    raise ValueError(f"average_precision: {len(empty)} query row(s) have no relevant candidate, "
                     f"first row {empty[0]}")
  ap = np.empty(scores.shape[0], np.float64)
  for start, stop, (_, _, m, valid) in _chunks(scores, relevant, chunk_size):
    ap[start:stop] = _ap_from_table(m, valid)
  return ap


def ranks_of_relevant(scores: np.ndarray, relevant: np.ndarray, *,
                      chunk_size: int = 512) -> np.ndarray:
  """1-based pessimistic rank of every relevant candidate (module docstring).

  Args:
    scores: float [num_queries, num_candidates], finite.
    relevant: bool [num_queries, num_candidates].
    chunk_size: query rows sorted at a time.

  Returns:
    int64 [num_queries, num_candidates]: the rank at relevant entries, 0 elsewhere.
  """
  ranks = np.zeros(scores.shape, np.int64)
  for start, stop, (cols, values, m, valid) in _chunks(scores, relevant, chunk_size):
    rows = np.broadcast_to(np.arange(start, stop)[:, None], cols.shape)
    ranks[rows[valid], cols[valid]] = _ranks_from_table(values, m, valid)[valid]
  return ranks


def own_share_at_k(scores: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
  """Share of `own` candidates among the top k of each query (ties: expected share).

  Args:
    scores: float [num_queries, num_candidates].
    own: bool [num_candidates] or [num_queries, num_candidates], e.g. "candidate is in the
      query's language".
    k: cut-off, 1 <= k <= num_candidates.

  Returns:
    float64 [num_queries]: (#own above the k-th score + #own tied with it * places left / tied) / k.
  """
  num_candidates = scores.shape[1]
  if not 1 <= k <= num_candidates:
    raise ValueError(f"own_share_at_k: k={k} must be in [1, num_candidates={num_candidates}]")
  kth = np.partition(scores, num_candidates - k, axis=1)[:, num_candidates - k, None]
  above, tied = scores > kth, scores == kth
  places_left = k - above.sum(axis=1)
  own_above = np.sum(above & own, axis=1)
  own_tied = np.sum(tied & own, axis=1)
  return (own_above + own_tied * places_left / tied.sum(axis=1)) / k


def dot_scores(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
  """The default scorer: [Q, D] x [C, D] -> [Q, C] dot products."""
  return np.asarray(queries) @ np.asarray(candidates).T


def lareqa_metrics(query_emb, query_mask: np.ndarray, cand_emb, cand_lang: np.ndarray,
                   positives: np.ndarray, languages: Sequence[str], *,
                   score_fn: ScoreFn | None = None, chunk_size: int = 1024, top_k: int = 10,
                   recall_ks: Sequence[int] = (1, 10)) -> dict:
  """LAReQA mAP in every setting, and the language bias of the multilingual pool.

  Scores each query language once against all candidates (in chunks of `chunk_size` queries),
  then reads every setting off those scores:

  * X->Y (L x L): queries = examples with a query in X and a positive in Y; pool = candidates of
    language Y; relevant = positives[i, Y]. Diagonal = monolingual, off-diagonal = cross-lingual.
    "map_mono" = mean of the diagonal, "map_cross" = mean of the off-diagonal entries.
  * Multilingual pool, per query language X: queries = examples with a query in X; pool = every
    candidate; relevant = every available positives[i, :]. "map_multi_mean" = mean over X.
  * Language bias in the multilingual pool, for query i in language X, with r(c) the pessimistic
    rank of relevant candidate c and O_i its relevant candidates in other languages:

        rank_gap_i = mean_{c in O_i} r(c) - r(positives[i, X])      (queries with O_i non-empty)
        own_share_i = |top_k(i) ∩ candidates of X| / k               (top-k ties: expected share)

    0 rank gap = language-agnostic, > 0 = the query's own language is preferred. The uniform
    share is 1/L; "own_share_excess" = own_share - 1/L. Per-language values are means over the
    queries of X; "*_mean" are macro averages over query languages.
  * The paper's language bias (Huang et al. 2023, as used by Elmahdy et al. 2024, arXiv
    2408.10536, Tables 2, 7, 8): rank_range_i = max_c r(c) - min_c r(c) over the relevant
    candidates c of query i (its parallel passages, one per language; queries with at least two),
    0 = every language's passage at the same rank.
  * Recall@k in the pool, k in `recall_ks`: recall@k_i = #{relevant c : r(c) <= k} / #relevant
    (pessimistic ranks, so a relevant candidate tied with irrelevant ones at the k-th place is
    not counted).

  Args:
    query_emb: [N, L, D] array, or a sequence of L row-indexable [N, ...] embeddings (any type
      `score_fn` accepts, e.g. sparse TF-IDF rows); rows where query_mask is False are ignored.
    query_mask: bool [N, L], example i has a query in language j.
    cand_emb: [C, D] embeddings (or any object `score_fn` accepts).
    cand_lang: int [C], index into `languages`.
    positives: int [N, L], candidate row of the answer of example i in language j; -1 = none.
    languages: the L language codes.
    score_fn: (queries [Q, ...], cand_emb) -> float [Q, C]; default `dot_scores`.
    chunk_size: queries scored at a time.
    top_k: cut-off of the own-language share.
    recall_ks: cut-offs of recall@k in the pool.

  Returns:
    dict with "languages" (tuple), "map_xy" float64 [L, L] (NaN where no query),
    "num_queries_xy" int64 [L, L], "map_mono", "map_cross", "map_multi" float64 [L],
    "map_multi_mean", "rank_gap" [L], "rank_gap_mean", "own_share" [L], "own_share_mean",
    "own_share_excess" [L], "own_share_excess_mean", "uniform_share", "top_k", "rank_range"
    [L], "rank_range_mean", and for k in recall_ks "recall@k" [L], "recall@k_mean".
  """
  score_fn = dot_scores if score_fn is None else score_fn
  languages = tuple(languages)
  num_langs = len(languages)
  query_mask = np.asarray(query_mask, bool)
  positives = np.asarray(positives, np.int64)
  cand_lang = np.asarray(cand_lang)
  _check_lareqa_inputs(query_mask, positives, cand_emb, cand_lang, num_langs)
  lang_cols, pos_in_pool = _language_pools(cand_lang, num_langs)
  # Per-query values: ap_xy[x][y] and parts[name][x] list one array per scored chunk.
  ap_xy = [[[] for _ in range(num_langs)] for _ in range(num_langs)]
  parts = {
      key: [[] for _ in range(num_langs)]
      for key in ("map_multi", "rank_gap", "own_share", "rank_range",
                  *(f"recall@{k}" for k in recall_ks))
  }
  for x in range(num_langs):
    q_lang = query_emb[:, x] if isinstance(query_emb, np.ndarray) else query_emb[x]
    rows_x = np.flatnonzero(query_mask[:, x])
    for start in range(0, len(rows_x), chunk_size):
      rows = rows_x[start:start + chunk_size]
      scores = np.asarray(score_fn(q_lang[rows], cand_emb))
      if scores.shape != (len(rows), len(cand_lang)):
        raise ValueError(f"score_fn returned {scores.shape}, expected "
                         f"{(len(rows), len(cand_lang))}")
      pos = positives[rows]
      for y, ap in enumerate(_language_pool_ap(scores, pos, lang_cols, pos_in_pool)):
        ap_xy[x][y].append(ap)
      for key, values in _multilingual_pool_values(scores, pos, cand_lang, x, top_k,
                                                   recall_ks).items():
        parts[key][x].append(values)
  return _summarize(languages, ap_xy, parts, top_k, recall_ks)


def _check_lareqa_inputs(query_mask: np.ndarray, positives: np.ndarray, cand_emb,
                         cand_lang: np.ndarray, num_langs: int) -> None:
  """Raises ValueError on inconsistent shapes or positives of `lareqa_metrics`."""
  num_examples = query_mask.shape[0]
  if query_mask.shape != (num_examples, num_langs) or positives.shape != query_mask.shape:
    raise ValueError(f"query_mask {query_mask.shape} and positives {positives.shape} must both "
                     f"be [num_examples, num_languages={num_langs}]")
  num_cands = len(cand_lang)
  if len(cand_emb) != num_cands:
    raise ValueError(f"cand_emb has {len(cand_emb)} rows but cand_lang has {num_cands}")
  if np.any(positives >= num_cands) or np.any(positives < -1):
    raise ValueError(f"positives must be -1 or a candidate row < {num_cands}")
  has_pos = positives >= 0
  pos_lang = cand_lang[np.where(has_pos, positives, 0)]
  if np.any(has_pos & (pos_lang != np.arange(num_langs))):
    raise ValueError("a positive candidate is not in its column's language")
  if np.any(query_mask & ~has_pos):
    raise ValueError("query_mask marks a query whose own-language positive is -1")


def _language_pools(cand_lang: np.ndarray, num_langs: int) -> tuple[list[np.ndarray], np.ndarray]:
  """(candidate rows of every language's pool, position of every candidate in its pool [C])."""
  lang_cols = [np.flatnonzero(cand_lang == y) for y in range(num_langs)]
  pos_in_pool = np.empty(len(cand_lang), np.int64)
  for cols in lang_cols:
    pos_in_pool[cols] = np.arange(len(cols))
  return lang_cols, pos_in_pool


def _language_pool_ap(scores: np.ndarray, pos: np.ndarray, lang_cols: list[np.ndarray],
                      pos_in_pool: np.ndarray) -> list[np.ndarray]:
  """X->Y: for every pool language Y, the AP of the chunk's queries with a positive in Y, their
  pool being the candidates of Y. scores [Q, C], pos [Q, L] (candidate rows, -1 = none)."""
  out = []
  for y, cols in enumerate(lang_cols):
    keep = np.flatnonzero(pos[:, y] >= 0)
    pool = scores[np.ix_(keep, cols)]
    relevant = np.zeros(pool.shape, bool)
    relevant[np.arange(len(pool)), pos_in_pool[pos[keep, y]]] = True
    out.append(average_precision(pool, relevant))
  return out


def _multilingual_pool_values(scores: np.ndarray, pos: np.ndarray, cand_lang: np.ndarray, x: int,
                              top_k: int, recall_ks: Sequence[int]) -> dict[str, np.ndarray]:
  """Per-query values in the pool of every candidate, for a chunk of queries in language x:
  AP ("map_multi"), "rank_gap" (queries with other-language positives), "own_share" (top_k),
  "rank_range" (queries with 2+ positives), "recall@k"; formulas in `lareqa_metrics`."""
  relevant = np.zeros(scores.shape, bool)
  r_idx, l_idx = np.nonzero(pos >= 0)
  relevant[r_idx, pos[r_idx, l_idx]] = True
  _check_scores(scores, relevant)
  cols, values, m, valid = _relevant_table(scores, relevant)
  ranks = _ranks_from_table(values, m, valid).astype(np.float64)
  own = valid & (cand_lang[cols] == x)  # exactly one per query: its own-language positive
  others = valid & ~own
  has_others = others.any(axis=1)
  several = valid.sum(axis=1) >= 2
  out = {
      "map_multi":
          _ap_from_table(m, valid),
      "rank_gap": (np.sum(ranks * others, axis=1)[has_others] / others.sum(axis=1)[has_others]
                   - np.sum(ranks * own, axis=1)[has_others]),
      "own_share":
          own_share_at_k(scores, cand_lang == x, top_k),
      "rank_range": (np.max(np.where(valid, ranks, -np.inf), axis=1)
                     - np.min(np.where(valid, ranks, np.inf), axis=1))[several],
  }
  for k in recall_ks:
    out[f"recall@{k}"] = np.sum(valid & (ranks <= k), axis=1) / valid.sum(axis=1)
  return out


def _mean_of(parts: list[np.ndarray]) -> tuple[float, int]:
  """(mean, count) of the concatenated per-query values; NaN when there are none."""
  values = np.concatenate(parts) if parts else np.zeros(0)
  return (float(np.mean(values)) if len(values) else math.nan), len(values)


def _summarize(languages: tuple[str, ...], ap_xy, parts: Mapping[str, list], top_k: int,
               recall_ks: Sequence[int]) -> dict:
  """The `lareqa_metrics` dict from the per-query values of every query language."""
  num_langs = len(languages)
  map_xy = np.full((num_langs, num_langs), np.nan)
  num_queries_xy = np.zeros((num_langs, num_langs), np.int64)
  for x in range(num_langs):
    for y in range(num_langs):
      map_xy[x, y], num_queries_xy[x, y] = _mean_of(ap_xy[x][y])
  per_language = {key: np.array([_mean_of(p)[0] for p in per_x]) for key, per_x in parts.items()}
  map_multi, rank_gap = per_language["map_multi"], per_language["rank_gap"]
  own_share, rank_range = per_language["own_share"], per_language["rank_range"]
  recall = {k: per_language[f"recall@{k}"] for k in recall_ks}
  off_diagonal = ~np.eye(num_langs, dtype=bool)
  uniform_share = 1.0 / num_langs
  return {
      "languages": languages,
      "map_xy": map_xy,
      "num_queries_xy": num_queries_xy,
      "map_mono": float(np.nanmean(np.diag(map_xy))),
      "map_cross": float(np.nanmean(map_xy[off_diagonal])) if num_langs > 1 else math.nan,
      "map_multi": map_multi,
      "map_multi_mean": float(np.nanmean(map_multi)),
      "rank_gap": rank_gap,
      "rank_gap_mean": float(np.nanmean(rank_gap)) if num_langs > 1 else math.nan,
      "own_share": own_share,
      "own_share_mean": float(np.nanmean(own_share)),
      "own_share_excess": own_share - uniform_share,
      "own_share_excess_mean": float(np.nanmean(own_share)) - uniform_share,
      "uniform_share": uniform_share,
      "top_k": top_k,
      "rank_range": rank_range,
      "rank_range_mean": float(np.nanmean(rank_range)) if num_langs > 1 else math.nan,
      **{f"recall@{k}": values for k, values in recall.items()},
      **{f"recall@{k}_mean": float(np.nanmean(values)) for k, values in recall.items()},
  }


def language_group_averages(metrics: Mapping, group: Sequence[str]) -> dict[str, float]:
  """Macro averages of `lareqa_metrics` output restricted to the languages in `group` (e.g. the
  zero-shot languages, evaluated but not trained on).

  Returns:
    {"map_mono": mean of X->X over X in group, "map_cross": mean of X->Y (X != Y) with X or Y in
    group, "map_multi_mean", "rank_gap_mean", "rank_range_mean", "recall@k_mean": means over
    query languages X in group}; NaN where nothing is defined.
  """
  languages = list(metrics["languages"])
  index = np.array([languages.index(x) for x in group], np.int64)
  in_group = np.isin(np.arange(len(languages)), index)
  off_diagonal = ~np.eye(len(languages), dtype=bool)
  involved = off_diagonal & (in_group[:, None] | in_group[None, :])

  def nanmean(values):
    values = np.asarray(values, np.float64)
    return float(np.nanmean(values)) if np.any(np.isfinite(values)) else math.nan

  out = {
      "map_mono": nanmean(np.diag(metrics["map_xy"])[index]),
      "map_cross": nanmean(metrics["map_xy"][involved])
  }
  for key in ["map_multi", "rank_gap", "rank_range"
             ] + [k for k in metrics if k.startswith("recall@") and not k.endswith("_mean")]:
    out[f"{key}_mean"] = nanmean(np.asarray(metrics[key])[index])
  return out


def macro_averages(per_language: Mapping[str, Mapping[str, float]],
                   group: Sequence[str]) -> dict[str, float]:
  """Macro averages over the languages of `group` of per-language figures (e.g. the BEIR metrics
  of single-language corpora such as MIRACL's, {language: {metric: value}}).

  Returns:
    {metric: mean over the languages of `group` that have a finite value (None and NaN are
    missing)} for every metric of those languages; NaN where none has one.
  """
  keys = sorted({k for x in group for k in per_language[x]})
  out = {}
  for key in keys:
    values = [per_language[x].get(key) for x in group]
    values = np.array([math.nan if v is None else v for v in values], np.float64)
    out[key] = float(np.nanmean(values)) if np.any(np.isfinite(values)) else math.nan
  return out


def scores_to_run(scores: np.ndarray, query_ids: Sequence[str], corpus_ids: Sequence[str],
                  top_k: int, *, ignore_identical_ids: bool = False) -> dict[str, dict[str, float]]:
  """A trec-style run {query id: {doc id: score}} holding each query's top_k candidates, plus
  every candidate tied with the top_k-th score, so that cut-offs <= top_k match the full run.

  Args:
    scores: float [Q, C].
    query_ids: Q ids (rows). corpus_ids: C ids (columns).
    top_k: how many candidates to keep per query (clipped to C).
    ignore_identical_ids: leave out the document whose id equals the query id before taking the
      top_k (BEIR's `EvaluateRetrieval` `ignore_identical_ids`; its retrievers fetch top_k + 1 so
      that top_k others remain).
  """
  num_queries, num_docs = scores.shape
  if len(query_ids) != num_queries or len(corpus_ids) != num_docs:
    raise ValueError(f"scores {scores.shape} vs {len(query_ids)} query ids and {len(corpus_ids)} "
                     "corpus ids")
  corpus_ids = np.asarray(corpus_ids, dtype=object)
  own = np.full(num_queries, -1)
  if ignore_identical_ids:
    column = {doc: c for c, doc in enumerate(corpus_ids.tolist())}
    own = np.array([column.get(qid, -1) for qid in query_ids], np.int64).reshape(num_queries)
    if np.any(own >= 0):
      scores = np.array(scores, copy=True)
      rows = np.flatnonzero(own >= 0)
      scores[rows, own[rows]] = -np.inf
  top_k = min(top_k, num_docs)  # an own document left in at top_k = C scores -inf: dropped below
  kth = np.partition(scores, num_docs - top_k, axis=1)[:, num_docs - top_k]
  run = {}
  for qid, row, threshold, own_column in zip(query_ids, scores, kth, own):
    cols = np.flatnonzero(row >= threshold)
    cols = cols[cols != own_column]
    run[qid] = dict(zip(corpus_ids[cols].tolist(), row[cols].astype(np.float64).tolist()))
  return run


def beir_per_query(
    run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]],
    k_values: Sequence[int] = (10, 100)
) -> dict[str, dict[str, float]]:
  """Per-query metrics with trec_eval semantics (`ndcg_cut`, `recall`, `P`, `map_cut`, and
  `recip_rank` on the run cut at k).

  As trec_eval (and pytrec_eval, which BEIR uses): a query's documents are ranked by decreasing
  score, ties by decreasing doc id (string order); a document is relevant when its qrels grade is
  >= 1, unjudged documents have grade 0; nDCG@k uses the grade as a linear gain (grades <= 0 gain
  nothing) over log2(rank + 1), normalised by the ideal ordering of all judged documents; queries
  are the ones present in both `run` and `qrels` (a query without any relevant document scores 0).

  Returns:
    {query id: {"ndcg@k", "recall@k", "precision@k", "map@k", "mrr@k" for k in k_values}}.
  """
  per_query = {}
  for qid, doc_scores in run.items():
    if qid not in qrels:
      continue
    grades = qrels[qid]
    ranking = sorted(doc_scores.items(), key=lambda item: (item[1], item[0]), reverse=True)
    ranked_grades = np.array([grades.get(doc, 0) for doc, _ in ranking], np.float64)
    is_relevant = ranked_grades >= 1
    num_relevant = sum(1 for g in grades.values() if g >= 1)
    ideal_gains = np.sort(np.array([g for g in grades.values() if g > 0], np.float64))[::-1]
    discounts = 1.0 / np.log2(np.arange(2, max(len(ranking), len(ideal_gains)) + 2))
    hits = np.cumsum(is_relevant)
    precision_at_rank = hits / np.arange(1, len(ranking) + 1)
    out = {}
    for k in k_values:
      dcg = np.sum(np.maximum(ranked_grades[:k], 0) * discounts[:min(k, len(ranking))])
      idcg = np.sum(ideal_gains[:k] * discounts[:min(k, len(ideal_gains))])
      hits_k = int(hits[min(k, len(ranking)) - 1]) if len(ranking) else 0
      first = np.flatnonzero(is_relevant[:k])
      out[f"ndcg@{k}"] = float(dcg / idcg) if idcg > 0 else 0.0
      out[f"recall@{k}"] = hits_k / num_relevant if num_relevant else 0.0
      out[f"precision@{k}"] = hits_k / k
      out[f"map@{k}"] = (
          float(np.sum(precision_at_rank[:k][is_relevant[:k]]))
          / num_relevant if num_relevant else 0.0)
      out[f"mrr@{k}"] = 1.0 / (first[0] + 1) if len(first) else 0.0
    per_query[qid] = out
  return per_query


def beir_metrics(run_or_scores, qrels: Mapping[str,
                                               Mapping[str,
                                                       int]], k_values: Sequence[int] = (10, 100),
                 *, query_ids: Sequence[str] | None = None, corpus_ids: Sequence[str] | None = None,
                 ignore_identical_ids: bool = True) -> dict[str, float]:
  """BEIR/MIRACL metrics averaged over queries (see `beir_per_query` for the semantics).

  Args:
    run_or_scores: a run {query id: {doc id: score}}, or float scores [Q, C] together with
      `query_ids` (Q) and `corpus_ids` (C).
    qrels: {query id: {doc id: grade}}; a judged document absent from the run (even from the
      corpus) counts as relevant and not retrieved, as in pytrec_eval.
    k_values: cut-offs.
    ignore_identical_ids: as BEIR's `EvaluateRetrieval.evaluate` (default True there too): a
      retrieved document whose id equals the query id is dropped before scoring (ArguAna, Quora,
      where queries are also corpus documents).

  Returns:
    {"ndcg@10": ..., "recall@100": ..., ...}: means over the evaluated queries, plus
    "num_queries".
  """
  if isinstance(run_or_scores, Mapping):
    run = run_or_scores
    if ignore_identical_ids:
      run = {
          qid: {doc: score for doc, score in docs.items() if doc != qid}
          for qid, docs in run.items()
      }
  else:
    if query_ids is None or corpus_ids is None:
      raise ValueError("beir_metrics: a score matrix needs query_ids and corpus_ids")
    run = scores_to_run(
        np.asarray(run_or_scores), query_ids, corpus_ids, max(k_values),
        ignore_identical_ids=ignore_identical_ids)
  per_query = beir_per_query(run, qrels, k_values)
  if not per_query:
    raise ValueError("beir_metrics: no query of the run has qrels")
  names = next(iter(per_query.values())).keys()
  out = {name: float(np.mean([m[name] for m in per_query.values()])) for name in names}
  out["num_queries"] = len(per_query)
  return out
