"""TF-IDF baseline against scikit-learn's TfidfVectorizer, and its LAReQA / BEIR numbers."""

import pathlib

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from hybrid_jax import data as hdata
from hybrid_jax import retrieval_metrics as metrics
from hybrid_jax import tfidf
from hybrid_jax.data.beir import load_beir


@pytest.fixture(scope="module")
def eval_data():
  return hdata.load("xquad_r:eval").select_languages(("en", "de", "es", "zh"))


def to_dense(rows: tfidf.SparseRows) -> np.ndarray:
  """float32 [R, num_features]: the reference for the sparse products."""
  dense = np.zeros((len(rows), rows.num_features), np.float32)
  dense[np.repeat(np.arange(len(rows)), np.diff(rows.indptr)), rows.indices] = rows.data
  return dense


def encode_parallel_qa(data):
  """TF-IDF inputs for `lareqa_metrics(..., score_fn=sparse_scores)`, the idf fitted on the
  candidates: (L SparseRows of N rows each, empty where a query is missing; C candidate rows)."""
  encoder = tfidf.TfidfEncoder()
  cand_emb = encoder.fit_encode(tfidf.passage_texts(data.candidates.text, data.candidates.context))
  query_emb = [
      encoder.encode(["" if q is None else q for q in data.queries[:, j]])
      for j in range(len(data.languages))
  ]
  return query_emb, cand_emb


def small_corpus(eval_data):
  texts = tfidf.passage_texts(eval_data.candidates.text, eval_data.candidates.context)[::25]
  texts += ["  Odd\t\tWHITESPACE\n and CAPS  ", "ab", ""]  # whitespace runs, too short, empty
  queries = [q for q in eval_data.queries[::20].ravel() if q] + ["zzzz unseen n-grams", "x"]
  return texts, queries


def test_matches_sklearn_without_collisions(eval_data):
  texts, queries = small_corpus(eval_data)
  vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(3, 5), sublinear_tf=True).fit(texts)
  want = (vectorizer.transform(queries) @ vectorizer.transform(texts).T).toarray()
  encoder = tfidf.TfidfEncoder(num_buckets=1 << 63)
  cand = encoder.fit_encode(texts)
  assert cand.num_features == len(vectorizer.vocabulary_)
  got = tfidf.sparse_scores(encoder.encode(queries), cand)
  np.testing.assert_allclose(got, want, atol=1e-6)
  assert np.all(got.argmax(axis=1) == want.argmax(axis=1))
  # The idf, sorted, is sklearn's (same features, same weighting).
  np.testing.assert_allclose(np.sort(encoder.idf), np.sort(vectorizer.idf_), rtol=1e-12)


def test_hashing_buckets_bound_the_vocabulary(eval_data):
  texts, queries = small_corpus(eval_data)
  exact = tfidf.TfidfEncoder(num_buckets=1 << 63)
  hashed = tfidf.TfidfEncoder(num_buckets=1 << 10)
  exact_cand, hashed_cand = exact.fit_encode(texts), hashed.fit_encode(texts)
  exact_scores = tfidf.sparse_scores(exact.encode(queries), exact_cand)
  hashed_scores = tfidf.sparse_scores(hashed.encode(queries), hashed_cand)
  assert len(hashed.vocabulary) <= 1 << 10 < len(exact.vocabulary)
  assert np.all(hashed.vocabulary < 1 << 10)
  assert not np.allclose(hashed_scores, exact_scores, atol=1e-3)  # collisions do change scores


def test_numpy_scipy_and_dense_scores_agree(eval_data):
  texts, queries = small_corpus(eval_data)
  encoder = tfidf.TfidfEncoder()
  cand = encoder.fit_encode(texts)
  query = encoder.encode(queries)
  dense = to_dense(query) @ to_dense(cand).T
  numpy_scores = tfidf.sparse_scores(query, cand, use_scipy=False, max_products=5000)
  np.testing.assert_allclose(numpy_scores, dense, atol=1e-6)
  np.testing.assert_allclose(tfidf.sparse_scores(query, cand, use_scipy=True), dense, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(to_dense(cand)[:-3], axis=1), 1.0, rtol=1e-6)
  rows = np.array([3, 0, 3, len(queries) - 1])
  np.testing.assert_array_equal(to_dense(query[rows]), to_dense(query)[rows])
  with pytest.raises(ValueError, match="call fit_encode first"):
    tfidf.TfidfEncoder().encode(["a"])


def test_lareqa_metrics_of_tfidf(eval_data):
  query_emb, cand_emb = encode_parallel_qa(eval_data)
  args = (eval_data.available, cand_emb, eval_data.candidates.language, eval_data.positives,
          eval_data.languages)
  out = metrics.lareqa_metrics(query_emb, *args, score_fn=tfidf.sparse_scores)
  rng = np.random.default_rng(0)
  chance = metrics.lareqa_metrics(query_emb, *args, score_fn=lambda q, c: rng.random(
      (len(q), len(c)), np.float32))
  # Lexical matching: strong within a language, weak across, biased to the query's language.
  assert out["map_mono"] > 0.5 > out["map_cross"] > 2 * chance["map_cross"]
  assert out["map_multi_mean"] > 2 * chance["map_multi_mean"]
  assert np.all(out["rank_gap"] > 0)
  assert abs(chance["rank_gap_mean"]) < out["rank_gap_mean"] / 10
  assert np.all(out["own_share"] > 3 * out["uniform_share"])
  assert abs(chance["own_share_excess_mean"]) < 0.05


def test_beir_fixture_with_tfidf():
  beir = load_beir(pathlib.Path(__file__).parent / "fixtures" / "beir_xquad")
  encoder = tfidf.TfidfEncoder()
  docs = encoder.fit_encode([f"{t} {x}" for t, x in zip(beir.corpus_title, beir.corpus_text)])
  scores = tfidf.sparse_scores(encoder.encode(beir.query_text), docs)
  out = metrics.beir_metrics(scores, beir.qrels, (10, 100), query_ids=beir.query_ids,
                             corpus_ids=beir.corpus_ids)
  shuffled = metrics.beir_metrics(
      np.random.default_rng(0).permuted(scores, axis=1), beir.qrels, (10, 100),
      query_ids=beir.query_ids, corpus_ids=beir.corpus_ids)
  assert out["num_queries"] == 66
  assert out["ndcg@10"] > 2 * shuffled["ndcg@10"] and out["mrr@10"] > 0.5
