"""Tatoeba bitext as LASER distributes it (Artetxe & Schwenk 2019, "Massively Multilingual
Sentence Embeddings for Zero-Shot Cross-Lingual Transfer and Beyond", TACL; the test sets of 112
languages, each up to 1,000 English-aligned sentences): `tatoeba:DIR[:LANGS]`.

DIR holds LASER's files (`data/tatoeba/v1` of facebookresearch/LASER): for every language xxx (an
ISO 639-3 or macrolanguage code) `tatoeba.xxx-eng.xxx` and `tatoeba.xxx-eng.eng`, one sentence a
line, line i of one the translation of line i of the other (gzip-compressed `.gz` files too).
LANGS: '+'-joined codes, ours (`de+fr`) or the files' (`deu+fra`); default every pair of the
directory whose language the language table knows (the others are logged and left out).

The result is a `ParallelQA` with English first: unit `xxx:i` is line i of the xxx pair, present
in English and xxx only (a unit's text is both its query and its passage); the English sentences
of two pairs are separate units even when equal. So it is English-centric bitext, not N-way
parallel text: `evaluators` scores it pair by pair (X <-> en), as LASER's Tatoeba benchmark.
"""

from __future__ import annotations

import gzip
import os
import re

from absl import logging

from hybrid_jax.data import languages as languages_lib
from hybrid_jax.data.parallel_qa import DataError, Example, ParallelQA, assemble, check_unicode

_PAIR = re.compile(r"^tatoeba\.([a-z]{2,3})-eng\.\1(\.gz)?$")


def _lines(path: str) -> list[str]:
  try:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="\n") as f:
      return [line.rstrip("\n").rstrip("\r") for line in f]
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: not UTF-8 ({e})") from None
  except OSError as e:
    raise DataError(f"{path}: cannot read: {e.strerror or e}") from None


def _pairs(directory: str) -> dict[str, tuple[str, str]]:
  """{file language code: (its path, the English path)} of the pairs in `directory`."""
  found = {}
  for name in sorted(os.listdir(directory)):
    match = _PAIR.match(name)
    if match:
      xxx, gz = match.group(1), match.group(2) or ""
      found[xxx] = (os.path.join(directory, name),
                    os.path.join(directory, f"tatoeba.{xxx}-eng.eng{gz}"))
  return found


def load_tatoeba(argument: str, *, name: str) -> ParallelQA:
  """Loads `tatoeba:DIR[:LANGS]` (see the module docstring).

  Raises:
    DataError: a missing directory or file, no pair in DIR, two files of a pair with different
      line counts, an empty line (named by file and line), text that is not UTF-8.
    LanguageError: a language of LANGS that no file of DIR has, or that the table lacks.
  """
  directory, _, langs = argument.partition(":") if not os.path.isdir(argument) else (argument, "",
                                                                                     "")
  if not os.path.isdir(directory):
    raise DataError(f"{name}: no such directory {directory}")
  pairs = _pairs(directory)
  if not pairs:
    raise DataError(f"{name}: no tatoeba.xxx-eng.xxx file in {directory}")
  by_code, unknown = {}, []
  for xxx in pairs:
    try:
      code = languages_lib.from_iso639_3(xxx)
    except languages_lib.LanguageError:
      unknown.append(xxx)
      continue
    if code in by_code:
      logging.warning(
          "%s: tatoeba.%s-eng and tatoeba.%s-eng are both language %r: using the "
          "first", name, by_code[code], xxx, code)
    by_code.setdefault(code, xxx)
  if langs:
    wanted = []
    for lang in langs.split("+"):
      code = (
          languages_lib.from_iso639_3(lang, name)
          if lang in pairs else languages_lib.check_language(lang, name))
      if code not in by_code:
        raise languages_lib.LanguageError(f"{name}: no tatoeba.xxx-eng files of {lang!r} in "
                                          f"{directory}")
      wanted.append(code)
  else:
    wanted = list(by_code)
    if unknown:
      logging.warning("%s: %d language(s) the language table lacks are left out: %s", name,
                      len(unknown), " ".join(unknown))
  examples, cand_lang, cand_text = [], [], []
  for code in wanted:
    xxx = by_code[code]
    other, english = pairs[xxx]
    if not os.path.exists(english):
      raise DataError(f"{name}: {other} has no English side {english}")
    paths = (english, other)  # English first: the first column of the result
    sides = [_lines(p) for p in paths]
    if len(sides[0]) != len(sides[1]):
      raise DataError(f"{name}: {english} has {len(sides[0])} lines, {other} {len(sides[1])}: "
                      "the sides of a pair must align line by line")
    for i, texts in enumerate(zip(*sides)):
      for lang, text, path in zip(("en", code), texts, paths):
        if not text.strip():
          raise DataError(f"{path}:{i + 1}: empty line")
        check_unicode(text, f"{path}:{i + 1}")
        examples.append(Example(f"{xxx}:{i}", lang, text, len(cand_text)))
        cand_lang.append(lang)
        cand_text.append(text)
  return assemble(name, examples, cand_lang, cand_text, [""] * len(cand_text))
