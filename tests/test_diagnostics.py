"""Start-up diagnostics: parameter counts and bytes under FSDP against the arrays' own shards,
the compiled step's memory analysis (and a backend without one), the profile window."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax import diagnostics
from hybrid_jax import sharding
from hybrid_jax.errors import ConfigError


def test_parameter_summary_under_fsdp_matches_the_device_shards():
  """Counted independently: sizes from numpy shapes, replicated bytes from the sharding specs,
  bytes per device from the shards device 0 actually holds."""
  mesh = sharding.make_mesh(8, fsdp=4)
  rng = np.random.default_rng(0)
  trainable = {
      "kernel": rng.normal(size=(256, 128)).astype(np.float32),  # split over fsdp
      "bias": np.zeros(128, np.float32),
      "small": np.ones((8, 8), np.float32)
  }
  frozen = {"embedding": rng.normal(size=(512, 64)).astype(np.float32)}
  opt_state = ({"mu": trainable, "nu": trainable}, np.int32(3))
  place = lambda tree: jax.device_put(tree, sharding.param_shardings(mesh, tree))
  summary = diagnostics.parameter_summary(place(trainable), place(frozen), place(opt_state))

  assert summary["trainable_parameters"] == 256 * 128 + 128 + 64
  assert summary["trainable_bytes"] == 4 * summary["trainable_parameters"]
  assert summary["frozen_parameters"] == 512 * 64 and summary["frozen_bytes"] == 4 * 512 * 64
  assert summary["optimizer_bytes"] == 2 * summary["trainable_bytes"] + 4
  total = 3 * summary["trainable_bytes"] + summary["frozen_bytes"] + 4
  replicated = 3 * 4 * (128 + 64) + 4  # bias, small (x3: param, mu, nu) and the counter
  assert summary["replicated_fraction"] == pytest.approx(replicated / total)
  device = mesh.devices.flat[0]
  held = sum(
      shard.data.nbytes
      for x in jax.tree.leaves((place(trainable), place(frozen), place(opt_state)))
      for shard in x.addressable_shards if shard.device == device)
  assert summary["bytes_per_device"] == held < total

  report = diagnostics.describe(summary, None, fsdp=4).splitlines()
  assert report[0].startswith(f"parameters: {256 * 128 + 192:,} trainable (128.8 KiB) + "
                              "32,768 frozen (128.0 KiB); optimizer state 257.5 KiB")
  assert f"train.fsdp=4: {100 * replicated / total:.1f}% of the bytes replicated" in report[1]
  assert report[2] == "compiled train step: this backend gives no memory analysis"


def test_memory_summary_of_a_compiled_step_and_of_a_backend_without_one():
  step = jax.jit(lambda state, x: (state + x.sum(), x.sum()), donate_argnums=(0,))
  compiled = step.lower(jnp.zeros((64, 64)), jnp.ones((64, 64))).compile()
  memory = diagnostics.memory_summary(compiled)
  assert memory["argument_bytes"] == 2 * 64 * 64 * 4
  # The two outputs, and XLA's table of output buffers (a pointer each).
  assert 64 * 64 * 4 + 4 <= memory["output_bytes"] <= 64 * 64 * 4 + 4 + 64
  assert memory["alias_bytes"] == 64 * 64 * 4  # the donated state is written in place
  assert memory["total_bytes"] == (
      memory["argument_bytes"] + memory["output_bytes"] + memory["temp_bytes"]
      - memory["alias_bytes"])

  class NoAnalysis:

    def memory_analysis(self):
      return None

  assert diagnostics.memory_summary(NoAnalysis()) is None


@pytest.mark.parametrize("spec, expected", [("", None), ("10:13", (10, 13)), ("1:2", (1, 2))])
def test_parse_profile_steps(spec, expected):
  assert diagnostics.parse_profile_steps(spec) == expected


@pytest.mark.parametrize("spec", ["13:10", "0:3", "5", "a:b", "1:2:3", "4:4"])
def test_bad_profile_steps_is_a_config_error_naming_the_key(spec):
  with pytest.raises(ConfigError, match=r"config\.log\.profile_steps=.*'START:STOP'"):
    diagnostics.parse_profile_steps(spec)


def test_profiler_traces_only_its_window_and_only_when_enabled(tmp_path):
  x = jnp.ones(4)
  for enabled in (False, True):
    workdir = tmp_path / str(enabled)
    profiler = diagnostics.Profiler("2:4", str(workdir), enabled=enabled)
    for step in range(1, 6):
      profiler.before_step(step)
      x = x * 2
      profiler.after_step(step, x)
    profiler.close()
    traces = list(workdir.glob("profile/plugins/profile/*/*.xplane.pb"))
    assert len(traces) == enabled, traces


def test_format_bytes():
  assert [diagnostics.format_bytes(n) for n in (0, 1023, 1024, 1536 * 1024, 3 * 2**30)
         ] == ["0 B", "1023 B", "1.0 KiB", "1.5 MiB", "3.0 GiB"]
