"""A whole LoRA run with per-language adapters (`python -m hybrid_jax.main`, tiny base model saved
with save_pretrained, 8 devices with fsdp=2: the feed-forward kernels and their adapters split):
its checkpoints hold the adapters and the base's identity only, a kill and resume repeats it
bitwise, its stand-alone evaluation (`evaluate --workdir`, routed by language,
el zero-shot) equals the in-training one, and resuming it as a full run or on a changed base is
refused."""

import json
import os
import pathlib
import re
import shutil

import fault_injection
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from tiny_run import run

from hybrid_jax import cost
from hybrid_jax import evaluators
from hybrid_jax import run_dir
from hybrid_jax import train
from hybrid_jax.errors import UserError
from hybrid_jax.models import create_model, save_pretrained
from hybrid_jax.models.config import model_config

NUM_STEPS = 6


def _flags(base_dir):
  return [
      "--config=configs/default.py:model=tiny,langs=en+de", f"--config.model.path={base_dir}",
      "--config.model.lora.rank=4", "--config.model.lora.per_language=True",
      "--config.model.lora.dropout=0.1", "--config.data.eval_languages=en+de+el",
      "--config.data.query_max_len=16", "--config.data.passage_max_len=32",
      "--config.train.global_batch_size=16", f"--config.train.num_steps={NUM_STEPS}",
      "--config.optim.warmup_steps=2", "--config.log.every_steps=1",
      "--config.checkpoint.every_steps=3", "--config.train.fsdp=2"
  ]


def _base(directory, tokenizer):
  """Intermediate size 512: the feed-forward kernels [32, 512] and [512, 32] reach
  `sharding.FSDP_MIN_PARAM_SIZE` (2**14), so fsdp=2 splits them and their LoRA factors."""
  config = model_config(
      vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
      intermediate_size=512, max_position_embeddings=80)
  save_pretrained(create_model(config, seed=0), str(directory), tokenizer)
  return str(directory)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, eval_tokenizer):
  """(base directory, workdir, its output) of a straight 6-step LoRA run on 8 devices (as
  fault_injection runs)."""
  root = tmp_path_factory.mktemp("lora_run")
  base = _base(root / "base", eval_tokenizer)
  workdir = str(root / "straight")
  return base, workdir, run(workdir, *_flags(base))


def test_checkpoint_holds_the_adapters_and_the_base_identity(lora_run):
  """Also: the start-up diagnostics count the adapters as the trainable parameters: 2 layers x
  3 sets (shared, en, de) x rank 4 x (4 x (32 + 32) + (32 + 512) + (512 + 32))."""
  base, workdir, output = lora_run
  assert "parameters: 32,256 trainable" in output
  replicated = re.search(r"under train.fsdp=2: ([\d.]+)% of the bytes replicated", output)
  assert replicated and float(replicated.group(1)) < 100  # the run does split (test_fsdp: how)
  step_dir = os.path.join(workdir, "checkpoints", str(NUM_STEPS))
  with open(os.path.join(step_dir, "meta", "metadata")) as f:
    meta = json.load(f)
  assert meta["base"]["path"] == base and len(meta["base"]["sha256"]) == 64
  with open(os.path.join(step_dir, "state", "_METADATA")) as f:
    saved_tree = f.read()
  assert "lora_a" in saved_tree and "lora_b" in saved_tree and "kernel" not in saved_tree
  base_bytes = os.path.getsize(os.path.join(base, "model.safetensors"))
  saved_bytes = sum(p.stat().st_size for p in pathlib.Path(step_dir).rglob("*") if p.is_file())
  assert saved_bytes < base_bytes
  for adapter in ("adapter", "adapters/en", "adapters/de"):
    assert os.path.isfile(os.path.join(workdir, "model", adapter, "adapter_model.safetensors"))


def test_cost_record_counts_the_loaded_model_and_its_trainable_set(lora_run):
  """The record's FLOP model (`analytic_step_flops`) is the base's architecture (2 layers, hidden
  32, from its config.json), not the model preset's (1 layer, hidden 512), with the base frozen
  and the adapters trained; it was the preset's full fine-tuning count before."""
  base, workdir, _ = lora_run
  config = run_dir.load_config(workdir)
  with open(os.path.join(base, "config.json")) as f:
    architecture = json.load(f)
  assert (architecture["num_hidden_layers"], architecture["hidden_size"]) == (2, 32)
  analytic = cost.read(workdir)["analytic_step_flops"]
  assert analytic == cost.config_step_flops(config, train.frozen_pattern(config), architecture)
  assert analytic < cost.config_step_flops(config, train.frozen_pattern(config), None) / 10
  assert analytic < cost.config_step_flops(config, "", architecture)


def test_kill_and_resume_is_exact(lora_run, tmp_path):
  base, straight, _ = lora_run
  workdir = str(tmp_path / "killed")
  proc = fault_injection.run(
      fault_injection.child_command(workdir, "after_commit", 3, *_flags(base)))
  assert proc.returncode != 0 and fault_injection.losses(workdir)
  run(workdir, *_flags(base))
  assert fault_injection.compare_runs(straight, workdir) == []


def test_stand_alone_evaluation_equals_the_in_training_one(lora_run, tmp_path):
  _, workdir, _ = lora_run
  with open(os.path.join(workdir, "eval", "xquad_r_eval", f"step_{NUM_STEPS}",
                         "results.json")) as f:
    in_training = json.load(f)["metrics"]
  results = evaluators.evaluate_checkpoint(workdir, output_dir=str(tmp_path / "eval"),
                                           show_progress=False)
  for key in ("map_mono", "map_cross", "map_multi_mean"):
    np.testing.assert_allclose(results["metrics"][key], in_training[key], rtol=1e-6)
  for x in ("en", "de", "el"):  # el: zero-shot, the shared adapter alone
    for y in ("en", "de", "el"):
      np.testing.assert_allclose(results["metrics"]["map_xy"][x][y], in_training["map_xy"][x][y],
                                 rtol=1e-6, err_msg=f"{x}->{y}")


def test_a_full_run_or_a_changed_base_cannot_resume_it(lora_run, tmp_path):
  base, workdir, _ = lora_run
  config = run_dir.load_config(workdir)  # the run's own config, as a full run
  config.model.lora.update(rank=0, per_language=False)
  with pytest.raises(UserError, match=r"model.lora.per_language: True -> False, "
                     r"model.lora.rank: 4 -> 0"):
    run_dir.check_resume(config, workdir, NUM_STEPS)
  # The base changes under the same path: the adapters are not put on it.
  moved = str(tmp_path / "base_original")
  shutil.copytree(base, moved)
  try:
    weights = load_file(os.path.join(base, "model.safetensors"))
    name = sorted(weights)[0]
    weights[name] = weights[name] + np.float32(1e-3)
    save_file(weights, os.path.join(base, "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(UserError, match="holds LoRA adapters of the base model .* now loads"):
      run_dir.restore_model(workdir)
  finally:
    shutil.rmtree(base)
    shutil.move(moved, base)
