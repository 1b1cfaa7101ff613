"""Fault injection for resume: kill a short training at many moments (SIGKILL at random times, and
at points inside the save path), resume each to the end, and compare with an uninterrupted run bit
for bit; flip 4 KB at many places of the newest checkpoint and check that each damage is detected
(the checkpoint set aside, the previous one restored) or restores bitwise equal.

    python tests/fault_injection.py --kills=20 --flips=20          # the full run (BENCHMARKS.md)

tests/test_main.py runs a few of these on its shared run. Kill points inside the save path are
made by a child process (`--child`) that patches `hybrid_jax.checkpoint` to SIGKILL itself there,
then runs `hybrid_jax.main`:

    save_start       Checkpointer.save entered for the step (nothing written yet)
    before_manifest  orbax's files of the step complete in its temporary directory, no manifest
    after_manifest   manifest written, orbax's rename (the commit) not done
    after_commit     the step committed, before the keep policy ran
    delete           inside the keep policy, as an old checkpoint is deleted
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiny_run import REPO, TINY_MODEL, env, main_command  # noqa: E402

KILL_POINTS = ("save_start", "before_manifest", "after_manifest", "after_commit", "delete")
FLIP_BYTES = 4096


def _die():
  os.kill(os.getpid(), signal.SIGKILL)


def _patch_kill_point(point: str, step: int) -> None:
  """Makes this process SIGKILL itself at `point` of the save of `step` (or of the first delete)."""
  import orbax.checkpoint as ocp

  from hybrid_jax import checkpoint as checkpoint_lib

  def step_of(directory):
    return int(os.path.basename(directory).split(".")[0])

  if point == "save_start":
    save = checkpoint_lib.Checkpointer.save

    def patched_save(self, s, *args, **kwargs):
      if s == step:
        _die()
      return save(self, s, *args, **kwargs)

    checkpoint_lib.Checkpointer.save = patched_save
  elif point in ("before_manifest", "after_manifest"):
    write_manifest = checkpoint_lib.write_manifest

    def patched_write_manifest(directory, **kwargs):
      if point == "before_manifest" and step_of(directory) == step:
        _die()
      write_manifest(directory, **kwargs)
      if step_of(directory) == step:
        _die()

    checkpoint_lib.write_manifest = patched_write_manifest
  elif point == "after_commit":
    wait_until_finished = ocp.CheckpointManager.wait_until_finished

    def patched_wait(self):
      wait_until_finished(self)
      if step in self.all_steps():
        _die()

    ocp.CheckpointManager.wait_until_finished = patched_wait
  elif point == "delete":

    def patched_delete(self, s):
      shutil.rmtree(os.path.join(str(self.directory), str(s), "state"))  # half deleted
      _die()

    ocp.CheckpointManager.delete = patched_delete
  else:
    raise ValueError(f"unknown kill point {point!r}; one of {KILL_POINTS}")


def child_command(workdir, point: str, step: int, *flags) -> list[str]:
  """`python -m hybrid_jax.main --workdir=... flags` that SIGKILLs itself at `point`."""
  return [
      sys.executable,
      os.path.abspath(__file__), "--child", f"--kill_point={point}", f"--kill_step={step}", "--",
      f"--workdir={workdir}", *flags
  ]


def run(command, timeout=900) -> subprocess.CompletedProcess:
  return subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True,
                        timeout=timeout)


def losses(workdir) -> dict[int, float]:
  """step -> loss from metrics.jsonl (the last record of a step wins; a line being written is
  skipped)."""
  from hybrid_jax import metric_writers
  return {
      r["step"]: r["loss"]
      for r in metric_writers.read_metrics(os.path.join(workdir, metric_writers.METRICS_FILE))
      if "loss" in r
  }


def model_bytes(workdir) -> dict[str, bytes]:
  """The final model's weight files (safetensors), name -> bytes."""
  model_dir = os.path.join(workdir, "model")
  return {
      os.path.relpath(p, model_dir): open(p, "rb").read()
      for p in sorted(glob.glob(os.path.join(model_dir, "**", "*.safetensors"), recursive=True))
  }


def compare_runs(expected_workdir, workdir) -> list[str]:
  """What differs between two finished runs (losses of every step, final weights, bitwise)."""
  problems = []
  expected, got = losses(expected_workdir), losses(workdir)
  if sorted(got) != sorted(expected):
    problems.append(f"logged steps {sorted(got)} != {sorted(expected)}")
  problems += [
      f"step {s}: loss {got.get(s)!r} != {v!r}" for s, v in expected.items() if got.get(s) != v
  ]
  if model_bytes(workdir) != model_bytes(expected_workdir) or not model_bytes(workdir):
    problems.append("final model weights differ")
  return problems


def in_save(workdir) -> bool:
  """True when a kill left orbax's temporary directory behind (the kill landed inside a save)."""
  return bool(glob.glob(os.path.join(workdir, "checkpoints", "*.orbax-checkpoint-tmp*")))


def _restore(checkpoint_dir):
  from hybrid_jax import checkpoint as checkpoint_lib
  checkpointer = checkpoint_lib.Checkpointer(checkpoint_dir)
  try:
    return checkpointer.restore_latest(None)
  finally:
    checkpointer.close()


def flip_trials(checkpoint_dir: str, num_flips: int, seed: int = 0) -> dict[str, int]:
  """Flips FLIP_BYTES bytes at `num_flips` places of the newest checkpoint of `checkpoint_dir`
  (each on a fresh copy; the file chosen by size half of the time, uniformly otherwise) and
  restores it.

  Returns:
    counts: 'detected' (set aside, the previous checkpoint restored), 'harmless' (restored
    bitwise equal), 'silent' (restored with other values: must be 0).
  """
  import jax

  rng = random.Random(seed)
  pristine, _, newest = _restore(checkpoint_dir)
  step_dir = os.path.join(checkpoint_dir, str(newest))
  files = [
      os.path.relpath(os.path.join(r, n), step_dir) for r, _, names in os.walk(step_dir)
      for n in names
  ]
  sizes = [os.path.getsize(os.path.join(step_dir, f)) for f in files]
  counts = {"detected": 0, "harmless": 0, "silent": 0}
  with tempfile.TemporaryDirectory() as tmp:
    for i in range(num_flips):
      copy = os.path.join(tmp, str(i))
      shutil.copytree(checkpoint_dir, copy)
      name = rng.choices(files, weights=sizes if i % 2 == 0 else None)[0]
      path = os.path.join(copy, str(newest), name)
      offset = rng.randrange(max(1, os.path.getsize(path)))
      with open(path, "r+b") as f:
        f.seek(offset)
        data = f.read(FLIP_BYTES)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))
      state, _, step = _restore(copy)
      if step != newest:
        counts["detected"] += 1
      elif all(
          jax.tree.leaves(
              jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))), state,
                           pristine))):
        counts["harmless"] += 1
      else:
        counts["silent"] += 1
      shutil.rmtree(copy)
  return counts


def kill_trials(baseline: str, root: str, flags: list[str], num_kills: int, num_steps: int,
                save_steps: list[int], seed: int = 0) -> list[dict]:
  """Half of the kills at the points of KILL_POINTS (cycling over `save_steps`), half at random
  times; each run is then resumed to the end and compared with `baseline`."""
  rng = random.Random(seed)
  results = []
  for i in range(num_kills):
    workdir = os.path.join(root, f"kill{i}")
    os.makedirs(workdir)
    shutil.copytree(os.path.join(baseline, "tokenizer"), os.path.join(workdir, "tokenizer"))
    t0 = time.time()
    if i % 2 == 0:
      point = KILL_POINTS[(i // 2) % len(KILL_POINTS)]
      step = save_steps[(i // 2) % len(save_steps)]
      proc = run(child_command(workdir, point, step, *flags))
      what = f"{point} of step {step}" if point != "delete" else "delete of the oldest checkpoint"
      killed = proc.returncode == -signal.SIGKILL
    else:
      step = rng.randrange(1, num_steps)
      proc = subprocess.Popen(
          main_command(workdir, *flags), cwd=REPO, env=env(), stdout=subprocess.DEVNULL,
          stderr=subprocess.DEVNULL)
      while proc.poll() is None and not (os.path.exists(os.path.join(workdir, "metrics.jsonl"))
                                         and step in losses(workdir)):
        time.sleep(0.01)
      time.sleep(rng.uniform(0.0, 0.5))
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      what = f"random time after step {step}"
      killed = proc.returncode == -signal.SIGKILL
    mid_save = in_save(workdir)
    resumed = run(main_command(workdir, *flags))
    problems = ([f"resume exited {resumed.returncode}: {resumed.stderr[-2000:]}"]
                if resumed.returncode else compare_runs(baseline, workdir))
    results.append({
        "kill": what, "killed": killed, "inside_save": mid_save, "identical": not problems,
        "problems": problems, "seconds": round(time.time() - t0, 1)
    })
    print(json.dumps(results[-1]), flush=True)
  return results


def _main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--kills", type=int, default=20)
  parser.add_argument("--flips", type=int, default=20)
  parser.add_argument("--steps", type=int, default=8)
  parser.add_argument("--every_steps", type=int, default=2)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--root", default=None, help="where the runs go (default: a temp dir)")
  args = parser.parse_args()
  os.environ.update(env())  # this process restores the runs' 8-device checkpoints (flip_trials)
  root = args.root or tempfile.mkdtemp(prefix="fault_injection-")
  flags = [
      f"--config=configs/default.py:model=tiny,langs=en+de+es,steps={args.steps}", *TINY_MODEL,
      "--config.data.eval=", f"--config.checkpoint.every_steps={args.every_steps}",
      "--config.checkpoint.keep=2"
  ]
  baseline = os.path.join(root, "baseline")
  t0 = time.time()
  proc = run(main_command(baseline, *flags))
  assert proc.returncode == 0, proc.stderr[-3000:]
  print(f"baseline: {time.time() - t0:.0f} s", flush=True)
  save_steps = list(range(args.every_steps, args.steps + 1, args.every_steps))
  kills = kill_trials(baseline, root, flags, args.kills, args.steps, save_steps, args.seed)
  flips = flip_trials(os.path.join(baseline, "checkpoints"), args.flips, args.seed)
  summary = {
      "kills": len(kills), "killed": sum(k["killed"] for k in kills), "inside_save": sum(
          k["inside_save"] for k in kills), "resumed_identical": sum(k["identical"] for k in kills),
      "flips": args.flips, **flips, "seconds": round(time.time() - t0)
  }
  print(json.dumps(summary), flush=True)
  sys.exit(0 if summary["resumed_identical"] == len(kills) and flips["silent"] == 0 else 1)


def _child_main():
  """`--child --kill_point=P --kill_step=S -- MAIN_FLAGS`: hybrid_jax.main, killed at P."""
  separator = sys.argv.index("--")
  options = dict(a[2:].split("=", 1) for a in sys.argv[2:separator])
  _patch_kill_point(options["kill_point"], int(options["kill_step"]))
  from absl import app

  from hybrid_jax import main
  sys.argv = ["hybrid_jax.main", *sys.argv[separator + 1:]]
  app.run(main.main)


if __name__ == "__main__":
  if len(sys.argv) > 1 and sys.argv[1] == "--child":
    _child_main()
  else:
    _main()
