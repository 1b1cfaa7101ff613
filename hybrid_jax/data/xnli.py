"""XNLI (Conneau et al. 2018, "XNLI: Evaluating Cross-lingual Sentence Representations", EMNLP):
the 7,500 MultiNLI premise/hypothesis pairs of its dev (2,490) and test (5,010) sets, translated
into 15 languages (ar bg de el en es fr hi ru sw th tr ur vi zh), labelled entailment / neutral /
contradiction. Read for a zero-shot NLI probe of alignment (`hybrid_jax.nli_probe`), not for
retrieval. Licence: CC BY-NC 4.0 (the XNLI release).

Sources (`xnli:SOURCE`):
  DIR     the release's directory (XNLI-1.0/): `xnli.dev.tsv` and `xnli.test.tsv`, tab-separated
          with a header, one row per (pair, language): columns `language`, `gold_label`,
          `sentence1` (premise), `sentence2` (hypothesis), `pairID` among others; no quoting.
  hf      the Hugging Face hub's `facebook/xnli`, config `all_languages` (premise: a translation
          per language, hypothesis: {language, translation}, label 0-2), splits validation / test.
  tfds    TensorFlow Datasets' `xnli` (the same features), splits validation / test.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from hybrid_jax.data import languages as languages_lib
from hybrid_jax.data.hf import tfds_examples
from hybrid_jax.data.parallel_qa import DataError, check_unicode

LABELS = ("entailment", "neutral", "contradiction")  # label ids 0, 1, 2 (as the hub's ClassLabel)
SPLITS = ("dev", "test")
_FILES = {"dev": "xnli.dev.tsv", "test": "xnli.test.tsv"}
_HUB_SPLITS = {"dev": "validation", "test": "test"}
HUB_NAME, HUB_CONFIG = "facebook/xnli", "all_languages"


@dataclasses.dataclass(frozen=True)
class NLIData:
  """Parallel NLI pairs.

  Attributes:
    name: where the data came from.
    languages: the L language codes, in column order.
    pair_ids: object [N], the parallel pair ids.
    premises, hypotheses: object [N, L] texts (every pair in every language).
    labels: int64 [N], index into LABELS (the same in every language).
  """
  name: str
  languages: tuple[str, ...]
  pair_ids: np.ndarray
  premises: np.ndarray
  hypotheses: np.ndarray
  labels: np.ndarray

  def select_languages(self, codes: Sequence[str]) -> "NLIData":
    """The columns of `codes` (LanguageError for one the data lacks)."""
    missing = [c for c in codes if c not in self.languages]
    if missing:
      raise languages_lib.LanguageError(f"{self.name}: no language {', '.join(missing)} (it has "
                                        f"{'+'.join(self.languages)})")
    cols = [self.languages.index(c) for c in codes]
    return dataclasses.replace(self, languages=tuple(codes), premises=self.premises[:, cols],
                               hypotheses=self.hypotheses[:, cols])


def _assemble(name: str, rows, where_of) -> NLIData:
  """rows: (where, pair id, language, label, premise, hypothesis) -> NLIData, checking that every
  pair has every language once, with one label."""
  texts, labels, langs = {}, {}, {}
  for where, pair_id, lang, label, premise, hypothesis in rows:
    lang = languages_lib.check_language(lang, where)
    if label not in LABELS:
      raise DataError(f"{where} field 'gold_label': unknown label {label!r}; expected one of "
                      f"{LABELS}")
    for field, text in (("sentence1", premise), ("sentence2", hypothesis)):
      if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where} field {field!r}: empty or missing text")
      check_unicode(text, f"{where} field {field!r}")
    if (pair_id, lang) in texts:
      raise DataError(f"{where}: pair {pair_id!r} appears twice in {lang}")
    if labels.setdefault(pair_id, label) != label:
      raise DataError(f"{where} field 'gold_label': pair {pair_id!r} is {label!r} here and "
                      f"{labels[pair_id]!r} in another language")
    texts[pair_id, lang] = (premise, hypothesis)
    langs.setdefault(lang, len(langs))
  pair_ids = list(labels)
  missing = [(p, x) for p in pair_ids for x in langs if (p, x) not in texts]
  if missing:
    raise DataError(f"{name}: {len(missing)} (pair, language) rows missing, e.g. pair "
                    f"{missing[0][0]!r} in {missing[0][1]} ({where_of}): XNLI is fully parallel")
  languages = tuple(langs)
  premises = np.empty((len(pair_ids), len(languages)), object)
  hypotheses = np.empty_like(premises)
  for i, p in enumerate(pair_ids):
    for j, x in enumerate(languages):
      premises[i, j], hypotheses[i, j] = texts[p, x]
  ids = np.empty(len(pair_ids), object)
  ids[:] = pair_ids
  return NLIData(name, languages, ids, premises, hypotheses,
                 np.array([LABELS.index(labels[p]) for p in pair_ids], np.int64))


def _tsv_rows(path: str):
  try:
    f = open(path, encoding="utf-8", newline="")
  except OSError as e:
    raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
  with f:
    reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
    missing = [
        c for c in ("language", "gold_label", "sentence1", "sentence2", "pairID")
        if c not in (reader.fieldnames or ())
    ]
    if missing:
      raise DataError(f"{path}:1: missing column(s) {missing} in the header")
    try:
      for line, row in enumerate(reader, start=2):
        yield (f"{path}:{line}", row["pairID"], row["language"], row["gold_label"],
               row["sentence1"], row["sentence2"])
    except UnicodeDecodeError as e:
      raise DataError(f"{path}: not UTF-8 ({e})") from None


def _decoded(value):
  """A TFDS numpy tree with bytes / numpy leaves as plain str / int / list values."""
  if isinstance(value, dict):
    return {k.decode() if isinstance(k, bytes) else k: _decoded(v) for k, v in value.items()}
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, np.ndarray):
    return [_decoded(v) for v in value.tolist()] if value.ndim else _decoded(value.item())
  return value.item() if hasattr(value, "item") else value


def _translation_rows(examples, name: str):
  """Rows of the hub's / TFDS's `all_languages` features."""
  for i, ex in enumerate(examples):
    where = f"{name} row {i}"
    hyp = ex["hypothesis"]
    hypotheses = dict(zip(hyp["language"], hyp["translation"]))
    label = ex["label"]
    label = LABELS[int(label)] if not isinstance(label, str) else label
    for lang, premise in ex["premise"].items():
      yield (where, str(i), lang, label, premise, hypotheses.get(lang))


def load_xnli(source: str, split: str = "test", *, name: str | None = None) -> NLIData:
  """XNLI's `split` ('dev' or 'test') from `source` (see the module docstring).

  Raises:
    DataError: a missing file or column, an unknown label, an empty text, a pair missing in a
      language (named by file and line, or row).
  """
  if split not in SPLITS:
    raise DataError(f"xnli: unknown split {split!r}; expected one of {SPLITS}")
  name = name or f"xnli:{source}:{split}"
  if source == "hf":
    import datasets  # pylint: disable=g-import-not-at-top  (slow import, only when asked for)
    rows = _translation_rows(
        datasets.load_dataset(HUB_NAME, HUB_CONFIG, split=_HUB_SPLITS[split]), name)
  elif source == "tfds":
    rows = _translation_rows(map(_decoded, tfds_examples("xnli", _HUB_SPLITS[split])), name)
  elif os.path.isdir(source):
    rows = _tsv_rows(os.path.join(source, _FILES[split]))
  else:
    raise DataError(f"{name}: no such directory {source} (or give 'hf' or 'tfds')")
  return _assemble(name, rows, source)
