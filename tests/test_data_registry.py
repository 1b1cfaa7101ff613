"""Tests of the named data specs (hybrid_jax/data/registry.py) and the --describe command."""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hybrid_jax.data.jsonl import write_jsonl
from hybrid_jax.data.languages import XQUAD_R_LANGUAGES
from hybrid_jax.data.parallel_qa import DataError
from hybrid_jax.data.registry import load, xquad_r_files

# The figures for the embedded split (articles 36-47 of XQuAD-R).
EVAL_CANDIDATES = {
    "ar": 308, "de": 311, "el": 308, "en": 300, "es": 307, "hi": 305, "ru": 314, "th": 205,
    "tr": 301, "vi": 306, "zh": 328
}


@pytest.fixture(scope="module")
def xquad_r_all():
  return load("xquad_r:all")


def test_xquad_r_splits(xquad_r_all):
  train, eval_ = load("xquad_r:train"), load("xquad_r:eval")
  for data in (xquad_r_all, train, eval_):
    assert data.languages == XQUAD_R_LANGUAGES and data.available.all()
  assert (train.num_examples, eval_.num_examples, xquad_r_all.num_examples) == (925, 265, 1190)
  assert len(xquad_r_all.candidates) == 13014
  assert {lang: c["candidates"] for lang, c in eval_.counts().items()} == EVAL_CANDIDATES
  assert not set(train.ids) & set(eval_.ids)
  assert list(train.ids) + list(eval_.ids) == list(xquad_r_all.ids)
  assert len(train.candidates) + len(eval_.candidates) == len(xquad_r_all.candidates)
  np.testing.assert_array_equal(
      eval_.candidates.text[eval_.positives],
      xquad_r_all.candidates.text[xquad_r_all.positives[train.num_examples:]])


def test_languages_restrict_in_the_given_order():
  data = load("xquad_r:eval", languages="zh,en")
  assert data.languages == ("zh", "en")
  full = load("xquad_r:eval")
  np.testing.assert_array_equal(data.queries, full.queries[:, [10, 3]])
  assert load("xquad_r:eval", languages=("en",)).counts()["en"] == full.counts()["en"]
  with pytest.raises(ValueError, match=r"\['fr'\] not in the data"):
    load("xquad_r:eval", languages=("en", "fr"))
  with pytest.raises(ValueError, match="unknown language code 'dn'"):
    load("xquad_r:eval", languages="dn")


def test_unknown_scheme_or_split_lists_the_valid_ones():
  with pytest.raises(
      ValueError, match=r"unknown data spec 'xquad:eval'.*xquad_r:\{train,eval,all"
      r"\}.*tfds:NAME"):
    load("xquad:eval")
  with pytest.raises(ValueError, match="xquad_r:train, xquad_r:eval, xquad_r:all"):
    load("xquad_r:dev")
  with pytest.raises(ValueError, match="missing argument after 'jsonl:'"):
    load("jsonl:")


def test_path_specs_dispatch_to_their_loaders(tmp_path):
  small = load("xquad_r:eval", languages=("en", "de"))
  squad_dir = tmp_path / "squad"
  squad_dir.mkdir()
  for lang in ("de", "en"):
    with xquad_r_files()[lang].open("rb") as f:
      (squad_dir / f"{lang}.json").write_bytes(gzip.decompress(f.read()))
  mlqa_dir = tmp_path / "mlqa"
  mlqa_dir.mkdir()
  for lang in ("de", "en"):
    os.symlink(squad_dir / f"{lang}.json", mlqa_dir / f"dev-context-{lang}-question-{lang}.json")
  squad = load(f"squad:{squad_dir}", languages=("en", "de"))
  assert squad.name == f"squad:{squad_dir}" and squad.num_examples == 1190
  mlqa = load(f"mlqa_r:{mlqa_dir}")
  np.testing.assert_array_equal(mlqa.positives, load(f"squad:{squad_dir}").positives)

  first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
  write_jsonl(small.select_languages(["en"]), first)
  write_jsonl(small.select_languages(["de"]), second)
  both = load(f"jsonl:{first},{second}")
  assert both.languages == ("en", "de")
  np.testing.assert_array_equal(both.queries, small.queries)
  # A comma in a path (it could not be given at all): written `\,`.
  comma = tmp_path / "en,de.jsonl"
  os.rename(first, comma)
  escaped = str(comma).replace(",", "\\,")
  np.testing.assert_array_equal(load(f"jsonl:{escaped},{second}").queries, small.queries)
  with pytest.raises(DataError) as error:
    load(f"jsonl:{comma}")
  assert str(error.value) == (f"jsonl:{comma}: commas separate files, and the file {comma} has one "
                              f"in its name: write that comma as \\, (jsonl:{escaped})")
  os.rename(comma, first)
  from_hf = load(f"hf:{first}", languages=("en",))
  np.testing.assert_array_equal(from_hf.queries[:, 0], small.queries[:, 0])
  assert load(f"hf:{tmp_path}:train").languages == ("en", "de")


def test_tfds_spec_without_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
  with pytest.raises(ImportError, match=r"pip install hybrid-jax\[tfds\]"):
    load("tfds:xquad_r_jsonl:train")


def test_skip_mode_reaches_the_loaders(tmp_path):
  lines = [{"id": "a", "lang": "en", "query": "Who?", "passage": "He."},
           {"id": "b", "lang": "en", "query": "", "passage": "She."}]
  path = tmp_path / "x.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in lines))
  data = load(f"jsonl:{path}", on_error="skip")
  assert data.skipped == {"empty query": 1} and data.num_examples == 1


def _describe(*args):
  return subprocess.run([sys.executable, "-m", "hybrid_jax.data", "--describe", *args],
                        capture_output=True, text=True, timeout=120, check=False)


def test_describe_command():
  result = _describe("xquad_r:eval")
  assert result.returncode == 0, result.stderr
  counts = load("xquad_r:eval").counts()
  lines = result.stdout.splitlines()
  assert lines[0].startswith("xquad_r:eval: 265 parallel examples, 11 languages")
  for lang, c in counts.items():
    assert f"{lang:<6}{c['examples']:>10}{c['distinct_positives']:>11}{c['candidates']:>12}" in lines

  two = _describe("xquad_r:eval", "xquad_r:train", "--languages", "en,de")
  assert two.returncode == 0, two.stderr
  assert "xquad_r:train: 925 parallel examples, 2 languages" in two.stdout
  assert sum(line.startswith(("en ", "de ")) for line in two.stdout.splitlines()) == 4

  bad = _describe("nope:x")
  assert bad.returncode == 2 and "valid specs" in bad.stderr


def test_describe_prints_one_line_per_user_error(tmp_path):
  record = {"id": "a", "lang": "en", "query": "Who?", "passage": "He did.", "contxt": "c"}
  typo = tmp_path / "typo.jsonl"
  typo.write_text(json.dumps(record) + "\n")
  surrogate = tmp_path / "surrogate.jsonl"
  surrogate.write_text(json.dumps({**record, "query": "\udfff"}) + "\n")
  cases = [
      ([f"jsonl:{tmp_path}/missing.jsonl"], "missing.jsonl: cannot read: No such file"),
      ([f"jsonl:{typo}", "--strict"], "typo.jsonl:1: unknown field 'contxt' (did you mean"),
      ([f"jsonl:{surrogate}"], "surrogate.jsonl:1 (id 'a') field 'query': text is not valid"),
      ([f"squad:{tmp_path}/none"], "none: no such file or directory"),
      (["xquad_r:eval", "--languages", "en,xx"], "unknown language code 'xx'"),
  ]
  for args, message in cases:
    result = _describe(*args)
    assert result.returncode == 2, (args, result.stderr)
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert _describe(f"jsonl:{typo}").returncode == 0  # without --strict: a warning
  verbose = _describe(f"jsonl:{typo}", "--strict", "--verbose")
  assert verbose.returncode != 0 and "Traceback (most recent call last)" in verbose.stderr
