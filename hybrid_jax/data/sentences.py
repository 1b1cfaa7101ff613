"""A small rule-based multilingual sentence splitter, for SQuAD-format paragraphs that come without
sentence boundaries (XQuAD, MLQA). XQuAD-R ships its own boundaries and does not use it.

Rules, in order:
  * A sentence ends after a run of terminators and the closing quotes/brackets that follow it:
    Latin-style `. ! ? …` (also Arabic `؟`, Urdu `۔`, and in Greek `;`, the Greek question mark,
    which Unicode normalizes to the semicolon), CJK `。 ！ ？ ｡`, Devanagari `। ॥`. Citation tags
    right after a terminator ("[citation needed]") stay with their sentence.
  * CJK and Devanagari terminators end a sentence wherever they stand. A Latin-style terminator ends
    one only when whitespace (or the end of the text) follows and the next word does not start with
    a lowercase letter ("Yahoo! is", "etc. and" stay whole; "3.5" and "a.m.x" are never split).
  * A lone `.` does not end a sentence after an abbreviation: a single cased letter (initials
    "J. R. R. Tolkien", "z. B."), a word with an inner period ("U.S.", "e.g.", "т.е."), or a word in
    `ABBREVIATIONS` ("Dr.", "Mio.", "Sra."). In languages that write ordinals with a period
    (`ORDINAL_PERIOD_LANGUAGES`: de, tr, the Nordic and most Slavic languages, ...), nor after a
    number of at most three digits or a Roman numeral ("31. August", "II. Dünya Savaşı"); a
    four-digit year ("1943.") still ends a sentence.
  * Thai writes no sentence punctuation; a space between two Thai characters marks the end of a
    sentence or clause, so every run of whitespace between two Thai characters is a boundary (this
    splits more finely than human sentence boundaries: Thai paragraphs get clause-sized
    candidates).
Surrounding whitespace is not part of a sentence, a piece without any letter or digit (a stray
".") joins the sentence before it, and a paragraph of only whitespace has none.
"""

from __future__ import annotations

import re

ABBREVIATIONS = frozenset("""
mr mrs ms dr prof st mt ft jr sr sen rep gov gen col lt sgt capt cmdr adm rev hon pres no nos nr
vol vols pp fig figs ed eds approx ca cf vs al inc ltd co corp dept univ est
jan feb mar apr jun jul aug sep sept oct nov dec
bzw ggf vgl hr fr frau str mio mrd jh jhd dt evtl inkl ggü sog
sra srta dña dra ud uds núm pág aprox av avda ee uu
mme mlle
örn yy
им ул тыс млн млрд
""".split())
ORDINAL_PERIOD_LANGUAGES = frozenset(
    "de da nb nn no is fi et lv lt pl cs sk sl hr sr bs hu tr".split())

_LATIN_TERMINATORS = ".!?…\u203c\u2047\u2048\u2049\u061f\u06d4\u037e"
_CJK_TERMINATORS = "。！？｡"
_INDIC_TERMINATORS = "।॥"
_CLOSERS = "\"'”’»)]}」』〉》）】›"
_GREEK_QUESTION_MARK = ";"  # U+037E normalizes (NFC) to the ASCII semicolon.
# A terminator run, its closers, and citation tags that belong to the sentence ("[citation needed]").
_END = re.compile(
    f"(?P<terminator>[{re.escape(_LATIN_TERMINATORS + _CJK_TERMINATORS + _INDIC_TERMINATORS)};]+"
    f"[{re.escape(_CLOSERS)}]*)"
    r"(?:\s*\[[^\[\]\n]{1,60}\])*")
# What may follow a terminator inside one sentence: more terminators (". . ."), closing brackets;
# not the straight quotes, which also open sentences.
_CONTINUATIONS = _LATIN_TERMINATORS + _CLOSERS.replace("\"", "").replace("'", "")
_THAI_SPACE = re.compile(r"(?<=[\u0e00-\u0e7f])\s+(?=[\u0e00-\u0e7f])")
_LAST_WORD = re.compile(r"\S*$")
_NEXT_CHARACTER = re.compile(r"\s*(\S?)")
_OPENERS = "\"'“‘«‹([{„「『（【"
_ROMAN_NUMERAL = re.compile(r"^(X{0,3})(IX|IV|V?I{0,3})$")


def _is_abbreviation(word: str, language: str | None) -> bool:
  """Whether `word` (the text before a lone period, without it) is an abbreviation."""
  word = word.lstrip(_OPENERS)
  if not word or word[-1] in _CLOSERS:
    return False
  if len(word) == 1 and word.lower() != word.upper():
    return True
  if "." in word or word.lower() in ABBREVIATIONS:
    return True
  if language in ORDINAL_PERIOD_LANGUAGES:
    return (word.isdigit() and len(word) <= 3) or bool(_ROMAN_NUMERAL.match(word))
  return False


def _ends_sentence(text: str, match: re.Match, language: str | None) -> bool:
  """Whether the terminator run `match` in `text` closes a sentence."""
  terminator = match.group("terminator")
  first = terminator[0]
  if first in _CJK_TERMINATORS or first in _INDIC_TERMINATORS:
    return True
  if first == _GREEK_QUESTION_MARK and language != "el":
    return False
  end = match.end()
  if end < len(text) and not text[end].isspace():
    return False
  following = _NEXT_CHARACTER.match(text, end).group(1)
  if following and (following.islower() or following in _CONTINUATIONS):
    return False
  lone_period = terminator == "."
  return not (lone_period
              and _is_abbreviation(_LAST_WORD.search(text, 0, match.start()).group(), language))


def sentence_spans(text: str, language: str | None = None) -> list[tuple[int, int]]:
  """[start, end) character offsets of the sentences of `text`, in order (see the module rules).

  Args:
    text: a paragraph.
    language: its language code; selects the ordinal-period, Greek and Thai rules (None: none).

  Returns:
    Non-overlapping spans, each without surrounding whitespace; together they cover every
    non-whitespace character of `text`.
  """
  cuts = [m.end() for m in _END.finditer(text) if _ends_sentence(text, m, language)]
  if language == "th":
    cuts += [m.start() for m in _THAI_SPACE.finditer(text)]
  spans = []
  start = 0
  for end in sorted(set(cuts)) + [len(text)]:
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
      left = start + len(piece) - len(piece.lstrip())
      if spans and not any(c.isalnum() for c in stripped):
        spans[-1] = (spans[-1][0], left + len(stripped))
      else:
        spans.append((left, left + len(stripped)))
    start = end
  return spans


def split_sentences(text: str, language: str | None = None) -> list[str]:
  """The sentences of `text` as strings (see `sentence_spans`)."""
  return [text[start:end] for start, end in sentence_spans(text, language)]
