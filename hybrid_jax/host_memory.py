"""Host memory for XLA on CPU: keep freed buffers in the process instead of unmapping them.

On the CPU backend XLA allocates all temporaries of one executable run as one block, with
`posix_memalign` from a thread-pool thread (409 MB for the tiny preset's train step). glibc serves
any request above 32 MiB with a fresh `mmap` and unmaps it on free, so at every step the kernel
maps and zeroes the whole block again, one page fault per 4 KiB page. Measured on the tiny preset's
train step (batch 64) on a 2-core CPU: ~102k page faults and ~170 ms of system CPU time per step
(of ~870 ms CPU in all); with `reuse_freed_memory` 0 faults and 440 -> 376 ms per step
(BENCHMARKS.md).

`reuse_freed_memory` sets glibc's malloc (`mallopt`) to one arena, no `mmap`, no trimming, so
freed blocks are reused. It must run before JAX starts its backend: XLA's threads bind to an
allocation arena on their first allocation. The costs: the process keeps its peak heap until it
exits, and all threads allocate from one arena (host threads that allocate heavily contend).
`configure("auto")` applies it only to CPU-only processes: `JAX_PLATFORMS=cpu`, or no accelerator
runtime installed (no `libtpu`, no `jax_plugins` package such as the CUDA plugin); on non-glibc
systems (macOS, musl) nothing changes.

Who gains: training a small model, e.g. the tiny preset (`hybrid_jax.main --host_allocator=reuse`):
138 -> 155 examples/s, 234 -> 219 s in all. Not the default run's multilingual-e5-small (1.4 GiB of
temporaries per step): 16 steps took 88.0 s with `reuse` vs 87.1 s without, and peaked at 6.42 vs
3.70 M KiB (ru_maxrss), the one arena holding freed blocks that later requests split (9.43 M KiB on
a full run while other processes contended for the cores). Nor evaluation: its parallel tokenizer
threads contend for the one arena (full XQuAD-R: tokenize 6.6 -> 14.6 s, encode 26.6 -> 24.3 s,
38.7 -> 43.7 s in all); nor work that is mostly compilation (the test suite: 360 -> 408 s). So
every entry point defaults to `default` (glibc as it is).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import pkgutil
import sys

from absl import logging

MODES = ("auto", "reuse", "default")
# The help text of an entry point's `--host_allocator` flag (one of MODES, passed to `configure`).
MODES_HELP = ("Host malloc for XLA's buffers: reuse freed memory (glibc: one arena, no mmap, no "
              "trim), the default glibc behaviour, or auto = reuse in CPU-only processes.")
# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_NEVER_TRIM = 2**31 - 1


def _glibc():
  """The process's C library when it is glibc (has `mallopt`), else None."""
  try:
    libc = ctypes.CDLL(None)
  except OSError:
    return None
  return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def accelerator_runtime_installed() -> bool:
  """Whether JAX could pick a TPU/GPU here: `libtpu`, or a `jax_plugins` module or entry point."""
  if importlib.util.find_spec("libtpu") is not None:
    return True
  if importlib.metadata.entry_points(group="jax_plugins"):
    return True
  spec = importlib.util.find_spec("jax_plugins")
  return spec is not None and any(pkgutil.iter_modules(spec.submodule_search_locations or []))


def cpu_only_process() -> bool:
  """`JAX_PLATFORMS` names only cpu, or it is unset and no accelerator runtime is installed."""
  platforms = os.environ.get("JAX_PLATFORMS", "").strip()
  if platforms:
    return platforms.lower() == "cpu"
  return not accelerator_runtime_installed()


def _backend_started() -> bool:
  if "jax" not in sys.modules:
    return False
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    return xla_bridge.backends_are_initialized()
  except (ImportError, AttributeError):  # a JAX without the check: assume not started
    return False


def reuse_freed_memory() -> bool:
  """One malloc arena, no mmap, no trimming (glibc). True when applied, False on other libcs."""
  libc = _glibc()
  if libc is None:
    return False
  if _backend_started():
    logging.warning("host_memory.reuse_freed_memory() after JAX started its backend: XLA's "
                    "threads already have their arenas, large buffers will still be unmapped.")
  for parameter, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM)):
    if libc.mallopt(parameter, value) != 1:
      raise OSError(f"mallopt({parameter}, {value}) failed")
  return True


def configure(mode: str) -> bool:
  """Applies the host allocator `mode`: 'reuse' (always), 'default' (glibc as is), 'auto' ('reuse'
  in CPU-only processes). Returns True when the allocator was changed."""
  if mode not in MODES:
    raise ValueError(f"host allocator mode {mode!r}: expected one of {', '.join(MODES)}")
  if mode == "default" or (mode == "auto" and not cpu_only_process()):
    return False
  applied = reuse_freed_memory()
  if applied:
    logging.info("Host allocator: freed buffers are reused (glibc: one arena, no mmap, no trim).")
  return applied
