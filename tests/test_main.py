"""End to end: `python -m hybrid_jax.main` in subprocesses on a tiny model.

* config errors fail before anything compiles;
* a run killed with SIGKILL (possibly mid-save) and one stopped by SIGTERM resume and repeat the
  per-step losses of an uninterrupted run bit for bit;
* two processes with 4 CPU devices each (jax.distributed, gloo) give the losses of one process
  with 8 devices;
* metrics.jsonl and the TensorBoard event file agree, and TensorBoard reads the latter.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tiny_run import REPO, TINY_MODEL, env, run, start

NUM_STEPS = 6
TINY = [f"--config=configs/default.py:model=tiny,langs=en+de+es,steps={NUM_STEPS}", *TINY_MODEL,
        "--config.data.eval="]


def _start(workdir, *extra, num_devices=8):
  return start(workdir, *TINY, *extra, num_devices=num_devices)


def _run(workdir, *extra, num_devices=8):
  return run(workdir, *TINY, *extra, num_devices=num_devices)


def _losses(workdir):
  """step -> loss from metrics.jsonl (the last record of a step wins)."""
  out = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      record = json.loads(line)
      if "loss" in record:
        out[record["step"]] = record["loss"]
  return out


def _wait_for_step(proc, workdir, step, timeout=300):
  path = os.path.join(workdir, "metrics.jsonl")
  t0 = time.time()
  while time.time() - t0 < timeout:
    if proc.poll() is not None:
      raise AssertionError(f"process ended early: {proc.stdout.read()[-3000:]}")
    if os.path.exists(path) and step in _losses(workdir):
      return
    time.sleep(0.05)
  raise AssertionError(f"step {step} not reached in {timeout}s")


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("straight"))
  _run(workdir)
  return workdir


def test_straight_run_outputs(straight_run):
  losses = _losses(straight_run)
  assert sorted(losses) == list(range(1, NUM_STEPS + 1))
  assert all(v == v for v in losses.values())  # finite
  assert sorted(os.listdir(os.path.join(straight_run, "checkpoints")))[-1] == str(NUM_STEPS)
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  acc = EventAccumulator(os.path.join(straight_run, "tensorboard"))
  acc.Reload()
  events = acc.Scalars("loss")
  assert [e.step for e in events] == list(range(1, NUM_STEPS + 1))
  for e in events:
    assert abs(e.value - losses[e.step]) <= 1e-6 * max(1.0, abs(losses[e.step]))
  # The final model is a Hugging Face directory.
  assert os.path.exists(os.path.join(straight_run, "model", "config.json"))


def test_sigkill_then_sigterm_resume_is_exact(straight_run, tmp_path):
  workdir = str(tmp_path)
  # 1. SIGKILL as soon as step 3 is logged: checkpoint 3 may be half written.
  proc = _start(workdir)
  _wait_for_step(proc, workdir, 3)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  # 2. Resume; SIGTERM after step 4: saves at the next step boundary and exits cleanly.
  proc = _start(workdir)
  _wait_for_step(proc, workdir, 4)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out[-3000:]
  steps = [int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit()]
  assert max(steps) >= 4, steps
  # 3. Resume to the end.
  _run(workdir)
  expected, got = _losses(straight_run), _losses(workdir)
  assert sorted(got) == list(range(1, NUM_STEPS + 1))
  for step in range(1, NUM_STEPS + 1):
    assert got[step] == expected[step], (step, got[step], expected[step])  # bitwise


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one(straight_run, tmp_path):
  port = _free_port()
  workdir = str(tmp_path)  # shared by both processes, as a GCS workdir is on a pod
  procs = [_start(workdir, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                  f"--process_id={i}", num_devices=4) for i in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]
  expected, got = _losses(straight_run), _losses(workdir)
  assert sorted(got) == sorted(expected)
  for step, loss in expected.items():
    assert got[step] == pytest.approx(loss, rel=1e-5, abs=1e-6), step


@pytest.mark.parametrize("args, message", [
    (["--config.train.num_stepz=3"], "num_stepz"),
    (["--config=configs/default.py:model=tiny,langs=en+xx"], "unknown language code 'xx'"),
    (["--config.sampler.mono_prob=1.5"], "mono_prob"),
])
def test_config_errors_fail_before_compiling(tmp_path, args, message):
  if args[0].startswith("--config="):  # replaces the config file argument, before overrides
    flags = args + TINY[1:]
  else:
    flags = TINY + args
  proc = subprocess.run(
      [sys.executable, "-m", "hybrid_jax.main", f"--workdir={tmp_path}", *flags],
      cwd=REPO, env=env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert message in proc.stdout + proc.stderr
  assert not os.path.exists(tmp_path / "checkpoints")


def test_non_finite_streak_stops_with_last_good_state_saved(tmp_path):
  # A temperature that underflows makes every logit infinite: every step is non-finite.
  proc = _start(str(tmp_path), "--config.loss.temperature=1e-45",
                "--config.train.max_consecutive_nonfinite=2")
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode != 0
  assert "consecutive steps had a non-finite loss or gradient" in out
  steps = [int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit()]
  assert len(steps) == 1 and steps[0] <= 4, steps
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert all(r["skipped"] == 1.0 for r in records if "skipped" in r)


def test_fine_tunes_a_local_hugging_face_checkpoint(tmp_path):
  """`model.path` = a transformers directory: its tokenizer and weights are used, and the final
  model written back loads in transformers with the fine-tuned weights."""
  import numpy as np
  import transformers

  from hybrid_jax import data as data_lib
  from hybrid_jax.models import tokenizer as tokenizer_lib

  tokenizer = tokenizer_lib.train_default_tokenizer(
      tokenizer_lib.parallel_qa_texts(data_lib.load("xquad_r:eval", languages=["en", "de"])),
      vocab_size=800)
  hf_dir = tmp_path / "xlmr"
  config = transformers.XLMRobertaConfig(
      vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
      intermediate_size=64, max_position_embeddings=40, type_vocab_size=1)
  transformers.XLMRobertaModel(config).save_pretrained(hf_dir)
  tokenizer.save_pretrained(hf_dir)
  workdir = tmp_path / "run"
  run(workdir, "--config=configs/default.py:model=tiny,langs=en+de,steps=2", *TINY_MODEL,
      "--config.data.eval=", f"--config.model.path={hf_dir}")
  assert not (workdir / "tokenizer").exists()  # the checkpoint's tokenizer, not a trained one
  before = transformers.AutoModel.from_pretrained(hf_dir).embeddings.word_embeddings.weight
  after = transformers.AutoModel.from_pretrained(workdir / "model").embeddings.word_embeddings.weight
  assert after.shape == before.shape
  assert not np.allclose(after.detach().numpy(), before.detach().numpy())
