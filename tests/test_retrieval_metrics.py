"""Metrics against plain references: rank-by-rank float64 AP, sklearn, pytrec_eval."""

import numpy as np
import pytest
import pytrec_eval
from sklearn.metrics import average_precision_score

from hybrid_jax import retrieval_metrics as metrics


def brute_force_ap(scores_row, relevant_row):
  """Walks the pessimistic ranking (score desc, irrelevant before relevant on ties)."""
  order = sorted(
      range(len(scores_row)), key=lambda c: (-float(scores_row[c]), bool(relevant_row[c])))
  hits, precisions = 0, []
  for rank, c in enumerate(order, start=1):
    if relevant_row[c]:
      hits += 1
      precisions.append(hits / rank)
  return sum(precisions) / len(precisions)


def brute_force_rank(scores_row, relevant_row, c):
  return 1 + sum(1 for j in range(len(scores_row)) if scores_row[j] > scores_row[c] or
                 (scores_row[j] == scores_row[c] and not relevant_row[j]))


def random_case(rng, num_queries, num_cands, num_levels=None):
  """float32 scores (tied when num_levels is set) and >= 1 relevant per row."""
  if num_levels:
    scores = rng.integers(0, num_levels, (num_queries, num_cands)).astype(np.float32)
  else:
    scores = rng.standard_normal((num_queries, num_cands)).astype(np.float32)
  relevant = rng.random((num_queries, num_cands)) < 0.15
  relevant[np.arange(num_queries), rng.integers(0, num_cands, num_queries)] = True
  return scores, relevant


@pytest.mark.parametrize("num_levels", [None, 3, 1])
def test_average_precision_matches_brute_force(num_levels):
  rng = np.random.default_rng(0)
  scores, relevant = random_case(rng, 40, 30, num_levels)
  ap = metrics.average_precision(scores, relevant, chunk_size=7)
  want = [brute_force_ap(s, r) for s, r in zip(scores, relevant)]
  np.testing.assert_allclose(ap, want, rtol=1e-12)
  assert ap.dtype == np.float64


def test_average_precision_matches_sklearn_without_ties():
  rng = np.random.default_rng(1)
  scores, relevant = random_case(rng, 25, 50)
  assert all(len(np.unique(s)) == len(s) for s in scores)
  want = [average_precision_score(r, s) for s, r in zip(scores, relevant)]
  np.testing.assert_allclose(metrics.average_precision(scores, relevant), want, rtol=1e-12)


def test_tie_rule_is_pessimistic():
  # Three tied candidates, two relevant. Pessimistic order: irrelevant, relevant, relevant ->
  # precisions 1/2 and 2/3. Optimistic would be 1; sklearn's threshold-block rule gives 2/3.
  scores = np.array([[1.0, 1.0, 1.0, 0.0]], np.float32)
  relevant = np.array([[True, True, False, False]])
  ap = metrics.average_precision(scores, relevant)
  np.testing.assert_allclose(ap, [(1 / 2 + 2 / 3) / 2])
  assert not np.isclose(ap[0], average_precision_score(relevant[0], scores[0]))
  np.testing.assert_array_equal(metrics.ranks_of_relevant(scores, relevant), [[2, 2, 0, 0]])


@pytest.mark.parametrize("num_levels", [None, 4])
def test_ranks_of_relevant_matches_brute_force(num_levels):
  rng = np.random.default_rng(2)
  scores, relevant = random_case(rng, 20, 25, num_levels)
  ranks = metrics.ranks_of_relevant(scores, relevant, chunk_size=6)
  for q in range(len(scores)):
    for c in range(scores.shape[1]):
      want = brute_force_rank(scores[q], relevant[q], c) if relevant[q, c] else 0
      assert ranks[q, c] == want, (q, c)


def test_bad_input_is_rejected():
  scores = np.zeros((2, 3), np.float32)
  relevant = np.array([[True, False, False], [False, False, False]])
  with pytest.raises(ValueError, match="no relevant candidate, first row 1"):
    metrics.average_precision(scores, relevant)
  scores[0, 1] = np.nan
  with pytest.raises(ValueError, match="row 0 has nan or inf"):
    metrics.ranks_of_relevant(scores, relevant)
  with pytest.raises(ValueError, match="must both be"):
    metrics.average_precision(scores, relevant[:, :2])


def test_own_share_at_k_splits_boundary_ties():
  scores = np.array([[3, 2, 2, 2, 0], [5, 4, 3, 2, 1]], np.float32)
  own = np.array([[True, True, False, False, True], [False, True, True, False, True]])
  share = metrics.own_share_at_k(scores, own, k=2)
  # Row 0: one own above the tie; the tie {1, 2, 3} fills 1 place, own holds 1 of 3.
  np.testing.assert_allclose(share, [(1 + 1 / 3) / 2, 1 / 2])


# ----------------------------------------------------------------------------- LAReQA settings


def make_parallel(rng, num_examples, num_langs, num_distractors, dim, missing=0.2):
  """Random parallel data: one answer per (example, language) plus distractors."""
  available = rng.random((num_examples, num_langs)) > missing
  available[:, 0] = True
  cand_lang, positives = [], np.full((num_examples, num_langs), -1)
  for y in range(num_langs):
    for i in np.flatnonzero(available[:, y]):
      positives[i, y] = len(cand_lang)
      cand_lang.append(y)
    cand_lang += [y] * num_distractors
  cand_lang = np.array(cand_lang)
  perm = rng.permutation(len(cand_lang))  # candidates of all languages interleaved
  inverse = np.argsort(perm)
  cand_lang = cand_lang[perm]
  positives = np.where(positives >= 0, inverse[np.maximum(positives, 0)], -1)
  query_emb = rng.standard_normal((num_examples, num_langs, dim)).astype(np.float32)
  cand_emb = rng.standard_normal((len(cand_lang), dim)).astype(np.float32)
  return query_emb, available, cand_emb, cand_lang, positives


def test_lareqa_settings_match_brute_force():
  rng = np.random.default_rng(3)
  num_langs = 3
  query_emb, mask, cand_emb, cand_lang, positives = make_parallel(rng, 12, num_langs, 4, 5)
  # Quantised scores create ties in every setting.
  score_fn = lambda q, c: np.round(q @ c.T)  # noqa: E731
  out = metrics.lareqa_metrics(
      list(query_emb.transpose(1, 0, 2)), mask, cand_emb, cand_lang, positives, ("en", "de", "ar"),
      score_fn=score_fn, chunk_size=5, top_k=3)
  scores_all = np.round(np.einsum("nld,cd->nlc", query_emb, cand_emb))
  for x in range(num_langs):
    multi_ap, gaps, shares = [], [], []
    for y in range(num_langs):
      pool = np.flatnonzero(cand_lang == y)
      aps = [
          brute_force_ap(scores_all[i, x, pool], pool == positives[i, y]) for i in range(12)
          if mask[i, x] and positives[i, y] >= 0
      ]
      assert out["num_queries_xy"][x, y] == len(aps)
      np.testing.assert_allclose(out["map_xy"][x, y], np.mean(aps), rtol=1e-12)
    for i in np.flatnonzero(mask[:, x]):
      rel = np.isin(np.arange(len(cand_lang)), positives[i][positives[i] >= 0])
      multi_ap.append(brute_force_ap(scores_all[i, x], rel))
      rank = {
          y: brute_force_rank(scores_all[i, x], rel, positives[i, y]) for y in range(num_langs)
          if positives[i, y] >= 0
      }
      if len(rank) > 1:
        gaps.append(np.mean([r for y, r in rank.items() if y != x]) - rank[x])
      order = np.argsort(-scores_all[i, x], kind="stable")
      top = scores_all[i, x, order[2]]
      above = scores_all[i, x] > top
      tied = scores_all[i, x] == top
      own = cand_lang == x
      shares.append(((above & own).sum() + (tied & own).sum() * (3 - above.sum()) / tied.sum()) / 3)
    np.testing.assert_allclose(out["map_multi"][x], np.mean(multi_ap), rtol=1e-12)
    np.testing.assert_allclose(out["rank_gap"][x], np.mean(gaps), rtol=1e-12)
    np.testing.assert_allclose(out["own_share"][x], np.mean(shares), rtol=1e-12)
  diag = np.diag(out["map_xy"])
  np.testing.assert_allclose(out["map_mono"], diag.mean())
  np.testing.assert_allclose(out["map_cross"], (out["map_xy"].sum() - diag.sum()) / 6)
  np.testing.assert_allclose(out["own_share_excess"], out["own_share"] - 1 / 3)


def test_rank_range_and_pool_recall_match_brute_force():
  """The paper's bias (max - min rank of a query's parallel relevant passages) and recall@k in
  the multilingual pool, per query language, against a sort of every query's scores."""
  rng = np.random.default_rng(7)
  num_langs, num_examples = 3, 14
  query_emb, mask, cand_emb, cand_lang, positives = make_parallel(rng, num_examples, num_langs, 5,
                                                                  4)
  score_fn = lambda q, c: np.round(2 * q @ c.T)  # noqa: E731  (ties)
  out = metrics.lareqa_metrics(query_emb, mask, cand_emb, cand_lang, positives, ("en", "de", "ar"),
                               score_fn=score_fn, chunk_size=4, recall_ks=(1, 3, 10))
  scores_all = np.round(2 * np.einsum("nld,cd->nlc", query_emb, cand_emb))
  for x in range(num_langs):
    ranges, recall = [], {1: [], 3: [], 10: []}
    for i in np.flatnonzero(mask[:, x]):
      relevant_cols = positives[i][positives[i] >= 0]
      rel = np.isin(np.arange(len(cand_lang)), relevant_cols)
      ranks = [brute_force_rank(scores_all[i, x], rel, c) for c in relevant_cols]
      if len(ranks) >= 2:
        ranges.append(max(ranks) - min(ranks))
      for k in recall:
        recall[k].append(sum(r <= k for r in ranks) / len(ranks))
    np.testing.assert_allclose(out["rank_range"][x], np.mean(ranges), rtol=1e-12)
    for k in recall:
      np.testing.assert_allclose(out[f"recall@{k}"][x], np.mean(recall[k]), rtol=1e-12)
  np.testing.assert_allclose(out["rank_range_mean"], out["rank_range"].mean())
  np.testing.assert_allclose(out["recall@10_mean"], out["recall@10"].mean())
  assert np.all(out["recall@1"] <= out["recall@3"]) and np.all(out["recall@3"] <= out["recall@10"])

  group = metrics.language_group_averages(out, ["ar"])
  np.testing.assert_allclose(group["map_mono"], out["map_xy"][2, 2])
  np.testing.assert_allclose(
      group["map_cross"],
      np.mean([out["map_xy"][2, 0], out["map_xy"][2, 1], out["map_xy"][0, 2], out["map_xy"][1, 2]]))
  np.testing.assert_allclose(group["map_multi_mean"], out["map_multi"][2])
  np.testing.assert_allclose(group["rank_range_mean"], out["rank_range"][2])
  np.testing.assert_allclose(group["recall@3_mean"], out["recall@3"][2])


def test_array_and_list_forms_and_default_scorer_agree():
  rng = np.random.default_rng(4)
  query_emb, mask, cand_emb, cand_lang, positives = make_parallel(rng, 10, 2, 3, 4)
  langs = ("en", "de")
  a = metrics.lareqa_metrics(query_emb, mask, cand_emb, cand_lang, positives, langs)
  b = metrics.lareqa_metrics([query_emb[:, 0], query_emb[:, 1]], mask, cand_emb, cand_lang,
                             positives, langs, score_fn=lambda q, c: q @ c.T, chunk_size=3)
  for key in ("map_xy", "map_multi", "rank_gap", "own_share"):
    np.testing.assert_allclose(a[key], b[key], rtol=1e-6)


def parallel_world(num_examples, num_langs, language_weight, seed=5, exact=False):
  """Each example has one meaning vector; every language's query and answer are that vector
  plus `language_weight` times a per-language direction. `exact`: the meaning's coordinates are
  multiples of 1/8 in [-2, 2], so that every float32 dot product is exact whatever the BLAS's
  summation order, and equal vectors score exactly equal (true ties)."""
  rng = np.random.default_rng(seed)
  dim = 16 + num_langs
  meaning = rng.standard_normal((num_examples, 16))
  if exact:
    meaning = np.clip(np.round(meaning * 8), -16, 16) / 8
  meaning = np.concatenate([meaning, np.zeros((num_examples, num_langs))], axis=1)
  lang_dir = np.eye(dim)[16:]
  emb = meaning[:, None, :] + language_weight * lang_dir[None]  # [N, L, D]
  cand_emb = emb.transpose(1, 0, 2).reshape(-1, dim).astype(np.float32)
  cand_lang = np.repeat(np.arange(num_langs), num_examples)
  positives = np.arange(num_langs)[None] * num_examples + np.arange(num_examples)[:, None]
  mask = np.ones((num_examples, num_langs), bool)
  return emb.astype(np.float32), mask, cand_emb, cand_lang, positives


def test_language_agnostic_retriever_has_no_bias():
  num_langs = 4
  args = parallel_world(30, num_langs, language_weight=0.0, exact=True)
  for top_k in (1, 4, 10):
    out = metrics.lareqa_metrics(*args, ("en", "de", "ar", "zh"), top_k=top_k)
    np.testing.assert_allclose(out["rank_gap"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["own_share"], 1 / num_langs, atol=1e-12)
    np.testing.assert_allclose(out["own_share_excess_mean"], 0.0, atol=1e-12)


def test_own_language_preferring_retriever_has_positive_gap():
  num_langs = 3
  out = metrics.lareqa_metrics(*parallel_world(30, num_langs, language_weight=3.0),
                               ("en", "de", "ar"), top_k=10)
  # Own-language answer ranks first, the other relevant answers come after own-language
  # distractors: a large positive gap and an own-language top 10.
  assert np.all(out["rank_gap"] > 1)
  assert np.all(out["own_share"] > 1 / num_langs)
  np.testing.assert_allclose(out["map_mono"], 1.0)
  assert out["map_multi_mean"] < out["map_mono"]


def test_lareqa_rejects_inconsistent_input():
  args = list(parallel_world(4, 2, 0.0))
  args[4] = args[4][:, ::-1].copy()  # positives in the wrong language column
  with pytest.raises(ValueError, match="not in its column's language"):
    metrics.lareqa_metrics(*args, ("en", "de"))


# ----------------------------------------------------------------------------------- BEIR


def pytrec_per_query(run, qrels, k_values):
  cut = ",".join(map(str, k_values))
  measures = {f"ndcg_cut.{cut}", f"recall.{cut}", f"P.{cut}", f"map_cut.{cut}"}
  per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
  for k in k_values:  # MRR@k = trec_eval recip_rank on the run cut at k (trec_eval order).
    run_k = {
        q: dict(sorted(d.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:k])
        for q, d in run.items()
    }
    for q, m in pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run_k).items():
      per_query[q][f"mrr@{k}"] = m["recip_rank"]
  rename = {"ndcg_cut_": "ndcg@", "recall_": "recall@", "P_": "precision@", "map_cut_": "map@"}
  out = {}
  for q, m in per_query.items():
    out[q] = {}
    for name, value in m.items():
      for old, new in rename.items():
        if name.startswith(old) and name[len(old):].isdigit():
          name = new + name[len(old):]
      out[q][name] = value
  return out


def random_run(rng, num_queries, num_docs, num_levels=None):
  qids = [f"q{i}" for i in range(num_queries)]
  dids = [f"d{j:03d}" for j in rng.permutation(num_docs)]
  scores = (
      rng.integers(0, num_levels,
                   (num_queries,
                    num_docs)).astype(np.float32) if num_levels else rng.standard_normal(
                        (num_queries, num_docs)).astype(np.float32))
  qrels = {}
  for q in qids[:-1]:  # the last query has no qrels: not evaluated
    judged = rng.choice(num_docs, size=rng.integers(1, 8), replace=False)
    qrels[q] = {dids[j]: int(rng.integers(0, 3)) for j in judged}
  qrels["q_unknown"] = {"d000": 1}  # not in the run: not evaluated
  return scores, qids, dids, qrels


@pytest.mark.parametrize("num_levels", [None, 3])
def test_beir_metrics_match_pytrec_eval(num_levels):
  rng = np.random.default_rng(6)
  k_values = (1, 3, 10)
  scores, qids, dids, qrels = random_run(rng, 30, 40, num_levels)
  run = {q: {d: float(s) for d, s in zip(dids, row)} for q, row in zip(qids, scores)}
  got = metrics.beir_per_query(run, qrels, k_values)
  want = pytrec_per_query(run, qrels, k_values)
  assert got.keys() == want.keys() == set(qids[:-1])
  for q in want:
    assert got[q].keys() == want[q].keys()
    for name in want[q]:
      np.testing.assert_allclose(got[q][name], want[q][name], rtol=1e-12, err_msg=f"{q} {name}")
  # The score-matrix path keeps ties at the cut and gives the same averages.
  from_scores = metrics.beir_metrics(scores, qrels, k_values, query_ids=qids, corpus_ids=dids)
  assert from_scores["num_queries"] == len(want)
  for name in want[qids[0]]:
    np.testing.assert_allclose(from_scores[name], np.mean([m[name] for m in want.values()]),
                               rtol=1e-12, err_msg=name)


def test_beir_metrics_needs_ids_for_a_matrix():
  with pytest.raises(ValueError, match="needs query_ids and corpus_ids"):
    metrics.beir_metrics(np.zeros((1, 2)), {"q": {"d": 1}})


def _pytrec_means(run, qrels, k_values):
  per_query = pytrec_per_query(run, qrels, k_values)
  return {
      name: np.mean([m[name] for m in per_query.values()])
      for name in next(iter(per_query.values()))
  }


@pytest.mark.parametrize("num_levels", [None, 3])
def test_identical_ids_are_dropped_as_beir_does(num_levels):
  """ArguAna/Quora: queries are corpus documents too. BEIR's EvaluateRetrieval pops the query's
  own id from its results (its retrievers fetch top_k + 1 so top_k others remain); the
  reference is pytrec_eval on the full run with that pop applied, the cut-offs inside the run."""
  rng = np.random.default_rng(11)
  k_values = (1, 3, 10)
  scores, qids, dids, qrels = random_run(rng, 30, 40, num_levels)
  dids[:12] = qids[:12]  # 12 queries are also documents; make each the top score of its row
  for i in range(12):
    scores[i, i] = scores[i].max() + 1.0
    qrels[qids[i]] = dict(qrels.get(qids[i], {}), **{qids[i]: 0})  # BEIR lists it as judged 0
  full = {q: {d: float(s) for d, s in zip(dids, row)} for q, row in zip(qids, scores)}
  beir_popped = {q: {d: s for d, s in docs.items() if d != q} for q, docs in full.items()}
  want = _pytrec_means(beir_popped, qrels, k_values)
  dropped = metrics.beir_metrics(scores, qrels, k_values, query_ids=qids, corpus_ids=dids)
  for name in want:
    np.testing.assert_allclose(dropped[name], want[name], rtol=1e-12, err_msg=name)
  kept = metrics.beir_metrics(scores, qrels, k_values, query_ids=qids, corpus_ids=dids,
                              ignore_identical_ids=False)
  want_kept = _pytrec_means(full, qrels, k_values)
  for name in want_kept:
    np.testing.assert_allclose(kept[name], want_kept[name], rtol=1e-12, err_msg=name)
  assert dropped["ndcg@10"] > kept["ndcg@10"]
  # A run dict gets the same rule.
  from_run = metrics.beir_metrics(full, qrels, k_values)
  assert from_run["ndcg@10"] == pytest.approx(want["ndcg@10"], rel=1e-12)
  # Top-k without the own document still holds k documents (the top_k + 1 of BEIR).
  run = metrics.scores_to_run(scores, qids, dids, 3, ignore_identical_ids=True)
  assert all(len(run[q]) >= 3 and q not in run[q] for q in qids)


def test_two_queries_that_are_documents_score_one_when_their_own_id_is_dropped():
  # The case: each query's own document ranks first, its relevant one second.
  qids, dids = ["a", "b"], ["a", "b", "ra", "rb"]
  scores = np.array([[1.0, 0.1, 0.9, 0.0], [0.1, 1.0, 0.0, 0.9]], np.float32)
  qrels = {"a": {"ra": 1}, "b": {"rb": 1}}
  dropped = metrics.beir_metrics(scores, qrels, query_ids=qids, corpus_ids=dids)
  kept = metrics.beir_metrics(scores, qrels, query_ids=qids, corpus_ids=dids,
                              ignore_identical_ids=False)
  assert dropped["ndcg@10"] == 1.0 and dropped["mrr@10"] == 1.0
  assert kept["ndcg@10"] == pytest.approx(1 / np.log2(3)) == pytest.approx(0.631, abs=1e-3)


def test_judged_documents_missing_from_the_corpus_count_as_never_retrieved():
  """The issue's 2-query example: q1 judges d1 (retrieved first) and a document the corpus lacks;
  q2 judges d2 (retrieved first). pytrec_eval: nDCG@10 0.807, Recall@100 0.75."""
  qids, dids = ["q1", "q2"], ["d1", "d2", "d3"]
  scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.1]], np.float32)
  qrels = {"q1": {"d1": 1, "missing": 1}, "q2": {"d2": 1}}
  got = metrics.beir_metrics(scores, qrels, query_ids=qids, corpus_ids=dids)
  run = metrics.scores_to_run(scores, qids, dids, 100)
  want = _pytrec_means(run, qrels, (10, 100))
  assert got["ndcg@10"] == pytest.approx(want["ndcg@10"], rel=1e-12)
  assert got["recall@100"] == pytest.approx(want["recall@100"], rel=1e-12)
  assert round(got["ndcg@10"], 3) == 0.807 and got["recall@100"] == 0.75
