"""The formatter check CI runs: yapf with the style of setup.cfg [yapf] (2-space indentation,
100 columns) leaves these files unchanged.

The tree is not formatted yet, so CHECKED lists the files that already are. Once the whole tree
is formatted (`python -m yapf -i -r hybrid_jax tests benchmarks configs launch`), CHECKED becomes
every tracked Python file.
"""

import os
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKED = (
    "configs/models/labse.py",
    "configs/models/mbert.py",
    "configs/models/multilingual_e5_small.py",
    "configs/models/tiny.py",
    "configs/models/xlm_roberta_base.py",
    "configs/models/xlm_roberta_large.py",
    "hybrid_jax/__init__.py",
    "hybrid_jax/data/__main__.py",
    "hybrid_jax/errors.py",
    "hybrid_jax/models/__init__.py",
    "hybrid_jax/models/factory.py",
    "hybrid_jax/models/pooling.py",
    "hybrid_jax/optimizer.py",
    "hybrid_jax/paths.py",
    "tests/test_optimizer.py",
    "tests/test_packaging.py",
    "tests/test_style.py",
)


def test_checked_files_are_formatted():
  result = subprocess.run([sys.executable, "-m", "yapf", "--diff", *CHECKED], cwd=_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
  message = "not formatted as setup.cfg [yapf] says (fix: python -m yapf -i FILE):\n"
  assert result.returncode == 0, message + (result.stdout or result.stderr)[-3000:]
