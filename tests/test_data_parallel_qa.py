"""Tests of the data contract helpers (hybrid_jax/data/parallel_qa.py): assemble, Problems,
skipped counts, select_languages."""

import logging

import numpy as np
import pytest

from hybrid_jax.data.parallel_qa import (Candidates, DataError, Example, ParallelQA, Problems,
                                         assemble)
from hybrid_jax.data.registry import load


def _tiny(skipped=None):
  """Two languages; id "b" only in de; "a" and "c" share the en candidate 0."""
  examples = [
      Example("a", "en", "Who?", 0),
      Example("b", "de", "Wer?", 2),
      Example("a", "de", "Wer war es?", 3),
      Example("c", "en", "Who was it?", 0)
  ]
  return assemble("tiny", examples, ["en", "en", "de", "de"], ["He.", "She.", "Er.", "Sie."],
                  ["ctx en", "ctx en", "", ""], skipped=skipped)


def test_assemble_orders_ids_by_first_appearance_and_marks_missing():
  data = _tiny()
  assert data.languages == ("en", "de")
  assert list(data.ids) == ["a", "b", "c"]
  assert data.queries.tolist() == [["Who?", "Wer war es?"], [None, "Wer?"], ["Who was it?", None]]
  assert data.positives.tolist() == [[0, 3], [-1, 2], [0, -1]]
  assert data.passage_keys[0, 0] == data.passage_keys[2, 0]
  assert data.candidates.language.dtype == np.int32 and data.positives.dtype == np.int64
  assert data.skipped == {}


def test_assemble_rejects_a_positive_in_another_language():
  with pytest.raises(ValueError, match="not in its query's language"):
    assemble("bad", [Example("a", "en", "Who?", 1)], ["en", "de"], ["He.", "Er."], ["", ""])


def test_problems_raise_names_place_reason_and_detail():
  problems = Problems("raise")
  with pytest.raises(DataError, match=r"^f\.json: q 3 field 'id': duplicate id \(seen\)$"):
    problems.report("duplicate id", "f.json: q 3 field 'id'", "seen")
  assert issubclass(DataError, ValueError)
  with pytest.raises(ValueError, match="on_error='warn'"):
    Problems("warn")


def test_problems_skip_counts_and_logs(caplog):
  problems = Problems("skip")
  problems.report("empty query", "x")
  problems.report("duplicate id", "y", count=3)
  problems.report("empty query", "z")
  with caplog.at_level(logging.WARNING):
    counts = problems.summary("data")
  assert counts == {"duplicate id": 3, "empty query": 2}
  assert list(counts) == sorted(counts)
  assert "data: skipped 5 bad record(s)" in caplog.text
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    assert Problems("skip").summary("clean") == {}
  assert not caplog.text


@pytest.mark.parametrize("record, kwargs, reason", [
    ({}, {}, "missing field 'query'"),
    ({"query": 3}, {}, "field 'query' is not a string"),
    ({"query": " \n"}, {"empty_reason": "empty query"}, "empty query"),
])
def test_problems_text_reports_bad_fields(record, kwargs, reason):
  problems = Problems("skip")
  assert problems.text(record, "query", "r", **kwargs) is None
  assert problems.counts == {reason: 1}
  with pytest.raises(DataError, match=f"r field 'query': {reason}"):
    Problems("raise").text(record, "query", "r", **kwargs)


def test_problems_text_returns_good_and_optional_values():
  problems = Problems("raise")
  assert problems.text({"query": " "}, "query", "r") == " "
  assert problems.text({}, "context", "r", optional=True) == ""
  assert problems.text({"context": "c"}, "context", "r", optional=True) == "c"


def test_skipped_survives_select_languages_and_shows_in_describe():
  data = _tiny(skipped={"empty query": 2})
  de = data.select_languages(["de"])
  assert de.skipped == {"empty query": 2}
  assert list(de.ids) == ["a", "b"]
  assert "skipped 2 record(s): empty query" in de.describe()


def test_select_languages_on_xquad_r_keeps_positive_texts():
  full = load("xquad_r:eval")
  pair = full.select_languages(["de", "en"])
  cols = [full.languages.index("de"), full.languages.index("en")]
  np.testing.assert_array_equal(pair.candidates.text[pair.positives],
                                full.candidates.text[full.positives[:, cols]])
  assert len(pair.candidates) == sum(full.counts()[lang]["candidates"] for lang in ("de", "en"))


def test_texts_for_the_tokenizer():
  data = ParallelQA(
      name="tiny", languages=("en", "de"), ids=np.array(["a", "b"], object),
      queries=np.array([["q1", "f1"], ["q2", None]], object), positives=np.array([[0, 2], [1, -1]]),
      candidates=Candidates(
          language=np.array([0, 0, 1], np.int32), text=np.array(["s1", "s2", "t1"], object),
          context=np.array(["ctx en", "ctx en", ""], object)))
  assert data.texts() == ["q1", "f1", "q2", "ctx en", "t1"]
