"""The repository's top level holds the project's layout and nothing else (a stray log once landed
there with a merge), and the licence setup.cfg declares is there in full."""

import configparser
import hashlib
import os
import subprocess

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Files and directories (trailing /) allowed at the top level, besides dotfiles (.gitignore, .ci/).
# tools/: maintainers' scripts that build embedded data (tools/build_languages_table.py).
LAYOUT = ("setup.cfg", "pyproject.toml", "README.md", "BENCHMARKS.md", "LICENSE", "hybrid_jax/",
          "configs/", "launch/", "tests/", "notebooks/", "benchmarks/", "docs/", "tools/")
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
REQUIRED = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "hybrid_jax/")


def _top_level() -> set[str]:
  """The top-level entries `git add -A` would commit: tracked, or untracked and not ignored
  (directories with a trailing /)."""
  result = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                          cwd=_ROOT, capture_output=True, text=True, timeout=60, check=False)
  assert result.returncode == 0, f"the layout check needs a git checkout: {result.stderr}"
  entries = set()
  for path in result.stdout.split("\0"):
    if path and os.path.lexists(os.path.join(_ROOT, path)):  # not a deleted, unstaged file
      first, sep, _ = path.partition("/")
      entries.add(first + ("/" if sep else ""))
  return entries


def test_top_level_holds_only_the_project_layout():
  entries = _top_level()
  stray = sorted(e for e in entries if e not in LAYOUT and not e.startswith("."))
  assert not stray, (f"unexpected at the repository's top level: {stray}; the layout is "
                     f"{', '.join(LAYOUT)} and dotfiles (move it, delete it, or extend LAYOUT)")
  assert set(REQUIRED) <= entries, sorted(set(REQUIRED) - entries)


def test_license_is_the_apache_2_text_setup_cfg_declares():
  setup = configparser.ConfigParser()
  setup.read(os.path.join(_ROOT, "setup.cfg"))
  assert setup["metadata"]["license"] == "Apache-2.0"
  with open(os.path.join(_ROOT, "LICENSE"), "rb") as f:
    text = f.read()
  assert text.lstrip().startswith(b"Apache License\n                           Version 2.0")
  # Verbatim https://www.apache.org/licenses/LICENSE-2.0.txt (as absl-py, datasets, flax... ship
  # it), appendix included.
  assert hashlib.sha256(text).hexdigest() == APACHE_2_SHA256
