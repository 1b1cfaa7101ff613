"""SQuAD-v1.1-format files, one per language (XQuAD-R, XQuAD, MLQA) -> `ParallelQA`.

Every sentence of every paragraph is a candidate (with its paragraph as context): the LAReQA
candidate pool. Sentences come from the paragraph's `sentence_breaks` ([start, end) offsets into
`context`; the text is taken from `sentences` when present, as XQuAD-R's own strings are the
benchmark's candidates), else from `sentences` located in `context`, else from `split_sentences`.
Surrounding whitespace is stripped from candidate text. The positive of a question is the sentence
containing its first answer's `answer_start`; the parallel key is the question `id`.
"""

from __future__ import annotations

import gzip
import json
import os
import re

from etils import epath

from hybrid_jax import paths
from hybrid_jax.data.languages import check_language
from hybrid_jax.data.parallel_qa import (DataError, Example, ParallelQA, Problems, assemble,
                                         check_unicode)
from hybrid_jax.data.sentences import sentence_spans

# `<lang>.json[.gz]` (XQuAD, XQuAD-R) and MLQA's `<split>-context-<lang>-question-<lang>.json`.
_LANG_FILE = re.compile(r"^(?P<lang>[A-Za-z-]+)\.json(\.gz)?$")
# Fields of a paragraph this loader reads; others are warned about (an error when strict).
PARAGRAPH_FIELDS = ("context", "qas", "sentences", "sentence_breaks")
_MLQA_FILE = re.compile(r"context-(?P<context>[A-Za-z-]+)-question-(?P<question>[A-Za-z-]+)"
                        r"\.json(\.gz)?$")


def find_language_files(directory) -> dict[str, epath.Path]:
  """{lang: path} of the SQuAD-format files in `directory` (or of the one file `directory`), in
  file name order.

  Recognised names are `<lang>.json[.gz]` and MLQA's `*context-<x>-question-<x>.json[.gz]` (the
  cross-language MLQA files, context and question in different languages, are left out).

  Raises:
    DataError: no such file, an unknown language code, or two files for one language.
  """
  directory = paths.path(directory)
  if not directory.exists():
    raise DataError(f"{directory}: no such file or directory")
  found = {}
  for path in sorted(directory.iterdir()) if directory.is_dir() else [directory]:
    match = _MLQA_FILE.search(path.name) or _LANG_FILE.match(path.name)
    if not match:
      continue
    groups = match.groupdict()
    lang = groups.get("lang") or groups["context"]
    if groups.get("question", lang) != lang:
      continue
    try:
      check_language(lang, where=str(path))
    except ValueError as e:
      raise DataError(str(e)) from None
    if lang in found:
      raise DataError(f"{directory}: two files for language {lang!r}: {found[lang].name} and "
                      f"{path.name}; pass a {{lang: path}} mapping to choose")
    found[lang] = path
  if not found:
    raise DataError(f"{directory}: no SQuAD-format file (<lang>.json[.gz] or "
                    "*context-<lang>-question-<lang>.json)")
  return found


def _read_json(path):
  """The parsed JSON document at `path`; malformed JSON raises a DataError with line:column."""
  if isinstance(path, (str, os.PathLike)):
    path = paths.path(path)
  try:
    with path.open("rb") as f:
      raw = f.read()
  except OSError as e:
    raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
  try:
    return json.loads(gzip.decompress(raw) if path.name.endswith(".gz") else raw)
  except json.JSONDecodeError as e:
    raise DataError(f"{path}:{e.lineno}:{e.colno}: malformed JSON: {e.msg}") from None
  except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as e:
    raise DataError(f"{path}: not UTF-8 JSON{' (gzip)' if path.name.endswith('.gz') else ''}: "
                    f"{e}") from None


def _paragraph_sentences(paragraph: dict, context: str, lang: str, where: str, problems: Problems):
  """(spans, texts) of a paragraph's sentences, or None after reporting a problem."""
  breaks = paragraph.get("sentence_breaks")
  sentences = paragraph.get("sentences")
  if sentences is not None and (not isinstance(sentences, list)
                                or not all(isinstance(s, str) for s in sentences)):
    problems.report("field 'sentences' is not a list of strings", f"{where} field 'sentences'")
    return None
  for k, sentence in enumerate(sentences or ()):
    check_unicode(sentence, f"{where} field 'sentences' item {k}")
  if breaks is not None:
    valid = isinstance(breaks, list) and all(
        isinstance(b, list) and len(b) == 2 and all(isinstance(x, int)
                                                    for x in b) and 0 <= b[0] < b[1] <= len(context)
        for b in breaks)
    if not valid or (sentences is not None and len(sentences) != len(breaks)):
      problems.report("bad sentence_breaks", f"{where} field 'sentence_breaks'",
                      "expected [start, end) pairs inside the context, one per sentence")
      return None
    spans = [tuple(b) for b in breaks]
    texts = sentences if sentences is not None else [context[s:e] for s, e in spans]
  elif sentences is not None:
    spans, start = [], 0
    for sentence in sentences:
      begin = context.find(sentence, start)
      if begin < 0:
        problems.report("sentence not in context", f"{where} field 'sentences'",
                        repr(sentence[:60]))
        return None
      spans.append((begin, begin + len(sentence)))
      start = begin + len(sentence)
    texts = sentences
  else:
    spans = sentence_spans(context, lang)
    texts = [context[s:e] for s, e in spans]
  texts = [t.strip() for t in texts]
  if not all(texts):
    problems.report("empty passage", f"{where} field 'sentences'", "a sentence is blank")
    return None
  return spans, texts


def _sentence_containing(spans, offset: int) -> int:
  """Index of the first span [start, end) that contains `offset`, or -1."""
  return next((i for i, (start, end) in enumerate(spans) if start <= offset < end), -1)


class _Table:
  """The candidate table and examples being built."""

  def __init__(self):
    self.language, self.text, self.context = [], [], []
    self.examples = {}  # (id, lang) -> Example


def _load_file(path, lang: str, articles, table: _Table, problems: Problems) -> None:
  """Adds the candidates and examples of one language's file to `table`."""
  document = _read_json(path)
  if not isinstance(document, dict) or not isinstance(document.get("data"), list):
    raise DataError(f"{path}: not SQuAD format (expected an object with a 'data' list)")
  data = document["data"]
  indices = range(len(data)) if articles is None else articles
  for a in indices:
    if not 0 <= a < len(data):
      raise DataError(f"{path}: article index {a} out of range (the file has {len(data)})")
    paragraphs = data[a].get("paragraphs") if isinstance(data[a], dict) else None
    if not isinstance(paragraphs, list):
      problems.report("missing field 'paragraphs'", f"{path}: article {a} field 'paragraphs'")
      continue
    for p, paragraph in enumerate(paragraphs):
      _load_paragraph(paragraph, f"{path}: article {a} paragraph {p}", lang, table, problems)


def _load_paragraph(paragraph, where: str, lang: str, table: _Table, problems: Problems) -> None:
  """Adds one paragraph's sentences (candidates) and questions (examples) to `table`."""
  if not isinstance(paragraph, dict):
    problems.report("paragraph is not a JSON object", where)
    return
  problems.unknown_fields(paragraph, PARAGRAPH_FIELDS, where)
  qas = paragraph.get("qas", [])
  context = problems.text(paragraph, "context", where, empty_reason="empty context")
  sentences = None if context is None else _paragraph_sentences(paragraph, context, lang, where,
                                                                problems)
  if sentences is None:
    if isinstance(qas, list) and qas:
      problems.report("question of a skipped paragraph", where, count=len(qas))
    return
  spans, texts = sentences
  first = len(table.text)
  table.language += [lang] * len(texts)
  table.text += texts
  table.context += [context] * len(texts)
  if not isinstance(qas, list):
    problems.report("field 'qas' is not a list", f"{where} field 'qas'")
    return
  for k, qa in enumerate(qas):
    _load_question(qa, f"{where} question {k}", lang, spans, first, table, problems)


def _load_question(qa, where: str, lang: str, spans, first_candidate: int, table: _Table,
                   problems: Problems) -> None:
  """Adds one question to `table.examples`, its positive the sentence holding `answer_start`."""
  if not isinstance(qa, dict):
    problems.report("question is not a JSON object", where)
    return
  id_ = problems.text(qa, "id", where, empty_reason="missing field 'id'")
  if id_ is None:
    return
  where = f"{where} (id {id_!r})"
  question = problems.text(qa, "question", where, empty_reason="empty query")
  if question is None:
    return
  answers = qa.get("answers")
  start = answers[0].get("answer_start") if (isinstance(answers, list) and answers
                                             and isinstance(answers[0], dict)) else None
  if not isinstance(start, int) or isinstance(start, bool):
    problems.report("missing field 'answer_start'", f"{where} field 'answers'",
                    "expected a non-empty list of {'answer_start': int, 'text': str}")
    return
  if (id_, lang) in table.examples:
    problems.report("duplicate id", f"{where} field 'id'", f"{id_!r} seen before in this file")
    return
  sentence = _sentence_containing(spans, start)
  if sentence < 0:
    problems.report("answer_start in no sentence", f"{where} field 'answer_start'",
                    f"{start} is outside every sentence of the context")
    return
  table.examples[id_, lang] = Example(id_, lang, question, first_candidate + sentence)


def _check_parallel(files: dict, table: _Table, problems: Problems) -> None:
  """Every id must be in every language: raises naming the first differing id and files, or
  (skipping) drops the examples of ids missing somewhere."""
  ids_of = {lang: [] for lang in files}
  for id_, lang in table.examples:
    ids_of[lang].append(id_)
  if problems.on_error == "raise":
    reference, *others = files
    for lang in others:
      for a, b in ((reference, lang), (lang, reference)):
        present = set(ids_of[b])
        missing = next((id_ for id_ in ids_of[a] if id_ not in present), None)
        if missing is not None:
          raise DataError(f"{files[a]} and {files[b]} are not parallel: question id {missing!r} "
                          f"is in {a} but not in {b}")
  everywhere = set.intersection(*(set(ids) for ids in ids_of.values()))
  for key in [key for key in table.examples if key[0] not in everywhere]:
    problems.report("id not in every language", f"{files[key[1]]}: question id {key[0]!r}")
    del table.examples[key]


def load_squad(files, *, articles=None, name: str | None = None, on_error: str = "raise",
               require_parallel: bool = False, strict: bool = False) -> ParallelQA:
  """Loads SQuAD-v1.1-format files, one per language, as parallel QA keyed by question id.

  Args:
    files: a {lang: path} mapping (paths may be importlib.resources Traversables), or a directory
      of `<lang>.json[.gz]` or MLQA `*context-<x>-question-<x>.json` files (see
      `find_language_files`).
    articles: indices of the articles to keep (file order, e.g. range(36)); None keeps all.
    name: the data's name (default: the directory, or the paths joined by ",").
    on_error: "raise" a `DataError` at the first bad record, naming file, record and field; or
      "skip" bad records (missing field, empty query/context, duplicate id, `answer_start` in no
      sentence, bad `sentence_breaks`, ...), counted in `ParallelQA.skipped`. Problems of a whole
      file (unreadable, malformed JSON, not SQuAD format, unknown language, bad article index)
      always raise.
    require_parallel: every id must be in every file (XQuAD-R is 11-way parallel): raise naming
      the first id that differs and its two files, or with on_error="skip", drop the ids that are
      not in every language. False allows partial examples (MLQA).
    strict: a paragraph field other than `PARAGRAPH_FIELDS` is an error (else a warning with
      counts; a misspelt 'sentence_breaks' would silently fall back to `split_sentences`).

  Returns:
    The data: languages in file order, ids in order of first appearance, candidates = every
    sentence of every kept paragraph.
  """
  if isinstance(files, (str, os.PathLike)):
    name = name or str(files)
    files = find_language_files(files)
  else:
    files = dict(files)
    if not files:
      raise DataError("load_squad: no file given")
    for lang, path in files.items():
      try:
        check_language(lang, where=str(path))
      except ValueError as e:
        raise DataError(str(e)) from None
    name = name or ",".join(str(path) for path in files.values())
  problems = Problems(on_error, strict)
  table = _Table()
  for lang, path in files.items():
    _load_file(path, lang, articles, table, problems)
  if require_parallel:
    _check_parallel(files, table, problems)
  return assemble(name, table.examples.values(), table.language, table.text, table.context,
                  skipped=problems.summary(name))
