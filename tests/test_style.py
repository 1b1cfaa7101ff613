"""The formatter check CI runs: yapf with the style of setup.cfg [yapf] (2-space indentation,
100 columns) leaves every Python file of the project unchanged (fix: `python -m yapf -i -r
hybrid_jax tests benchmarks configs launch`).
"""

import os
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORMATTED_DIRS = ("hybrid_jax", "tests", "benchmarks", "configs", "launch")


def _python_files() -> list[str]:
  found = []
  for top in FORMATTED_DIRS:
    for root, dirs, files in os.walk(os.path.join(_ROOT, top)):
      dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
      found += [
          os.path.relpath(os.path.join(root, f), _ROOT) for f in sorted(files) if f.endswith(".py")
      ]
  return found


CHECKED = _python_files()


def test_checked_files_are_formatted():
  result = subprocess.run([sys.executable, "-m", "yapf", "--diff", *CHECKED], cwd=_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
  message = "not formatted as setup.cfg [yapf] says (fix: python -m yapf -i FILE):\n"
  assert result.returncode == 0, message + (result.stdout or result.stderr)[-3000:]
