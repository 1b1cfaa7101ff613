"""`ParallelQA` backed by memory-mapped Arrow tables: data larger than memory, read per batch.

A prepared directory (`prepare`, or `python -m hybrid_jax.data --prepare SPEC --out DIR`) holds

  records/               a Hugging Face `datasets` Dataset (Arrow files, memory-mapped on load)
                         with string columns id, query, passage, context
  positives.npy          int64 [N, L], as `ParallelQA.positives`
  query_rows.npy         int64 [N, L], the records row of each query (-1 where missing)
  id_rows.npy            int64 [N], a records row holding each example's id
  candidate_rows.npy     int64 [C], the records row holding each candidate's passage and context
  candidate_language.npy int32 [C]
  parallel_qa.json       name, languages, skipped counts, format version

and `load_arrow(DIR)` (the spec `arrow:DIR`) gives a `ParallelQA` whose ids, queries and
candidate texts are `ArrowStrings`: row numbers into the memory-mapped columns, resolved to Python
strings only for the rows a batch asks for. The index arrays (8 bytes per (example, language) and
per candidate, about 150 MB for 1M examples x 9 languages) are the only per-example memory.

JSONL and parquet inputs with `{"id", "lang", "query", "passage"[, "context"]}` records are
prepared without loading them into Python: `datasets` converts the files to Arrow, then one pass
hashes each record's (lang, passage, context) and (id, lang) and numpy finds the candidates
(distinct triples), examples (distinct ids) and duplicates. The result is the same `ParallelQA`
as `load("jsonl:...")` (same ids, languages, candidate order, skip rules). Any other spec is
loaded in memory and written out.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shlex
import shutil

import numpy as np

from hybrid_jax.data.jsonl import record_fields
from hybrid_jax.data.languages import KNOWN_LANGUAGES
from hybrid_jax.data.parallel_qa import Candidates, ParallelQA, Problems
from hybrid_jax.errors import UserError

FORMAT_VERSION = 1
META_FILE = "parallel_qa.json"
TEXT_COLUMNS = ("id", "query", "passage", "context")
_INDEX_FILES = ("positives", "query_rows", "id_rows", "candidate_rows", "candidate_language")
_STREAMED_SUFFIXES = {
    ".jsonl": "json", ".jsonl.gz": "json", ".json": "json", ".json.gz": "json",
    ".parquet": "parquet"
}
_HASH_BYTES = 16  # blake2b digest: collisions among 1e9 records ~1e-20


class ArrowStrings:
  """The object array `column[rows]` (None where a row is -1), read lazily.

  Indexing (ints, slices, index arrays, masks) gives another `ArrowStrings` over `rows[key]` (a
  single element gives its string); text is read from the memory-mapped column only by
  `tolist()` / `np.asarray()`. Enough of the numpy interface for `ParallelQA` and the batch
  builder: shape, ndim, len, ravel, indexing, tolist.

  Args:
    column: a one-column `datasets.Dataset` in "arrow" format (memory-mapped).
    rows: int64 array of any shape, row numbers into `column`, -1 for `missing`.
    missing: the value of a -1 row and of a null cell.
    directory: the prepared directory the column comes from (where its stored token ids are,
      `hybrid_jax.data.token_ids`).
  """

  def __init__(self, column, rows: np.ndarray, missing: str | None = None,
               directory: str | None = None):
    self._column = column
    self.rows = np.asarray(rows, np.int64)
    self._missing = missing
    self.directory = directory

  @property
  def shape(self) -> tuple[int, ...]:
    return self.rows.shape

  @property
  def ndim(self) -> int:
    return self.rows.ndim

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, key):
    rows = self.rows[key]
    if np.ndim(rows) == 0:
      return self._read(np.asarray([rows]))[0]
    return ArrowStrings(self._column, rows, self._missing, self.directory)

  def ravel(self) -> "ArrowStrings":
    return ArrowStrings(self._column, self.rows.ravel(), self._missing, self.directory)

  def _read(self, flat_rows: np.ndarray) -> list:
    present = flat_rows >= 0
    out = [self._missing] * len(flat_rows)
    if present.any():
      table = self._column[flat_rows[present].tolist()]
      for i, text in zip(np.flatnonzero(present).tolist(), table.column(0).to_pylist()):
        out[i] = self._missing if text is None else text
    return out

  def tolist(self) -> list:
    flat = self._read(self.rows.ravel())
    if self.rows.ndim <= 1:
      return flat
    return np.array(flat, dtype=object).reshape(self.rows.shape).tolist()

  def __array__(self, dtype=None, copy=None):
    out = np.empty(self.rows.size, dtype=object)
    out[:] = self._read(self.rows.ravel())
    return out.reshape(self.rows.shape)

  def __iter__(self):
    return iter(self.tolist())


def records_path(directory: str) -> str:
  return os.path.join(directory, "records")


def load_arrow(directory: str, *, name: str | None = None) -> ParallelQA:
  """The `ParallelQA` of a prepared directory, texts memory-mapped (see the module docstring).

  Raises:
    UserError: `directory` is not a prepared directory (the message says how to make one).
  """
  import datasets  # pylint: disable=g-import-not-at-top  (slow import, only when asked for)
  meta_path = os.path.join(directory, META_FILE)
  if not os.path.isfile(meta_path):
    raise UserError(f"arrow:{directory}: no {META_FILE} there; make the directory with "
                    f"`python -m hybrid_jax.data --prepare SPEC --out {shlex.quote(directory)}`")
  with open(meta_path) as f:
    meta = json.load(f)
  if meta.get("format") != FORMAT_VERSION:
    raise UserError(f"{meta_path}: format {meta.get('format')!r}, this version reads "
                    f"{FORMAT_VERSION}; prepare the directory again")
  index = {key: np.load(os.path.join(directory, f"{key}.npy")) for key in _INDEX_FILES}
  records = datasets.load_from_disk(records_path(directory)).with_format("arrow")

  def strings(key, rows, missing=None):
    return ArrowStrings(records.select_columns([key]), index[rows], missing, directory)

  return ParallelQA(
      name=name or f"arrow:{directory}", languages=tuple(meta["languages"]), ids=strings(
          "id", "id_rows"), queries=strings("query", "query_rows"), positives=index["positives"],
      candidates=Candidates(language=index["candidate_language"],
                            text=strings("passage", "candidate_rows"),
                            context=strings("context", "candidate_rows",
                                            missing="")), skipped=dict(meta.get("skipped", {})))


def _write(directory: str, records, data_name: str, languages, skipped, index) -> None:
  """Writes a prepared directory: `records` (a datasets.Dataset) and the index arrays."""
  os.makedirs(directory, exist_ok=True)
  if os.path.exists(records_path(directory)):
    shutil.rmtree(records_path(directory))
  records.save_to_disk(records_path(directory))
  for key in _INDEX_FILES:
    np.save(os.path.join(directory, f"{key}.npy"), index[key])
  with open(os.path.join(directory, META_FILE), "w") as f:
    json.dump(
        {
            "format": FORMAT_VERSION, "name": data_name, "languages": list(languages),
            "skipped": skipped
        }, f, indent=1)


def write_arrow(data: ParallelQA, directory: str) -> None:
  """Writes an in-memory `ParallelQA` as a prepared directory (records: the C candidates, then
  one row per available (example, language) query)."""
  import datasets  # pylint: disable=g-import-not-at-top
  num_candidates = len(data.candidates)
  available = data.available
  query_rows = np.full(available.shape, -1, np.int64)
  query_rows[available] = num_candidates + np.arange(available.sum())
  first_lang = np.argmax(available, axis=1)
  id_rows = query_rows[np.arange(data.num_examples), first_lang]
  example_of_row = np.nonzero(available)[0]
  nones = [None] * len(example_of_row)
  records = datasets.Dataset.from_dict(
      {
          "id": [None] * num_candidates + np.asarray(data.ids)[example_of_row].tolist(),
          "query": [None] * num_candidates + np.asarray(data.queries)[available].tolist(),
          "passage": np.asarray(data.candidates.text).tolist() + nones,
          "context": np.asarray(data.candidates.context).tolist() + nones,
      }, features=datasets.Features({key: datasets.Value("string") for key in TEXT_COLUMNS}))
  _write(
      directory, records, data.name, data.languages, data.skipped, {
          "positives": data.positives, "query_rows": query_rows, "id_rows": id_rows,
          "candidate_rows": np.arange(num_candidates, dtype=np.int64), "candidate_language":
              data.candidates.language.astype(np.int32)
      })


def _digest(*parts: str) -> bytes:
  return hashlib.blake2b("\x00".join(parts).encode("utf-8", "surrogatepass"),
                         digest_size=_HASH_BYTES).digest()


def _first_occurrence_ranks(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(rank, first): for each element, the rank of its key among distinct keys ordered by first
  appearance, and for each distinct key (in that order) the position of its first appearance."""
  _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
  order = np.argsort(first, kind="stable")
  rank_of_unique = np.empty(len(first), np.int64)
  rank_of_unique[order] = np.arange(len(first))
  return rank_of_unique[inverse.reshape(-1)], first[order]


def _scan(records, where_of, problems: Problems, progress):
  """One pass over the records: per row the first problem (or None), a lang code index, and
  digests of (id), (id, lang) and (lang, passage, context)."""
  num_rows = len(records)
  id_digest = np.zeros(num_rows, f"V{_HASH_BYTES}")
  id_lang_digest = np.zeros(num_rows, f"V{_HASH_BYTES}")
  candidate_digest = np.zeros(num_rows, f"V{_HASH_BYTES}")
  lang_code = np.full(num_rows, -1, np.int64)
  codes = {lang: i for i, lang in enumerate(sorted(KNOWN_LANGUAGES))}
  row = 0
  for batch in records.iter(batch_size=50_000):
    columns = {key: batch.column(key).to_pylist() for key in batch.column_names}
    size = len(columns["id"])
    for k in range(size):
      record = {key: columns[key][k] for key in columns if columns[key][k] is not None}
      fields = record_fields(record, where_of(row + k), problems)
      if fields is None:
        continue
      id_, _, lang, _, passage, context = fields
      lang_code[row + k] = codes[lang]
      id_digest[row + k] = _digest(id_)
      id_lang_digest[row + k] = _digest(id_, lang)
      candidate_digest[row + k] = _digest(lang, passage, context)
    row += size
    progress.update(size)
  return lang_code, id_digest, id_lang_digest, candidate_digest, sorted(KNOWN_LANGUAGES)


def _has_text(path: str) -> bool:
  """Whether a (possibly gzipped) text file has a non-blank line; reads up to the first one."""
  with (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8",
                                                     errors="replace") as f:
    return any(line.strip() for line in f)


def prepare_files(paths, directory: str, *, name: str, on_error: str = "raise") -> ParallelQA:
  """Prepares JSONL (`.jsonl[.gz]`, `.json[.gz]` with one record per line) or parquet files of
  `{"id", "lang", "query", "passage"[, "context"]}` records into `directory` without holding
  them in Python; returns `load_arrow(directory)`.

  Memory: the Arrow conversion is done by `datasets` in chunks; then 3 x 16 bytes of digests and
  8 bytes per record (about 600 MB for 10M records) plus numpy's sort.

  Raises:
    UserError: a file of another kind, or a missing file.
    DataError: a bad record (on_error="raise"), named by file and record number (1-based, blank
      lines not counted) and field, with the rules of `load_jsonl`.
  """
  import datasets  # pylint: disable=g-import-not-at-top
  import tqdm  # pylint: disable=g-import-not-at-top
  paths = [str(p) for p in paths]
  builders = set()
  cache_dir = os.path.join(directory, ".datasets_cache")
  for path in paths:
    if not os.path.isfile(path):
      raise UserError(f"{name}: no file {path}")
    suffix = next((s for s in _STREAMED_SUFFIXES if path.endswith(s)), None)
    if suffix is None:
      raise UserError(f"{name}: {path} is not one of {', '.join(_STREAMED_SUFFIXES)}")
    builders.add(_STREAMED_SUFFIXES[suffix])
  if len(builders) != 1:
    raise UserError(f"{name}: mixes JSON Lines and parquet files; prepare them separately")
  builder = builders.pop()
  per_file = []
  for path in paths:
    if builder == "json" and not _has_text(path):
      raise UserError(f"{path}: no records (the file is empty or holds only blank lines); give a "
                      "file with one JSON record per line")
    try:
      per_file.append(
          datasets.load_dataset(builder, data_files=[path], split="train", cache_dir=cache_dir))
    except Exception as e:  # pylint: disable=broad-except  (datasets wraps parser errors)
      cause = e.__cause__ or e
      raise UserError(f"{path}: not readable as {builder}: {type(cause).__name__}: "
                      f"{str(cause).splitlines()[0] if str(cause) else ''}") from e
  for path, ds in zip(paths, per_file):
    mixed = [
        key for key in ("lang", *TEXT_COLUMNS)
        if key in ds.features and not isinstance(ds.features[key], datasets.Value)
    ]
    if mixed:
      raise UserError(f"{path}: field {mixed[0]!r} holds values of several JSON types; make "
                      "every value a string (or load it in memory: jsonl:PATH skips such records "
                      "with data.on_error=skip)")
  # Cast before concatenating: ids may be ints in one file and strings in another.
  per_file = [
      ds.cast_column("id", datasets.Value("string"))
      if "id" in ds.column_names and ds.features["id"] != datasets.Value("string") else ds
      for ds in per_file
  ]
  records = datasets.concatenate_datasets(per_file)
  missing = [f for f in ("id", "lang", "query", "passage") if f not in records.column_names]
  if missing:
    raise UserError(f"{name}: no record has the field(s) {missing}; records need "
                    "{'id', 'lang', 'query', 'passage'[, 'context']}")
  problems = Problems(on_error)
  starts = np.cumsum([0] + [len(ds) for ds in per_file])

  def where_of(row):
    file = int(np.searchsorted(starts, row, side="right")) - 1
    return f"{paths[file]}: record {row - starts[file] + 1}"

  with tqdm.tqdm(total=len(records), desc="prepare: reading records", unit="record") as progress:
    lang_code, id_digest, id_lang_digest, candidate_digest, code_langs = _scan(
        records.with_format("arrow"), where_of, problems, progress)
  valid = np.flatnonzero(lang_code >= 0)
  _, first_of_pair = _first_occurrence_ranks(id_lang_digest[valid])
  accepted = np.zeros(len(valid), bool)
  accepted[first_of_pair] = True
  for position in np.flatnonzero(~accepted):
    row = int(valid[position])
    id_, lang = records[row]["id"], records[row]["lang"]
    problems.report("duplicate id", f"{where_of(row)} (id {id_!r}) field 'id'",
                    f"second record of {id_!r} in {lang}")
  rows = valid[accepted]
  if not len(rows):
    raise UserError(f"{name}: no valid record")
  skipped = problems.summary(name)
  candidate, candidate_rows = _first_occurrence_ranks(candidate_digest[rows])
  example, example_first = _first_occurrence_ranks(id_digest[rows])
  lang_rank, lang_first = _first_occurrence_ranks(lang_code[rows])
  languages = [code_langs[lang_code[rows[i]]] for i in lang_first]
  positives = np.full((len(example_first), len(languages)), -1, np.int64)
  query_rows = np.full(positives.shape, -1, np.int64)
  positives[example, lang_rank] = candidate
  query_rows[example, lang_rank] = rows
  if "context" not in records.column_names:
    records = records.add_column("context", [None] * len(records))
  records = records.select_columns(list(TEXT_COLUMNS))
  _write(
      directory, records, name, languages, skipped, {
          "positives": positives, "query_rows": query_rows, "id_rows": rows[example_first],
          "candidate_rows": rows[candidate_rows], "candidate_language":
              lang_rank[candidate_rows].astype(np.int32)
      })
  del records, per_file
  shutil.rmtree(cache_dir, ignore_errors=True)
  return load_arrow(directory, name=name)
