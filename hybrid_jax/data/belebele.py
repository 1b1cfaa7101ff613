"""Belebele (Bandarkar et al. 2024, "The Belebele Benchmark", arXiv:2308.16884) -> `ParallelQA`.

900 multiple-choice questions on 488 FLORES-200 passages, in 122 language variants, fully
parallel. Read as retrieval data: query = `question`, passage = `flores_passage` (no separate
context), parallel id = (`link`, `question_number`), which names one question in every variant;
the two questions of a passage share their positive (one candidate, one passage key). So it serves
training (`data.train`) and LAReQA-style evaluation (a question's relevant candidate in language
Y is its passage in Y; every passage of Y is a candidate). Licence: CC BY-SA 4.0.

Spec `belebele:SOURCE[:LANGUAGES]`:
  SOURCE      a directory of the release's files, one per variant named by its FLORES-200 code
              (`eng_Latn.jsonl`, as in the GitHub release's Belebele.zip; also `.jsonl.gz` and
              `.parquet`), or a Hugging Face hub name (`facebook/belebele`: one config per variant,
              split `test`; needs the network).
  LANGUAGES   '+'-joined codes, ours (`en+de+ar`) or FLORES-200 (`eng_Latn+deu_Latn`); default:
              every file of the directory (a hub name needs them).
A record's `dialect` (its FLORES-200 code) must be its file's variant; variants become this
package's codes (`hybrid_jax.data.languages.from_flores`: `arb_Arab` -> `ar`, `arb_Latn` ->
`ar-Latn`).
"""

from __future__ import annotations

import os

from hybrid_jax.data import languages as languages_lib
from hybrid_jax.data.jsonl import from_records, read_jsonl
from hybrid_jax.data.parallel_qa import DataError, ParallelQA, Problems

FIELDS = ("link", "question_number", "flores_passage", "question", "mc_answer1", "mc_answer2",
          "mc_answer3", "mc_answer4", "correct_answer_num", "dialect", "ds", "split")
_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
HUB_SPLIT = "test"


def _variant_files(directory: str) -> dict[str, str]:
  """{FLORES-200 code: path} of the directory's data files."""
  files = {}
  for name in sorted(os.listdir(directory)):
    for suffix in _SUFFIXES:
      if name.endswith(suffix):
        files[name[:-len(suffix)]] = os.path.join(directory, name)
  return files


def _flores_code(code: str, where: str) -> str:
  """A FLORES-200 code given as one ('eng_Latn') or as this package's code ('en')."""
  return code if "_" in code else languages_lib.to_flores(code, where)


def _rows(path: str, problems: Problems):
  """Yields (where, dict or None) for every record of a JSON Lines or parquet file."""
  if path.endswith(".parquet"):
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top  (with `datasets`)
    try:
      rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow's errors have no common base beyond Exception
      raise DataError(f"{path}: cannot read as parquet: {e}") from None
    yield from ((f"{path} row {i}", row) for i, row in enumerate(rows))
  else:
    yield from read_jsonl(path, problems)


def _records(rows, flores: str, code: str, problems: Problems):
  """Belebele rows of one variant -> (where, JSONL-style record) for `from_records`."""
  for where, row in rows:
    if row is None:
      continue
    if not isinstance(row, dict):
      problems.report("record is not a JSON object", where, repr(row)[:80])
      continue
    problems.unknown_fields(row, FIELDS, where)
    texts = [
        problems.text(row, f, where, empty_reason=f"empty {f}")
        for f in ("link", "question", "flores_passage", "dialect")
    ]
    if None in texts:
      continue
    link, question, passage, dialect = texts
    number = row.get("question_number")
    if isinstance(number, str) and number.strip().isdigit():
      number = int(number)
    if not isinstance(number, int) or isinstance(number, bool):
      problems.report("field 'question_number' is not an integer", f"{where} field "
                      "'question_number'",
                      repr(number)[:80])
      continue
    if dialect != flores:
      problems.report("dialect differs from the file's variant", f"{where} field 'dialect'",
                      f"{dialect!r}, expected {flores!r}")
      continue
    yield where, {"id": f"{link}#{number}", "lang": code, "query": question, "passage": passage}


def load_belebele(argument: str, *, name: str, on_error: str = "raise",
                  strict: bool = False) -> ParallelQA:
  """Loads `belebele:SOURCE[:LANGUAGES]` (see the module docstring).

  Raises:
    DataError: a missing directory or file, no data file, a hub name without languages, a bad
      record (named by file and line or row, and field) with on_error="raise".
    LanguageError: a language code or variant the language table does not know.
  """
  source, _, langs = argument.partition(":") if not os.path.exists(argument) else (argument, "", "")
  problems = Problems(on_error, strict)
  wanted = [_flores_code(c, name) for c in langs.split("+") if c] if langs else None
  if os.path.isdir(source):
    files = _variant_files(source)
    if not files:
      raise DataError(f"{name}: no {'/'.join(_SUFFIXES)} file in {source}")
    missing = [c for c in wanted or () if c not in files]
    if missing:
      raise DataError(f"{name}: no file for {', '.join(missing)} in {source} (it has "
                      f"{', '.join(files)})")
    variants = [(flores, _rows(files[flores], problems)) for flores in wanted or files]
  elif source.endswith(_SUFFIXES) or source.startswith((os.sep, ".", "~")):
    raise DataError(f"{name}: no such directory {source}")
  elif not wanted:
    raise DataError(f"{name}: give the languages of a hub dataset: belebele:{source}:en+de+ar "
                    "(codes or FLORES-200 codes)")
  else:
    import datasets  # pylint: disable=g-import-not-at-top  (slow import, only when asked for)
    variants = [(flores,
                 ((f"{source}[{flores}] row {i}", row)
                  for i, row in enumerate(datasets.load_dataset(source, flores, split=HUB_SPLIT))))
                for flores in wanted]
  records = (
      record for flores, rows in variants
      for record in _records(rows, flores, languages_lib.from_flores(flores, name), problems))
  return from_records(records, name=name, problems=problems)
