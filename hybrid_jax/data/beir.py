"""BEIR-format retrieval data (BEIR, MIRACL): `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.

- corpus.jsonl: one JSON object per line, `{"_id": str, "title": str (optional), "text": str}`.
- queries.jsonl: `{"_id": str, "text": str}`.
- qrels/<split>.tsv: a header line `query-id<TAB>corpus-id<TAB>score`, then one judgement per
  line with an integer grade.

As BEIR's own loader, only the queries that have qrels in the split are kept. As BEIR and
pytrec_eval, a qrels line may name a document missing from the corpus (real ArguAna has them): it
stays a relevant document that no run can retrieve, and the load reports how many there are in
`BeirData.warnings`, as it does judged queries with empty text and unknown record fields. Metrics
on this data are `hybrid_jax.retrieval_metrics.beir_metrics`.

Every problem with the files raises `DataError` (a `hybrid_jax.errors.UserError`) naming the file
and line: missing file, bytes that are not UTF-8, malformed JSON, a missing or non-string field, a
lone surrogate (`"\\ud800"`), a duplicate id, a bad qrels line.
"""

from __future__ import annotations

import collections
import dataclasses
import json

from etils import epath
import numpy as np

from hybrid_jax import paths
from hybrid_jax.data.parallel_qa import DataError, check_unicode

QRELS_HEADER = ("query-id", "corpus-id", "score")
CORPUS_FIELDS = ("_id", "title", "text", "metadata")
QUERY_FIELDS = ("_id", "text", "metadata")
# Ids listed in a warning, beyond the count.
NAMED_IDS = 5


@dataclasses.dataclass(frozen=True)
class BeirData:
  """A BEIR split.

  Attributes:
    corpus_ids: object [C], document ids, in file order.
    corpus_title: object [C], titles ("" when absent).
    corpus_text: object [C], document texts.
    query_ids: object [Q], ids of the queries judged in the split, in queries.jsonl order.
    query_text: object [Q].
    qrels: {query id: {document id: integer grade}}; may name documents missing from the corpus.
    warnings: what the load found suspicious but kept (counts and the first ids).
  """

  corpus_ids: np.ndarray
  corpus_title: np.ndarray
  corpus_text: np.ndarray
  query_ids: np.ndarray
  query_text: np.ndarray
  qrels: dict[str, dict[str, int]]
  warnings: tuple[str, ...] = ()


def _named(ids) -> str:
  ids = list(ids)
  return ", ".join(repr(i) for i in ids[:NAMED_IDS]) + (", ..." if len(ids) > NAMED_IDS else "")


def _lines(path: epath.Path):
  """Yields (where, text) for every line of `path`, decoded as UTF-8 one line at a time so that
  bad bytes are reported with their file and line."""
  if not path.is_file():
    raise DataError(f"BEIR data: missing file {path}")
  with path.open("rb") as f:
    for line_number, raw in enumerate(f, start=1):
      where = f"{path}:{line_number}"
      try:
        yield where, raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise DataError(f"{where}: not UTF-8 ({e.reason} at byte {e.start} of the line: "
                        f"{raw[max(0, e.start - 8):e.end + 8]!r})") from None


def _string_field(record: dict, field: str, where: str, *, optional: bool = False) -> str:
  value = record.get(field)
  if value is None and optional:
    return ""
  if isinstance(value, int) and not isinstance(value, bool) and field == "_id":
    return str(value)
  if not isinstance(value, str):
    raise DataError(f"{where}: field {field!r} must be a string, got {value!r:.80}")
  if field == "_id" and not value:
    raise DataError(f"{where}: empty '_id'")
  return check_unicode(value, f"{where} field {field!r}")


def _read_jsonl(path: epath.Path, fields: tuple[str, ...], known: tuple[str, ...],
                optional: tuple[str, ...] = ()):
  """({id: (field values...)} of a BEIR jsonl file in file order, warnings about fields not in
  `known`)."""
  records = {}
  unknown = collections.Counter()
  for where, line in _lines(path):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise DataError(f"{where}: not valid JSON ({e.msg})") from None
    if not isinstance(record, dict):
      raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    id_ = _string_field(record, "_id", where)
    if id_ in records:
      raise DataError(f"{where}: duplicate _id {id_!r}")
    records[id_] = tuple(
        _string_field(record, field, where, optional=field in optional) for field in fields)
    unknown.update(field for field in record if field not in known)
  warnings = [
      f"{path}: {n} record(s) have the unknown field {field!r}, ignored (known: "
      f"{list(known)})" for field, n in sorted(unknown.items())
  ]
  return records, warnings


def _read_qrels(path: epath.Path, query_ids, corpus_ids):
  """(qrels, warnings): judgements of documents missing from the corpus are kept (relevant and
  never retrieved, as pytrec_eval scores them) and counted in a warning."""
  qrels: dict[str, dict[str, int]] = {}
  missing_documents = {}
  lines = _lines(path)
  _, header = next(lines, (None, ""))
  header = header.rstrip("\r\n").split("\t")
  if tuple(header) != QRELS_HEADER:
    raise DataError(f"{path}:1: expected the header {chr(9).join(QRELS_HEADER)!r}, got "
                    f"{chr(9).join(header)!r}")
  for where, line in lines:
    if not line.strip():
      continue
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) != 3:
      raise DataError(f"{where}: expected 3 tab-separated fields (query-id, corpus-id, score), "
                      f"got {len(fields)}")
    qid, docid, grade = fields
    try:
      grade = int(grade)
    except ValueError:
      raise DataError(f"{where}: score {grade!r} is not an integer") from None
    if qid not in query_ids:
      raise DataError(f"{where}: query-id {qid!r} is not in queries.jsonl")
    judged = qrels.setdefault(qid, {})
    if docid in judged:
      raise DataError(f"{where}: second judgement of ({qid!r}, {docid!r})")
    judged[docid] = grade
    if docid not in corpus_ids:
      missing_documents[qid, docid] = grade
  warnings = []
  if missing_documents:
    relevant = sum(1 for grade in missing_documents.values() if grade >= 1)
    warnings.append(
        f"{path}: {len(missing_documents)} judgement(s) name documents missing from "
        f"corpus.jsonl ({relevant} relevant; e.g. {_named(d for _, d in missing_documents)}); "
        "scored as BEIR does: relevant documents never retrieved")
  return qrels, warnings


def load_beir(path, split: str = "test") -> BeirData:
  """Reads the BEIR-format folder `path` (see the module docstring) for `split`.

  Raises:
    DataError: a missing file, or a malformed record naming file and line (not UTF-8, bad JSON,
      missing or non-string field, lone surrogate, duplicate id, bad qrels line, qrels naming an
      unknown query).
  """
  path = paths.path(path)
  corpus, warnings = _read_jsonl(path / "corpus.jsonl", ("title", "text"), CORPUS_FIELDS,
                                 optional=("title",))
  queries, query_warnings = _read_jsonl(path / "queries.jsonl", ("text",), QUERY_FIELDS)
  qrels, qrels_warnings = _read_qrels(path / "qrels" / f"{split}.tsv", queries, corpus)
  judged = [qid for qid in queries if qid in qrels]
  empty = [qid for qid in judged if not queries[qid][0].strip()]
  if empty:
    query_warnings.append(f"{path / 'queries.jsonl'}: {len(empty)} judged quer(y/ies) with empty "
                          f"text ({_named(empty)}), scored as given")

  def objects(values):
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out

  return BeirData(
      corpus_ids=objects(list(corpus)), corpus_title=objects([
          title for title, _ in corpus.values()
      ]), corpus_text=objects([text for _, text in corpus.values()]), query_ids=objects(judged),
      query_text=objects([queries[qid][0] for qid in judged]), qrels=qrels,
      warnings=tuple(warnings + query_warnings + qrels_warnings))
