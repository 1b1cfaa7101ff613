"""Tests of the SQuAD-format loader (hybrid_jax/data/squad.py) on the real XQuAD-R files and on
small files derived from them."""

import copy
import gzip
import importlib.resources
import json
import logging

import numpy as np
import pytest

from hybrid_jax.data.languages import XQUAD_R_LANGUAGES
from hybrid_jax.data.jsonl import load_jsonl, write_jsonl
from hybrid_jax.data.parallel_qa import DataError
from hybrid_jax.data.squad import load_squad

_ROOT = importlib.resources.files("hybrid_jax.data") / "xquad_r"

# Measured agreement of split_sentences with XQuAD-R's own boundaries (paragraphs whose sentence
# list is identical, questions whose positive sentence text is identical), minus 0.01. Thai has
# no sentence punctuation and XQuAD-R's Thai boundaries are a small subset of its spaces, which
# the splitter all treats as boundaries: near-zero agreement there is expected.
AGREEMENT_FLOORS = {
    "ar": (0.93, 0.97),
    "de": (0.92, 0.97),
    "el": (0.89, 0.95),
    "en": (0.95, 0.97),
    "es": (0.87, 0.95),
    "hi": (0.92, 0.97),
    "ru": (0.93, 0.97),
    "th": (0.0, 0.01),
    "tr": (0.71, 0.85),
    "vi": (0.88, 0.94),
    "zh": (0.73, 0.89),
}


def _document(lang):
  with (_ROOT / f"{lang}.json.gz").open("rb") as f:
    return json.loads(gzip.decompress(f.read()))


@pytest.fixture(scope="module")
def documents():
  return {lang: _document(lang) for lang in XQUAD_R_LANGUAGES}


def _reference_positive_texts(document, articles=None):
  """{question id: text of the XQuAD-R sentence whose break holds answer_start}, brute force."""
  out = {}
  for a, article in enumerate(document["data"]):
    if articles is not None and a not in articles:
      continue
    for paragraph in article["paragraphs"]:
      for qa in paragraph["qas"]:
        start = qa["answers"][0]["answer_start"]
        [text] = [
            s for s, (b, e) in zip(paragraph["sentences"], paragraph["sentence_breaks"])
            if b <= start < e
        ]
        out[qa["id"]] = text.strip()
  return out


def _write(tmp_path, documents, name="{lang}.json"):
  """Writes {lang: document} as files in tmp_path; returns {lang: path}."""
  paths = {}
  for lang, document in documents.items():
    paths[lang] = tmp_path / name.format(lang=lang)
    paths[lang].write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
  return paths


def _small(document, num_paragraphs=2):
  """A copy of the first `num_paragraphs` paragraphs of article 0."""
  small = copy.deepcopy(document)
  small["data"] = small["data"][:1]
  small["data"][0]["paragraphs"] = small["data"][0]["paragraphs"][:num_paragraphs]
  return small


def test_xquad_r_positives_and_candidates_match_the_files(documents):
  files = {lang: _ROOT / f"{lang}.json.gz" for lang in XQUAD_R_LANGUAGES}
  data = load_squad(files, require_parallel=True)
  assert data.languages == XQUAD_R_LANGUAGES
  assert data.available.all()
  for j, lang in enumerate(XQUAD_R_LANGUAGES):
    document = documents[lang]
    reference = _reference_positive_texts(document)
    assert list(data.ids) == list(reference)
    assert [data.candidates.text[p] for p in data.positives[:, j]] == list(reference.values())
    sentences = [
        s.strip() for article in document["data"] for paragraph in article["paragraphs"]
        for s in paragraph["sentences"]
    ]
    assert list(data.candidates.text[data.candidates.language == j]) == sentences


def test_articles_select_by_file_order(documents):
  files = {lang: _ROOT / f"{lang}.json.gz" for lang in ("en", "zh")}
  data = load_squad(files, articles=range(36, 48), require_parallel=True)
  reference = _reference_positive_texts(documents["en"], articles=range(36, 48))
  assert list(data.ids) == list(reference)
  assert [data.candidates.text[p] for p in data.positives[:, 0]] == list(reference.values())
  with pytest.raises(DataError, match="article index 48 out of range"):
    load_squad(files, articles=[48])


def test_directory_plain_gzip_and_mlqa_names(tmp_path, documents):
  small = {lang: _small(documents[lang]) for lang in ("de", "en")}
  (tmp_path / "plain").mkdir()
  _write(tmp_path / "plain", small)
  (tmp_path / "plain" / "README.txt").write_text("not data")
  from_dir = load_squad(tmp_path / "plain")
  assert from_dir.languages == ("de", "en")
  assert from_dir.name == str(tmp_path / "plain")

  (tmp_path / "gz").mkdir()
  for lang, document in small.items():
    (tmp_path / "gz" / f"{lang}.json.gz").write_bytes(gzip.compress(json.dumps(document).encode()))
  from_gz = load_squad(tmp_path / "gz")

  mlqa = tmp_path / "mlqa"
  mlqa.mkdir()
  _write(mlqa, small, name="test-context-{lang}-question-{lang}.json")
  _write(mlqa, {"de": small["en"]}, name="test-context-en-question-{lang}.json")  # cross-lingual
  from_mlqa = load_squad(mlqa)
  for other in (from_gz, from_mlqa):
    assert other.languages == from_dir.languages
    np.testing.assert_array_equal(other.queries, from_dir.queries)
    np.testing.assert_array_equal(other.positives, from_dir.positives)
    np.testing.assert_array_equal(other.candidates.text, from_dir.candidates.text)

  (tmp_path / "gz" / "en.json").write_text(json.dumps(small["en"]))
  with pytest.raises(DataError, match="two files for language 'en'"):
    load_squad(tmp_path / "gz")
  with pytest.raises(DataError, match="no SQuAD-format file"):
    load_squad(tmp_path)  # only folders


def test_split_agreement_with_xquad_r_sentences(tmp_path, documents):
  """Strips the sentence fields and compares the splitter's candidates and positives with
  XQuAD-R's own: share of identical paragraph sentence lists and of identical positive texts."""
  stripped = copy.deepcopy(documents)
  for document in stripped.values():
    for article in document["data"]:
      for paragraph in article["paragraphs"]:
        del paragraph["sentences"], paragraph["sentence_breaks"]
  split = load_squad(_write(tmp_path, stripped))
  given = load_squad({lang: _ROOT / f"{lang}.json.gz" for lang in XQUAD_R_LANGUAGES})
  assert list(split.ids) == list(given.ids)
  for j, lang in enumerate(XQUAD_R_LANGUAGES):
    ours, theirs = {}, {}
    for data, per_paragraph in ((split, ours), (given, theirs)):
      rows = np.flatnonzero(data.candidates.language == j)
      for text, context in zip(data.candidates.text[rows], data.candidates.context[rows]):
        per_paragraph.setdefault(context, []).append(text)
    assert len(theirs) == sum(len(a["paragraphs"]) for a in documents[lang]["data"])
    paragraph_agreement = np.mean([ours[context] == theirs[context] for context in theirs])
    positive_agreement = np.mean(
        split.candidates.text[split.positives[:, j]] == given.candidates.text[given.positives[:,
                                                                                              j]])
    print(f"{lang}: paragraphs {paragraph_agreement:.3f} positives {positive_agreement:.3f}")
    paragraph_floor, positive_floor = AGREEMENT_FLOORS[lang]
    assert paragraph_agreement >= paragraph_floor, lang
    assert positive_agreement >= positive_floor, lang


def test_sentences_without_breaks_are_located_in_the_context(tmp_path, documents):
  small = _small(documents["en"], num_paragraphs=5)
  reference = load_squad(_write(tmp_path, {"en": small}))
  for paragraph in small["data"][0]["paragraphs"]:
    del paragraph["sentence_breaks"]
  (tmp_path / "nobreaks").mkdir()
  located = load_squad(_write(tmp_path / "nobreaks", {"en": small}))
  np.testing.assert_array_equal(located.positives, reference.positives)
  np.testing.assert_array_equal(located.candidates.text, reference.candidates.text)


# Each case: (edit of the small en document, counted reason, text the error message must name).
def _paragraph(document, p=0):
  return document["data"][0]["paragraphs"][p]


def _qa(document, p=0, k=0):
  return _paragraph(document, p)["qas"][k]


BAD_RECORDS = {
    "missing question":
        (lambda d: _qa(d).pop("question"), "missing field 'question'", "field 'question'"),
    "empty query": (lambda d: _qa(d).update(question="  "), "empty query", "field 'question'"),
    "missing id": (lambda d: _qa(d).pop("id"), "missing field 'id'", "question 0"),
    "missing answers":
        (lambda d: _qa(d).update(answers=[]), "missing field 'answer_start'", "field 'answers'"),
    "duplicate id": (lambda d: _paragraph(d)["qas"].append(copy.deepcopy(_qa(d, 1, 0))),
                     "duplicate id", "field 'id'"),
    "answer_start outside": (lambda d: _qa(d)["answers"][0].update(answer_start=10**6),
                             "answer_start in no sentence", "field 'answer_start'"),
    "bad breaks": (lambda d: _paragraph(d)["sentence_breaks"][0].__setitem__(1, 10**6),
                   "bad sentence_breaks", "field 'sentence_breaks'"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_bad_record_raises_or_is_skipped_and_counted(tmp_path, documents, case, caplog):
  edit, reason, field_text = BAD_RECORDS[case]
  document = _small(documents["en"])
  edit(document)
  paths = _write(tmp_path, {"en": document})
  with pytest.raises(DataError) as error:
    load_squad(paths)
  message = str(error.value)
  assert str(paths["en"]) in message and reason in message and field_text in message
  assert "article 0 paragraph" in message

  with caplog.at_level(logging.WARNING):
    data = load_squad(paths, on_error="skip")
  if case == "bad breaks":  # the paragraph goes, with its questions
    num_questions = len(_paragraph(document)["qas"])
    assert data.skipped == {reason: 1, "question of a skipped paragraph": num_questions}
  else:
    assert data.skipped == {reason: 1}
    num_questions = sum(len(p["qas"]) for p in document["data"][0]["paragraphs"])
    assert data.num_examples == num_questions - 1
  assert reason in caplog.text


def test_empty_context_skips_its_paragraph_and_counts_its_questions(tmp_path, documents):
  document = _small(documents["en"])
  _paragraph(document)["context"] = ""
  del _paragraph(document)["sentences"], _paragraph(document)["sentence_breaks"]
  paths = _write(tmp_path, {"en": document})
  with pytest.raises(DataError, match="paragraph 0 field 'context': empty context"):
    load_squad(paths)
  data = load_squad(paths, on_error="skip")
  num_questions = len(_paragraph(document)["qas"])
  assert data.skipped == {"empty context": 1, "question of a skipped paragraph": num_questions}
  assert data.num_examples == len(_paragraph(document, 1)["qas"])
  assert len(data.candidates) == len(_paragraph(document, 1)["sentences"])


def test_file_level_errors_always_raise(tmp_path, documents):
  paths = _write(tmp_path, {"en": _small(documents["en"])})
  text = paths["en"].read_text()
  paths["en"].write_text(text[:len(text) // 2])
  for on_error in ("raise", "skip"):
    with pytest.raises(DataError, match=r"en\.json:1:\d+: malformed JSON"):
      load_squad(paths, on_error=on_error)
  paths["en"].write_bytes('{"data": ["é"]}'.encode("latin-1"))
  with pytest.raises(DataError, match=r"en\.json: not UTF-8 JSON"):
    load_squad(paths)
  (tmp_path / "en.json.gz").write_text(text)
  with pytest.raises(DataError, match=r"en\.json\.gz: not UTF-8 JSON \(gzip\)"):
    load_squad({"en": tmp_path / "en.json.gz"})
  with pytest.raises(DataError, match="unknown language code 'dn'"):
    load_squad({"dn": _ROOT / "de.json.gz"})
  (tmp_path / "xx").mkdir()
  (tmp_path / "xx" / "qq.json").write_text("{}")
  with pytest.raises(DataError, match="unknown language code 'qq'"):
    load_squad(tmp_path / "xx")
  paths["en"].write_text(json.dumps({"version": "1.1"}))
  with pytest.raises(DataError, match="not SQuAD format"):
    load_squad(paths)
  with pytest.raises(ValueError, match="on_error='ignore'"):
    load_squad(paths, on_error="ignore")


def test_require_parallel(tmp_path, documents):
  small = {lang: _small(documents[lang]) for lang in ("en", "de", "zh")}
  removed = _paragraph(small["de"], 1)["qas"].pop(2)["id"]
  paths = _write(tmp_path, small)
  with pytest.raises(DataError) as error:
    load_squad(paths, require_parallel=True)
  message = str(error.value)
  assert repr(removed) in message and str(paths["en"]) in message
  assert str(paths["de"]) in message and "not parallel" in message

  skipped = load_squad(paths, require_parallel=True, on_error="skip")
  assert removed not in set(skipped.ids)
  assert skipped.available.all()
  assert skipped.skipped == {"id not in every language": 2}  # the en and zh records

  partial = load_squad(paths)  # MLQA-style: ids may miss in some languages
  row = list(partial.ids).index(removed)
  assert partial.available[row].tolist() == [True, False, True]
  assert partial.queries[row, 1] is None and partial.skipped == {}


@pytest.mark.parametrize("edit, field", [
    (lambda d: _qa(d).update(question="Who\ud800?"), "field 'question'"),
    (lambda d: _paragraph(d).update(context=_paragraph(d)["context"] + "\udc00"),
     "field 'context'"),
    (lambda d: _paragraph(d)["sentences"].__setitem__(1, "\ud83d"), "field 'sentences' item 1"),
])
def test_a_lone_surrogate_is_rejected_naming_file_record_and_field(tmp_path, documents, edit,
                                                                   field):
  document = _small(documents["en"])
  edit(document)
  path = tmp_path / "en.json"
  path.write_text(json.dumps(document), encoding="utf-8")  # ASCII: the surrogate as \uXXXX
  for on_error in ("raise", "skip"):
    with pytest.raises(
        DataError, match=rf"en\.json: article 0 paragraph 0 .*{field}: text is "
        "not valid Unicode: lone surrogate"):
      load_squad({"en": path}, on_error=on_error)


def test_a_misspelt_paragraph_field_warns_or_fails_when_strict(tmp_path, documents, caplog):
  document = _small(documents["en"])
  for paragraph in document["data"][0]["paragraphs"]:
    paragraph["sentence_break"] = paragraph.pop("sentence_breaks")
  paths = _write(tmp_path, {"en": document})
  with caplog.at_level(logging.WARNING):
    load_squad(paths)
  assert "2 record(s) have the unknown field 'sentence_break'" in caplog.text
  assert "did you mean 'sentence_breaks'?" in caplog.text
  with pytest.raises(
      DataError, match=r"paragraph 0: unknown field 'sentence_break' \(did you "
      r"mean 'sentence_breaks'\?\)"):
    load_squad(paths, strict=True)


def test_a_paragraph_under_two_articles_gives_one_key_per_sentence(tmp_path, documents):
  """The rule of every loader: same language, sentence and context, same passage key. A copy of
  a paragraph under a second article keeps its own candidate rows, but its questions' positives
  get the keys of the first copy, as the JSONL loader gives them."""
  document = _small(documents["en"], num_paragraphs=1)
  second = copy.deepcopy(document["data"][0])
  for qa in second["paragraphs"][0]["qas"]:
    qa["id"] += "-copy"
  document["data"].append(second)
  data = load_squad(_write(tmp_path, {"en": document}))
  half = len(data.ids) // 2
  assert list(data.ids[half:]) == [i + "-copy" for i in data.ids[:half]]
  assert np.all(data.positives[half:] != data.positives[:half])  # rows of the second copy
  np.testing.assert_array_equal(data.passage_keys[half:], data.passage_keys[:half])
  path = tmp_path / "copies.jsonl"
  write_jsonl(data, path)
  from_jsonl = load_jsonl(path)
  assert list(from_jsonl.ids) == list(data.ids)

  def same_passage(keys):
    return keys[:, 0][:, None] == keys[:, 0][None, :]

  np.testing.assert_array_equal(
      same_passage(from_jsonl.passage_keys), same_passage(data.passage_keys))
