"""Tests of the multilingual sentence splitter (hybrid_jax/data/sentences.py).

Agreement with XQuAD-R's own sentence boundaries is measured in test_data_squad.py (through the
loader); here: the rules one by one, and the span invariants on every XQuAD-R paragraph.
"""

import gzip
import importlib.resources
import json
import re

import pytest

from hybrid_jax.data.languages import XQUAD_R_LANGUAGES
from hybrid_jax.data.sentences import sentence_spans, split_sentences


@pytest.mark.parametrize(
    "text, language, expected",
    [
        ("The game ended. Denver won!  Was it close? Yes.", "en",
         ["The game ended.", "Denver won!", "Was it close?", "Yes."]),
        # Abbreviations, initials, inner periods, decimals, lowercase continuation.
        ("Dr. Smith met J. R. R. Tolkien in the U.S. in 1950. He paid 3.5 dollars.", "en",
         ["Dr. Smith met J. R. R. Tolkien in the U.S. in 1950.", "He paid 3.5 dollars."]),
        ("Yahoo! is a company. It grew.", "en", ["Yahoo! is a company.", "It grew."]),
        ("He said \"Stop.\" Then he left.", "en", ["He said \"Stop.\"", "Then he left."]),
        ("It was the best. [citation needed] Next one.", "en",
         ["It was the best. [citation needed]", "Next one."]),
        ("I am here to . . . say so. Fine.", "en", ["I am here to . . . say so.", "Fine."]),
        # Ordinals with a period in German and Turkish, not in English.
        ("Tesla starb am 7. Januar 1943. Er war 86.", "de",
         ["Tesla starb am 7. Januar 1943.", "Er war 86."]),
        ("II. Dünya Savaşı bitti. Sonra barış geldi.", "tr",
         ["II. Dünya Savaşı bitti.", "Sonra barış geldi."]),
        ("He fought in World War II. Then he went home.", "en",
         ["He fought in World War II.", "Then he went home."]),
        ("Er kam z. B. aus Rom. Dann ging er.", "de", ["Er kam z. B. aus Rom.", "Dann ging er."]),
        # CJK: no space needed; Devanagari danda; Arabic question mark; Greek question mark.
        ("黑豹队赢了。他们很高兴！为什么？因为防守。", "zh", ["黑豹队赢了。", "他们很高兴！", "为什么？", "因为防守。"]),
        ("टीम जीत गई। सब खुश थे।", "hi", ["टीम जीत गई।", "सब खुश थे।"]),
        # A citation tag stays with its sentence; a stray "." joins the sentence before it.
        ("सब खुश थे। [citation needed]. फिर गए।", "hi",
         ["सब खुश थे। [citation needed].", "फिर गए।"]),
        ("هل فاز الفريق؟ نعم فاز.", "ar", ["هل فاز الفريق؟", "نعم فاز."]),
        ("Ποιος κέρδισε; Οι Πάνθηρες.", "el", ["Ποιος κέρδισε;", "Οι Πάνθηρες."]),
        # Thai: whitespace between Thai characters separates; not around Latin words or digits.
        ("ทีมชนะ 24 ครั้ง ผู้เล่นดีใจ  แฟน NFL ชอบ", "th",
         ["ทีมชนะ 24 ครั้ง", "ผู้เล่นดีใจ", "แฟน NFL ชอบ"]),
        ("", "en", []),
        ("   \n ", "en", []),
        ("no terminator at the end", None, ["no terminator at the end"]),
    ])
def test_rules(text, language, expected):
  assert split_sentences(text, language) == expected


def _xquad_r_contexts():
  root = importlib.resources.files("hybrid_jax.data") / "xquad_r"
  for lang in XQUAD_R_LANGUAGES:
    with (root / f"{lang}.json.gz").open("rb") as f:
      document = json.loads(gzip.decompress(f.read()))
    for article in document["data"]:
      for paragraph in article["paragraphs"]:
        yield lang, paragraph["context"]


def test_spans_cover_every_non_space_character_once_on_xquad_r():
  for lang, context in _xquad_r_contexts():
    spans = sentence_spans(context, lang)
    assert spans, (lang, context[:50])
    previous_end = 0
    for start, end in spans:
      assert previous_end <= start < end <= len(context)
      assert not context[previous_end:start].strip(), "non-space text between sentences"
      piece = context[start:end]
      assert piece == piece.strip()
      previous_end = end
    assert not context[previous_end:].strip()
    assert (re.sub(r"\s", "",
                   "".join(context[s:e] for s, e in spans)) == re.sub(r"\s", "", context))
