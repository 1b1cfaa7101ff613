"""`pip install -e .` is enough for the README's first command: the main job (a few steps of a
tiny model, then its evaluation and reports) and the evaluator run in a Python whose import system
sees only the runtime dependency closure of hybrid-jax, so a package that only the test extras
install (matplotlib was one) cannot hide there.

The closure is computed from setup.cfg's `install_requires`, then recursively from the installed
distributions' `Requires-Dist` (markers evaluated, extras followed). The subprocess runs with
`python -S` (no site-packages) and a `sys.path` of this checkout plus a folder of links to the
top-level files of exactly those distributions, their `.dist-info` included: imports AND
`importlib.metadata` look-ups (how transformers and others probe for optional packages) see what a
fresh virtualenv would hold, and nothing else.
"""

import configparser
import importlib.metadata
import os
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tiny_run import REPO, TINY_MODEL, env

# What `python -m venv` puts in every environment besides the package's own requirements.
VENV_BASELINE = ("pip",)


def runtime_closure(setup_cfg: str = os.path.join(REPO, "setup.cfg")) -> set[str]:
  """Canonical names of hybrid-jax's install_requires and, recursively, of their requirements."""
  parser = configparser.ConfigParser()
  parser.read(setup_cfg)
  todo = [
      Requirement(line) for line in parser["options"]["install_requires"].splitlines()
      if line.strip()
  ]
  todo += [Requirement(name) for name in VENV_BASELINE]
  extras_of: dict[str, set[str]] = {}
  while todo:
    requirement = todo.pop()
    name = canonicalize_name(requirement.name)
    if name in extras_of and set(requirement.extras) <= extras_of[name]:
      continue
    extras = extras_of.setdefault(name, set())
    extras.update(requirement.extras)
    try:
      distribution = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
      continue  # e.g. a platform-specific requirement that is not installed here
    for line in distribution.requires or ():
      child = Requirement(line)
      environments = [{"extra": extra} for extra in extras or {""}]
      if child.marker is None or any(child.marker.evaluate(e) for e in environments):
        todo.append(child)
  return set(extras_of)


def make_site(directory, distributions) -> str:
  """A site folder holding links to every top-level file or folder of `distributions`."""
  os.makedirs(directory)
  for name in sorted(distributions):
    try:
      distribution = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
      continue
    tops = {file.parts[0] for file in distribution.files or () if file.parts[0] != ".."}
    for top in tops:
      source = distribution.locate_file(top)
      link = os.path.join(directory, top)
      if os.path.exists(source) and not os.path.lexists(link):
        os.symlink(source, link)
  return str(directory)


@pytest.fixture(scope="module")
def bare_env(tmp_path_factory):
  closure = runtime_closure()
  assert {"jax", "flax", "transformers", "matplotlib"} <= closure, sorted(closure)
  site = make_site(tmp_path_factory.mktemp("bare") / "site", closure)
  out = env(num_devices=2)
  out["PYTHONPATH"] = os.pathsep.join([REPO, site])
  out["PYTHONNOUSERSITE"] = "1"
  return out


def _run_bare(bare_env, *args):
  proc = subprocess.run([sys.executable, "-S", *args], cwd=REPO, env=bare_env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  return proc


def test_the_bare_site_refuses_what_only_extras_install(bare_env):
  # The check itself: test-only packages installed here must be invisible in the bare Python, and
  # the runtime's (scikit-learn for the alignment probes, grain for input workers) visible.
  script = ("import importlib.util, importlib.metadata as m\n"
            "for name in ('pytest', 'torch', 'peft', 'pytrec_eval'):\n"
            "  assert importlib.util.find_spec(name) is None, name\n"
            "import jax, matplotlib, sklearn, grain, hybrid_jax\n"
            "assert hybrid_jax.__file__.startswith(%r), hybrid_jax.__file__\n" % REPO)
  _run_bare(bare_env, "-c", script)


def test_main_and_evaluate_need_only_the_runtime_dependencies(bare_env, tmp_path):
  workdir = tmp_path / "run"
  _run_bare(bare_env, "-m", "hybrid_jax.main", f"--workdir={workdir}",
            "--config=configs/default.py:model=tiny,langs=en+de,steps=2", *TINY_MODEL,
            "--config.checkpoint.every_steps=2", "--config.eval.batch_size=64")
  assert (workdir / "eval" / "xquad_r_eval" / "step_2" / "heatmap.png").is_file()
  out = tmp_path / "evaluated"
  _run_bare(bare_env, "-m", "hybrid_jax.evaluate", f"--workdir={workdir}", f"--output_dir={out}",
            "--batch_size=64")
  assert (out / "results.json").is_file() and (out / "heatmap.png").is_file()
