"""The main job: `python -m hybrid_jax.main --config=configs/default.py --workdir=DIR`.

Overrides: `--config.train.num_steps=100`, config arguments: `--config=configs/default.py:langs=en+de,
mono_prob=0.25`. Re-running the same command resumes from the newest checkpoint in DIR.

Multi-host (TPU pod slices, several GPU hosts): `jax.distributed.initialize()` runs when
`--distributed=on`, or with `auto` (the default) when the environment announces several hosts
(a multi-worker TPU VM, SLURM, or an explicit `--coordinator_address`).

A user error (bad flag or config value, bad data, a `--workdir` that is a file, a busy workdir, a
`gs://` workdir without a network)
prints one line `error: ...` and exits 2 (`hybrid_jax.cli`); `--verbose` adds the traceback.

Exit status: 0 once trained to `train.num_steps` (and evaluated); 2 for a user error; 128 + the
signal number when a signal stopped it after saving a checkpoint: 143 for SIGTERM (a preemption;
also when another host of the job was preempted), 130 for a first Ctrl-C (SIGINT), the statuses
a shell gives a process those signals end, so a retry-until-success wrapper runs it again and
re-running resumes; 1 for anything else (a bug, a non-finite loss streak).
"""

from __future__ import annotations

import logging as std_logging
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from hybrid_jax import cli
from hybrid_jax import host_memory
from hybrid_jax import paths
from hybrid_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, the model.")
_DISTRIBUTED = flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                                 "Call jax.distributed.initialize().")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (multi-process without a TPU/SLURM "
    "environment).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "With --coordinator_address.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "With --coordinator_address.")
_TAKE_OVER_LOCK = flags.DEFINE_bool(
    "take_over_stale_lock", False, "Take over the lock a killed training left in an object-store "
    "(gs://) workdir; only when no training runs there (run_dir.WorkdirLock).")
_HOST_ALLOCATOR = flags.DEFINE_enum("host_allocator", "default", host_memory.MODES,
                                    host_memory.MODES_HELP)
cli.define_verbose_flag()
flags.mark_flags_as_required(["config", "workdir"])


def _multi_host_environment() -> bool:
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  return (len([h for h in hosts.split(",") if h]) > 1
          or int(os.environ.get("SLURM_NTASKS", "1")) > 1)


def initialize_distributed(mode: str, coordinator: str | None, num_processes: int | None,
                           process_id: int | None) -> None:
  import jax  # after flags, so XLA_FLAGS set by the caller apply
  if coordinator:
    # Only affects the CPU backend: lets several local processes form one CPU "pod" (tests).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
  elif mode == "on" or (mode == "auto" and _multi_host_environment()):
    jax.distributed.initialize()


class _QuietLibraries(std_logging.Filter):
  """Drops the INFO chatter of orbax and JAX internals (dozens of lines per checkpoint)."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or not any(
        part in record.pathname for part in ("/orbax/", "/jax/_src/", "/jaxlib/"))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  from hybrid_jax import config_lib
  # ml_collections splits `file.py:argument` at the first colon as well.
  config_file = config_flags.get_config_filename(flags.FLAGS["config"]).split(":", 1)[0]
  if not os.path.isfile(config_file):
    raise UserError(f"--config={config_file}: no such file")
  config = config_lib.validate(_CONFIG.value)  # before anything is compiled
  paths.check_reachable(_WORKDIR.value, f"--workdir={_WORKDIR.value}")  # gs:// offline: at once
  workdir = paths.path(_WORKDIR.value)  # a gs:// workdir without gcsfs: UserError
  if workdir.exists() and not workdir.is_dir():
    raise UserError(f"--workdir={_WORKDIR.value} is a file, not a directory; pass a directory "
                    "(it is created if missing)")
  try:
    workdir.mkdir(parents=True, exist_ok=True)  # (no-op on an object store)
  except OSError as e:  # A file as a parent, no permission, a read-only file system...
    raise UserError(f"--workdir={_WORKDIR.value}: cannot create the directory ({e.strerror}: "
                    f"{e.filename!r})") from e
  host_memory.configure(_HOST_ALLOCATOR.value)  # before JAX starts its backend
  initialize_distributed(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value,
                         _PROCESS_ID.value)
  import jax
  from hybrid_jax import train
  logging.info("JAX %s: process %d/%d, %d local / %d global devices (%s)", jax.__version__,
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count(), jax.default_backend())
  result = train.train_and_evaluate(config, _WORKDIR.value,
                                    take_over_stale_lock=_TAKE_OVER_LOCK.value)
  if "preempted_at" in result:  # saved, not finished: a wrapper must run it again
    sys.exit(128 + result["preempted_by"])


if __name__ == "__main__":
  cli.run_absl(main)
