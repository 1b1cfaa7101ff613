"""Tests for hybrid_jax.data.belebele on files in the release's format (one JSON Lines file per
variant, the hub's parquet columns)."""

import json

import numpy as np
import pytest

from hybrid_jax.data import load
from hybrid_jax.data.languages import LanguageError
from hybrid_jax.data.parallel_qa import DataError

# Two passages; the first has two questions (question_number 1 and 2), as in Belebele.
PASSAGES = {
    "eng_Latn": [
        "The river floods every spring. Farmers plant after the water recedes.",
        "The museum opened in 1901 and holds paintings from four centuries."
    ],
    "deu_Latn": [
        "Der Fluss tritt jeden Frühling über die Ufer. Die Bauern säen danach.",
        "Das Museum wurde 1901 eröffnet und zeigt Gemälde aus vier Jahrhunderten."
    ],
    "arb_Arab": [
        "يفيض النهر كل ربيع. يزرع المزارعون بعد انحسار المياه.",
        "افتتح المتحف عام 1901 ويضم لوحات من أربعة قرون."
    ],
}
QUESTIONS = {
    "eng_Latn": ["When does the river flood?", "When do farmers plant?", "When did it open?"],
    "deu_Latn": ["Wann tritt der Fluss über?", "Wann säen die Bauern?", "Wann wurde es eröffnet?"],
    "arb_Arab": ["متى يفيض النهر؟", "متى يزرع المزارعون؟", "متى افتتح؟"],
}
ITEMS = [(0, 1), (0, 2), (1, 1)]  # (passage, question_number) of the three questions


def records(dialect):
  for (passage, number), question in zip(ITEMS, QUESTIONS[dialect]):
    yield {
        "link": f"https://en.wikibooks.org/wiki/Page_{passage}", "question_number": number,
        "flores_passage": PASSAGES[dialect][passage], "question": question, "mc_answer1": "a",
        "mc_answer2": "b", "mc_answer3": "c", "mc_answer4": "d", "correct_answer_num": "2",
        "dialect": dialect, "ds": "2023-05-03"
    }


@pytest.fixture
def release(tmp_path):
  for dialect in PASSAGES:
    with open(tmp_path / f"{dialect}.jsonl", "w", encoding="utf-8") as f:
      for record in records(dialect):
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
  return tmp_path


def test_variants_become_parallel_questions_over_shared_passages(release):
  data = load(f"belebele:{release}")
  assert data.languages == ("ar", "de", "en")  # files in name order, FLORES -> our codes
  assert list(data.ids) == [f"https://en.wikibooks.org/wiki/Page_{p}#{n}" for p, n in ITEMS]
  assert data.available.all()
  j = data.languages.index("de")
  assert list(data.queries[:, j]) == QUESTIONS["deu_Latn"]
  texts = data.candidates.text[data.positives[:, j]]
  assert list(texts) == [PASSAGES["deu_Latn"][p] for p, _ in ITEMS]
  keys = data.passage_keys[:, j]
  assert keys[0] == keys[1] != keys[2]  # the two questions of a passage share it
  assert len(data.candidates) == 2 * 3


def test_language_selection_by_our_or_flores_codes(release):
  ours = load(f"belebele:{release}:en+ar")
  flores = load(f"belebele:{release}:eng_Latn+arb_Arab")
  assert ours.languages == flores.languages == ("en", "ar")
  np.testing.assert_array_equal(ours.queries, flores.queries)
  with pytest.raises(DataError, match=r"no file for fra_Latn in .* \(it has arb_Arab, deu_Latn"):
    load(f"belebele:{release}:fr")


def test_parquet_files_read_as_the_jsonl_ones(release, tmp_path_factory):
  import pyarrow as pa
  import pyarrow.parquet as pq
  directory = tmp_path_factory.mktemp("parquet")
  for dialect in PASSAGES:
    pq.write_table(pa.Table.from_pylist(list(records(dialect))), directory / f"{dialect}.parquet")
  a, b = load(f"belebele:{release}"), load(f"belebele:{directory}")
  assert a.languages == b.languages and list(a.ids) == list(b.ids)
  np.testing.assert_array_equal(a.queries, b.queries)


def test_bad_records_name_file_line_and_field(release):
  path = release / "deu_Latn.jsonl"
  lines = path.read_text(encoding="utf-8").splitlines()
  bad = json.loads(lines[1])
  bad["dialect"] = "eng_Latn"
  path.write_text("\n".join([lines[0], json.dumps(bad), lines[2]]) + "\n", encoding="utf-8")
  with pytest.raises(
      DataError, match=r"deu_Latn.jsonl:2 field 'dialect': dialect differs from "
      r"the file's variant \('eng_Latn', expected 'deu_Latn'\)"):
    load(f"belebele:{release}")
  skipped = load(f"belebele:{release}", on_error="skip")
  assert skipped.skipped == {"dialect differs from the file's variant": 1}
  assert skipped.available.sum() == 8

  del bad["question"]
  bad["dialect"] = "deu_Latn"
  path.write_text("\n".join([lines[0], json.dumps(bad), lines[2]]) + "\n", encoding="utf-8")
  with pytest.raises(DataError, match=r"deu_Latn.jsonl:2 field 'question': missing field"):
    load(f"belebele:{release}")


@pytest.mark.parametrize("argument, match", [
    ("{release}/missing", "no such directory"),
    ("facebook/belebele", "give the languages of a hub dataset: belebele:facebook/belebele:en"),
])
def test_bad_sources_are_one_line_errors(release, argument, match):
  with pytest.raises(DataError, match=match):
    load("belebele:" + argument.format(release=release))


def test_a_variant_the_language_table_lacks_is_named(release):
  (release / "xxx_Latn.jsonl").write_text("")
  with pytest.raises(LanguageError, match="xxx_Latn"):
    load(f"belebele:{release}")


def test_lareqa_evaluation_on_belebele(release):
  """The LAReQA evaluator takes Belebele as it takes XQuAD-R: every passage of Y a candidate of
  Y, a question's passage in Y relevant (TF-IDF retriever: no model to build)."""
  from hybrid_jax import evaluators, retrievers
  for dialect in PASSAGES:  # 2 + 4 passages per variant: pools of more than 10 candidates
    with open(release / f"{dialect}.jsonl", "a", encoding="utf-8") as f:
      for i in range(2, 6):
        record = next(records(dialect))
        record.update(link=f"https://en.wikibooks.org/wiki/Page_{i}",
                      flores_passage=f"{dialect} passage {i}: " + "word " * i,
                      question=f"{dialect} question {i}")
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
  results = evaluators.evaluate(retrievers.TfidfRetriever(), f"belebele:{release}")
  assert set(results["languages"]) == {"ar", "de", "en"}
  assert {c["candidates"] for c in results["counts"].values()} == {6}
  assert {c["examples"] for c in results["counts"].values()} == {7}
  assert 0.0 < results["metrics"]["map_mono"] <= 1.0
