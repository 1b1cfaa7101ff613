"""Hugging Face `datasets` and TensorFlow Datasets sources of JSONL-style records (`{"id", "lang",
"query", "passage"[, "context"]}`, see jsonl.py) -> `ParallelQA`.

`datasets` is imported only by the caller (who passes a Dataset); `tensorflow_datasets` only inside
`load_tfds`, and only with the `tfds` extra installed.
"""

from __future__ import annotations

from hybrid_jax.data.jsonl import REQUIRED_FIELDS, from_records
from hybrid_jax.data.parallel_qa import DataError, ParallelQA, Problems

TFDS_INSTALL_HINT = "pip install hybrid-jax[tfds]"


def _choose_split(dataset, split: str | None):
  """The Dataset of `split` from a DatasetDict-like `dataset` (a Dataset is returned as is)."""
  if not hasattr(dataset, "column_names") or isinstance(dataset.column_names, dict):
    splits = list(dataset.keys())
    if split is None and len(splits) == 1:
      split = splits[0]
    if split not in splits:
      raise DataError(f"split {split!r} is not in the dataset; choose one of {splits}")
    return dataset[split], split
  if split is not None and dataset.split is not None and str(dataset.split) != split:
    raise DataError(f"asked for split {split!r} of a Dataset that holds split {dataset.split}")
  return dataset, split or (str(dataset.split) if dataset.split is not None else None)


def from_hf_dataset(dataset, split: str | None = None, *, name: str | None = None,
                    on_error: str = "raise", strict: bool = False) -> ParallelQA:
  """Converts a Hugging Face `datasets.Dataset` (or one split of a `DatasetDict`) with columns
  id, lang, query, passage (and optionally context) to `ParallelQA`, as `load_jsonl` would.

  Args:
    dataset: a Dataset, or a DatasetDict (e.g. `datasets.load_dataset("json", data_files=...)`).
    split: the DatasetDict split to use; may be omitted when it has only one.
    name: the data's name (default: "hf" and the split).
    on_error: "raise" or "skip" bad rows (see `load_jsonl`); a missing column always raises.
    strict: a column other than the known ones is an error (else a warning with counts).

  Returns:
    The data; rows are named "<name> row <i>" in errors.
  """
  dataset, split = _choose_split(dataset, split)
  name = name or f"hf[{split}]"
  missing = [c for c in REQUIRED_FIELDS if c not in dataset.column_names]
  if missing:
    raise DataError(f"{name}: missing column(s) {missing}; the dataset has "
                    f"{dataset.column_names}, expected {list(REQUIRED_FIELDS)} (+ 'context')")
  fields = list(dataset.column_names)
  columns = [dataset[field] for field in fields]
  records = (
      (f"{name} row {i}", dict(zip(fields, values))) for i, values in enumerate(zip(*columns)))
  return from_records(records, name=name, problems=Problems(on_error, strict))


def _decode_tfds_example(example: dict) -> dict:
  """A TFDS numpy example (bytes strings, numpy scalars) as plain Python str/int values."""
  out = {}
  for key, value in example.items():
    if isinstance(value, bytes):
      value = value.decode("utf-8")
    elif hasattr(value, "item"):
      value = value.item()
      value = value.decode("utf-8") if isinstance(value, bytes) else value
    out[key] = value
  return out


def tfds_examples(name: str, split: str, data_dir: str | None = None):
  """The examples of a TFDS split as numpy trees (`tfds.as_numpy`).

  Raises:
    ImportError: tensorflow_datasets is not installed (the message says how to install it).
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f"TFDS data needs TensorFlow Datasets, which is not installed: "
                      f"{TFDS_INSTALL_HINT}") from e
  return tfds.as_numpy(tfds.load(name, split=split, data_dir=data_dir))


def load_tfds(name: str, split: str = "train", *, data_dir: str | None = None,
              on_error: str = "raise", strict: bool = False) -> ParallelQA:
  """Loads a TFDS dataset whose examples have the JSONL fields (see `from_hf_dataset`).

  Needs the `tfds` extra (`pip install hybrid-jax[tfds]`: tensorflow-datasets, tensorflow-cpu).

  Args:
    name: the TFDS name (optionally "name:version").
    split: the TFDS split.
    data_dir: TFDS data directory (default: TFDS's own).
    on_error: "raise" or "skip" bad examples (see `load_jsonl`).
    strict: a feature other than the known ones is an error (else a warning with counts).

  Raises:
    ImportError: tensorflow_datasets is not installed.
  """
  spec = f"tfds:{name}[{split}]"
  records = ((f"{spec} example {i}", _decode_tfds_example(example))
             for i, example in enumerate(tfds_examples(name, split, data_dir)))
  return from_records(records, name=spec, problems=Problems(on_error, strict))
