"""Tests for hybrid_jax.data.tatoeba on files in LASER's layout (tatoeba.xxx-eng.{xxx,eng})."""

import gzip

import numpy as np
import pytest

from hybrid_jax.data import languages, load
from hybrid_jax.data.parallel_qa import DataError

PAIRS = {
    "deu": (["Ich habe Hunger.", "Wo ist der Bahnhof?"], ["I am hungry.", "Where is the station?"]),
    "ara": (["أنا جائع.", "أين المحطة؟",
             "شكرا."], ["I am hungry.", "Where is the station?", "Thank you."]),
    "cmn": (["我饿了。"], ["I'm hungry."]),
}


@pytest.fixture
def laser(tmp_path):
  for xxx, (other, english) in PAIRS.items():
    opener, suffix = (gzip.open, ".gz") if xxx == "cmn" else (open, "")
    for side, lines in ((xxx, other), ("eng", english)):
      with opener(tmp_path / f"tatoeba.{xxx}-eng.{side}{suffix}", "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
  (tmp_path / "tatoeba.xyz-eng.xyz").write_text("?\n")  # a code the language table lacks
  (tmp_path / "tatoeba.xyz-eng.eng").write_text("?\n")
  return tmp_path


def test_pairs_become_english_centric_units(laser):
  data = load(f"tatoeba:{laser}")
  assert data.languages == ("en", "ar", "zh", "de")  # English first, then the files in name order
  assert data.num_examples == 6
  assert list(data.ids[:3]) == ["ara:0", "ara:1", "ara:2"]
  # every unit is in English and in its pair's language only
  np.testing.assert_array_equal(data.available.sum(axis=1), 2)
  assert data.available[:, 0].all()
  de = data.languages.index("de")
  rows = np.flatnonzero(data.available[:, de])
  assert list(data.queries[rows, de]) == PAIRS["deu"][0]
  assert list(data.queries[rows, 0]) == PAIRS["deu"][1]
  assert list(data.candidates.text[data.positives[rows, de]]) == PAIRS["deu"][0]


def test_language_selection_by_either_code(laser):
  assert load(f"tatoeba:{laser}:de+zh").languages == ("en", "de", "zh")
  assert load(f"tatoeba:{laser}:deu+cmn").languages == ("en", "de", "zh")
  with pytest.raises(languages.LanguageError, match="no tatoeba.xxx-eng files of 'fr'"):
    load(f"tatoeba:{laser}:fr")


def test_misaligned_or_empty_lines_are_named(laser):
  (laser / "tatoeba.deu-eng.eng").write_text("I am hungry.\n")
  with pytest.raises(DataError, match=r"tatoeba.deu-eng.eng has 1 lines, .*tatoeba.deu-eng.deu 2"):
    load(f"tatoeba:{laser}:de")
  (laser / "tatoeba.deu-eng.eng").write_text("I am hungry.\n \n")
  with pytest.raises(DataError, match=r"tatoeba.deu-eng.eng:2: empty line"):
    load(f"tatoeba:{laser}:de")
  with pytest.raises(DataError, match="no such directory"):
    load(f"tatoeba:{laser}/missing")


def test_iso639_3_and_macrolanguage_codes_map_to_the_table():
  assert languages.from_iso639_3("deu") == "de"
  assert languages.from_iso639_3("cmn") == "zh"  # not zh-Hant, a variant of the same code
  assert languages.from_iso639_3("ara") == "ar"  # macrolanguage of the table's arb
  with pytest.raises(languages.LanguageError, match="unknown ISO 639-3 code 'xyz'"):
    languages.from_iso639_3("xyz")
