"""End to end: `python -m hybrid_jax.main` in subprocesses on a tiny model.

* config errors fail before anything compiles;
* a run killed with SIGKILL (possibly mid-save) and one stopped by SIGTERM resume and repeat the
  per-step losses of an uninterrupted run bit for bit;
* two processes with 4 CPU devices each (jax.distributed, gloo) give the losses of one process
  with 8 devices, and their run resumes on one process with the same losses;
* metrics.jsonl and the TensorBoard event file agree, and TensorBoard reads the latter;
* a resume with a config its checkpoints do not fit is refused and changes nothing; evaluating a
  finished run needs no training data; fault injection (a kill inside a save, flipped bytes).
"""

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

import fault_injection
from tiny_run import REPO, TINY_MODEL, env, free_port, run, start

NUM_STEPS = 6
TINY = [
    f"--config=configs/default.py:model=tiny,langs=en+de+es,steps={NUM_STEPS}", *TINY_MODEL,
    "--config.data.eval="
]


def _start(workdir, *extra, num_devices=8):
  return start(workdir, *TINY, *extra, num_devices=num_devices)


def _run(workdir, *extra, num_devices=8):
  return run(workdir, *TINY, *extra, num_devices=num_devices)


_losses = fault_injection.losses


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
  assert not os.path.exists(os.path.join(straight_run, "profile"))  # log.profile_steps=''


def test_sigkill_then_sigterm_resume_is_exact(straight_run, tmp_path):
  """Also: the first resumed run builds each batch on the training thread (prefetch_batches=0, a
  resumable field), the second in an input worker process (input_workers=1), the straight run
  two batches ahead on the prefetch thread: equal losses."""
  workdir = str(tmp_path)
  no_prefetch = "--config.train.prefetch_batches=0"
  # 1. SIGKILL as soon as step 3 is logged: checkpoint 3 may be half written.
  proc = _start(workdir)
  _wait_for_step(proc, workdir, 3)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  # 2. Resume; SIGTERM after step 4: saves at the next step boundary and exits with 143 (128 +
  # SIGTERM), not 0: a retry-until-success wrapper must run it again (it exited 0).
  proc = _start(workdir, no_prefetch)
  _wait_for_step(proc, workdir, 4)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 128 + signal.SIGTERM == 143, out[-3000:]
  assert "Preempted: saved checkpoint" in out
  steps = [int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit()]
  assert max(steps) >= 4, steps
  # 3. Resume to the end with a Grain input worker process building the batches (
  # train.input_workers, resumable); the log gives the checkpoint's save time as ISO 8601.
  resumed = re.search(r"Resumed from checkpoint (\d+) \(saved (\S+)\)",
                      _run(workdir, "--config.train.input_workers=1"))
  assert resumed and int(resumed.group(1)) >= 4, resumed
  assert datetime.datetime.fromisoformat(resumed.group(2)).tzinfo is not None, resumed.group(2)
  # 4. Run once more: says so (it gave no sign), trains nothing, keeps every record.
  assert "nothing to train" in _run(workdir)
  expected, got = _losses(straight_run), _losses(workdir)
  assert sorted(got) == list(range(1, NUM_STEPS + 1))
  for step in range(1, NUM_STEPS + 1):
    assert got[step] == expected[step], (step, got[step], expected[step])  # bitwise


def test_two_processes_match_one(straight_run, tmp_path):
  """Each process builds its slice of every batch in an input worker process."""
  port = free_port()
  workdir = str(tmp_path)  # shared by both processes, as a GCS workdir is on a pod
  procs = [
      _start(workdir, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
             f"--process_id={i}", "--config.train.input_workers=1", num_devices=4) for i in range(2)
  ]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]
  expected, got = _losses(straight_run), _losses(workdir)
  assert sorted(got) == sorted(expected)
  for step, loss in expected.items():
    assert got[step] == pytest.approx(loss, rel=1e-5, abs=1e-6), step
  # The tokenizer was trained and written once, by process 0 (no temporary copy of another).
  assert [n for n in os.listdir(workdir) if "tokenizer" in n] == ["tokenizer"]
  # Cut after checkpoint 3 (as a kill there leaves it), resumed on one process: the same losses.
  shutil.rmtree(os.path.join(workdir, "checkpoints", str(NUM_STEPS)))
  _run(workdir)
  got = _losses(workdir)
  assert sorted(got) == sorted(expected)
  for step, loss in expected.items():
    assert got[step] == pytest.approx(loss, rel=1e-5, abs=1e-6), step
  history = [json.loads(line) for line in open(os.path.join(workdir, "config_history.jsonl"))]
  assert [h["start_step"] for h in history] == [0, 3]


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
  proc = subprocess.run([sys.executable, "-m", "hybrid_jax.main", f"--workdir={tmp_path}", *flags],
                        cwd=REPO, env=env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert message in proc.stdout + proc.stderr
  assert not os.path.exists(tmp_path / "checkpoints")


def test_non_finite_streak_stops_with_last_good_state_saved(tmp_path):
  # A temperature that underflows makes every logit infinite: every step is non-finite.
  proc = _start(
      str(tmp_path), "--config.loss.temperature=1e-45",
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
      data_lib.load("xquad_r:eval", languages=["en", "de"]).texts(), vocab_size=800)
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
  after = transformers.AutoModel.from_pretrained(workdir
                                                 / "model").embeddings.word_embeddings.weight
  assert after.shape == before.shape
  assert not np.allclose(after.detach().numpy(), before.detach().numpy())


def _surrogate_jsonl(directory):
  path = directory / "surrogate.jsonl"
  records = [{"id": str(i), "lang": lang, "query": f"q{i}", "passage": f"p{i}"} for i in range(20)
             for lang in ("en", "de")]
  records[7]["passage"] = "bad \ud800"
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  return path


@pytest.mark.parametrize(
    "args, message",
    [
        # ml_collections' own report was a 55-line traceback ending in a garbled AttributeError.
        (["--config.train.num_step=12"], "--config.train.num_step=12: no such config field "
         "'num_step' (Did you mean \"num_steps\" instead of \"num_step\"?)"),
        (["--config.train.num_steps=many"], "--config.train.num_steps=many: invalid literal"),
        (["--config=configs/missing.py"], "cannot load the config file: No such file or directory: "
         "'configs/missing.py'"),
        (["--config=configs/default.py:lang=en"], "--config=configs/default.py:lang=en: config "
         "argument 'lang' is not one of ['langs', 'model', 'mono_prob', 'steps']"),
        (["--config.checkpoint.every_steps=0"], "config.checkpoint.every_steps=0: must be >= 1"),
        (["--config.data.passage_max_len=600"], "config.data.passage_max_len=600: longer than the "
         "model's position table, which covers 512 tokens (config.model); use at most 512"),
        (["--config.data.train=jsonl:{tmp}/surrogate.jsonl"
         ], "{tmp}/surrogate.jsonl:8 (id '3') field "
         "'passage': text is not valid Unicode: lone surrogate"),
        (["--workdir={tmp}/a_file"], "--workdir={tmp}/a_file is a file, not a directory"),
        # Was a NotADirectoryError traceback (exit 1) from os.makedirs in train.
        (["--workdir={tmp}/a_file/run"], "--workdir={tmp}/a_file/run: cannot create the directory "
         "(Not a directory: '{tmp}/a_file/run')"),
    ])
def test_user_errors_print_one_line_and_exit_2(tmp_path, args, message):
  _surrogate_jsonl(tmp_path)
  (tmp_path / "a_file").write_text("")
  args = [a.format(tmp=tmp_path) for a in args]
  flags = args + TINY[1:] if args[0].startswith("--config=") else TINY + args
  command = [sys.executable, "-m", "hybrid_jax.main", f"--workdir={tmp_path / 'run'}", *flags]
  proc = subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and errors[0].startswith("error: " + message.format(tmp=tmp_path)), (
      proc.stderr[-3000:])
  assert "Traceback" not in proc.stderr
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


@pytest.mark.parametrize(
    "args",
    [
        ["--config.train.num_step=12"],  # raised while parsing flags
        ["--config.checkpoint.keep=0"]
    ])  # raised in main
def test_verbose_shows_the_traceback_of_a_user_error(tmp_path, args):
  proc = subprocess.run(
      [sys.executable, "-m", "hybrid_jax.main", f"--workdir={tmp_path}", *TINY, *args, "--verbose"],
      cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0 and "Traceback (most recent call last)" in proc.stderr


def _snapshot(workdir):
  """Every file of a run directory: relative path -> bytes."""
  out = {}
  for root, _, names in os.walk(workdir):
    for name in names:
      path = os.path.join(root, name)
      out[os.path.relpath(path, workdir)] = open(path, "rb").read()
  return out


def test_config_its_checkpoints_do_not_fit_is_refused_and_nothing_changes(straight_run, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(straight_run, workdir)
  before = _snapshot(workdir)
  proc = subprocess.run(
      fault_injection.main_command(workdir, *TINY, "--config.model.hidden_size=64",
                                   "--config.loss.learnable_temperature=True",
                                   f"--config.train.num_steps={NUM_STEPS + 2}"), cwd=REPO,
      env=env(), capture_output=True, text=True, timeout=300)
  out = proc.stdout + proc.stderr
  assert proc.returncode != 0
  assert "model.hidden_size: 32 -> 64" in out and "loss.learnable_temperature: False -> True" in out
  assert "train.num_steps" not in out.split("cannot change on resume")[-1]  # extending is fine
  assert _snapshot(workdir) == before  # no checkpoint set aside, metrics.jsonl kept whole


def test_evaluating_a_run_needs_no_training_data(straight_run, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(straight_run, workdir)
  config_path = os.path.join(workdir, "config.json")
  config = json.load(open(config_path))
  config["data"]["train"] = str(tmp_path / "moved_away" / "train.jsonl")
  json.dump(config, open(config_path, "w"))
  proc = subprocess.run(
      [sys.executable, "-m", "hybrid_jax.evaluate", f"--workdir={workdir}", "--languages=en+de"],
      cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  # Other languages than the run's (en+de+es) never write over the run's own report directory.
  report_dir = os.path.join(workdir, "eval", "xquad_r_eval", f"step_{NUM_STEPS}_en_de")
  assert f"json: {report_dir}/results.json" in proc.stdout
  assert os.listdir(os.path.dirname(report_dir)) == [f"step_{NUM_STEPS}_en_de"]
  # A data set without one of the run's languages: one line naming it and the flag that works.
  data = tmp_path / "en_de.jsonl"
  data.write_text("".join(
      json.dumps({"id": i, "lang": lang, "query": f"q {i} {lang}", "passage": f"p {i} {lang}"})
      + "\n" for i in ("a", "b") for lang in ("en", "de")))
  proc = subprocess.run([
      sys.executable, "-m", "hybrid_jax.evaluate", f"--workdir={workdir}", f"--dataset=jsonl:{data}"
  ], cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert proc.returncode == 2 and errors == [
      f"error: jsonl:{data} has no es data (the run's evaluation languages: en+de+es; it has "
      "en+de): pass --languages=en+de"
  ], proc.stderr[-3000:]
  # No import circle: evaluation and restoring a run never import training.
  proc = subprocess.run([
      sys.executable, "-c", "import sys, hybrid_jax.evaluate, hybrid_jax.evaluators, "
      "hybrid_jax.run_dir; assert 'hybrid_jax.train' not in sys.modules, 'imported'"
  ], cwd=REPO, env=env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]


def test_fault_injection_kill_inside_a_save_and_flipped_bytes(straight_run, tmp_path):
  """The fast part of tests/fault_injection.py (the full run is in BENCHMARKS.md): a run killed
  after checkpoint 3's manifest is written but before orbax commits it resumes to the losses and
  weights of the uninterrupted run, bit for bit; 4 KB flipped at 10 places of the newest
  checkpoint are each detected or harmless, never restored silently."""
  workdir = str(tmp_path / "run")
  proc = fault_injection.run(fault_injection.child_command(workdir, "after_manifest", 3, *TINY))
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  assert fault_injection.in_save(workdir)
  _run(workdir)
  assert fault_injection.compare_runs(straight_run, workdir) == []
  counts = fault_injection.flip_trials(os.path.join(straight_run, "checkpoints"), 10)
  assert counts["silent"] == 0 and counts["detected"] >= 5, counts
