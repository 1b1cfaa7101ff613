"""Shared by the end-to-end tests: the tiny model/run flags and a subprocess runner for
`python -m hybrid_jax.main` (each distinct run costs a start-up and a compile: share them)."""

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# XLA:CPU's LLVM backend at -O0 in every test process: compilation is most of the suite's time and
# the tests check numbers, not speed (the in-process 1/2/4/8-device fsdp test: 34 -> 25 s). The
# same flag on both sides of every comparison, so sharded vs unsharded and resumed vs straight runs
# compare like with like.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"


def free_port() -> int:
  """A free localhost TCP port (a jax.distributed coordinator, the GCS emulator)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def xla_flags(num_devices: int) -> str:
  """XLA_FLAGS for a test process on `num_devices` virtual CPU devices."""
  return f"--xla_force_host_platform_device_count={num_devices} {TEST_XLA_FLAGS}"


# One persistent XLA compilation cache for every subprocess of a test session: the short runs of
# the tiny model compile the same programs again and again, and a cached executable is the same
# executable (identical numbers; tests/test_gcs.py measured 91 -> 38 s for one run).
COMPILATION_CACHE = {
    "JAX_COMPILATION_CACHE_DIR": tempfile.mkdtemp(prefix="hybrid_jax_tests_xla_cache_"),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}
atexit.register(shutil.rmtree, COMPILATION_CACHE["JAX_COMPILATION_CACHE_DIR"], True)
TINY_MODEL = [
    "--config.model.hidden_size=32",
    "--config.model.num_hidden_layers=2",
    "--config.model.num_attention_heads=2",
    "--config.model.intermediate_size=64",
    "--config.model.vocab_size=1000",
    "--config.data.query_max_len=16",
    "--config.data.passage_max_len=32",
    "--config.train.global_batch_size=16",
    "--config.optim.warmup_steps=2",
    "--config.log.every_steps=1",
    "--config.checkpoint.every_steps=3",
    "--config.train.input_workers=0",  # batches built in the training process (tests with
    # worker processes say so)
]


def env(num_devices: int = 8) -> dict:
  out = dict(os.environ)
  out["XLA_FLAGS"] = xla_flags(num_devices)
  out["JAX_PLATFORMS"] = "cpu"
  out["PYTHONUNBUFFERED"] = "1"
  for key, value in COMPILATION_CACHE.items():
    out.setdefault(key, value)
  return out


def main_command(workdir, *flags) -> list[str]:
  return [sys.executable, "-m", "hybrid_jax.main", f"--workdir={workdir}", *flags]


def start(workdir, *flags, num_devices: int = 8) -> subprocess.Popen:
  return subprocess.Popen(
      main_command(workdir, *flags), cwd=REPO, env=env(num_devices), stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True)


def run(workdir, *flags, num_devices: int = 8) -> str:
  proc = start(workdir, *flags, num_devices=num_devices)
  out, _ = proc.communicate(timeout=900)
  assert proc.returncode == 0, out[-4000:]
  return out
