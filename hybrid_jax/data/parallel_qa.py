"""The one in-memory form of parallel retrieval data: `ParallelQA`.

N examples (questions, keyed by a parallel id) × L languages. Each available (example, language)
has a query and a positive passage. Passages live in one candidate table shared by every loader
and by evaluation: a candidate is an answer sentence together with its context paragraph, and the
positive of (example i, language j) is the index of a row of that table. Two examples share a
positive passage exactly when they point at the same candidate row, so the candidate index doubles
as the *passage key* that the sampler and the loss use to keep a positive from also being scored
as another query's negative.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hybrid_jax.data.languages import check_language


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
  """

  name: str
  languages: tuple[str, ...]
  ids: np.ndarray
  queries: np.ndarray
  positives: np.ndarray
  candidates: Candidates

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

  @property
  def passage_keys(self) -> np.ndarray:
    """int64 [N, L]: equal exactly when two (example, language) share the positive passage."""
    return self.positives

  def select_languages(self, languages) -> "ParallelQA":
    """The same data restricted to `languages` (in that order); examples left empty are dropped,
    and so are candidates of other languages."""
    languages = tuple(languages)
    unknown = [lang for lang in languages if lang not in self.languages]
    if unknown:
      raise ValueError(f"{self.name}: language(s) {unknown} not in the data, which has "
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
        name=self.name,
        languages=languages,
        ids=self.ids[keep_examples],
        queries=self.queries[:, cols][keep_examples],
        positives=positives,
        candidates=Candidates(
            language=new_lang[keep_cands].astype(np.int32),
            text=self.candidates.text[keep_cands],
            context=self.candidates.context[keep_cands]))

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
    lines = [f"{self.name}: {self.num_examples} parallel examples, {len(self.languages)} "
             f"languages, {len(self.candidates)} candidates",
             f"{'lang':<6}{'examples':>10}{'positives':>11}{'candidates':>12}"]
    for lang, c in self.counts().items():
      lines.append(f"{lang:<6}{c['examples']:>10}{c['distinct_positives']:>11}"
                   f"{c['candidates']:>12}")
    return "\n".join(lines)
