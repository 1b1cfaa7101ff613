"""Tests of the Hugging Face datasets and TFDS sources (hybrid_jax/data/hf.py)."""

import json
import re
import sys

import datasets
import numpy as np
import pytest

from hybrid_jax.data.hf import _decode_tfds_example, from_hf_dataset, load_tfds
from hybrid_jax.data.jsonl import load_jsonl, write_jsonl
from hybrid_jax.data.parallel_qa import DataError
from hybrid_jax.data.registry import load
from tiny_run import free_port


@pytest.fixture(scope="module")
def jsonl_file(tmp_path_factory):
  """xquad_r:eval in three languages, as a JSONL file."""
  path = tmp_path_factory.mktemp("hf") / "eval.jsonl"
  write_jsonl(load("xquad_r:eval", languages=("en", "de", "zh")), path)
  return path


def _assert_same(a, b):
  assert a.languages == b.languages
  assert list(a.ids) == list(b.ids)
  np.testing.assert_array_equal(a.queries, b.queries)
  np.testing.assert_array_equal(a.positives, b.positives)
  np.testing.assert_array_equal(a.candidates.text, b.candidates.text)
  np.testing.assert_array_equal(a.candidates.context, b.candidates.context)


def test_load_dataset_json_of_local_files_equals_load_jsonl(tmp_path, jsonl_file):
  dataset_dict = datasets.load_dataset("json", data_files=[str(jsonl_file)],
                                       cache_dir=str(tmp_path / "cache"))
  data = from_hf_dataset(dataset_dict)  # the only split, "train"
  assert data.name == "hf[train]"
  _assert_same(data, load_jsonl(jsonl_file))
  _assert_same(from_hf_dataset(dataset_dict["train"], "train"), data)


def test_dataset_from_rows_with_missing_languages_and_no_context():
  rows = {
      "id": ["a", "a", "b"], "lang": ["en", "de", "de"], "query": ["Who?", "Wer?", "Wo?"],
      "passage": ["He did.", "Er.", "Dort."]
  }
  data = from_hf_dataset(datasets.Dataset.from_dict(rows), name="rows")
  assert data.languages == ("en", "de")
  assert data.available.tolist() == [[True, True], [False, True]]
  assert list(data.candidates.context) == ["", "", ""]


def test_split_choice_and_missing_column():
  rows = {"id": ["a"], "lang": ["en"], "query": ["Who?"], "passage": ["He did."]}
  two_splits = datasets.DatasetDict({
      "train": datasets.Dataset.from_dict(rows), "test": datasets.Dataset.from_dict(rows)
  })
  with pytest.raises(DataError, match=r"split None is not in the dataset; choose one of"):
    from_hf_dataset(two_splits)
  with pytest.raises(DataError, match=r"'dev'.*\['train', 'test'\]"):
    from_hf_dataset(two_splits, "dev")
  assert from_hf_dataset(two_splits, "test").name == "hf[test]"
  no_lang = datasets.Dataset.from_dict({k: v for k, v in rows.items() if k != "lang"})
  with pytest.raises(DataError, match=r"missing column\(s\) \['lang'\]"):
    from_hf_dataset(no_lang, name="nolang")


def test_bad_rows_raise_or_are_skipped(tmp_path, jsonl_file):
  lines = jsonl_file.read_text(encoding="utf-8").splitlines()[:4]
  records = [json.loads(line) for line in lines]
  records[2]["query"] = ""
  path = tmp_path / "bad.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
  dataset = datasets.load_dataset("json", data_files=[str(path)], cache_dir=str(tmp_path / "c"))
  with pytest.raises(DataError, match=r"hf\[train\] row 2 .*field 'query': empty query"):
    from_hf_dataset(dataset)
  assert from_hf_dataset(dataset, on_error="skip").skipped == {"empty query": 1}


def test_load_tfds_without_tensorflow_datasets_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
  with pytest.raises(ImportError, match=r"pip install hybrid-jax\[tfds\]"):
    load_tfds("xquad_r_jsonl")


def test_decode_tfds_example():
  example = {
      "id": np.bytes_(b"q1"), "lang": b"de", "query": np.array(b"Wer?"), "passage": "Er.".encode(),
      "rank": np.int64(3)
  }
  assert _decode_tfds_example(example) == {
      "id": "q1", "lang": "de", "query": "Wer?", "passage": "Er.", "rank": 3
  }


def test_load_tfds_reads_examples(monkeypatch, jsonl_file):
  tfds = pytest.importorskip("tensorflow_datasets")
  tf = pytest.importorskip("tensorflow")
  records = [json.loads(line) for line in jsonl_file.read_text(encoding="utf-8").splitlines()]
  columns = {k: [r[k] for r in records] for k in ("id", "lang", "query", "passage", "context")}
  monkeypatch.setattr(tfds, "load",
                      lambda name, split, data_dir: tf.data.Dataset.from_tensor_slices(columns))
  _assert_same(load_tfds("xquad_r_jsonl", "train"), load_jsonl(jsonl_file))


def test_unknown_columns_warn_or_fail_when_strict(caplog):
  import logging
  rows = {
      "id": ["a", "b"], "lang": ["en", "en"], "query": ["Who?", "Why?"],
      "passage": ["He did.", "So."], "contxt": ["c", "d"]
  }
  dataset = datasets.Dataset.from_dict(rows)
  with caplog.at_level(logging.WARNING):
    data = from_hf_dataset(dataset, name="typo")
  assert set(data.candidates.context) == {""}
  assert "typo: 2 record(s) have the unknown field 'contxt'" in caplog.text
  with pytest.raises(DataError, match=r"typo row 0: unknown field 'contxt' \(did you mean "
                     r"'context'\?\)"):
    from_hf_dataset(dataset, name="typo", strict=True)


def test_a_lone_surrogate_in_a_json_file_names_the_file(tmp_path):
  path = tmp_path / "s.jsonl"
  path.write_text(json.dumps({"id": "a", "lang": "en", "query": "x\ud800", "passage": "p"}) + "\n")
  with pytest.raises(DataError, match=rf"hf:{tmp_path}.*: cannot read .*s\.jsonl: .*surrogate"):
    load(f"hf:{path}")


def test_a_hub_name_without_the_hub_fails_at_once_in_one_line(monkeypatch):
  """Offline, `--describe hf:no-such-user/no-such-dataset` retried ~24 s, then raised a
  ConnectionError traceback. Now a probe of the Hub fails at once (datasets is not asked), and
  with HF_HUB_OFFLINE a name missing from the cache is one line too."""
  monkeypatch.setattr(datasets.config, "HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
  monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
  load_dataset = datasets.load_dataset

  def not_asked(*args, **kwargs):
    raise AssertionError("datasets was asked")

  monkeypatch.setattr(datasets, "load_dataset", not_asked)
  with pytest.raises(DataError) as error:
    load("hf:no-such-user/no-such-dataset")
  assert re.fullmatch(
      r"hf:no-such-user/no-such-dataset: cannot reach the Hugging Face Hub \(127\.0\.0\.1:\d+: "
      r"Connection refused\); set HF_HUB_OFFLINE=1 to read a copy downloaded before from the "
      r"local cache, or pass local files: hf:PATH / jsonl:PATH", str(error.value)), error.value
  monkeypatch.setattr(datasets, "load_dataset", load_dataset)
  monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
  with pytest.raises(
      DataError, match=r"^hf:no-such-user/no-such-dataset: not in the local "
      r"Hugging Face cache, and HF_HUB_OFFLINE is set so it is not downloaded"):
    load("hf:no-such-user/no-such-dataset")
