"""notebooks/evaluate_checkpoint.ipynb runs top to bottom (nbclient) on two tiny Hugging Face
checkpoints made here, comparing them side by side with the TF-IDF row."""

import os

import nbformat
from nbclient import NotebookClient

from hybrid_jax import data as data_lib
from hybrid_jax import models
from hybrid_jax import report
from hybrid_jax.models import tokenizer as tokenizer_lib
from hybrid_jax.models.config import model_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "evaluate_checkpoint.ipynb")


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


def test_notebook_runs_on_two_checkpoints(tmp_path, monkeypatch):
  data = data_lib.load("xquad_r:eval", languages=["en", "de"])
  tokenizer = tokenizer_lib.train_default_tokenizer(tokenizer_lib.parallel_qa_texts(data),
                                                    vocab_size=1000)
  config = model_config(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=80)
  for name, seed in (("a", 0), ("b", 1)):
    models.save_pretrained(models.create_model(config, seed=seed), str(tmp_path / name),
                           tokenizer)

  nb = nbformat.read(NOTEBOOK, as_version=4)
  _parameters_cell(nb).source += "\n".join([
      "", f"CHECKPOINT_A = {str(tmp_path / 'a')!r}", "LABEL_A = 'seed0'",
      f"CHECKPOINT_B = {str(tmp_path / 'b')!r}", "LABEL_B = 'seed1'",
      "LANGUAGES = 'en+de'", "PASSAGE_MAX_LEN = 32", f"OUTPUT_DIR = {str(tmp_path / 'out')!r}"])
  monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  NotebookClient(nb, timeout=300, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()

  for label in ("seed0", "seed1", "tfidf"):
    saved = report.load_results(str(tmp_path / "out" / label))
    assert saved["languages"] == ["en", "de"]
  text = "\n".join(
      output.get("data", {}).get("text/markdown", "")
      for cell in nb.cells for output in cell.get("outputs", []))
  comparison = [line for line in text.splitlines()
                if line.startswith(("| seed0 |", "| seed1 |", "| tfidf |"))]
  assert len(comparison) == 3
  seed1 = report.load_results(str(tmp_path / "out" / "seed1"))
  assert f"{seed1['metrics']['map_mono']:.3f}" in next(l for l in comparison if "seed1" in l)
  assert any("image/png" in output.get("data", {})
             for cell in nb.cells for output in cell.get("outputs", []))
