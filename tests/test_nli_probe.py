"""Tests for hybrid_jax.nli_probe: the pair features against a loop, and the probe's transfer on
embeddings built to be aligned (a language = English plus noise) or not (English rotated)."""

import numpy as np

from hybrid_jax import nli_probe
from hybrid_jax.data.xnli import NLIData


def test_pair_features_against_a_loop():
  rng = np.random.default_rng(0)
  u, v = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
  expected = [[*a, *b, *[abs(x - y) for x, y in zip(a, b)], *[x * y for x, y in zip(a, b)]]
              for a, b in zip(u.tolist(), v.tolist())]
  np.testing.assert_allclose(nli_probe.pair_features(u, v), expected)


class TableRetriever:
  """embed_queries from a fixed {text: vector} table."""

  def __init__(self, table):
    self.table = table

  def embed_queries(self, texts):
    return np.stack([self.table[t] for t in texts])


def synthetic(n, languages, labels, rng, dim=16):
  """NLIData whose English premise/hypothesis vectors encode the label (entailment: v ~ u,
  contradiction: v ~ -u, neutral: v independent), 'de' = English + small noise (aligned), 'fr' =
  independent random vectors (an encoder that carries no meaning in that language)."""
  table = {}
  premises = np.empty((n, len(languages)), object)
  hypotheses = np.empty_like(premises)
  for i, y in enumerate(labels):
    u = rng.normal(size=dim)
    v = {0: u, 1: rng.normal(size=dim), 2: -u}[int(y)] + 0.3 * rng.normal(size=dim)
    for j, lang in enumerate(languages):
      pu, pv = {
          "en": (u, v), "de": (u + 0.05 * rng.normal(size=dim), v), "fr": (rng.normal(size=dim),
                                                                           rng.normal(size=dim))
      }[lang]
      premises[i, j], hypotheses[i, j] = f"{lang} p{i} {id(table)}", f"{lang} h{i} {id(table)}"
      table[premises[i, j]], table[hypotheses[i, j]] = pu, pv
  data = NLIData("synthetic", tuple(languages),
                 np.arange(n).astype(object), premises, hypotheses, np.asarray(labels, np.int64))
  return data, table


def test_probe_transfers_to_an_aligned_language_and_not_to_noise():
  rng = np.random.default_rng(1)
  train, train_table = synthetic(300, ["en"], rng.integers(0, 3, 300), rng)
  test, test_table = synthetic(300, ["en", "de", "fr"], rng.integers(0, 3, 300), rng)
  result = nli_probe.evaluate_nli_probe(TableRetriever({**train_table, **test_table}), train, test)
  acc = result["accuracy"]
  assert acc["en"] > 0.9 and acc["de"] > 0.9  # aligned: what English learnt transfers
  assert acc["fr"] < 0.5  # no meaning: close to chance (1/3)
  assert result["mean_other"] == (acc["de"] + acc["fr"]) / 2
  assert result["transfer_gap"] == acc["en"] - result["mean_other"]
  assert (result["num_train"], result["num_test"], result["chance"]) == (300, 300, 1 / 3)
