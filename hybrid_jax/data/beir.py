"""BEIR-format retrieval data (BEIR, MIRACL): `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.

- corpus.jsonl: one JSON object per line, `{"_id": str, "title": str (optional), "text": str}`.
- queries.jsonl: `{"_id": str, "text": str}`.
- qrels/<split>.tsv: a header line `query-id<TAB>corpus-id<TAB>score`, then one judgement per
  line with an integer grade.

As BEIR's own loader, only the queries that have qrels in the split are kept. Metrics on this data
are `hybrid_jax.metrics.beir_metrics`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

QRELS_HEADER = ("query-id", "corpus-id", "score")


@dataclasses.dataclass(frozen=True)
class BeirData:
  """A BEIR split.

  Attributes:
    corpus_ids: object [C], document ids, in file order.
    corpus_title: object [C], titles ("" when absent).
    corpus_text: object [C], document texts.
    query_ids: object [Q], ids of the queries judged in the split, in queries.jsonl order.
    query_text: object [Q].
    qrels: {query id: {document id: integer grade}}.
  """

  corpus_ids: np.ndarray
  corpus_title: np.ndarray
  corpus_text: np.ndarray
  query_ids: np.ndarray
  query_text: np.ndarray
  qrels: dict[str, dict[str, int]]


def _string_field(record: dict, field: str, where: str, *, optional: bool = False) -> str:
  value = record.get(field)
  if value is None and optional:
    return ""
  if isinstance(value, int) and not isinstance(value, bool) and field == "_id":
    return str(value)
  if not isinstance(value, str):
    raise ValueError(f"{where}: field {field!r} must be a string, got {value!r:.80}")
  if field == "_id" and not value:
    raise ValueError(f"{where}: empty '_id'")
  return value


def _read_jsonl(path: pathlib.Path, fields: tuple[str, ...], optional: tuple[str, ...] = ()):
  """{id: (field values...)} of a BEIR jsonl file, in file order."""
  if not path.is_file():
    raise FileNotFoundError(f"BEIR data: missing file {path}")
  records = {}
  with path.open(encoding="utf-8") as f:
    for line_number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      where = f"{path}:{line_number}"
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
      if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
      id_ = _string_field(record, "_id", where)
      if id_ in records:
        raise ValueError(f"{where}: duplicate _id {id_!r}")
      records[id_] = tuple(_string_field(record, field, where, optional=field in optional)
                           for field in fields)
  return records


def _read_qrels(path: pathlib.Path, query_ids, corpus_ids) -> dict[str, dict[str, int]]:
  if not path.is_file():
    raise FileNotFoundError(f"BEIR data: missing qrels file {path}")
  qrels: dict[str, dict[str, int]] = {}
  with path.open(encoding="utf-8") as f:
    header = f.readline().rstrip("\r\n").split("\t")
    if tuple(header) != QRELS_HEADER:
      raise ValueError(f"{path}:1: expected the header {chr(9).join(QRELS_HEADER)!r}, got "
                       f"{chr(9).join(header)!r}")
    for line_number, line in enumerate(f, start=2):
      if not line.strip():
        continue
      where = f"{path}:{line_number}"
      fields = line.rstrip("\r\n").split("\t")
      if len(fields) != 3:
        raise ValueError(f"{where}: expected 3 tab-separated fields (query-id, corpus-id, score), "
                         f"got {len(fields)}")
      qid, docid, grade = fields
      try:
        grade = int(grade)
      except ValueError:
        raise ValueError(f"{where}: score {grade!r} is not an integer") from None
      if qid not in query_ids:
        raise ValueError(f"{where}: query-id {qid!r} is not in queries.jsonl")
      if docid not in corpus_ids:
        raise ValueError(f"{where}: corpus-id {docid!r} is not in corpus.jsonl")
      judged = qrels.setdefault(qid, {})
      if docid in judged:
        raise ValueError(f"{where}: second judgement of ({qid!r}, {docid!r})")
      judged[docid] = grade
  return qrels


def load_beir(path, split: str = "test") -> BeirData:
  """Reads the BEIR-format folder `path` (see the module docstring) for `split`.

  Raises:
    FileNotFoundError: a file is missing.
    ValueError: a malformed record, naming file and line (bad JSON, missing or non-string field,
      duplicate id, bad qrels line, qrels naming an unknown query or document).
  """
  path = pathlib.Path(path)
  corpus = _read_jsonl(path / "corpus.jsonl", ("title", "text"), optional=("title",))
  queries = _read_jsonl(path / "queries.jsonl", ("text",))
  qrels = _read_qrels(path / "qrels" / f"{split}.tsv", queries, corpus)
  judged = [qid for qid in queries if qid in qrels]

  def objects(values):
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out

  return BeirData(
      corpus_ids=objects(list(corpus)),
      corpus_title=objects([title for title, _ in corpus.values()]),
      corpus_text=objects([text for _, text in corpus.values()]),
      query_ids=objects(judged),
      query_text=objects([queries[qid][0] for qid in judged]),
      qrels=qrels)
