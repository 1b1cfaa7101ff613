"""notebooks/evaluate_checkpoint.ipynb runs top to bottom (nbclient) on the checkpoints of two tiny
training runs made by the test session (mono-only vs hybrid), side by side with the TF-IDF row; the
hybrid run is read from a `gs://` path (the session's GCS emulator, conftest.py `gcs_env`)."""

import json
import os
import re

import gcs_emulator
import nbformat
import pytest
from nbclient import NotebookClient
from tiny_run import xla_flags

from hybrid_jax import config_lib
from hybrid_jax import eval_report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "evaluate_checkpoint.ipynb")


def _load_results(directory):
  with open(os.path.join(directory, eval_report.JSON_NAME)) as f:
    return json.load(f)


def _parameters_cell(nb):
  cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
  assert len(cells) == 1, "the notebook needs exactly one cell tagged 'parameters'"
  return cells[0]


def test_notebook_outputs_are_stripped():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert not cell.outputs and cell.execution_count is None


@pytest.mark.parametrize("labels", [("same", "same"), ("tfidf", "hybrid")])
def test_repeated_labels_are_refused_before_any_work(labels, tmp_path):
  """LABEL_A == LABEL_B compared B with itself ("Δ +0.000") and overwrote A's report, silently;
  a checkpoint labelled 'tfidf' would do the same with the TF-IDF row."""
  nb = nbformat.read(NOTEBOOK, as_version=4)
  namespace = {}
  exec(_parameters_cell(nb).source, namespace)  # pylint: disable=exec-used
  namespace.update(
      CHECKPOINT_A=str(tmp_path), CHECKPOINT_B=str(tmp_path), LABEL_A=labels[0], LABEL_B=labels[1])
  runs_cell = next(c for c in nb.cells if "runs = [(LABEL_A, CHECKPOINT_A)]" in c.source)
  with pytest.raises(ValueError, match=r"the labels .* repeat: each checkpoint needs its own"):
    exec(runs_cell.source, namespace)  # pylint: disable=exec-used


def test_the_default_lengths_the_notebook_states_are_the_code_s():
  """It said 96 passage tokens where the code uses 64."""
  source = _parameters_cell(nbformat.read(NOTEBOOK, as_version=4)).source
  lengths = re.findall(r"PASSAGE_MAX_LEN = None .*\b(\d+)\b", source)
  assert lengths == [str(config_lib.DEFAULT_PASSAGE_MAX_LEN)], lengths


@pytest.mark.xdist_group("tiny_sweep")  # one worker makes the shared sweep
def test_notebook_runs_on_two_checkpoints(tiny_sweep, gcs_env, tmp_path, monkeypatch):
  """Mono-only vs hybrid: two tiny training runs (workdirs with checkpoints) of the sweep, the
  hybrid one copied into the bucket and read from there."""
  _, runs = tiny_sweep
  mono_only = runs["L2-en_de-mono1"]
  gcs_emulator.upload_tree(gcs_env, runs["L2-en_de-mono0.5"], "notebook/hybrid")
  hybrid = f"gs://{gcs_emulator.BUCKET}/notebook/hybrid"
  nb = nbformat.read(NOTEBOOK, as_version=4)
  _parameters_cell(nb).source += "\n".join([
      "", f"CHECKPOINT_A = {mono_only!r}", "LABEL_A = 'mono_only'", f"CHECKPOINT_B = {hybrid!r}",
      "LABEL_B = 'hybrid'", "LANGUAGES = 'en+de'", "PASSAGE_MAX_LEN = 32",
      f"OUTPUT_DIR = {str(tmp_path / 'out')!r}"
  ])
  monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  monkeypatch.setenv("XLA_FLAGS", xla_flags(2))
  for name, value in gcs_env.items():  # the kernel reaches the emulator
    monkeypatch.setenv(name, value)
  NotebookClient(nb, timeout=300, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()

  for label in ("mono_only", "hybrid", "tfidf"):
    saved = _load_results(tmp_path / "out" / label)
    assert saved["languages"] == ["en", "de"]
  text = "\n".join(
      output.get("data", {}).get("text/markdown", "") for cell in nb.cells
      for output in cell.get("outputs", []))
  comparison = [
      line for line in text.splitlines()
      if line.startswith(("| mono_only |", "| hybrid |", "| tfidf |"))
  ]
  assert len(comparison) == 3
  hybrid_results = _load_results(tmp_path / "out" / "hybrid")
  assert hybrid_results["step"] == 4  # the newest checkpoint of the 4-step run
  assert f"{hybrid_results['metrics']['map_mono']:.3f}" in next(
      l for l in comparison if "hybrid" in l)
  assert any("image/png" in output.get("data", {}) for cell in nb.cells
             for output in cell.get("outputs", []))
  assert os.listdir(tmp_path) == ["out"]  # the kernel's directory: no local `gs:` copy
