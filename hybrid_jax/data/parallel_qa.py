"""The one in-memory form of parallel retrieval data: `ParallelQA`.

N examples (questions, keyed by a parallel id) × L languages. Each available (example, language)
has a query and a positive passage. Passages live in one candidate table shared by every loader
and by evaluation: a candidate is an answer sentence together with its context paragraph, and the
positive of (example i, language j) is the index of a row of that table. One rule for every
loader: two candidates with the same language, sentence and context are the same passage (a
SQuAD-format file can hold a paragraph under two articles), and the *passage key* is the first
row of that (language, sentence, context); the sampler and the loss use it to keep a positive
from also being scored as another query's negative. Likewise the *query key* is one per distinct
(language, query text): equal queries with different positives are kept out of one batch.

Also here: `DataError` and `Problems`, the one way every loader reports bad input (raise, or skip
and count), and `assemble`, the one way every loader builds a `ParallelQA` from its examples.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import functools
import re

from absl import logging
import numpy as np

from hybrid_jax.data.languages import check_language
from hybrid_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Candidates:
  """Candidate passages of every language, one row each.

  Attributes:
    language: int32 [C], index into `ParallelQA.languages`.
    text: object [C], the answer sentence (what is retrieved).
    context: object [C], the paragraph the sentence comes from ("" when the source has none).
  """

  language: np.ndarray
  text: np.ndarray
  context: np.ndarray

  def __len__(self) -> int:
    return len(self.text)


@dataclasses.dataclass(frozen=True)
class ParallelQA:
  """Parallel question/passage data.

  Attributes:
    name: where the data came from (a path, a named split).
    languages: the L language codes, in column order.
    ids: object [N], the parallel ids (unique).
    queries: object [N, L], the question text; None where the example is missing in a language.
    positives: int64 [N, L], index into `candidates` of the positive passage; -1 where missing.
    candidates: every candidate passage (answer sentences and, for SQuAD-format sources, every
      other sentence of their paragraphs, which evaluation uses as distractors).
    skipped: how many input records were skipped, per reason (loaders with on_error="skip").
  """

  name: str
  languages: tuple[str, ...]
  ids: np.ndarray
  queries: np.ndarray
  positives: np.ndarray
  candidates: Candidates
  skipped: dict[str, int] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    n, num_langs = len(self.ids), len(self.languages)
    for lang in self.languages:
      check_language(lang, where=self.name)
    if len(set(self.languages)) != num_langs:
      raise ValueError(f"{self.name}: duplicate language in {self.languages}")
    if self.queries.shape != (n, num_langs) or self.positives.shape != (n, num_langs):
      raise ValueError(
          f"{self.name}: queries {self.queries.shape} and positives {self.positives.shape} must "
          f"both be [num_examples={n}, num_languages={num_langs}]")
    if len(set(self.ids.tolist())) != n:
      raise ValueError(f"{self.name}: parallel ids are not unique")
    available = self.positives >= 0
    if np.any(self.positives >= len(self.candidates)):
      raise ValueError(f"{self.name}: a positive points past the {len(self.candidates)} candidates")
    pos_lang = self.candidates.language[np.where(available, self.positives, 0)]
    col = np.broadcast_to(np.arange(num_langs), self.positives.shape)
    if np.any(available & (pos_lang != col)):
      raise ValueError(f"{self.name}: a positive passage is not in its query's language")

  @property
  def num_examples(self) -> int:
    return len(self.ids)

  @property
  def available(self) -> np.ndarray:
    """bool [N, L]: example i exists in language j."""
    return self.positives >= 0

  @functools.cached_property
  def candidate_keys(self) -> np.ndarray:
    """int64 [C]: the passage key of each candidate, the first row with its (language, sentence,
    context)."""
    first = {}
    rows = zip(self.candidates.language.tolist(), self.candidates.text, self.candidates.context)
    return np.fromiter((first.setdefault(row, c) for c, row in enumerate(rows)), np.int64,
                       count=len(self.candidates))

  @property
  def passage_keys(self) -> np.ndarray:
    """int64 [N, L]: equal exactly when two (example, language) positives are the same passage
    (language, sentence and context; see `candidate_keys`); -1 where missing."""
    return np.where(self.available, self.candidate_keys[np.maximum(self.positives, 0)], -1)

  @functools.cached_property
  def query_keys(self) -> np.ndarray:
    """int64 [N, L]: equal exactly when two (example, language) have the same query language and
    text; -1 where missing."""
    first = {}
    keys = np.full(self.queries.shape, -1, np.int64)
    for i, j in zip(*np.nonzero(self.available)):
      keys[i, j] = first.setdefault((int(j), self.queries[i, j]), len(first))
    return keys

  def texts(self) -> list[str]:
    """Every query, then every distinct passage context (the answer sentence where a candidate
    has no context): the texts a tokenizer is trained on
    (`hybrid_jax.models.tokenizer.train_default_tokenizer`)."""
    queries = [q for q in self.queries.ravel().tolist() if q]
    passages = [
        c or s for s, c in zip(self.candidates.text.tolist(), self.candidates.context.tolist())
    ]
    return queries + list(dict.fromkeys(p for p in passages if p))

  def select_languages(self, languages) -> "ParallelQA":
    """The same data restricted to `languages` (in that order); examples left empty are dropped,
    and so are candidates of other languages."""
    languages = tuple(languages)
    unknown = [lang for lang in languages if lang not in self.languages]
    if unknown:
      raise DataError(f"{self.name}: language(s) {unknown} not in the data, which has "
                      f"{list(self.languages)}")
    cols = [self.languages.index(lang) for lang in languages]
    positives = self.positives[:, cols]
    keep_examples = np.any(positives >= 0, axis=1)
    cand_lang_new = np.full(len(self.languages), -1, np.int32)
    cand_lang_new[cols] = np.arange(len(cols))
    new_lang = cand_lang_new[self.candidates.language]
    keep_cands = new_lang >= 0
    remap = np.full(len(self.candidates), -1, np.int64)
    remap[keep_cands] = np.arange(keep_cands.sum())
    positives = np.where(positives >= 0, remap[np.maximum(positives, 0)], -1)[keep_examples]
    return ParallelQA(
        name=self.name, languages=languages, ids=self.ids[keep_examples],
        queries=self.queries[:, cols][keep_examples], positives=positives, candidates=Candidates(
            language=new_lang[keep_cands].astype(np.int32), text=self.candidates.text[keep_cands],
            context=self.candidates.context[keep_cands]), skipped=dict(self.skipped))

  def counts(self) -> dict[str, dict[str, int]]:
    """Per language: examples, distinct positive passages, candidates."""
    out = {}
    for j, lang in enumerate(self.languages):
      pos = self.positives[:, j]
      out[lang] = {
          "examples": int(np.sum(pos >= 0)),
          "distinct_positives": int(len(np.unique(pos[pos >= 0]))),
          "candidates": int(np.sum(self.candidates.language == j)),
      }
    return out

  def describe(self) -> str:
    """A human-readable table of `counts()`."""
    lines = [
        f"{self.name}: {self.num_examples} parallel examples, {len(self.languages)} "
        f"languages, {len(self.candidates)} candidates",
        f"{'lang':<6}{'examples':>10}{'positives':>11}{'candidates':>12}"
    ]
    for lang, c in self.counts().items():
      lines.append(f"{lang:<6}{c['examples']:>10}{c['distinct_positives']:>11}"
                   f"{c['candidates']:>12}")
    for reason, count in sorted(self.skipped.items()):
      lines.append(f"skipped {count} record(s): {reason}")
    return "\n".join(lines)


class DataError(UserError, ValueError):
  """Bad input data; the message names the file, the record (id or line) and the field."""


ON_ERROR_CHOICES = ("raise", "skip")
# Skipped records named in the log, beyond the per-reason counts.
NAMED_SKIPS = 5
# A lone UTF-16 surrogate: JSON can spell one ("\ud800"), UTF-8 cannot encode it.
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_unicode(value: str, where: str) -> str:
  """`value`, or a DataError naming `where` when it holds a lone surrogate (a `"\\ud800"` JSON
  escape): no tokenizer or UTF-8 writer can take such a string."""
  found = _SURROGATE.search(value)
  if found:
    raise DataError(f"{where}: text is not valid Unicode: lone surrogate "
                    f"{found.group()!r} at character {found.start()}")
  return value


class Problems:
  """Collects bad-input reports of one load: raises at once, or skips and counts per reason.

  Args:
    on_error: "raise" (a `DataError` at the first problem) or "skip" (count it, go on; `summary`
      logs the counts, names the first `NAMED_SKIPS` skipped records, and returns the counts for
      `ParallelQA.skipped`).
    strict: an unknown field (`unknown_fields`) is a `DataError` instead of a counted warning.
  """

  def __init__(self, on_error: str, strict: bool = False):
    if on_error not in ON_ERROR_CHOICES:
      raise DataError(f"on_error={on_error!r}: expected one of {ON_ERROR_CHOICES}")
    self.on_error = on_error
    self.strict = strict
    self.counts = collections.Counter()
    self.named = []  # "where: reason" of the first NAMED_SKIPS skipped records
    self.unknown = collections.Counter()  # unknown field name -> records holding it
    self.first_unknown = {}  # unknown field name -> where it was first seen

  def report(self, reason: str, where: str, detail: str = "", count: int = 1) -> None:
    """`count` records are bad. `reason` is the short counted kind ("empty query"), `where` names
    the file, record and field ("en.json: article 0 paragraph 2 question 1 (id '56be...') field
    'question'"), `detail` adds the value."""
    message = f"{where}: {reason}" + (f" ({detail})" if detail else "")
    if self.on_error == "raise":
      raise DataError(message)
    self.counts[reason] += count
    if len(self.named) < NAMED_SKIPS:
      self.named.append(message)

  def unknown_fields(self, record: dict, known, where: str) -> None:
    """Notes the fields of `record` that are not in `known` (a misspelt optional field such as
    'contxt' would otherwise be silently ignored); raises at once when `strict`."""
    for field in record:
      if field in known:
        continue
      close = difflib.get_close_matches(str(field), list(known), n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      if self.strict:
        raise DataError(f"{where}: unknown field {field!r}{hint}; known fields: {list(known)}")
      self.unknown[field] += 1
      self.first_unknown.setdefault(field, f"{where}{hint}")

  def text(self, record: dict, field: str, where: str, *, empty_reason: str | None = None,
           optional: bool = False) -> str | None:
    """`record[field]` if it is a string (and not blank, when `empty_reason` is given); else
    reports the problem and returns None. An absent `optional` field gives "".
    A string with a lone surrogate always raises (see `check_unicode`)."""
    value = record.get(field)
    if value is None:
      if optional:
        return ""
      # (A column-store row holds every column, None where the record had none.)
      close = difflib.get_close_matches(
          field, [k for k, v in record.items() if k != field and v is not None], n=1)
      self.report(f"missing field {field!r}", f"{where} field {field!r}",
                  f"the record has {close[0]!r}" if close else "")
    elif not isinstance(value, str):
      self.report(f"field {field!r} is not a string", f"{where} field {field!r}", repr(value)[:80])
    elif empty_reason and not value.strip():
      self.report(empty_reason, f"{where} field {field!r}", repr(value))
    else:
      return check_unicode(value, f"{where} field {field!r}")
    return None

  def summary(self, name: str) -> dict[str, int]:
    """Logs warnings with the per-reason counts and the first skipped records (if any), and the
    unknown fields with their counts; returns the per-reason counts."""
    if self.counts:
      listed = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.counts.items()))
      logging.warning("%s: skipped %d bad record(s) (%s); the first: %s", name,
                      sum(self.counts.values()), listed, "; ".join(self.named))
    for field, n in sorted(self.unknown.items()):
      logging.warning(
          "%s: %d record(s) have the unknown field %r, ignored (first: %s); "
          "strict loading makes this an error", name, n, field, self.first_unknown[field])
    return dict(sorted(self.counts.items()))


@dataclasses.dataclass(frozen=True)
class Example:
  """One (parallel id, language) query and its positive, a row of the loader's candidate table."""

  id: str
  language: str
  query: str
  positive: int


def assemble(name: str, examples, candidate_language, candidate_text, candidate_context,
             skipped: dict[str, int] | None = None) -> ParallelQA:
  """Builds a `ParallelQA` from loader output.

  Args:
    name: the data's name.
    examples: `Example`s with unique (id, language); ids are ordered by first appearance.
    candidate_language: the language code of every candidate, [C]; languages are ordered by first
      appearance here.
    candidate_text: the text of every candidate, [C].
    candidate_context: the context of every candidate, [C].
    skipped: per-reason counts of skipped records.

  Returns:
    The data, with candidates in the given order.
  """
  examples = list(examples)
  languages = tuple(dict.fromkeys(candidate_language))
  ids = list(dict.fromkeys(e.id for e in examples))
  row = {id_: i for i, id_ in enumerate(ids)}
  col = {lang: j for j, lang in enumerate(languages)}
  queries = np.full((len(ids), len(languages)), None, dtype=object)
  positives = np.full((len(ids), len(languages)), -1, dtype=np.int64)
  for e in examples:
    queries[row[e.id], col[e.language]] = e.query
    positives[row[e.id], col[e.language]] = e.positive

  def as_object_array(values):
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out

  return ParallelQA(
      name=name, languages=languages, ids=as_object_array(ids), queries=queries,
      positives=positives, candidates=Candidates(
          language=np.array([col[lang] for lang in candidate_language],
                            dtype=np.int32), text=as_object_array(candidate_text),
          context=as_object_array(candidate_context)), skipped=dict(skipped or {}))
