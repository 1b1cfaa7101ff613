"""Checkpointer: round trip, fallback past a corrupt latest checkpoint, partial writes ignored,
content checksums (flipped bytes detected), a mismatch that is not corruption, the keep policy,
disk full."""

import datetime
import errno
import os
import shutil
import signal
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from hybrid_jax import checkpoint as checkpoint_lib
from hybrid_jax.errors import UserError


def _state(value):
  return {"params": {"w": jnp.full((3, 2), value, jnp.float32)}, "step": jnp.int32(value)}


def _save_steps(directory, steps, keep=5):
  ckpt = checkpoint_lib.Checkpointer(directory, keep=keep, async_save=True)
  for s in steps:
    ckpt.save(s, _state(s), {"step": s})
  ckpt.close()


def test_round_trip_restores_newest(tmp_path):
  _save_steps(str(tmp_path), [1, 2, 3])
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  state, meta, step = ckpt.restore_latest(_state(0))
  ckpt.close()
  assert step == 3 and meta["step"] == 3
  np.testing.assert_array_equal(state["params"]["w"], np.full((3, 2), 3.0))


def test_keep_limits_checkpoints(tmp_path):
  _save_steps(str(tmp_path), [1, 2, 3, 4], keep=2)
  assert checkpoint_lib.Checkpointer(str(tmp_path)).steps() == [3, 4]


def test_empty_directory_restores_nothing(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "ckpt"))
  assert ckpt.restore_latest(_state(0)) == (None, None, None)


def _corrupt(step_dir):
  """Truncates every data file of a checkpoint (as a disk error or a bad copy would)."""
  n = 0
  for root, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "r+b") as f:
        f.truncate(max(0, os.path.getsize(path) // 3))
      n += 1
  assert n


def test_corrupt_latest_falls_back_and_is_kept(tmp_path, caplog):
  _save_steps(str(tmp_path), [1, 2])
  _corrupt(tmp_path / "2")
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  state, _, step = ckpt.restore_latest(_state(0))
  assert step == 1
  np.testing.assert_array_equal(state["params"]["w"], np.full((3, 2), 1.0))
  aside = [p for p in os.listdir(tmp_path) if p.startswith("2.corrupt-")]
  assert len(aside) == 1, os.listdir(tmp_path)  # moved aside, not deleted
  assert "cannot be restored" in caplog.text
  # Training goes on and can write step 2 again.
  ckpt.save(2, _state(7), {"step": 2})
  ckpt.close()
  assert checkpoint_lib.Checkpointer(str(tmp_path)).restore_latest(_state(0))[2] == 2


def test_partial_write_is_not_a_step(tmp_path):
  _save_steps(str(tmp_path), [1])
  # What a process killed mid-save leaves behind: an orbax temporary directory.
  os.makedirs(tmp_path / "2.orbax-checkpoint-tmp-1234567" / "state")
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  assert ckpt.steps() == [1]
  assert ckpt.restore_latest(_state(0))[2] == 1


def test_explicit_missing_step_is_a_user_error_listing_the_steps(tmp_path):
  """`hybrid_jax.evaluate --step=99` printed a FileNotFoundError traceback: its message, one line
  naming the steps there are, is the user error."""
  _save_steps(str(tmp_path), [1])
  with pytest.raises(UserError, match=r"no checkpoint for step 5 in .*; available: \[1\]$"):
    checkpoint_lib.Checkpointer(str(tmp_path)).restore_latest(_state(0), step=5)


def _flip(path, offset, size=4096):
  """Inverts `size` bytes of `path` from `offset` (clipped to the file)."""
  with open(path, "r+b") as f:
    f.seek(offset)
    data = f.read(size)
    f.seek(offset)
    f.write(bytes(b ^ 0xFF for b in data))


def _big_state(value):
  """Large enough for 4 KB flips to land inside array data (several 100 KB files)."""
  rng = np.random.default_rng(value)
  return {
      "params": {"w": jnp.asarray(rng.normal(size=(256, 512)), jnp.float32)},
      "opt": {"mu": jnp.asarray(rng.normal(size=(256, 512)), jnp.float32)}, "step": jnp.int32(value)
  }


def _data_files(step_dir):
  return sorted((os.path.getsize(os.path.join(r, n)), os.path.join(r, n))
                for r, _, names in os.walk(step_dir) for n in names)


def test_flipped_bytes_are_detected_and_the_previous_checkpoint_used(tmp_path):
  """4 KB of inverted bytes inside the largest data file: orbax alone restores them silently
  (NaN / wrong values); the content manifest makes restore set the checkpoint aside."""
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=5)
  for s in (1, 2):
    ckpt.save(s, _big_state(s), {"step": s})
  ckpt.close()
  assert checkpoint_lib.verify(str(tmp_path / "2"))
  size, largest = _data_files(tmp_path / "2")[-1]
  _flip(largest, size // 2)
  with pytest.raises(checkpoint_lib.DamagedCheckpointError, match="SHA-256"):
    checkpoint_lib.verify(str(tmp_path / "2"))
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  with pytest.raises(UserError, match=r"checkpoint 2 .* cannot be restored .*SHA-256"):
    ckpt.restore_latest(_big_state(0), step=2)  # an explicit step: an error, nothing moved
  assert ckpt.steps() == [1, 2]
  state, _, step = ckpt.restore_latest(_big_state(0))
  ckpt.close()
  assert step == 1
  jax.tree.map(np.testing.assert_array_equal, state, _big_state(1))
  assert [p for p in os.listdir(tmp_path) if p.startswith("2.corrupt-")]


@pytest.mark.parametrize("seed", range(3))
def test_damage_anywhere_is_detected_or_harmless(tmp_path, seed):
  """4 KB flipped at a random place of every file of a checkpoint in turn (manifest and orbax
  metadata included): restore either refuses that checkpoint or returns the saved values."""
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "c"), keep=5)
  for s in (1, 2):
    ckpt.save(s, _big_state(s), {"step": s})
  ckpt.close()
  rng = np.random.default_rng(seed)
  pristine = tmp_path / "pristine"
  shutil.copytree(tmp_path / "c", pristine)
  silent = 0
  for size, path in _data_files(pristine / "2"):
    shutil.rmtree(tmp_path / "c")
    shutil.copytree(pristine, tmp_path / "c")
    _flip(path.replace(str(pristine), str(tmp_path / "c")), int(rng.integers(0, max(1, size))))
    ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "c"))
    try:
      state, _, step = ckpt.restore_latest(_big_state(0))
    finally:
      ckpt.close()
    if step == 2:
      same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), state, _big_state(2))
      silent += not all(jax.tree.leaves(same))
    else:
      assert step == 1
  assert silent == 0


def test_intact_checkpoint_that_does_not_fit_is_not_moved(tmp_path):
  _save_steps(str(tmp_path), [1, 2])
  before = sorted(os.listdir(tmp_path))
  wider = {"params": {"w": jnp.zeros((4, 2), jnp.float32)}, "step": jnp.int32(0)}
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  with pytest.raises(checkpoint_lib.CheckpointMismatchError, match="does not fit"):
    ckpt.restore_latest(wider)
  ckpt.close()
  assert sorted(os.listdir(tmp_path)) == before
  assert issubclass(checkpoint_lib.CheckpointMismatchError, UserError)


def test_keep_policy_never_deletes_the_newest_good_checkpoint(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=2)
  ckpt.save(1, _state(1), {"step": 1}, good=True)
  for s in (2, 3, 4):  # e.g. states saved after non-finite steps
    ckpt.save(s, _state(s), {"step": s}, good=False)
  ckpt.close()
  assert checkpoint_lib.Checkpointer(str(tmp_path)).steps() == [1, 3, 4]
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=2)
  ckpt.save(5, _state(5), {"step": 5})
  ckpt.close()
  assert checkpoint_lib.Checkpointer(str(tmp_path)).steps() == [4, 5]


def test_checkpoint_without_manifest_restores_unverified(tmp_path, caplog):
  _save_steps(str(tmp_path), [1])
  os.remove(tmp_path / "1" / checkpoint_lib.MANIFEST)  # as saved by an older version
  state, _, step = checkpoint_lib.Checkpointer(str(tmp_path)).restore_latest(_state(0))
  assert step == 1 and "no content manifest" in caplog.text
  np.testing.assert_array_equal(state["params"]["w"], np.full((3, 2), 1.0))


def test_disk_full_is_one_line_and_keeps_earlier_checkpoints(tmp_path, monkeypatch, caplog):
  _save_steps(str(tmp_path), [1])

  async def no_space(self, x, directory):
    raise OSError(errno.ENOSPC, "No space left on device", str(directory))

  monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "_save_fn", no_space)
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  ckpt.save(2, _state(2), {"step": 2})
  with pytest.raises(checkpoint_lib.DiskFullError) as error:
    ckpt.close()
  message = str(error.value)
  assert "\n" not in message and "no space left" in message and str(tmp_path) in message
  assert "needs about 28 bytes" in message  # 6 float32 + 1 int32
  assert isinstance(error.value, UserError)
  assert "Traceback" not in caplog.text and "No space left" not in caplog.text
  assert checkpoint_lib.Checkpointer(str(tmp_path)).steps() == [1]
  monkeypatch.undo()
  assert checkpoint_lib.Checkpointer(str(tmp_path)).restore_latest(_state(0))[2] == 1


def test_writes_completing_after_a_failed_save_print_nothing(tmp_path, monkeypatch):
  """A disk-full save mid-run printed ~40 lines of `RuntimeError: Event loop is closed`
  tracebacks before its one line: tensorstore completing the save's other writes into the event
  loop the failure had closed (Python's unraisable-exception reports). Made here the same way;
  any other unraisable error still reaches the hook that was there."""
  import asyncio
  import tensorstore as ts

  reported = []
  monkeypatch.setattr(sys, "unraisablehook", reported.append)
  checkpoint_lib._drop_late_write_completions.cache_clear()  # installed over the recorder
  try:
    checkpoint_lib.Checkpointer(str(tmp_path)).close()  # installs it, as training does
    loop = asyncio.new_event_loop()
    loop.close()
    for callback in (lambda _: loop.call_soon_threadsafe(print), lambda _: 1 / 0):
      promise, future = ts.Promise.new()
      future.add_done_callback(callback)
      writer = threading.Thread(target=promise.set_result, args=(None,))
      writer.start()
      writer.join()
  finally:
    checkpoint_lib._drop_late_write_completions.cache_clear()
  assert [r.exc_type for r in reported] == [ZeroDivisionError]


def test_ctrl_c_asks_for_a_save_and_a_second_one_interrupts():
  # Ctrl-C raised KeyboardInterrupt mid-step: everything since the last checkpoint was lost (the
  # default run saves every 100 of its 80 steps, so all of it).
  before = signal.getsignal(signal.SIGINT)
  flag = checkpoint_lib.PreemptionFlag().install()
  try:
    os.kill(os.getpid(), signal.SIGINT)
    assert flag.is_set() and flag.signum == signal.SIGINT  # the exit status will be 128 + 2
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
  finally:
    flag.uninstall()
  assert signal.getsignal(signal.SIGINT) is before
  assert signal.getsignal(signal.SIGTERM) is not flag._handle


def test_local_time_is_iso_8601_with_offset():
  text = checkpoint_lib.local_time(1_790_000_000.6)
  parsed = datetime.datetime.fromisoformat(text)
  assert parsed.tzinfo is not None and parsed.timestamp() == 1_790_000_000  # whole seconds
  assert checkpoint_lib.local_time(None) == "at an unknown time"
