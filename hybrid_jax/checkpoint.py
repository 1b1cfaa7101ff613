"""Checkpoints with orbax: save every N steps, at the end and on SIGTERM; resume from the newest
good checkpoint.

Layout: `<workdir>/checkpoints/<step>/{state,meta}`. `state` is the whole `TrainState` pytree
(params, optimizer state, step, RNG, non-finite counters); `meta` is JSON (the config, the data
position and the wall time). The sampler is a pure function of the step, so the step alone restores
the data position.

A latest checkpoint that cannot be restored (killed mid-write, truncated file) is reported and
moved aside to `<step>.corrupt-<unix time>`, never deleted, and the previous one is used. Orbax
writes into a temporary directory and renames it when complete, so a half-written checkpoint is
never listed as a step in the first place.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import jax
import orbax.checkpoint as ocp


class PreemptionFlag:
  """Set by SIGTERM (TPU preemption, `kill`): the loop saves at the next step boundary and stops."""

  def __init__(self):
    self._event = threading.Event()
    self._previous = None

  def install(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    logging.warning("Received signal %d: will save a checkpoint at the next step boundary.", signum)
    self._event.set()

  def uninstall(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def is_set(self) -> bool:
    return self._event.is_set()


class Checkpointer:
  """An orbax `CheckpointManager` for one training run."""

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True):
    self.directory = directory if "://" in directory else os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, step: int, state, meta: dict) -> None:
    """Saves `state` (a pytree of jax.Arrays) and `meta` (JSON) as checkpoint `step`.

    Asynchronous when enabled: returns once the arrays are copied off the devices.
    """
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def reached_preemption(self, step: int) -> bool:
    """True on every host once any host was told of a preemption (multi-host TPU)."""
    return jax.process_count() > 1 and self._manager.reached_preemption(step)

  def restore_latest(self, abstract_state, *, step: int | None = None):
    """Restores the newest good checkpoint (or exactly `step`).

    Args:
      abstract_state: the state pytree, or its `jax.ShapeDtypeStruct`s with shardings.
      step: a specific step; None for the newest that restores.

    Returns:
      (state, meta, step), or (None, None, None) when there is no checkpoint.
    """
    candidates = [step] if step is not None else list(reversed(self.steps()))
    if step is not None and step not in self.steps():
      raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory}; "
                              f"available: {self.steps()}")
    for candidate in candidates:
      try:
        restored = self._manager.restore(candidate, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
      except Exception as e:  # pylint: disable=broad-except
        if step is not None:
          raise RuntimeError(f"checkpoint {candidate} in {self.directory} cannot be restored: "
                             f"{type(e).__name__}: {e}") from e
        self._set_aside(candidate, e)
        continue
      return restored.state, restored.meta, candidate
    return None, None, None

  def _set_aside(self, step: int, error: Exception) -> None:
    """Moves an unreadable checkpoint out of the manager's sight, keeping its files."""
    src = os.path.join(self.directory, str(step))
    dst = f"{src}.corrupt-{int(time.time())}"
    logging.error("Checkpoint %s cannot be restored (%s: %s); moving it to %s and trying the "
                  "previous one.", src, type(error).__name__, str(error)[:500], dst)
    if jax.process_index() == 0 and "://" not in src:
      os.rename(src, dst)
    self._manager.reload()
