"""JSON Lines parallel QA: one record per (id, language), `{"id", "lang", "query", "passage"[,
"context"]}`, grouped into examples by `id` (a language may be missing for some ids).

Candidates are the distinct (lang, passage, context) triples, so records that share a passage
share a passage key. Also `write_jsonl` (ParallelQA -> JSONL). Files ending in `.gz` are read and
written gzip-compressed.
"""

from __future__ import annotations

import gzip
import io
import json
import os

from hybrid_jax import paths
from hybrid_jax.data.languages import KNOWN_LANGUAGES
from hybrid_jax.data.parallel_qa import (DataError, Example, ParallelQA, Problems, assemble,
                                         check_unicode)

REQUIRED_FIELDS = ("id", "lang", "query", "passage")
KNOWN_FIELDS = REQUIRED_FIELDS + ("context",)


def open_binary(path, mode: str):
  """Opens `path` (str, os.PathLike or importlib.resources Traversable) for binary reading ("r")
  or writing ("w"), through gzip when its name ends in `.gz`."""
  if isinstance(path, (str, os.PathLike)):
    path = paths.path(path)
  binary = path.open(mode + "b")
  if path.name.endswith(".gz"):
    return gzip.GzipFile(fileobj=binary, mode=mode + "b")
  return binary


def _text_fields(record: dict, where: str, problems: Problems):
  """(lang, query, passage, context) of `record`, or None after reporting its first bad field."""
  values = []
  for field, empty_reason, optional in (("lang", None, False), ("query", "empty query", False),
                                        ("passage", "empty passage", False), ("context", None,
                                                                              True)):
    value = problems.text(record, field, where, empty_reason=empty_reason, optional=optional)
    if value is None:
      return None
    values.append(value)
  return tuple(values)


def record_fields(record: dict, where: str, problems: Problems):
  """(id, where, lang, query, passage, context) of one record (an int id as its decimal string,
  `where` extended with the id), or None after reporting its first bad field to `problems`.
  Fields other than `KNOWN_FIELDS` are counted in `problems` (a warning; an error when strict)."""
  problems.unknown_fields(record, KNOWN_FIELDS, where)
  id_ = record.get("id")
  if isinstance(id_, int) and not isinstance(id_, bool):
    id_ = str(id_)
  if id_ is None or id_ == "":
    problems.report("missing field 'id'", f"{where} field 'id'")
    return None
  if not isinstance(id_, str):
    problems.report("field 'id' is not a string", f"{where} field 'id'", repr(id_)[:80])
    return None
  check_unicode(id_, f"{where} field 'id'")
  where = f"{where} (id {id_!r})"
  values = _text_fields(record, where, problems)
  if values is None:
    return None
  if values[0] not in KNOWN_LANGUAGES:
    problems.report("unknown language code", f"{where} field 'lang'", repr(values[0]))
    return None
  return (id_, where, *values)


def from_records(records, *, name: str, problems: Problems) -> ParallelQA:
  """Builds a `ParallelQA` from JSONL-style records.

  Args:
    records: iterable of (where, record) with `where` naming the record's place ("a.jsonl:3")
      and `record` a dict with the fields of `REQUIRED_FIELDS` and optionally "context"; a record
      that is None stands for one that could not be parsed (already reported to `problems`).
      Other fields are counted and warned about (an error with `problems.strict`).
    name: the data's name.
    problems: where bad records are reported (and counted into `ParallelQA.skipped`).

  Raises:
    DataError: a bad record with on_error="raise"; a string with a lone surrogate; an unknown
      field with strict loading.

  Returns:
    The data; candidates are the distinct (lang, passage, context), in order of first use.
  """
  candidate_index = {}
  examples = {}
  for where, record in records:
    if record is None:
      continue
    if not isinstance(record, dict):
      problems.report("record is not a JSON object", where, repr(record)[:80])
      continue
    fields = record_fields(record, where, problems)
    if fields is None:
      continue
    id_, where, lang, query, passage, context = fields
    if (id_, lang) in examples:
      problems.report("duplicate id", f"{where} field 'id'", f"second record of {id_!r} in {lang}")
      continue
    key = (lang, passage, context)
    positive = candidate_index.setdefault(key, len(candidate_index))
    examples[id_, lang] = Example(id_, lang, query, positive)
  triples = list(candidate_index)
  return assemble(name, examples.values(), [t[0] for t in triples], [t[1] for t in triples],
                  [t[2] for t in triples], skipped=problems.summary(name))


def read_jsonl(path, problems: Problems):
  """Yields (where, record) for every non-blank line of `path`; None for a malformed line."""
  try:
    opened = open_binary(path, "r")
  except OSError as e:
    raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
  with opened as f:
    for line_number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      where = f"{path}:{line_number}"
      try:
        yield where, json.loads(line.rstrip())  # A column past the line's end is on the next.
      except ValueError as e:  # JSONDecodeError or UnicodeDecodeError
        detail = (f"column {e.colno}: {e.msg}"
                  if isinstance(e, json.JSONDecodeError) else f"not UTF-8: {e}")
        problems.report("malformed JSON", where, detail)
        yield where, None


def load_jsonl(paths, *, name: str | None = None, on_error: str = "raise",
               strict: bool = False) -> ParallelQA:
  """Loads JSON Lines files (plain or `.gz`) of `{"id", "lang", "query", "passage"[, "context"]}`.

  Args:
    paths: a path or a list of paths, read in order.
    name: the data's name (default: the paths joined by ",").
    on_error: "raise" a `DataError` naming file, line and field at the first bad record, or
      "skip" bad records (malformed line, missing field, empty query/passage, unknown language,
      duplicate (id, lang)), counted in `ParallelQA.skipped`.
    strict: a field other than those above is an error (else a warning with counts).

  Returns:
    The data (see `from_records`).

  Raises:
    DataError: a missing or unreadable file, or a bad record (see `from_records`).
  """
  paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
  name = name or ",".join(str(p) for p in paths)
  problems = Problems(on_error, strict)
  records = (item for path in paths for item in read_jsonl(path, problems))
  return from_records(records, name=name, problems=problems)


def write_jsonl(data: ParallelQA, path) -> int:
  """Writes one record per available (example, language), example-major, languages in column
  order, so `load_jsonl` gives back the same ids, languages, queries and positive passages (only
  the candidates that are some example's positive survive the trip).

  Returns:
    The number of records written.
  """
  count = 0
  with io.TextIOWrapper(open_binary(path, "w"), encoding="utf-8") as f:
    for i, id_ in enumerate(data.ids):
      for j, lang in enumerate(data.languages):
        positive = data.positives[i, j]
        if positive < 0:
          continue
        record = {
            "id": id_, "lang": lang, "query": data.queries[i, j],
            "passage": data.candidates.text[positive], "context": data.candidates.context[positive]
        }
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
  return count
