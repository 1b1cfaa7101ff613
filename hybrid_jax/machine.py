"""What machine a figure came from: CPU model, vector extensions, cores, accelerator.

Timings of one command differ about 2x between the CPUs this project runs on (an Intel CPU with
AVX-512 and AMX, an AMD EPYC with AVX-512, an AMD EPYC with AVX2 only), so every timing that the
benchmarks print and every run's cost record names the machine with this module's `describe()` /
`one_line()`. Standard library only (no jax import): benchmarks that time PyTorch use it too.
"""

from __future__ import annotations

import os
import platform
from typing import Any

# The extensions that decide float32 / bfloat16 matmul speed on x86 CPUs, as /proc/cpuinfo
# spells them, in the order they are reported.
VECTOR_EXTENSIONS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16",
                     "amx_int8")


def _cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str, set[str]]:
  """(model name, flags) of the first processor in a Linux cpuinfo file; ('', set()) elsewhere."""
  model, flags = "", set()
  try:
    with open(path, encoding="utf-8", errors="replace") as f:
      for line in f:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
          model = value.strip()
        elif key in ("flags", "Features") and not flags:  # x86 / arm64 spelling
          flags = set(value.split())
        if model and flags:
          break
  except OSError:
    pass
  return model, flags


def describe(devices: Any = None, cpuinfo_path: str = "/proc/cpuinfo") -> dict[str, Any]:
  """The machine as a JSON-able dict.

  Keys: `cpu_model` (e.g. "AMD EPYC"; `platform.processor()` where there is no /proc/cpuinfo),
  `vector_extensions` (those of VECTOR_EXTENSIONS the CPU has, e.g. ["avx2", "fma", "avx512f"]),
  `cpu_cores` (usable by this process), `machine` (x86_64, aarch64), and, when `devices` (a list
  of jax devices) is given, `device_kind` (e.g. "cpu", "TPU v4", "NVIDIA H100 80GB HBM3") and
  `device_count`.
  """
  model, flags = _cpuinfo(cpuinfo_path)
  try:
    cores = len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    cores = os.cpu_count() or 1
  info: dict[str, Any] = {
      "cpu_model": model or platform.processor() or "unknown",
      "vector_extensions": [x for x in VECTOR_EXTENSIONS if x in flags],
      "cpu_cores": cores,
      "machine": platform.machine(),
  }
  if devices is not None:
    devices = list(devices)
    info["device_kind"] = devices[0].device_kind if devices else "none"
    info["device_count"] = len(devices)
  return info


def one_line(info: dict[str, Any] | None = None, devices: Any = None) -> str:
  """`describe()` as one line, e.g. "AMD EPYC (avx2 fma avx512f avx512_bf16), 2 cores"; with the
  accelerator first when the devices are not CPUs: "8 x TPU v4; host: AMD EPYC (...), 2 cores".

  `info`: a `describe()` result (default: `describe(devices)`, e.g. `devices=jax.devices()` in a
  script that times JAX, so that a GPU/TPU run names its accelerator)."""
  info = describe(devices) if info is None else info
  ext = " ".join(info["vector_extensions"]) or "no AVX2"
  cpu = f"{info['cpu_model']} ({ext}), {info['cpu_cores']} cores"
  kind = info.get("device_kind")
  if kind and kind.lower() != "cpu":
    return f"{info['device_count']} x {kind}; host: {cpu}"
  return cpu


if __name__ == "__main__":
  print(one_line())
