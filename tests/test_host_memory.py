"""hybrid_jax/host_memory.py: the mode logic on a fake libc, and the page-fault effect for real.

The real check runs in fresh subprocesses (the setting only works before JAX starts its backend):
a jitted product whose 64 MiB temporary XLA allocates at every call. With glibc's defaults each
call maps that block anew (one page fault per 4 KiB page); with `reuse` the block is reused.
"""

import json
import os
import subprocess
import sys

import pytest

from hybrid_jax import host_memory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE_FAULT_SCRIPT = """
import json, resource, sys
from hybrid_jax import host_memory
applied = host_memory.configure(sys.argv[1])
import jax, jax.numpy as jnp
x = jnp.ones((4096, 256), jnp.float32)
product = jax.jit(lambda x: (x @ x.T)[::2, ::2] + 1)  # the [4096, 4096] product is a temporary
temp_bytes = product.lower(x).compile().memory_analysis().temp_size_in_bytes
faults = []
for _ in range(20):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  product(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
# Median of the last 8 calls: with `reuse` the heap grows for the first ~10 calls (small objects
# split freed blocks), then holds.
faults_per_call = sorted(faults[12:])[4]
print(json.dumps(dict(applied=applied, temp_pages=temp_bytes / 4096, faults_per_call=faults_per_call,
                      faults=faults)))
"""


class FakeLibc:

  def __init__(self, result=1):
    self.calls, self.result = [], result

  def mallopt(self, parameter, value):
    self.calls.append((parameter, value))
    return self.result


@pytest.fixture
def fake_libc(monkeypatch):
  libc = FakeLibc()
  monkeypatch.setattr(host_memory, "_glibc", lambda: libc)
  monkeypatch.setattr(host_memory, "_backend_started", lambda: False)
  return libc


def test_reuse_sets_one_arena_no_mmap_no_trim(fake_libc):
  assert host_memory.configure("reuse")
  assert fake_libc.calls == [(-8, 1), (-4, 0), (-1, 2**31 - 1)]


def test_default_leaves_malloc_alone(fake_libc):
  assert not host_memory.configure("default")
  assert fake_libc.calls == []


@pytest.mark.parametrize("platforms,accelerator,applied", [("cpu", True, True),
                                                           ("CPU", False, True),
                                                           ("tpu", False, False),
                                                           ("cpu,cuda", False, False),
                                                           ("", False, True), ("", True, False)])
def test_auto_applies_only_to_cpu_only_processes(fake_libc, monkeypatch, platforms, accelerator,
                                                 applied):
  monkeypatch.setenv("JAX_PLATFORMS", platforms)
  monkeypatch.setattr(host_memory, "accelerator_runtime_installed", lambda: accelerator)
  assert host_memory.configure("auto") == applied
  assert bool(fake_libc.calls) == applied


def test_non_glibc_systems_are_left_alone(monkeypatch):
  monkeypatch.setattr(host_memory, "_glibc", lambda: None)
  assert not host_memory.configure("reuse")


def test_failing_mallopt_is_an_error(monkeypatch):
  monkeypatch.setattr(host_memory, "_glibc", lambda: FakeLibc(result=0))
  monkeypatch.setattr(host_memory, "_backend_started", lambda: False)
  with pytest.raises(OSError, match="mallopt"):
    host_memory.configure("reuse")


def test_unknown_mode_is_an_error():
  with pytest.raises(ValueError, match="'resue'.*auto, reuse, default"):
    host_memory.configure("resue")


def test_late_call_warns(fake_libc, monkeypatch, caplog):
  monkeypatch.setattr(host_memory, "_backend_started", lambda: True)
  host_memory.configure("reuse")
  assert "after JAX started its backend" in caplog.text


def _page_faults(mode):
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  proc = subprocess.run([sys.executable, "-c", PAGE_FAULT_SCRIPT, mode], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(host_memory._glibc() is None, reason="needs glibc")  # pylint: disable=protected-access
def test_reuse_stops_the_per_call_page_faults():
  default, reuse = _page_faults("default"), _page_faults("reuse")
  assert not default["applied"] and reuse["applied"]
  assert default["temp_pages"] >= 16384  # the 64 MiB product, above glibc's 32 MiB mmap cap
  assert default["faults_per_call"] > 0.5 * default["temp_pages"]
  assert reuse["faults_per_call"] < 0.05 * reuse["temp_pages"], reuse
