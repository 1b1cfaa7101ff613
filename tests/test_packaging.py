"""The wheel: an installed, non-editable hybrid-jax finds its config files (configs/default.py and
the model presets of configs/models/), which live outside the package in the source tree; it
carries the project's LICENSE and every embedded data file with the licence of its data."""

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "hybrid_jax", "configs")


def _pip(*args):
  result = subprocess.run([sys.executable, "-m", "pip", "-q", *args], capture_output=True,
                          text=True, timeout=120, check=False)
  assert result.returncode == 0, (args, result.stderr[-3000:])


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """(site directory holding the installed wheel, the wheel's file names)."""
  tmp = tmp_path_factory.mktemp("packaging")
  source = tmp / "source"  # a copy: building in place would leave build/ in the checkout
  for name in _SOURCES:
    src, dst = os.path.join(_ROOT, name), source / name
    if os.path.isdir(src):
      shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    else:
      os.makedirs(source, exist_ok=True)
      shutil.copy(src, dst)
  dist, site = tmp / "dist", tmp / "site"
  # The installed setuptools when there is one (fast, offline); else pip fetches it from PyPI.
  isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
  _pip("wheel", "--no-deps", *isolation, f"{source}", f"-w{dist}")
  (wheel,) = dist.glob("hybrid_jax-*.whl")
  _pip("install", "--no-deps", "--no-index", f"--target={site}", f"{wheel}")
  with zipfile.ZipFile(wheel) as z:
    return site, z.namelist()


def test_wheel_has_every_subpackage_and_config(installed):
  _, names = installed
  for directory, _, files in os.walk(os.path.join(_ROOT, "hybrid_jax")):
    if "__init__.py" in files:  # setup.cfg lists packages by hand
      package = os.path.relpath(directory, _ROOT)
      assert f"{package}/__init__.py" in names, f"{package} is missing from setup.cfg packages"
  for directory, _, files in os.walk(os.path.join(_ROOT, "configs")):
    for name in files:
      if name.endswith(".py"):
        path = os.path.relpath(os.path.join(directory, name), _ROOT)
        assert f"hybrid_jax/{path}" in names


def test_wheel_carries_the_licence_and_the_embedded_data_with_its_licences(installed):
  site, names = installed
  (license_path,) = [
      n for n in names
      if n.split("/")[0].endswith(".dist-info") and os.path.basename(n) == "LICENSE"
  ]
  with open(os.path.join(_ROOT, "LICENSE"), "rb") as f:
    assert (site / license_path).read_bytes() == f.read()
  data_files = []
  for directory, dirs, files in os.walk(os.path.join(_ROOT, "hybrid_jax")):
    dirs[:] = [d for d in dirs if d != "__pycache__"]
    for name in files:
      path = os.path.relpath(os.path.join(directory, name), _ROOT)
      if not name.endswith(".py"):  # data, its licence and attribution: in setup.cfg package_data
        assert path in names, f"{path} is missing from the wheel (setup.cfg package_data)"
        data_files.append(path)
  assert "hybrid_jax/data/xquad_r/ATTRIBUTION.md" in data_files
  for path in data_files:  # every embedded data file ships with its data set's licence
    licence = f"{os.path.dirname(path)}/LICENSE"
    assert licence in names, f"{path}: no {licence} in the wheel"


def test_installed_package_resolves_presets_and_the_default_config(installed, tmp_path):
  site, _ = installed
  script = ("import os, hybrid_jax\n"
            "from hybrid_jax import config_lib\n"
            "print(os.path.dirname(hybrid_jax.__file__))\n"
            "print(config_lib.CONFIGS_DIR)\n"
            "print(config_lib.model_preset('tiny').hidden_size)\n"
            "config = config_lib.default_config('model=tiny,langs=en+de')\n"
            "print(config.model.hidden_size, config.data.languages)\n")
  env = {**os.environ, "PYTHONPATH": str(site)}  # not the checkout, nor its editable install
  result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr
  package, configs, preset, default = result.stdout.splitlines()
  assert package == str(site / "hybrid_jax")
  assert configs == str(site / "hybrid_jax" / "configs")
  from hybrid_jax import config_lib  # the checkout's, for the expected values
  tiny = config_lib.model_preset("tiny").hidden_size
  assert preset == str(tiny) and default == f"{tiny} en+de"
