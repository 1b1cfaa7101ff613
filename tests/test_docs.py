"""The documentation: every relative link in README.md, BENCHMARKS.md, benchmarks/README.md and
docs/*.md resolves (the file exists; an `#anchor` names a heading of the target as GitHub renders
it), and the README keeps its two set-up commands first, the second being the one `.ci/run`
runs verbatim."""

import glob
import os
import re
import unicodedata

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES = 150  # issue 26: a README a newcomer reads in five minutes

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def doc_files():
  files = [os.path.join(REPO, "README.md"), os.path.join(REPO, "BENCHMARKS.md")]
  files += [os.path.join(REPO, "benchmarks", "README.md")]
  files += sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
  return [f for f in files if os.path.exists(f)]


def _prose_lines(text):
  """(line number, line) outside fenced code blocks, with inline code spans blanked."""
  fenced = False
  for number, line in enumerate(text.split("\n"), 1):
    if _FENCE.match(line):
      fenced = not fenced
      continue
    if not fenced:
      yield number, _CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)


def github_anchor(heading):
  """The `id` GitHub gives a heading: its rendered text lower-cased, every character that is not
  a letter, mark, digit, '_', '-' or space dropped, spaces turned into '-' (github-slugger)."""
  text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
  text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
  kept = []
  for ch in text.lower():
    if ch in "-_ " or unicodedata.category(ch)[0] in "LMN":
      kept.append(ch)
  return "".join(kept).replace(" ", "-")


def anchors(path):
  """Every anchor a Markdown file defines: heading ids (a repeated one gets -1, -2, ...) and
  explicit <a name/id> tags."""
  with open(path, encoding="utf-8") as f:
    text = f.read()
  seen, result = {}, set()
  for _, line in _prose_lines(text):
    result.update(_HTML_ANCHOR.findall(line))
  fenced = False
  for line in text.split("\n"):
    if _FENCE.match(line):
      fenced = not fenced
      continue
    m = None if fenced else _HEADING.match(line)
    if m:
      base = github_anchor(m.group(2))
      n = seen.get(base, 0)
      seen[base] = n + 1
      result.add(base if n == 0 else f"{base}-{n}")
  return result


def broken_links(path):
  """['file:line: target (why)'] for each relative link of a Markdown file that does not resolve."""
  with open(path, encoding="utf-8") as f:
    text = f.read()
  problems = []
  for number, line in _prose_lines(text):
    for target in _LINK.findall(line):
      if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
        continue
      file_part, _, anchor = target.partition("#")
      resolved = path
      if file_part:
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part))
      where = f"{os.path.relpath(path, REPO)}:{number}: {target}"
      if not os.path.exists(resolved):
        problems.append(f"{where} (no such file)")
      elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
        problems.append(f"{where} (no heading with this anchor)")
  return problems


def test_every_relative_link_resolves():
  files = doc_files()
  assert os.path.join(REPO, "docs", "README.md") in files
  problems = [p for f in files for p in broken_links(f)]
  assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_link_check_fails_on_a_broken_link(tmp_path):
  (tmp_path / "sub").mkdir()
  (tmp_path / "sub" / "page.md").write_text("# A page\n\n## Costs: `gs://` & multi-host (2×)\n",
                                            encoding="utf-8")
  doc = tmp_path / "doc.md"
  doc.write_text(
      "# Doc\n\n## Two words\n\n"
      "[ok](sub/page.md) [ok](sub/page.md#costs-gs--multi-host-2) [ok](#two-words)\n"
      "[ok](https://example.com/x.md) `[not a link](missing.md)`\n"
      "```\n[inside a fence](missing.md)\n```\n"
      "[bad file](sub/missing.md) [bad anchor](sub/page.md#costs) [bad local](#three-words)\n"
      "![bad image](img/none.png)\n", encoding="utf-8")
  problems = broken_links(str(doc))
  assert [p.split(": ", 1)[1] for p in problems] == [
      "sub/missing.md (no such file)",
      "sub/page.md#costs (no heading with this anchor)",
      "#three-words (no heading with this anchor)",
      "img/none.png (no such file)",
  ]
  assert all(":10:" in p for p in problems[:3]) and ":11:" in problems[3]


@pytest.mark.parametrize("heading, anchor", [
    ("Cloud workdirs (`gs://`)", "cloud-workdirs-gs"),
    ("Host input pipeline (1M x 9, Arrow, XLM-R tokenizer)",
     "host-input-pipeline-1m-x-9-arrow-xlm-r-tokenizer"),
    ("multilingual-e5-small: train step and evaluation against their FLOP floors",
     "multilingual-e5-small-train-step-and-evaluation-against-their-flop-floors"),
    ("The paper's study (mono-only vs cross-only)", "the-papers-study-mono-only-vs-cross-only"),
    ("Results, beside the [paper](https://arxiv.org)", "results-beside-the-paper"),
])
def test_github_anchor(heading, anchor):
  assert github_anchor(heading) == anchor


def test_repeated_headings_get_numbered_anchors(tmp_path):
  doc = tmp_path / "d.md"
  doc.write_text("# T\n## Run\n## Run\n```\n## Run\n```\n## Run\n", encoding="utf-8")
  assert anchors(str(doc)) == {"t", "run", "run-1", "run-2"}


def test_readme_is_short_and_starts_with_the_two_setup_commands():
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  assert len(readme.splitlines()) <= README_MAX_LINES
  first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
  assert readme.index("```bash") < readme.index("\n## ")  # before any section
  assert first_block[0].startswith('pip install -e ".[e5]" && python -m hybrid_jax.main ')
  assert first_block[1] == 'pip install -e ".[test]" && python -m pytest -q'
  with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
    ci_lines = [line.strip() for line in f]
  assert first_block[1] in ci_lines
