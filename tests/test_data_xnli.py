"""Tests for hybrid_jax.data.xnli on files in the XNLI-1.0 release's format and on rows of the
hub's / TFDS's `all_languages` features."""

import numpy as np
import pytest

from hybrid_jax.data import xnli
from hybrid_jax.data.parallel_qa import DataError

HEADER = ("language\tgold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
          "sentence2_parse\tsentence1\tsentence2\tpromptID\tpairID\tgenre\tlabel1\tlabel2\t"
          "label3\tlabel4\tlabel5\tsentence1_tokenized\tsentence2_tokenized\tmatch")
PAIRS = [
    ("1", "entailment",
     {"en": ("He came home.", "He returned."), "de": ("Er kam nach Hause.", "Er kehrte zurück.")}),
    ("2", "contradiction",
     {"en": ("It is raining.", "It is sunny \"today\"."), "de": ("Es regnet.", "Es ist sonnig.")})
]


def row(lang, label, premise, hypothesis, pair_id):
  return "\t".join([
      lang, label, "(x)", "(y)", "(x)", "(y)", premise, hypothesis, "7", pair_id, "fiction", label,
      "", "", "", "", premise, hypothesis, "True"
  ])


@pytest.fixture
def release(tmp_path):
  for split in ("dev", "test"):
    lines = [HEADER] + [
        row(lang, label, *texts[lang], pair_id) for lang in ("en", "de")
        for pair_id, label, texts in PAIRS
    ]
    (tmp_path / f"xnli.{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
  return tmp_path


def test_release_rows_become_parallel_pairs(release):
  data = xnli.load_xnli(str(release), "test")
  assert data.languages == ("en", "de")
  assert list(data.pair_ids) == ["1", "2"]
  np.testing.assert_array_equal(data.labels, [0, 2])
  assert data.premises[1, 0] == "It is raining."
  assert data.hypotheses[1, 0] == 'It is sunny "today".'  # no quoting in the release's files
  assert data.hypotheses[0, 1] == "Er kehrte zurück."
  assert data.select_languages(["de"]).premises.shape == (2, 1)


def test_bad_rows_are_named(release):
  path = release / "xnli.test.tsv"
  lines = path.read_text(encoding="utf-8").splitlines()
  bad = lines[3].replace("\tentailment\t", "\tmaybe\t", 1)
  path.write_text("\n".join(lines[:3] + [bad] + lines[4:]) + "\n", encoding="utf-8")
  with pytest.raises(DataError, match=r"xnli.test.tsv:4 field 'gold_label': unknown label 'maybe'"):
    xnli.load_xnli(str(release), "test")
  path.write_text("\n".join(lines[:4]) + "\n", encoding="utf-8")  # pair 2 only in English
  with pytest.raises(DataError, match=r"1 \(pair, language\) rows missing, e.g. pair '2' in de"):
    xnli.load_xnli(str(release), "test")
  with pytest.raises(DataError, match="unknown split 'train'"):
    xnli.load_xnli(str(release), "train")


def test_all_languages_features_as_the_hub_and_tfds_give_them():
  examples = [{
      "premise": {"en": "He came home.", "de": "Er kam nach Hause."}, "hypothesis": {
          "language": ["de", "en"], "translation": ["Er kehrte zurück.", "He returned."]
      }, "label": 0
  }]
  data = xnli._assemble("hub", xnli._translation_rows(examples, "hub"), "hub")
  assert data.languages == ("en", "de") and list(data.labels) == [0]
  assert data.hypotheses[0, 1] == "Er kehrte zurück."
  tfds_like = {
      b"premise": {b"en": np.bytes_("a".encode()), "de": b"b"}, "label": np.int64(2),
      "hypothesis": {"language": np.array([b"en", b"de"]), "translation": np.array([b"c", b"d"])}
  }
  assert xnli._decoded(tfds_like) == {
      "premise": {"en": "a", "de": "b"}, "label": 2,
      "hypothesis": {"language": ["en", "de"], "translation": ["c", "d"]}
  }
