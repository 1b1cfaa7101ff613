"""`gs://` run directories end to end against a local GCS emulator (tests/gcs_emulator.py, one per
test session: the `gcs_env` fixture of conftest.py): real GCS protocol on localhost, no cloud
account.

One tiny run in gs://bucket/run that changes its number of processes (jax.distributed, localhost):
started on two processes and run to the end (the reference), cut back to its checkpoint 2 (the
later ones deleted, as a kill after checkpoint 2 would leave it, with its lock behind), resumed on
one process (taking over the stale lock), stopped by SIGTERM, resumed on two to the end with a
final evaluation, then evaluated again with `hybrid_jax.evaluate --workdir=gs://bucket/run` (the
same mAP). Its losses and exported model are those of the uninterrupted first pass; process 0
alone wrote config, metrics, events, tokenizer (once), model and reports; nothing appears under
the current directory; a second training on the workdir meanwhile fails with the one-line busy
error on both of its processes. Plus the object-store run lock, the path layer's local behaviour
and its missing-gcsfs error.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors

import gcs_emulator
from tiny_run import REPO, TINY_MODEL, env, free_port

from hybrid_jax import paths
from hybrid_jax.errors import UserError

NUM_STEPS = 6
TINY = [
    f"--config={REPO}/configs/default.py:model=tiny,langs=en+de+es,steps={NUM_STEPS}", *TINY_MODEL,
    "--config.data.eval=", "--config.checkpoint.every_steps=2"
]
RUN = "run"
WORKDIR = f"gs://{gcs_emulator.BUCKET}/{RUN}"


@pytest.fixture(scope="module")
def emulator_env(gcs_env):
  # PYTHONPATH: the commands run outside the repository (to see that nothing lands there).
  # env() brings the session's compilation cache (tiny_run.COMPILATION_CACHE).
  return {
      **env(), **gcs_env, "PYTHONPATH": os.pathsep.join([REPO,
                                                         os.environ.get("PYTHONPATH", "")])
  }


def _losses(emulator_env) -> dict[int, float]:
  data = gcs_emulator.read_object(emulator_env, f"{RUN}/metrics.jsonl") or b""
  return {r["step"]: r["loss"] for r in map(json.loads, data.decode().splitlines()) if "loss" in r}


def _start(cwd, emulator_env, *extra, processes: int = 1,
           workdir: str = WORKDIR) -> list[subprocess.Popen]:
  """`hybrid_jax.main` on `workdir`, on 8 CPU devices in all, as one process or as `processes`
  localhost processes (jax.distributed)."""
  port, num_devices = free_port(), 8 // processes
  distributed = lambda i: [
      f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={processes}", f"--process_id={i}"
  ]
  return [
      subprocess.Popen([
          sys.executable, "-m", "hybrid_jax.main", f"--workdir={workdir}", *TINY, *extra,
          *(distributed(i) if processes > 1 else [])
      ], cwd=cwd, env={**emulator_env, "XLA_FLAGS": env(num_devices)["XLA_FLAGS"]},
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(processes)
  ]


def _finish(procs, timeout=600, returncode=0) -> list[str]:
  outs = [proc.communicate(timeout=timeout)[0] for proc in procs]
  for proc, out in zip(procs, outs):
    assert proc.returncode == returncode, out[-4000:]
  return outs


def _wait_for(condition, procs, what: str, timeout=600) -> None:
  deadline = time.time() + timeout
  while not condition():
    for proc in procs:
      assert proc.poll() is None, f"ended before {what}: {proc.stdout.read()[-4000:]}"
    if time.time() > deadline:
      for proc in procs:
        proc.kill()
      raise AssertionError(f"{what}: not reached")
    time.sleep(0.2)


def test_run_changes_process_count_resumes_and_evaluates_in_a_bucket(emulator_env, tmp_path):
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  # 1. Two processes from scratch, uninterrupted: the reference; meanwhile a second training on
  #    the workdir is refused.
  procs = _start(cwd, emulator_env, processes=2)
  _wait_for(lambda: gcs_emulator.read_object(emulator_env, f"{RUN}/run.lock"), procs, "run.lock")
  busy = _start(cwd, emulator_env, processes=2)  # process 0 is refused, then process 1 too
  outs = [proc.communicate(timeout=300)[0] for proc in busy]
  assert [proc.returncode for proc in busy] == [2, 2], outs
  errors = [[line for line in out.splitlines() if line.startswith("error: ")] for out in outs]
  assert re.fullmatch(
      rf"error: {WORKDIR} is in use by another training \(host .+, pid \d+, "
      r"since .+, renewed \d+ s ago\); wait for it to finish or stop it, or pass "
      r"another --workdir", *errors[0]), outs[0][-3000:]
  assert errors[1] == [
      f"error: {WORKDIR}: process 0 could not take the run lock; its error says "
      "why"
  ], outs[1][-3000:]
  _finish(procs)
  assert gcs_emulator.read_object(emulator_env, f"{RUN}/run.lock") is None  # released
  expected = _losses(emulator_env)
  assert sorted(expected) == list(range(1, NUM_STEPS + 1))
  expected_model = load_safetensors(
      gcs_emulator.read_object(emulator_env, f"{RUN}/model/model.safetensors"))
  # 2. Cut after checkpoint 2, with the lock of a killed holder left behind (renewed a day ago):
  #    resumed on one process (2 -> 1), stopped by SIGTERM once a step past 2 is logged.
  for step in (4, 6):
    gcs_emulator.delete_objects(emulator_env, f"{RUN}/checkpoints/{step}/")
  gcs_emulator.write_object(
      emulator_env, f"{RUN}/run.lock",
      json.dumps({
          "host": "gone", "pid": 1, "started_at": "yesterday", "renewed_at": time.time() - 86400
      }).encode())
  procs = _start(cwd, emulator_env, "--take_over_stale_lock")
  _wait_for(lambda: 3 <= max(_losses(emulator_env), default=0) < NUM_STEPS, procs, "step 3")
  procs[0].send_signal(signal.SIGTERM)
  out, = _finish(procs, returncode=128 + signal.SIGTERM)  # saved, not finished: run it again
  assert "Taking over the stale lock" in out and "Preempted" in out, out[-3000:]
  stopped_at = max(_losses(emulator_env))
  assert 3 <= stopped_at < NUM_STEPS
  # 3. Resumed on two processes (1 -> 2) to the end; then evaluated from the bucket alone.
  #    This start also evaluates at the end (data.eval may change on resume), on both processes.
  _finish(_start(cwd, emulator_env, "--config.data.eval=xquad_r:eval", processes=2))
  evaluation = subprocess.run([
      sys.executable, "-m", "hybrid_jax.evaluate", f"--workdir={WORKDIR}",
      f"--output_dir={WORKDIR}/eval_cli"
  ], cwd=cwd, env=emulator_env, capture_output=True, text=True, timeout=600)
  assert evaluation.returncode == 0, evaluation.stderr[-4000:]

  # The losses of the uninterrupted run (one process: another summation order).
  got = _losses(emulator_env)
  assert sorted(got) == list(range(1, NUM_STEPS + 1))
  for step in range(1, NUM_STEPS + 1):
    assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6), step
  history = gcs_emulator.read_object(emulator_env, f"{RUN}/config_history.jsonl").decode()
  assert [json.loads(line)["start_step"] for line in history.splitlines()] == [0, 2, stopped_at]
  assert f"{WORKDIR}/eval_cli/results.json" in evaluation.stdout
  cli = json.loads(gcs_emulator.read_object(emulator_env, f"{RUN}/eval_cli/results.json"))
  in_training = json.loads(
      gcs_emulator.read_object(emulator_env,
                               f"{RUN}/eval/xquad_r_eval/step_{NUM_STEPS}/results.json"))
  assert cli["step"] == in_training["step"] == NUM_STEPS
  assert cli["metrics"]["map_multi_mean"] == pytest.approx(
      in_training["metrics"]["map_multi_mean"], rel=1e-4)  # 1 vs 2 processes, the same model
  # The exported model is the uninterrupted run's (up to the summation order).
  exported = load_safetensors(
      gcs_emulator.read_object(emulator_env, f"{RUN}/model/model.safetensors"))
  assert exported.keys() == expected_model.keys()
  for name, tensor in expected_model.items():
    np.testing.assert_allclose(exported[name], tensor, rtol=1e-4, atol=1e-5, err_msg=name)

  # One writer: every file of the run was uploaded by process 0 alone, once per start (3 starts:
  # config, history, event file), once per finished start (the model: the SIGTERM'd one exports
  # nothing) or once (the tokenizer, trained by the first start; the report).
  names = gcs_emulator.list_objects(emulator_env, f"{RUN}/")
  uploads = [name for name in gcs_emulator.uploads(emulator_env) if name.startswith(f"{RUN}/")]
  count = lambda name: uploads.count(f"{RUN}/{name}")
  assert count("config.json") == 3 and count("config_history.jsonl") == 3
  assert count("model/model.safetensors") == 2 and count("model/config.json") == 2
  tokenizer_files = [n for n in names if n.startswith(f"{RUN}/tokenizer/")]
  assert f"{RUN}/tokenizer/tokenizer.json" in tokenizer_files
  assert all(uploads.count(name) == 1 for name in tokenizer_files), uploads
  for name in ("results.json", "results.md", "heatmap.png"):
    assert count(f"eval/xquad_r_eval/step_{NUM_STEPS}/{name}") == 1, name  # two processes
    assert count(f"eval_cli/{name}") == 1, name
  events = [n for n in names if n.startswith(f"{RUN}/tensorboard/")]
  assert len(events) == 3 and all("events.out.tfevents." in n for n in events), events
  allowed = ("config.json", "config_history.jsonl", "metrics.jsonl", "cost.json", "tokenizer/",
             "model/", "checkpoints/", "tensorboard/", f"eval/xquad_r_eval/step_{NUM_STEPS}/",
             "eval_cli/")
  assert [n for n in names if not n[len(RUN) + 1:].startswith(allowed)] == []  # no lock left
  assert f"{RUN}/checkpoints/{NUM_STEPS}/_CHECKPOINT_METADATA" in names
  assert os.listdir(cwd) == []  # no local `gs:` directory, nothing else either


# The lock against the emulator, in a subprocess (gcsfs reads the emulator's address at import).
_LOCK_SCRIPT = """
import json, time
from hybrid_jax import run_dir
from hybrid_jax.errors import UserError
from etils import epath

workdir = "gs://bucket/locked"
lock_object = epath.Path(workdir) / "run.lock"
run_dir.LOCK_RENEW_SECONDS = 0.2

def refused(**kwargs):
  try:
    run_dir.WorkdirLock(workdir, **kwargs).acquire()
  except UserError as e:
    return str(e)
  raise AssertionError("not refused")

held = run_dir.WorkdirLock(workdir).acquire()
first = json.loads(lock_object.read_text())
print("BUSY", refused())
time.sleep(1.0)
print("RENEWED", json.loads(lock_object.read_text())["renewed_at"] - first["renewed_at"])
held.release()
print("RELEASED", lock_object.exists())
lock_object.write_text(json.dumps({"host": "h", "pid": 7, "started_at": "T",
                                   "renewed_at": time.time() - 3600}))
print("STALE", refused())
taker = run_dir.WorkdirLock(workdir, take_over_stale=True).acquire()
print("TAKEN", json.loads(lock_object.read_text())["pid"] != 7)
lock_object.write_text(json.dumps({"host": "other", "pid": 8, "started_at": "T2",
                                   "renewed_at": time.time()}))
time.sleep(0.5)  # the taker's next renewal finds another holder
taker.release()
print("KEPT", json.loads(lock_object.read_text())["pid"])
"""


def test_object_store_lock_busy_stale_take_over_renew_release(emulator_env, tmp_path):
  proc = subprocess.run([sys.executable, "-c", _LOCK_SCRIPT], env=emulator_env, cwd=tmp_path,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  out = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
  assert re.fullmatch(
      r"gs://bucket/locked is in use by another training \(host .+, pid \d+, "
      r"since .+, renewed \d+ s ago\); wait for it to finish or stop it, or pass "
      r"another --workdir", out["BUSY"]), out["BUSY"]
  assert float(out["RENEWED"]) > 0  # the holder's thread rewrote it
  assert out["RELEASED"] == "False"
  assert out["STALE"] == (
      "gs://bucket/locked/run.lock is stale: held by host h, pid 7, since T and not renewed for "
      "60 min (a training renews it every 0.2 s), so that training ended without releasing it; "
      "if no training runs on this workdir, pass --take_over_stale_lock")
  assert out["TAKEN"] == "True"
  assert out["KEPT"] == "8"  # a release leaves a lock that is no longer its own
  assert "taken over by host other, pid 8" in proc.stderr
  assert os.listdir(tmp_path) == []  # no local `gs:` directory


def test_gs_path_without_gcsfs_is_one_line_user_error(monkeypatch):
  import importlib.util
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None
                      if name == "gcsfs" else find_spec(name, *a))
  with pytest.raises(
      UserError, match=r'gs://b/run: gs:// paths need the gcsfs package: pip '
      r'install -e "\.\[gcs\]"') as error:
    paths.path("gs://b/run")
  assert "\n" not in str(error.value)


def test_gs_workdir_without_a_network_is_one_line_at_once(tmp_path):
  """`--workdir=gs://...` without a network was a traceback after 52 s of gcsfs retries. Cloud
  Storage is an emulator on a closed port here (as a server that cannot be reached)."""
  port = free_port()
  proc = subprocess.run([
      sys.executable, "-m", "hybrid_jax.main", "--config=configs/default.py:model=tiny",
      "--workdir=gs://bucket/run"
  ], cwd=REPO, env={**env(), "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"},
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert proc.stderr.splitlines()[-1] == (
      f"error: --workdir=gs://bucket/run: cannot reach Cloud Storage (127.0.0.1:{port}: "
      "Connection refused); check the network (or use a local path)"), proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  paths.check_reachable(str(tmp_path), "a local path is not probed")


def test_local_write_text_append_line_create_exclusive(tmp_path):
  path = str(tmp_path / "history.jsonl")
  with open(path, "w") as f:
    f.write('{"a": 1}\n{"cut')  # a line cut short by a kill
  paths.append_line(path, '{"b": 2}')
  assert open(path).read() == '{"a": 1}\n{"cut\n{"b": 2}\n'
  paths.write_text(str(tmp_path / "config.json"), "{}")
  assert sorted(os.listdir(tmp_path)) == ["config.json", "history.jsonl"]  # no .tmp left
  assert paths.create_exclusive(str(tmp_path / "lock"), b"first")
  assert not paths.create_exclusive(str(tmp_path / "lock"), b"second")
  assert open(tmp_path / "lock", "rb").read() == b"first"
  assert paths.local_copy(str(tmp_path)) == str(tmp_path)
  assert paths.join(str(tmp_path), "a", "b") == os.path.join(str(tmp_path), "a", "b")
  assert paths.join("gs://b/run", "a") == "gs://b/run/a"
