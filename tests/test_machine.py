"""Tests for hybrid_jax.machine: the CPU model and vector extensions every timing names."""

from hybrid_jax import machine

CPUINFO = """processor	: 0
vendor_id	: AuthenticAMD
model name	: AMD EPYC 7B13
flags		: fpu sse4_2 avx fma avx2 bmi2
processor	: 1
model name	: ignored second entry
flags		: avx512f amx_tile
"""


def test_describe_reads_the_first_processor(tmp_path):
  path = tmp_path / "cpuinfo"
  path.write_text(CPUINFO)
  info = machine.describe(cpuinfo_path=str(path))
  assert info["cpu_model"] == "AMD EPYC 7B13"
  assert info["vector_extensions"] == ["avx2", "fma"]  # not the second entry's avx512f / amx
  assert info["cpu_cores"] >= 1
  assert machine.one_line(info) == f"AMD EPYC 7B13 (avx2 fma), {info['cpu_cores']} cores"


def test_one_line_names_an_accelerator_first(tmp_path):

  class Device:
    device_kind = "TPU v4"

  path = tmp_path / "cpuinfo"
  path.write_text(CPUINFO)
  info = machine.describe([Device()] * 4, cpuinfo_path=str(path))
  assert (info["device_kind"], info["device_count"]) == ("TPU v4", 4)
  assert machine.one_line(info).startswith("4 x TPU v4; host: AMD EPYC 7B13 (avx2 fma)")


def test_no_cpuinfo_still_describes(tmp_path):
  info = machine.describe(cpuinfo_path=str(tmp_path / "absent"))
  assert info["cpu_model"] and info["vector_extensions"] == []
  assert "no AVX2" in machine.one_line(info)


def test_one_line_of_devices_describes_them():

  class Device:
    device_kind = "NVIDIA H100 80GB HBM3"

  line = machine.one_line(devices=[Device()])
  assert line.startswith("1 x NVIDIA H100 80GB HBM3; host: ")
  assert line.endswith(machine.one_line())  # the host part is the CPU-only line
