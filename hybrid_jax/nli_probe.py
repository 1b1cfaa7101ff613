"""A zero-shot NLI probe of cross-lingual alignment (XNLI): how well a classifier trained on
English sentence-pair embeddings transfers to other languages.

A multinomial logistic regression (scikit-learn, standardised features, C = 1) is fitted on the
English pairs of XNLI's dev set, with the pair features of InferSent / SentEval (Conneau et al.
2017, "Supervised Learning of Universal Sentence Representations from Natural Language Inference
Data", EMNLP): [u, v, |u - v|, u * v] for premise embedding u and hypothesis embedding v. It is
then tested, unchanged, on XNLI's test set in every language. The encoder is never trained on
NLI, so the probe measures what the embedding space already holds; what transfers from English to
language X measures how well X is aligned with English (the English test accuracy is the
in-language reference; `transfer_gap` = English accuracy - mean accuracy of the others, lower is
better aligned). Chance is 1/3 (XNLI's labels are balanced).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hybrid_jax.data.xnli import LABELS, NLIData

PROBE_C = 1.0
PROBE_MAX_ITER = 1000


def pair_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """float [N, 4D]: [u, v, |u - v|, u * v] of premise / hypothesis embeddings u, v: [N, D]."""
  u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
  return np.concatenate([u, v, np.abs(u - v), u * v], axis=1)


def fit_probe(features: np.ndarray, labels: np.ndarray, seed: int = 0):
  """The fitted classifier (scikit-learn pipeline: StandardScaler, LogisticRegression)."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.pipeline import make_pipeline  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
  probe = make_pipeline(StandardScaler(),
                        LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER, random_state=seed))
  return probe.fit(features, labels)


def embed_pairs(retriever, data: NLIData) -> tuple[np.ndarray, np.ndarray]:
  """(u, v): float [L, N, D] premise and hypothesis embeddings, every text embedded as a query
  (as the alignment evaluator embeds parallel text), all languages in one call each."""
  num_langs, n = len(data.languages), len(data.pair_ids)
  u = retriever.embed_queries(data.premises.T.ravel().tolist())
  v = retriever.embed_queries(data.hypotheses.T.ravel().tolist())
  return u.reshape(num_langs, n, -1), v.reshape(num_langs, n, -1)


def evaluate_nli_probe(retriever, train: NLIData, test: NLIData, *, seed: int = 0,
                       train_language: str = "en") -> dict[str, Any]:
  """The probe of the module docstring: fitted on `train`'s `train_language` pairs, accuracy on
  `test` per language.

  Returns:
    {"accuracy": {language: share of test pairs labelled right}, "train_language", "mean_other"
    (mean over the other languages), "transfer_gap", "chance", "num_train", "num_test",
    "labels", and "mean" (the headline figures, for metric writers)}.

  Raises:
    LanguageError: `train_language` is not in `train`.
  """
  train = train.select_languages([train_language])
  u, v = embed_pairs(retriever, train)
  probe = fit_probe(pair_features(u[0], v[0]), train.labels, seed)
  u, v = embed_pairs(retriever, test)
  accuracy = {
      lang: float(np.mean(probe.predict(pair_features(u[j], v[j])) == test.labels))
      for j, lang in enumerate(test.languages)
  }
  others = [a for lang, a in accuracy.items() if lang != train_language]
  mean_other = float(np.mean(others)) if others else float("nan")
  reference = accuracy.get(train_language, float("nan"))
  return {
      "accuracy": accuracy, "train_language": train_language, "mean_other": mean_other,
      "transfer_gap": reference - mean_other, "chance": 1.0 / len(LABELS), "mean": {
          "train_language_accuracy": reference, "other_accuracy": mean_other,
          "transfer_gap": reference - mean_other
      }, "num_train": len(train.pair_ids), "num_test": len(test.pair_ids), "labels": list(LABELS)
  }
