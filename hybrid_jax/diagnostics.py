"""Start-up diagnostics and the optional profiler trace of a training run.

As big_vision (`num_params`, `parameter_overview`) and MaxText (`summarize_size_from_pytree`,
`print_compiled_memory_stats`, `profiler.Profiler`) report them, once at start:

  parameter_summary   parameter counts and bytes (trainable / frozen), the optimizer state's
                      bytes, and under FSDP the fraction of parameter + optimizer bytes that every
                      device holds whole (replicated), with the bytes one device holds.
  memory_summary      XLA's memory analysis of the compiled train step (per device; None on a
                      backend that gives none).
  Profiler            a `jax.profiler` trace of the steps `config.log.profile_steps` names, into
                      `<workdir>/profile/` (TensorBoard's profile plugin or Perfetto read it).
"""

from __future__ import annotations

import contextlib
from typing import Any

import jax
import numpy as np

from hybrid_jax import paths
from hybrid_jax.errors import ConfigError

PROFILE_SUBDIR = "profile"


def _num_bytes(x) -> int:
  return int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize


def format_bytes(num_bytes: float) -> str:
  """'0 B', '12.0 KiB', '1.5 GiB': binary units, as XLA and MaxText count memory."""
  for unit in ("B", "KiB", "MiB", "GiB"):
    if abs(num_bytes) < 1024 or unit == "GiB":
      return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
    num_bytes /= 1024
  raise AssertionError("unreachable")


def parameter_summary(trainable: Any, frozen: Any, opt_state: Any) -> dict[str, float]:
  """Sizes of a train state's parameters and optimizer state.

  Args:
    trainable, frozen: the parameter pytrees (`train.split_frozen`); leaves are jax.Arrays placed
      with their shardings (the replicated fraction reads `leaf.sharding`).
    opt_state: the optimizer state pytree (placed likewise).

  Returns:
    trainable_parameters, frozen_parameters: element counts;
    trainable_bytes, frozen_bytes, optimizer_bytes: global sizes in bytes;
    replicated_fraction: of parameter + optimizer bytes, the fraction in arrays every device
      holds whole (1.0 without FSDP);
    bytes_per_device: parameter + optimizer bytes one device holds (its shard of each array).
  """
  summary = {}
  for name, tree in (("trainable", trainable), ("frozen", frozen)):
    leaves = jax.tree.leaves(tree)
    summary[f"{name}_parameters"] = sum(int(np.prod(x.shape)) for x in leaves)
    summary[f"{name}_bytes"] = sum(_num_bytes(x) for x in leaves)
  summary["optimizer_bytes"] = sum(_num_bytes(x) for x in jax.tree.leaves(opt_state))
  leaves = jax.tree.leaves((trainable, frozen, opt_state))
  total = sum(_num_bytes(x) for x in leaves)
  replicated = sum(_num_bytes(x) for x in leaves if x.sharding.is_fully_replicated)
  summary["replicated_fraction"] = replicated / total if total else 1.0
  summary["bytes_per_device"] = sum(
      int(np.prod(x.sharding.shard_shape(x.shape))) * np.dtype(x.dtype).itemsize for x in leaves)
  return summary


def memory_summary(compiled) -> dict[str, int] | None:
  """XLA's memory analysis of a compiled executable (`jit(f).lower(...).compile()`), per device.

  Returns:
    argument_bytes, output_bytes, temp_bytes, alias_bytes (outputs written into donated
    arguments), generated_code_bytes, and total_bytes = arguments + outputs + temporaries -
    aliased (MaxText's estimate; XLA may over-estimate); None when the backend gives no analysis.
  """
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  summary = {
      name: int(getattr(stats, f"{name}_size_in_bytes"))
      for name in ("argument", "output", "temp", "alias", "generated_code")
  }
  summary = {f"{name}_bytes": value for name, value in summary.items()}
  summary["total_bytes"] = (
      summary["argument_bytes"] + summary["output_bytes"] + summary["temp_bytes"]
      - summary["alias_bytes"])
  return summary


def describe(parameters: dict[str, float], memory: dict[str, int] | None, fsdp: int) -> str:
  """The start-up report: three lines from `parameter_summary` and `memory_summary`."""
  p = parameters
  lines = [(f"parameters: {p['trainable_parameters']:,} trainable "
            f"({format_bytes(p['trainable_bytes'])}) + {p['frozen_parameters']:,} frozen "
            f"({format_bytes(p['frozen_bytes'])}); optimizer state "
            f"{format_bytes(p['optimizer_bytes'])}"),
           (f"parameters + optimizer state under train.fsdp={fsdp}: "
            f"{100 * p['replicated_fraction']:.1f}% of the bytes replicated on every device; "
            f"{format_bytes(p['bytes_per_device'])} per device")]
  if memory is None:
    lines.append("compiled train step: this backend gives no memory analysis")
  else:
    lines.append(
        f"compiled train step, per device: {format_bytes(memory['total_bytes'])} estimated "
        f"(arguments {format_bytes(memory['argument_bytes'])}, outputs "
        f"{format_bytes(memory['output_bytes'])}, temporaries "
        f"{format_bytes(memory['temp_bytes'])}, aliased {format_bytes(memory['alias_bytes'])}; "
        f"generated code {format_bytes(memory['generated_code_bytes'])})")
  return "\n".join(lines)


def parse_profile_steps(spec: str) -> tuple[int, int] | None:
  """`config.log.profile_steps`: '' -> None (no trace); 'START:STOP' -> (START, STOP), the steps
  START..STOP-1 numbered as metrics.jsonl numbers them (step 1 is the first).

  Raises:
    ConfigError: anything else, or not 1 <= START < STOP.
  """
  if not spec:
    return None
  try:
    start, stop = (int(part) for part in spec.split(":"))
  except ValueError:
    start, stop = 0, 0
  if not 1 <= start < stop:
    raise ConfigError(f"config.log.profile_steps={spec!r}: expected 'START:STOP' with "
                      "1 <= START < STOP, e.g. '10:13' to trace steps 10, 11 and 12, or '' for "
                      "no trace")
  return start, stop


class Profiler:
  """Traces the steps of `config.log.profile_steps` with `jax.profiler` into
  `<workdir>/profile/` (written locally and uploaded when the trace ends, for a gs:// workdir).

  Call `before_step(n)` / `after_step(n, outputs)` around step n (1-based), and `close()` at the
  end (it ends a trace that a stop, preemption or error cut short). A resumed run traces what is
  left of the window.
  """

  def __init__(self, spec: str, workdir: str, *, enabled: bool = True):
    window = parse_profile_steps(spec)
    self._start, self._stop = window if window and enabled else (0, 0)
    self._directory = paths.join(workdir, PROFILE_SUBDIR)
    self._output: contextlib.ExitStack | None = None

  def before_step(self, step: int) -> None:
    if self._output is None and self._start <= step < self._stop:
      self._output = contextlib.ExitStack()
      jax.profiler.start_trace(self._output.enter_context(paths.local_output(self._directory)))

  def after_step(self, step: int, outputs: Any) -> None:
    if self._output is not None and step + 1 >= self._stop:
      jax.block_until_ready(outputs)  # the trace holds the step's device work
      self.close()

  def close(self) -> None:
    if self._output is not None:
      output, self._output = self._output, None
      with output:
        jax.profiler.stop_trace()
