"""eval.language_groups: the groups of the evaluated languages and their macro averages in the
LAReQA and BEIR results, reports and scalars, against brute-force references."""

import functools
import json
import math

import ml_collections
import numpy as np
import pytest

from hybrid_jax import eval_report
from hybrid_jax import evaluators
from hybrid_jax import retrieval_metrics
from hybrid_jax import retrievers
from hybrid_jax.data import languages
from hybrid_jax.errors import ConfigError

CODES = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
TRAINED = ("ar", "de", "en", "es", "hi", "ru", "th", "tr", "zh")


def _brute_mean(values):
  values = [v for v in values if v is not None and math.isfinite(v)]
  return sum(values) / len(values) if values else math.nan


def test_groups_partition_the_languages_by_the_table():
  groups = languages.group_languages(CODES, languages.LANGUAGE_GROUPINGS, TRAINED)
  assert groups["trained"] == {"trained": list(TRAINED), "zero-shot": ["el", "vi"]}
  for grouping in languages.GROUPINGS:
    want = {}
    for x in CODES:
      value = getattr(languages.info(x), grouping)
      want.setdefault("unknown" if value is None else str(value), []).append(x)
    assert groups[grouping] == want
  assert list(groups["resource_class"]) == ["5", "4", "3"]  # high to low
  # No zero-shot language (or no training config): no trained / zero-shot split.
  assert "trained" not in languages.group_languages(TRAINED, ["trained"], TRAINED)
  assert languages.group_languages(CODES, ["trained", "script"], None).keys() == {"script"}
  assert languages.group_languages(["apc", "en"], ["resource_class"]) == {
      "resource_class": {"5": ["en"], "unknown": ["apc"]}
  }
  with pytest.raises(ConfigError, match="unknown language grouping 'genre'"):
    languages.parse_groupings("family,genre")
  assert languages.group_languages([], languages.LANGUAGE_GROUPINGS, TRAINED) == {}


def _label(code, grouping):
  """Brute force: the label of `code` in one uncrossed grouping, straight from the table."""
  if grouping == "trained":
    return "trained" if code in TRAINED else "zero-shot"
  value = getattr(languages.info(code), grouping)
  return "unknown" if value is None else str(value)


def test_crossed_groupings_are_the_pairs_of_labels():
  """'family*trained': a group per pair of labels ('Indo-European / zero-shot'), its members
  those of both, against a brute-force partition of the languages by their pairs of labels."""
  groupings = languages.parse_groupings(
      "trained, family * trained,resource_class*trained,script*family,family*script*trained")
  assert groupings[:3] == ("trained", "family*trained", "resource_class*trained")
  groups = languages.group_languages(CODES, groupings, TRAINED)
  for grouping in groupings:
    want = {}
    for x in CODES:
      label = " / ".join(_label(x, part) for part in grouping.split("*"))
      want.setdefault(label, []).append(x)
    assert groups[grouping] == want
  assert groups["family*trained"]["Indo-European / zero-shot"] == ["el"]
  # Labels in the first grouping's order, then the second's (classes high to low).
  assert list(groups["resource_class*trained"]) == [
      "5 / trained", "4 / trained", "4 / zero-shot", "3 / trained", "3 / zero-shot"
  ]
  # Without the trained / zero-shot split, no grouping crossed with it.
  assert languages.group_languages(TRAINED, ["family*trained", "script"],
                                   TRAINED).keys() == {"script"}
  assert languages.group_languages(CODES, ["family*trained"], None) == {}
  # The alignment report's three-way split (trained / zero-shot / unseen) crosses the same way.
  codes = ["ar", "de", "el", "en", "fr", "sw"]
  got = evaluators.alignment_groups(codes, ["family*trained"], ["ar", "de", "en"],
                                    ["ar", "de", "en", "el"])
  assert got == {
      "family*trained": {
          "Afro-Asiatic / trained": ["ar"], "Atlantic-Congo / unseen": ["sw"],
          "Indo-European / trained": ["de", "en"], "Indo-European / zero-shot": ["el"],
          "Indo-European / unseen": ["fr"]
      }
  }


@pytest.mark.parametrize("spec, match", [
    ("family*genre", r"unknown language grouping 'genre' in 'family\*genre'; expected some of "
     r"trained,family,script,resource_class, or two crossed as family\*trained"),
    ("family*", r"unknown language grouping '' in 'family\*'"),
    ("family*family", r"'family\*family' crosses a grouping with itself"),
    ("family*trained,trained*family", r"grouping 'trained\*family' listed twice"),
    ("trained,trained", r"grouping 'trained' listed twice"),
])
def test_bad_grouping_specs_are_one_line_config_errors(spec, match):
  with pytest.raises(ConfigError, match=r"^config.eval.language_groups: " + match) as e:
    languages.parse_groupings(spec, where="config.eval.language_groups")
  assert "\n" not in str(e.value)


@pytest.mark.parametrize("spec", [
    ",".join(languages.LANGUAGE_GROUPINGS),
    "family*trained,resource_class*trained,script*resource_class"
])
def test_lareqa_group_averages_equal_brute_force(spec):
  rng = np.random.default_rng(0)
  n = len(CODES)
  metrics = {"languages": CODES, "map_xy": rng.uniform(size=(n, n))}
  metrics["map_xy"][2, 5] = np.nan  # an undefined pair
  for key in ("map_multi", "rank_gap", "rank_range", "recall@1", "recall@10"):
    metrics[key] = rng.uniform(size=n)
  metrics["rank_range"][0] = np.nan
  groups = languages.group_languages(CODES, languages.parse_groupings(spec), TRAINED)
  got = evaluators.group_averages(
      groups, functools.partial(retrieval_metrics.language_group_averages, metrics))
  assert got.keys() == set(spec.split(","))
  for grouping, by_label in groups.items():
    for label, members in by_label.items():
      g = got[grouping][label]
      # Members by brute force from the table, not from group_languages.
      idx = [
          i for i, x in enumerate(CODES) if " / ".join(
              _label(x, part) for part in grouping.split("*")) == label
      ]
      assert g["languages"] == [CODES[i] for i in idx]
      assert g["map_mono"] == pytest.approx(_brute_mean([metrics["map_xy"][i, i] for i in idx]))
      cross = [
          metrics["map_xy"][i, j] for i in range(n) for j in range(n)
          if i != j and (i in idx or j in idx)
      ]
      assert g["map_cross"] == pytest.approx(_brute_mean(cross))
      for key in ("map_multi", "rank_gap", "rank_range", "recall@1", "recall@10"):
        want = _brute_mean([metrics[key][i] for i in idx])
        assert g[f"{key}_mean"] == pytest.approx(want, nan_ok=True)


def test_beir_macro_averages_equal_brute_force():
  rng = np.random.default_rng(1)
  codes = languages.in_set("miracl")
  per_language = {x: {"ndcg@10": rng.uniform(), "recall@100": rng.uniform()} for x in codes}
  per_language["yo"]["recall@100"] = None  # missing: left out of the average
  groups = languages.group_languages(codes, [*languages.GROUPINGS, "family*script"])
  got = evaluators.group_averages(groups,
                                  functools.partial(retrieval_metrics.macro_averages, per_language))
  for grouping, by_label in groups.items():
    for label, members in by_label.items():
      for key in ("ndcg@10", "recall@100"):
        want = _brute_mean([per_language[x][key] for x in members])
        assert got[grouping][label][key] == pytest.approx(want, nan_ok=True)
  assert got["family"]["Atlantic-Congo"]["languages"] == ["sw", "yo"]
  assert got["family*script"]["Atlantic-Congo / Latn"]["languages"] == ["sw", "yo"]


def test_lareqa_results_reports_and_scalars_hold_the_groups(tmp_path):
  config = ml_collections.ConfigDict({
      "data": {"languages": "en+de"},
      "eval": {"language_groups": "trained,script,resource_class,family*trained"}
  })
  codes = ("en", "de", "ar", "th")
  results = evaluators.evaluate(retrievers.TfidfRetriever(), "xquad_r:eval", languages=codes,
                                config=config, output_dir=str(tmp_path))
  m = results["metrics"]
  assert list(m["groups"]) == ["trained", "script", "resource_class", "family*trained"]
  assert m["groups"]["script"]["Latn"]["languages"] == ["en", "de"]
  assert m["groups"]["resource_class"] == {
      "5": m["groups"]["resource_class"]["5"], "3": m["groups"]["resource_class"]["3"]
  }
  zero_shot = m["groups"]["trained"]["zero-shot"]
  assert zero_shot["languages"] == ["ar", "th"]
  assert zero_shot["map_multi_mean"] == pytest.approx(
      (m["map_multi"]["ar"] + m["map_multi"]["th"]) / 2)
  assert zero_shot["map_mono"] == pytest.approx(
      (m["map_xy"]["ar"]["ar"] + m["map_xy"]["th"]["th"]) / 2)
  crossed = m["groups"]["family*trained"]
  assert {label: g["languages"] for label, g in crossed.items()} == {
      "Afro-Asiatic / zero-shot": ["ar"], "Indo-European / trained": ["en", "de"],
      "Tai-Kadai / zero-shot": ["th"]
  }
  assert crossed["Indo-European / trained"]["map_multi_mean"] == pytest.approx(
      (m["map_multi"]["en"] + m["map_multi"]["de"]) / 2)
  assert crossed["Afro-Asiatic / zero-shot"]["map_mono"] == pytest.approx(m["map_xy"]["ar"]["ar"])
  saved = json.loads((tmp_path / eval_report.JSON_NAME).read_text())
  assert saved["metrics"]["groups"]["script"]["Thai"]["languages"] == ["th"]
  assert saved["metrics"]["groups"]["family*trained"] == eval_report.to_jsonable(crossed)
  report = (tmp_path / eval_report.MARKDOWN_NAME).read_text()
  assert "| zero-shot (2: ar th) |" in report and "| 3 (1: th) |" in report
  assert "| family × trained |" in report and "| Indo-European / trained (2: en de) |" in report
  assert "**ar** (zero-shot)" in report
  scalars = evaluators.scalars(results)
  assert scalars["eval/group/script/Latn/multilingual_map"] == pytest.approx(
      m["groups"]["script"]["Latn"]["map_multi_mean"])
  assert scalars["eval/group/trained/zero-shot/cross_map"] == pytest.approx(zero_shot["map_cross"])
  assert scalars["eval/group/family*trained/Tai-Kadai*zero-shot/mono_map"] == pytest.approx(
      m["map_xy"]["th"]["th"])


def _swahili_corpus(tmp_path):
  """A BEIR corpus of 3 Swahili documents and 2 queries, its language named by its directory."""
  corpus_dir = tmp_path / "miracl-sw"
  (corpus_dir / "qrels").mkdir(parents=True)
  (corpus_dir / "corpus.jsonl").write_text("".join(
      json.dumps({"_id": i, "text": t}) + "\n" for i, t in
      {"d1": "mvua inanyesha leo", "d2": "jua linawaka sana", "d3": "watoto wanacheza"}.items()))
  (corpus_dir / "queries.jsonl").write_text(
      json.dumps({"_id": "q1", "text": "mvua leo"}) + "\n"
      + json.dumps({"_id": "q2", "text": "jua kali"}) + "\n")
  (corpus_dir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n"
                                                 "q2\td2\t1\n")
  return corpus_dir


def test_beir_corpus_language_gets_its_groups(tmp_path):
  corpus_dir = _swahili_corpus(tmp_path)
  config = ml_collections.ConfigDict({
      "data": {"languages": "en+de"},
      "eval": {"language_groups": languages.DEFAULT_LANGUAGE_GROUPS + ",resource_class*trained"}
  })
  results = evaluators.evaluate(retrievers.TfidfRetriever(), f"beir:{corpus_dir}", config=config,
                                output_dir=str(tmp_path / "out"))
  m = results["metrics"]
  assert results["languages"] == ["sw"]
  assert m["groups"]["trained"] == {
      "zero-shot": {"languages": ["sw"], **{key: m[key] for key in evaluators.BEIR_METRICS}}
  }
  assert m["groups"]["family"]["Atlantic-Congo"]["ndcg@10"] == m["ndcg@10"]
  assert m["groups"]["resource_class"]["2"]["mrr@10"] == m["mrr@10"]
  assert m["groups"]["resource_class*trained"] == {
      "2 / zero-shot": {"languages": ["sw"], **{key: m[key] for key in evaluators.BEIR_METRICS}}
  }
  assert evaluators.scalars(results)["eval/group/script/Latn/ndcg@10"] == m["ndcg@10"]
  assert evaluators.scalars(
      results)["eval/group/resource_class*trained/2*zero-shot/recall@100"] == m["recall@100"]
  assert "Corpus language sw: trained zero-shot, family Atlantic-Congo" in (
      tmp_path / "out" / eval_report.MARKDOWN_NAME).read_text()
  none = evaluators.evaluate(retrievers.TfidfRetriever(), f"beir:{corpus_dir}", config=config,
                             language_groups="")
  assert "groups" not in none["metrics"]
  # A corpus named for no language, or given one explicitly.
  assert evaluators.beir_language("beir:/d/scifact", None) is None
  assert evaluators.beir_language("beir:/d/scifact", ["en"]) == "en"
  assert evaluators.beir_language("beir:/d/mrtydi_th", ["en", "de"]) == "th"


def test_a_grouping_left_out_is_said_in_the_log_and_the_results(tmp_path, caplog):
  """Issue 23: a requested grouping the results cannot have ("trained" without a training config
  or without a zero-shot language, and the groupings crossed with it) is named with the reason in
  one log line and in results.json / results.md, never dropped silently."""
  corpus_dir = _swahili_corpus(tmp_path)
  out = tmp_path / "out"
  results = evaluators.evaluate(retrievers.TfidfRetriever(), f"beir:{corpus_dir}",
                                language_groups="resource_class*trained,family",
                                output_dir=str(out))
  assert list(results["metrics"]["groups"]) == ["family"]
  note = ("language grouping(s) left out of the results: resource_class*trained (no training "
          "config, so no trained / zero-shot split)")
  assert results["warnings"] == [note]
  assert [r.getMessage() for r in caplog.records if "left out" in r.getMessage()] == [note]
  assert json.loads((out / eval_report.JSON_NAME).read_text())["warnings"] == [note]
  assert note in (out / eval_report.MARKDOWN_NAME).read_text()
  # Trained on the corpus's language: no zero-shot language.
  config = ml_collections.ConfigDict({"data": {"languages": "sw+en"}})
  results = evaluators.evaluate(retrievers.TfidfRetriever(), f"beir:{corpus_dir}", config=config,
                                language_groups="trained,script")
  assert results["warnings"] == [
      "language grouping(s) left out of the results: trained (no zero-shot language: every "
      "evaluated language was trained on)"
  ]
  results = evaluators.evaluate(retrievers.TfidfRetriever(), f"beir:{corpus_dir}", config=config,
                                language_groups="script")
  assert results["warnings"] == []
  # The default groupings are not asked for: "trained" skipped where it does not apply, quietly.
  results = evaluators.evaluate(retrievers.TfidfRetriever(), f"beir:{corpus_dir}")
  assert "trained" not in results["metrics"]["groups"] and results["warnings"] == []
