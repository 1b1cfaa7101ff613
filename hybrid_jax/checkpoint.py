"""Train-state checkpoints with orbax: save every N steps, at the end and on SIGTERM; resume from
the newest good checkpoint. (The exported model, a Hugging Face directory other tools load, is
`hybrid_jax.models.hf_io`.)

Layout: `<workdir>/checkpoints/<step>/{state,meta,content_sha256.json}`. `state` is the whole
`TrainState` pytree (params, optimizer state, step, RNG, non-finite counters); `meta` is JSON (the
config, the data position and the wall time). The sampler is a pure function of the step, so the
step alone restores the data position.

Content checksums: orbax (and tensorstore under it) does not reliably detect flipped bytes: 4 KB
of damage in a data file restored NaN weights or a wrong Adam moment without an error. So every
save writes `content_sha256.json` (size and SHA-256 of every file of the checkpoint but orbax's
`_CHECKPOINT_METADATA`, which orbax rewrites after the commit and which holds no array) into orbax's
temporary directory just before orbax renames it into place (orbax's post-finalization callback),
which makes the manifest part of the atomic commit: a listed checkpoint saved by this module always
has one. Restoring verifies every listed file first.

What restoring does with each kind of checkpoint:
- damaged (a file missing, of another size or content than its manifest says, an unreadable
  manifest), or without a manifest and unreadable by orbax (killed mid-write, truncated): reported
  and moved aside to `<step>.corrupt-<unix time>`, never deleted; the previous one is used (an
  explicitly requested step is a `UserError` instead, nothing moved).
- intact (manifest verified) but not restorable into the requested structure (another model shape,
  another optimizer): `CheckpointMismatchError`, nothing moved. A checkpoint is not corrupt because
  the config changed; `hybrid_jax.run_dir` compares configs before restoring to say which fields.
- without a manifest (saved by an older version, or on a `gs://` directory where no manifest is
  written): restored unverified, with a warning.
Orbax writes into a temporary directory and renames it when complete, so a half-written checkpoint
is never listed as a step in the first place.

Keep policy (`keep`): the `keep` newest checkpoints, plus the newest one saved with `good=True`
(training passes False for a state saved after non-finite steps), so a run that keeps failing
never rotates its last healthy state out. Old checkpoints are deleted only after a newer one is
committed.

A save that fails for lack of disk space raises `DiskFullError` (a `UserError`: one line with the
directory, the bytes needed and free), without orbax's logged tracebacks nor the reports of the
save's other writes completing after it failed; earlier checkpoints are
untouched (the partial write stays in orbax's temporary directory, which is never listed as a
step).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import functools
import glob
import hashlib
import json
import logging as std_logging
import os
import shutil
import signal
import sys
import threading
import time

from absl import logging
import jax
import orbax.checkpoint as ocp

from hybrid_jax.errors import UserError

MANIFEST = "content_sha256.json"
# orbax rewrites its step metadata (commit time) after the commit: not covered. It holds no array
# data; damage to it makes orbax's restore fail (the checkpoint is then set aside).
_UNCOVERED = ("_CHECKPOINT_METADATA",)
_CHUNK_BYTES = 1 << 22


class DamagedCheckpointError(RuntimeError):
  """A checkpoint's files do not match its content manifest."""


class CheckpointMismatchError(UserError):
  """An intact checkpoint that does not fit the state it is restored into."""


class DiskFullError(UserError):
  """A save (a checkpoint, the exported model) failed for lack of disk space."""


class NoSuchStepError(UserError, FileNotFoundError):
  """An explicitly requested checkpoint step that does not exist (the message lists those that
  do)."""


class PreemptionFlag:
  """Set by SIGTERM (TPU preemption, `kill`) or a first SIGINT (Ctrl-C): the loop saves at the
  next step boundary and stops. A second SIGINT raises KeyboardInterrupt at once (no save).
  `signum` is the signal that set it (None before)."""

  _SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self._event = threading.Event()
    self._previous = {}
    self.signum: int | None = None

  def install(self):
    if threading.current_thread() is threading.main_thread():
      for signum in self._SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if signum == signal.SIGINT and self._event.is_set():
      raise KeyboardInterrupt
    logging.warning("Received signal %d: will save a checkpoint at the next step boundary%s.",
                    signum,
                    " (Ctrl-C again to stop without saving)" if signum == signal.SIGINT else "")
    self.signum = signum
    self._event.set()

  def uninstall(self):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}

  def is_set(self) -> bool:
    return self._event.is_set()


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _files(directory: str) -> list[str]:
  """Paths relative to `directory` of every file under it but the manifest and orbax's step
  metadata, sorted."""
  out = []
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.relpath(os.path.join(root, name), directory)
      if path != MANIFEST and path not in _UNCOVERED:
        out.append(path)
  return sorted(out)


def write_manifest(directory: str, *, good: bool = True) -> None:
  """Writes `<directory>/content_sha256.json`: {"files": {relative path: {"bytes", "sha256"}},
  "good": good}, flushed to disk."""
  files = {
      path: {
          "bytes": os.path.getsize(os.path.join(directory, path)),
          "sha256": _sha256(os.path.join(directory, path))
      } for path in _files(directory)
  }
  with open(os.path.join(directory, MANIFEST), "w", encoding="utf-8") as f:
    json.dump({"files": files, "good": good}, f, indent=1, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())


def read_manifest(directory: str) -> dict | None:
  """The manifest of a checkpoint directory; None when it has none.

  Raises:
    DamagedCheckpointError: the manifest exists but is not a readable manifest.
  """
  path = os.path.join(directory, MANIFEST)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      manifest = json.load(f)
    if not isinstance(manifest.get("files"), dict):
      raise ValueError("no 'files' object")
    return manifest
  except (ValueError, UnicodeDecodeError, AttributeError) as e:
    raise DamagedCheckpointError(f"{path}: unreadable manifest ({e})") from e


def verify(directory: str) -> bool:
  """Checks every file listed in the manifest of `directory` (size, then SHA-256).

  Returns:
    True when verified; False when the checkpoint has no manifest (unverified).

  Raises:
    DamagedCheckpointError: naming the first file that is missing or differs.
  """
  manifest = read_manifest(directory)
  if manifest is None:
    return False
  for relative, expected in sorted(manifest["files"].items()):
    path = os.path.join(directory, relative)
    if not os.path.isfile(path):
      raise DamagedCheckpointError(f"{path}: missing")
    size = os.path.getsize(path)
    if size != expected.get("bytes"):
      raise DamagedCheckpointError(f"{path}: {size} bytes, {expected.get('bytes')} when saved")
    if _sha256(path) != expected.get("sha256"):
      raise DamagedCheckpointError(f"{path}: content differs from when it was saved (SHA-256)")
  return True


def is_disk_full(error: BaseException) -> bool:
  """ENOSPC anywhere in the exception chain (tensorstore reports it as a ValueError whose text
  ends in "No space left on device [os_error_code='28']")."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


class _DropDiskFullLogs(std_logging.Filter):
  """Drops orbax's ERROR records (each with a traceback, hundreds of lines) about a write that
  failed for lack of space: `Checkpointer` raises `DiskFullError` with one line instead."""

  def filter(self, record):
    return not ("/orbax/" in record.pathname and
                ("No space left on device" in record.getMessage()
                 or bool(record.exc_info and is_disk_full(record.exc_info[1]))))


def _is_late_write_completion(unraisable) -> bool:
  """A RuntimeError('Event loop is closed') raised by asyncio's `call_soon_threadsafe`: a write
  finishing after the event loop of its save has ended (`_drop_late_write_completions`)."""
  if unraisable.exc_type is not RuntimeError or str(unraisable.exc_value) != "Event loop is closed":
    return False
  frame = unraisable.exc_traceback
  while frame is not None:
    if frame.tb_frame.f_code.co_name == "call_soon_threadsafe":
      return True
    frame = frame.tb_next
  return False


@functools.cache
def _drop_late_write_completions() -> None:
  """Silences the unraisable-exception reports of writes that finish after their save failed.

  When one write of an orbax save fails (no space left), the save's asyncio event loop ends with
  that error while tensorstore still completes the save's other writes; each completion calls
  back into the closed loop, and Python prints every RuntimeError('Event loop is closed') with its
  traceback (~40 lines around the one-line `DiskFullError`). Those reports, and only those, are
  dropped (a process-wide `sys.unraisablehook`, installed once); any other goes to the previous
  hook.
  """
  previous = sys.unraisablehook

  def hook(unraisable):
    if not _is_late_write_completion(unraisable):
      previous(unraisable)

  sys.unraisablehook = hook


def local_time(seconds: float | None) -> str:
  """A `time.time()` value (a checkpoint's `saved_at`) as local ISO 8601 time with its UTC offset,
  e.g. '2026-11-30T14:20:05+00:00'; 'at an unknown time' for None."""
  if seconds is None:
    return "at an unknown time"
  return datetime.datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


def _nbytes(state) -> int:
  return sum(getattr(x, "nbytes", 0) for x in jax.tree.leaves(state))


@functools.cache
def _one_writer_per_array_on_cpu() -> None:
  """On the CPU backend, orbax saves each array from one replica instead of splitting it into
  slices written by every replica ("replica-parallel", orbax's default but on GPU).

  Every CPU device of a process shares the host's memory, so the split parallelises nothing: it
  only adds one eager slicing op (compiled on first use) per array and replica. With 8 virtual CPU
  devices it cost ~2-4 s per save of the tiny test model. Accelerators keep orbax's default. The
  handler otherwise stays orbax's default one (its array-metadata store included).
  orbax reads its handler from a process-wide registry, hence a registration, once per process
  and without orbax's warning about overriding its own default.
  """
  if jax.default_backend() != "cpu":
    return
  absl_logger = logging.get_absl_logger()
  level = absl_logger.level
  absl_logger.setLevel(std_logging.ERROR)
  try:
    default = ocp.type_handlers.get_type_handler(jax.Array)  # keep its array-metadata store
    ocp.type_handlers.register_type_handler(
        jax.Array,
        ocp.type_handlers.ArrayHandler(
            use_replica_parallel=False,
            array_metadata_store=getattr(default, "_array_metadata_store", None)), override=True)
  finally:
    absl_logger.setLevel(level)


class Checkpointer:
  """An orbax `CheckpointManager` for one training run, with content manifests (module doc)."""

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True):
    self.directory = directory if "://" in directory else os.path.abspath(directory)
    self.keep = keep
    self._async_save = async_save
    self._local = "://" not in self.directory
    self._saving: tuple[int, bool] | None = None  # (step, good) of the save in flight
    self._saving_bytes = 0
    # Always orbax's async checkpointer (it alone runs the callback that writes the manifest
    # inside the commit); `async_save=False` waits for each save to finish.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None, create=True, enable_async_checkpointing=True,
        async_options=ocp.AsyncOptions(post_finalization_callback=self._before_commit))
    self._log_filter = _DropDiskFullLogs()
    logging.get_absl_logger().addFilter(self._log_filter)
    _one_writer_per_array_on_cpu()
    _drop_late_write_completions()
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def _before_commit(self) -> None:
    """orbax's post-finalization callback: the step's files are complete in orbax's temporary
    directory, which is renamed to `<step>` right after this returns."""
    if self._saving is None or not self._local or jax.process_index() != 0:
      return
    step, good = self._saving
    tmp_dirs = glob.glob(os.path.join(glob.escape(self.directory), f"{step}.orbax-checkpoint-tmp*"))
    if len(tmp_dirs) != 1:
      logging.warning(
          "Checkpoint %d: found %s for its temporary directory; no content manifest "
          "written.", step, tmp_dirs)
      return
    write_manifest(tmp_dirs[0], good=good)

  def save(self, step: int, state, meta: dict, *, good: bool = True) -> None:
    """Saves `state` (a pytree of jax.Arrays) and `meta` (JSON) as checkpoint `step`.

    Asynchronous when enabled: returns once the arrays are copied off the devices.

    Args:
      good: False for a state not to fall back on (the keep policy protects the newest good one).

    Raises:
      DiskFullError: this or the previous (asynchronous) save ran out of disk space.
    """
    self.wait()  # The previous save: committed (or its error raised), then old ones rotated.
    if step in self._manager.all_steps():
      return
    self._saving, self._saving_bytes = (step, good), _nbytes(state)
    with self._disk_full_as_user_error():
      self._manager.save(
          step,
          args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    if not self._async_save:
      self.wait()

  def wait(self) -> None:
    """Waits for the save in flight, then applies the keep policy.

    Raises:
      DiskFullError: the save ran out of disk space.
    """
    with self._disk_full_as_user_error():
      self._manager.wait_until_finished()
    self._saving = None
    self._rotate()

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self._manager.close()
      logging.get_absl_logger().removeFilter(self._log_filter)

  @contextlib.contextmanager
  def _disk_full_as_user_error(self):
    """Turns an out-of-space failure of the save in flight into one `DiskFullError` line."""
    try:
      yield
    except Exception as e:  # pylint: disable=broad-except
      if not is_disk_full(e):
        raise
      step = self._saving[0] if self._saving else None
      self._saving = None
      # orbax's other writers may still be running: its temporary directory is left alone (it is
      # never listed as a step, and is replaced when the step is saved again).
      free = shutil.disk_usage(self.directory).free if self._local else "unknown"
      raise DiskFullError(
          f"no space left on device to save checkpoint {step} in {self.directory}: it needs "
          f"about {self._saving_bytes} bytes, {free} bytes are free; earlier checkpoints "
          f"{self.steps()} are intact: free space, then re-run the same command to resume"
      ) from None

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def _rotate(self) -> None:
    """Deletes checkpoints beyond the `keep` newest, sparing the newest good one. Every process
    runs it (orbax's delete is collective) and reads the same manifests."""
    steps = self.steps()
    if len(steps) <= self.keep:
      return
    protected = set(steps[-self.keep:])
    for step in reversed(steps):
      manifest = self._manifest_or_none(step)
      if manifest is None or manifest.get("good", True):
        protected.add(step)
        break
    for step in steps:
      if step not in protected:
        self._manager.delete(step)

  def _manifest_or_none(self, step: int) -> dict | None:
    if not self._local:
      return None
    try:
      return read_manifest(os.path.join(self.directory, str(step)))
    except DamagedCheckpointError:
      return {"good": False}

  def reached_preemption(self, step: int) -> bool:
    """True on every host once any host was told of a preemption (multi-host TPU)."""
    return jax.process_count() > 1 and self._manager.reached_preemption(step)

  def restore_latest(self, abstract_state, *, step: int | None = None, partial: bool = False):
    """Restores the newest good checkpoint (or exactly `step`), verified against its manifest.

    Args:
      abstract_state: the state pytree, or its `jax.ShapeDtypeStruct`s with shardings.
      step: a specific step; None for the newest that restores.
      partial: `abstract_state` names a part of the saved state (e.g. {"params": ...}): only that
        part is read.

    Returns:
      (state, meta, step), or (None, None, None) when there is no checkpoint.

    Raises:
      CheckpointMismatchError: an intact checkpoint does not fit `abstract_state` (nothing moved).
      UserError: the explicit `step` is damaged or unreadable (nothing moved).
      NoSuchStepError: the explicit `step` does not exist (a `UserError`: one line on the command
        line, listing the steps there are).
    """
    if step is not None and step not in self.steps():
      raise NoSuchStepError(f"no checkpoint for step {step} in {self.directory}; "
                            f"available: {self.steps()}")
    candidates = [step] if step is not None else list(reversed(self.steps()))
    # A partial restore takes its shardings from `abstract_state` (not from the checkpoint's
    # metadata, whose devices may not exist here: a run saved on 8 devices, restored on 2).
    state_args = (
        ocp.args.PyTreeRestore(
            abstract_state,
            restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state),
            partial_restore=True) if partial else ocp.args.StandardRestore(abstract_state))
    for candidate in candidates:
      step_dir = os.path.join(self.directory, str(candidate))
      try:
        verified = self._local and verify(step_dir)
        if not verified:
          logging.warning("Checkpoint %s has no content manifest (%s): restored unverified.",
                          step_dir, "saved by an older version" if self._local else "remote")
        try:
          restored = self._manager.restore(
              candidate, args=ocp.args.Composite(state=state_args, meta=ocp.args.JsonRestore()))
        except Exception as e:  # pylint: disable=broad-except
          if verified:
            raise CheckpointMismatchError(
                f"checkpoint {step_dir} is intact (its content checksums match) but does not fit "
                f"the current model/optimizer: {type(e).__name__}: {str(e)[:300]}") from e
          raise
      except CheckpointMismatchError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        if step is not None:
          raise UserError(f"checkpoint {candidate} in {self.directory} cannot be restored "
                          f"({type(e).__name__}: {str(e)[:300]}); pick another step: "
                          f"{self.steps()}") from e
        self._set_aside(candidate, e)
        continue
      return restored.state, restored.meta, candidate
    return None, None, None

  def _set_aside(self, step: int, error: Exception) -> None:
    """Moves an unreadable checkpoint out of the manager's sight, keeping its files."""
    src = os.path.join(self.directory, str(step))
    dst = f"{src}.corrupt-{int(time.time())}"
    if os.path.exists(dst):  # set aside twice within a second (a re-saved step damaged again)
      dst = f"{dst}-{time.time_ns()}"
    logging.error(
        "Checkpoint %s cannot be restored (%s: %s); moving it to %s and trying the "
        "previous one.", src,
        type(error).__name__,
        str(error)[:500], dst)
    if jax.process_index() == 0 and self._local:
      os.rename(src, dst)
    self._manager.reload()
