"""A character n-gram TF-IDF retriever: the lexical baseline of the LAReQA tables, numpy only.

Features are the character n-grams (n in `ngram_range`, default 3-5) of the lower-cased text with
runs of 2+ whitespace characters collapsed to one space, as scikit-learn's
`TfidfVectorizer(analyzer="char", sublinear_tf=True)`. Each n-gram is hashed (a 64-bit polynomial
hash of its code points, mixed with n) into `num_buckets` buckets; the vocabulary is the set of
buckets seen when fitting, so a hashed feature matrix is never allocated. Weights:

    tfidf(t, d) = (1 + ln count(t, d)) * (ln((1 + num_docs) / (1 + df(t))) + 1),

idf from the candidate pool given to `fit_encode`, each vector L2-normalised (so a score is a
cosine); query n-grams unseen at fit time are dropped. Scoring (`sparse_scores`) walks an
inverted index of the candidates in numpy, or uses scipy.sparse when it is installed (same scores,
faster); neither needs a dense [C, vocabulary] matrix.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import numpy as np

try:  # Optional: about 4x faster sparse products; the numpy path below gives the same scores.
  import scipy.sparse as scipy_sparse
except ImportError:
  scipy_sparse = None

_WHITESPACE_RUNS = re.compile(r"\s\s+")
_HASH_BASE = np.uint64(0x100000001B3)
_HASH_LENGTH_MIX = 0x9E3779B97F4A7C15  # salt of n-grams of length n: n * this mod 2**64


@dataclasses.dataclass(frozen=True)
class SparseRows:
  """L2-normalised TF-IDF vectors in CSR layout.

  Attributes:
    indptr: int64 [R + 1]; row r holds entries indptr[r]:indptr[r + 1].
    indices: int64 [nnz], feature = position in the encoder's fitted vocabulary (sorted per row).
    data: float32 [nnz], weights.
    num_features: the vocabulary size.
  """

  indptr: np.ndarray
  indices: np.ndarray
  data: np.ndarray
  num_features: int

  def __len__(self) -> int:
    return len(self.indptr) - 1

  def __getitem__(self, rows) -> "SparseRows":
    """The rows `rows` (int array, slice or bool mask), as a new SparseRows."""
    rows = np.arange(len(self))[rows]
    starts, lengths = self.indptr[rows], np.diff(self.indptr)[rows]
    entries = _ranges(starts, lengths)
    return SparseRows(
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), self.indices[entries],
        self.data[entries], self.num_features)

  @functools.cached_property
  def _scipy_transposed(self):
    """scipy CSR [num_features, R] (the transpose, built once per candidate table)."""
    return scipy_sparse.csr_matrix((self.data, self.indices, self.indptr),
                                   shape=(len(self), self.num_features)).T.tocsr()

  @functools.cached_property
  def _by_feature(self):
    """Inverted index: (feature_ptr [num_features + 1], row [nnz], weight [nnz])."""
    order = np.argsort(self.indices, kind="stable")
    rows = np.repeat(np.arange(len(self)), np.diff(self.indptr))[order]
    feature_ptr = np.searchsorted(self.indices[order], np.arange(self.num_features + 1))
    return feature_ptr, rows, self.data[order]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """Concatenation of arange(s, s + n) for every (s, n)."""
  total = int(lengths.sum())
  offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
  return offsets + np.arange(total)


def sparse_scores(queries: SparseRows, candidates: SparseRows, *, use_scipy: bool | None = None,
                  max_products: int = 1 << 23) -> np.ndarray:
  """Dot products of sparse rows: float32 [Q, C]; a `score_fn` for `retrieval_metrics.lareqa_metrics`.

  Args:
    queries: Q rows; candidates: C rows, both encoded by the same fitted encoder.
    use_scipy: None = scipy.sparse when installed; False = the numpy inverted index.
    max_products: numpy path: bound on the posting entries expanded at once (memory).
  """
  if queries.num_features != candidates.num_features:
    raise ValueError(f"queries have {queries.num_features} features, candidates "
                     f"{candidates.num_features}: encode both with the same fitted encoder")
  if use_scipy is None:
    use_scipy = scipy_sparse is not None
  if use_scipy:
    query_matrix = scipy_sparse.csr_matrix((queries.data, queries.indices, queries.indptr),
                                           shape=(len(queries), queries.num_features))
    candidate_matrix = candidates._scipy_transposed  # pylint: disable=protected-access
    return (query_matrix @ candidate_matrix).toarray().astype(np.float32)
  feature_ptr, cand_rows, cand_weights = candidates._by_feature  # pylint: disable=protected-access
  num_cands = len(candidates)
  scores = np.zeros((len(queries), num_cands), np.float32)
  posting_lengths = np.diff(feature_ptr)[queries.indices]
  products_per_query = np.add.reduceat(np.append(posting_lengths, 0), queries.indptr[:-1]) * (
      np.diff(queries.indptr) > 0)
  start = 0
  while start < len(queries):
    stop = start + 1
    budget = products_per_query[start]
    while stop < len(queries) and budget + products_per_query[stop] <= max_products:
      budget += products_per_query[stop]
      stop += 1
    lo, hi = queries.indptr[start], queries.indptr[stop]
    lengths = posting_lengths[lo:hi]
    postings = _ranges(feature_ptr[queries.indices[lo:hi]], lengths)
    entry_row = np.repeat(np.arange(stop - start), np.diff(queries.indptr[start:stop + 1]))
    query_row = np.repeat(entry_row, lengths)
    weights = np.repeat(queries.data[lo:hi].astype(np.float64), lengths) * cand_weights[postings]
    scores[start:stop] = np.bincount(query_row * num_cands + cand_rows[postings], weights,
                                     minlength=(stop - start) * num_cands).reshape(-1, num_cands)
    start = stop
  return scores


class TfidfEncoder:
  """Hashed character n-gram TF-IDF (module docstring). `fit_encode` the candidate pool (the
  vocabulary and idf are fitted on it), then `encode` queries.

  Args:
    ngram_range: (min_n, max_n), inclusive.
    num_buckets: hash buckets (at most 2**63); more buckets = fewer collisions, no memory cost.
  """

  def __init__(self, ngram_range: tuple[int, int] = (3, 5), num_buckets: int = 1 << 24):
    min_n, max_n = ngram_range
    if not 1 <= min_n <= max_n:
      raise ValueError(f"ngram_range={ngram_range}: need 1 <= min_n <= max_n")
    if not 1 <= num_buckets <= 1 << 63:
      raise ValueError(f"num_buckets={num_buckets}: need 1 <= num_buckets <= 2**63")
    self.ngram_range = (min_n, max_n)
    self.num_buckets = num_buckets
    self.vocabulary = None  # sorted uint64 bucket ids seen at fit time
    self.idf = None  # float64 [vocabulary]

  def ngram_buckets(self, text: str) -> np.ndarray:
    """uint64 bucket of every character n-gram of `text` (with repeats)."""
    text = _WHITESPACE_RUNS.sub(" ", text.lower())
    code_points = np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.uint64)
    parts = []
    for n in range(self.ngram_range[0], min(self.ngram_range[1], len(code_points)) + 1):
      h = np.zeros(len(code_points) - n + 1, np.uint64)
      for j in range(n):
        h = h * _HASH_BASE + code_points[j:len(code_points) - n + 1 + j]
      parts.append(_mix64(h ^ np.uint64(n * _HASH_LENGTH_MIX % (1 << 64))))
    if not parts:
      return np.zeros(0, np.uint64)
    return np.concatenate(parts) % np.uint64(self.num_buckets)

  def _count(self, texts) -> list[tuple[np.ndarray, np.ndarray]]:
    """(distinct buckets, their counts) of every text."""
    return [np.unique(self.ngram_buckets(t), return_counts=True) for t in texts]

  def _fit_counted(self, counted) -> None:
    if not counted:
      raise ValueError("TfidfEncoder.fit_encode: no texts")
    self.vocabulary, df = np.unique(np.concatenate([b for b, _ in counted]), return_counts=True)
    self.idf = np.log((1 + len(counted)) / (1 + df)) + 1

  def _weigh(self, counted) -> SparseRows:
    """L2-normalised TF-IDF rows of counted texts over the fitted vocabulary."""
    if self.vocabulary is None:
      raise ValueError("TfidfEncoder.encode: call fit_encode first")
    indptr, indices, data = [0], [], []
    for buckets, counts in counted:
      features = np.searchsorted(self.vocabulary, buckets)
      known = features < len(self.vocabulary)
      known[known] = self.vocabulary[features[known]] == buckets[known]
      features = features[known]
      weights = (1 + np.log(counts[known])) * self.idf[features]
      norm = np.sqrt(np.sum(weights**2))
      indices.append(features)
      data.append((weights / norm if norm > 0 else weights).astype(np.float32))
      indptr.append(indptr[-1] + len(features))
    return SparseRows(
        np.array(indptr, np.int64),
        np.concatenate(indices).astype(np.int64), np.concatenate(data), len(self.vocabulary))

  def encode(self, texts) -> SparseRows:
    """L2-normalised TF-IDF rows of `texts` over the fitted vocabulary."""
    return self._weigh(self._count(texts))

  def fit_encode(self, texts) -> SparseRows:
    """Sets the vocabulary and the idf from `texts` (the candidate pool) and returns their rows
    as `encode` does, hashing the texts once.

    Raises:
      ValueError: no texts.
    """
    counted = self._count(texts)
    self._fit_counted(counted)
    return self._weigh(counted)


def _mix64(h: np.ndarray) -> np.ndarray:
  """The splitmix64 finaliser: spreads the polynomial hash over all 64 bits."""
  h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return h ^ (h >> np.uint64(31))


def passage_texts(sentences, contexts) -> list[str]:
  """What the retriever sees of a passage: sentence + " " + context."""
  return [f"{sentence} {context}" for sentence, context in zip(sentences, contexts)]
