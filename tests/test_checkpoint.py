"""Checkpointer: round trip, fallback past a corrupt latest checkpoint, partial writes ignored."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax import checkpoint as checkpoint_lib


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


def test_explicit_missing_step_is_an_error(tmp_path):
  _save_steps(str(tmp_path), [1])
  with pytest.raises(FileNotFoundError, match="step 5"):
    checkpoint_lib.Checkpointer(str(tmp_path)).restore_latest(_state(0), step=5)
