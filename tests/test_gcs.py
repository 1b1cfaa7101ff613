"""`gs://` run directories end to end against a local GCS emulator (tests/gcs_emulator.py): real
GCS protocol on localhost, no cloud account.

One tiny run in gs://bucket/run, stopped by SIGTERM after step 4, resumed to the end, then
evaluated with `hybrid_jax.evaluate --workdir=gs://bucket/run`: every output is in the bucket,
nothing appears under the current directory, and the losses equal those of the same run in a
local directory bit for bit. Then two processes (jax.distributed) on one shared gs:// workdir.
Plus the path layer's local behaviour and its missing-gcsfs error.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import fault_injection
import gcs_emulator
from tiny_run import REPO, TINY_MODEL, env, run

from hybrid_jax import paths
from hybrid_jax.errors import UserError

NUM_STEPS = 6
TINY = [f"--config={REPO}/configs/default.py:model=tiny,langs=en+de+es,steps={NUM_STEPS}",
        *TINY_MODEL, "--config.data.eval="]
WORKDIR = f"gs://{gcs_emulator.BUCKET}/run"


@pytest.fixture(scope="module")
def emulator_env():
  if not gcs_emulator.available():
    pytest.skip("gcp-storage-emulator / gcsfs not installed (pip install -e '.[test]')")
  process, emulator = gcs_emulator.start()
  try:
    # PYTHONPATH: the commands run outside the repository (to see that nothing lands there).
    yield {**env(), **{k: v for k, v in emulator.items() if k not in os.environ},
           "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
  finally:
    gcs_emulator.stop(process)


def _losses(emulator_env) -> dict[int, float]:
  data = gcs_emulator.read_object(emulator_env, "run/metrics.jsonl") or b""
  return {r["step"]: r["loss"] for r in map(json.loads, data.decode().splitlines()) if "loss" in r}


def _start(cwd, emulator_env, *extra):
  return subprocess.Popen([sys.executable, "-m", "hybrid_jax.main", f"--workdir={WORKDIR}", *TINY,
                           *extra], cwd=cwd, env=emulator_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _finish(proc, timeout=600) -> str:
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out[-4000:]
  return out


def test_run_sigterm_resume_export_evaluate_in_a_bucket(emulator_env, tmp_path):
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  # 1. Started, stopped by SIGTERM once step 4 is in the bucket's metrics.jsonl (uploaded at each
  #    logged step): saves a checkpoint at the next step boundary and exits 0.
  proc = _start(cwd, emulator_env)
  deadline = time.time() + 600
  while 4 not in _losses(emulator_env):
    assert proc.poll() is None, proc.stdout.read()[-4000:]
    if time.time() > deadline:
      proc.kill()
      raise AssertionError(f"step 4 not reached: {proc.communicate()[0][-4000:]}")
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  out = _finish(proc)
  assert "Preempted" in out, out[-3000:]
  stopped_at = max(_losses(emulator_env))
  assert 4 <= stopped_at < NUM_STEPS
  # 2. Resumed to the end, meanwhile the same run in a local directory (the reference).
  proc = _start(cwd, emulator_env)
  local_workdir = str(tmp_path / "local")
  run(local_workdir, *TINY)
  _finish(proc)
  expected, got = fault_injection.losses(local_workdir), _losses(emulator_env)
  assert sorted(got) == list(range(1, NUM_STEPS + 1))
  for step in range(1, NUM_STEPS + 1):
    assert got[step] == expected[step], (step, got[step], expected[step])  # bitwise
  # 3. Evaluated from the bucket alone: reports written back into it.
  proc = subprocess.run([sys.executable, "-m", "hybrid_jax.evaluate", f"--workdir={WORKDIR}",
                         "--languages=en+de"], cwd=cwd, env=emulator_env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  report_dir = f"run/eval/xquad_r_eval/step_{NUM_STEPS}_en_de"  # the run's languages: en+de+es
  assert f"gs://bucket/{report_dir}/results.json" in proc.stdout
  results = json.loads(gcs_emulator.read_object(emulator_env, f"{report_dir}/results.json"))
  assert results["step"] == NUM_STEPS and 0 <= results["metrics"]["map_multi_mean"] <= 1

  names = gcs_emulator.list_objects(emulator_env, "run/")
  for name in ("config.json", "metrics.jsonl", "tokenizer/tokenizer.json", "model/config.json",
               "model/model.safetensors", f"checkpoints/{NUM_STEPS}/_CHECKPOINT_METADATA",
               f"eval/xquad_r_eval/step_{NUM_STEPS}_en_de/results.md",
               f"eval/xquad_r_eval/step_{NUM_STEPS}_en_de/heatmap.png"):
    assert f"run/{name}" in names, (name, names)
  assert len([n for n in names if n.startswith("run/tensorboard/events.out.tfevents.")]) == 2
  history = gcs_emulator.read_object(emulator_env, "run/config_history.jsonl").decode()
  assert [json.loads(line)["start_step"] for line in history.splitlines()] == [0, stopped_at]
  # The exported model equals the local run's (the same weights, through the upload).
  assert (gcs_emulator.read_object(emulator_env, "run/model/model.safetensors")
          == open(os.path.join(local_workdir, "model", "model.safetensors"), "rb").read())
  assert os.listdir(cwd) == []  # no local `gs:` directory, nothing else either


def test_gs_path_without_gcsfs_is_one_line_user_error(monkeypatch):
  import importlib.util
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "gcsfs" else find_spec(name, *a))
  with pytest.raises(UserError, match=r'gs://b/run: gs:// paths need the gcsfs package: pip '
                                      r'install -e "\.\[gcs\]"') as error:
    paths.path("gs://b/run")
  assert "\n" not in str(error.value)


def test_local_write_text_and_append_line(tmp_path):
  path = str(tmp_path / "history.jsonl")
  with open(path, "w") as f:
    f.write('{"a": 1}\n{"cut')  # a line cut short by a kill
  paths.append_line(path, '{"b": 2}')
  assert open(path).read() == '{"a": 1}\n{"cut\n{"b": 2}\n'
  paths.write_text(str(tmp_path / "config.json"), "{}")
  assert sorted(os.listdir(tmp_path)) == ["config.json", "history.jsonl"]  # no .tmp left
  assert paths.local_copy(str(tmp_path)) == str(tmp_path)
  assert paths.join(str(tmp_path), "a", "b") == os.path.join(str(tmp_path), "a", "b")
  assert paths.join("gs://b/run", "a") == "gs://b/run/a"


def test_two_processes_share_one_bucket_workdir(emulator_env, tmp_path):
  """Two processes (4 CPU devices each, jax.distributed) on one gs:// workdir: the losses of the
  one-process run above, and a single writer for config, metrics, events and the model."""
  reference = _losses(emulator_env)  # gs://bucket/run, written by the test above
  if sorted(reference) != list(range(1, NUM_STEPS + 1)):
    pytest.skip("needs test_run_sigterm_resume_export_evaluate_in_a_bucket's run")
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  port = gcs_emulator.free_port()
  workdir = f"gs://{gcs_emulator.BUCKET}/two"
  procs = [subprocess.Popen(
      [sys.executable, "-m", "hybrid_jax.main", f"--workdir={workdir}", *TINY,
       f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
      cwd=cwd, env={**emulator_env, **{k: v for k, v in env(4).items() if k == "XLA_FLAGS"}},
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  for proc in procs:
    _finish(proc)
  data = gcs_emulator.read_object(emulator_env, "two/metrics.jsonl").decode()
  got = {r["step"]: r["loss"] for r in map(json.loads, data.splitlines()) if "loss" in r}
  assert sorted(got) == sorted(reference)  # each step once: one writer
  for step, loss in reference.items():
    assert got[step] == pytest.approx(loss, rel=1e-5, abs=1e-6), step
  names = gcs_emulator.list_objects(emulator_env, "two/")
  assert len([n for n in names if n.startswith("two/tensorboard/")]) == 1
  history = gcs_emulator.read_object(emulator_env, "two/config_history.jsonl").decode()
  assert len(history.splitlines()) == 1
  for name in ("config.json", "tokenizer/tokenizer.json", "model/model.safetensors",
               f"checkpoints/{NUM_STEPS}/_CHECKPOINT_METADATA"):
    assert f"two/{name}" in names, (name, names)
  assert os.listdir(cwd) == []
