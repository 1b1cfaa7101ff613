"""Language codes: ISO 639-1 two-letter codes (and a few common extras), checked everywhere a
language enters the program (data files, configs), so a typo such as `"dn"` fails loudly."""

from __future__ import annotations

import difflib

from hybrid_jax.errors import UserError

# ISO 639-1 (all 183 codes), plus codes used by MIRACL / Mr. TyDi / FLORES-style data sets.
ISO_639_1 = frozenset("""
aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da
de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz
ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln
lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi
pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti
tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu
""".split())
EXTRA_CODES = frozenset({"yue", "fil", "zh-cn", "zh-tw", "pt-br"})
KNOWN_LANGUAGES = ISO_639_1 | EXTRA_CODES

# The eleven languages of XQuAD-R, in the order of its files.
XQUAD_R_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
# The seven languages of MLQA(-R).
MLQA_R_LANGUAGES = ("ar", "de", "en", "es", "hi", "vi", "zh")


class LanguageError(UserError, ValueError):
  """An unknown or repeated language code in a config, a flag or a data file."""


def check_language(code, where: str = "") -> str:
  """Returns `code` if it is a known language code, else raises LanguageError naming `where`."""
  if not isinstance(code, str) or code not in KNOWN_LANGUAGES:
    close = difflib.get_close_matches(str(code), sorted(KNOWN_LANGUAGES), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    place = f"{where}: " if where else ""
    raise LanguageError(f"{place}unknown language code {code!r}{hint}; expected an ISO 639-1 code "
                        "such as 'en', 'de', 'zh'")
  return code


def parse_languages(spec, where: str = "languages") -> tuple[str, ...]:
  """'en+de+ar', 'en,de,ar', a list, or 'xquad_r' / 'mlqa_r' -> a checked tuple of codes."""
  if isinstance(spec, str):
    if spec in ("xquad_r", "all"):
      return XQUAD_R_LANGUAGES
    if spec == "mlqa_r":
      return MLQA_R_LANGUAGES
    spec = [s for s in spec.replace("+", ",").split(",") if s.strip()]
  codes = tuple(check_language(s.strip(), where) for s in spec)
  if not codes:
    raise LanguageError(f"{where}: no language given")
  if len(set(codes)) != len(codes):
    raise LanguageError(f"{where}: language listed twice in {codes}")
  return codes
