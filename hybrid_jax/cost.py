"""What a training run cost: the one cost record of every run, `<workdir>/cost.json`.

    meter = cost.CostMeter()                     # at start (start-up counts from process start)
    meter.startup_done()
    with meter.phase("train"):                   # phases nest: time is charged to the innermost
      with meter.phase("compile"): ...
      with meter.phase("eval"): ...
    meter.record_train_step(compiled, num_devices=..., global_batch_size=..., ...)
    record = meter.finish(workdir, steps_trained=..., num_steps=..., ...)   # writes cost.json

The record (`finish`, one session; `cost.json` sums the sessions of a resumed run):
  wall_seconds: {startup, compile, train, eval, export, other, total}: start-up is the process
    start (interpreter, imports, data, tokenizer, model, restore) up to the training loop;
    compile the train step's ahead-of-time compilation; train the loop's steps, input waits and
    checkpoint saves (up to the last one written); eval the periodic and final evaluations
    (their compilation included); export the Hugging Face model; other the rest (closing,
    writing); total the process so far.
  examples_per_second: examples trained / training seconds (after compilation).
  train_step_flops: FLOPs of one compiled train step over all devices (XLA's cost analysis of
    the executable, per device, times the devices); `train_step_flops_source` says 'xla', or
    'model' when the step loops over chunks of the batch (the gradient cache's scan: XLA counts
    a loop body once), in which case `analytic_step_flops` (below) stands in and XLA's figure is
    kept as `train_step_flops_xla`. train_flops = train_step_flops x train.num_steps (the whole
    run).
  analytic_step_flops: the matmul FLOP model of `step_flops` (the figure benchmarks/flops.py
    prints), for comparison.
  peak_rss_bytes: the process's peak resident set (getrusage ru_maxrss).
  parameters: `diagnostics.parameter_summary` (trainable / frozen parameters and bytes,
    optimizer-state bytes, ...).
  checkpoint_bytes: bytes on disk under `<workdir>/checkpoints`; model_bytes: under `model/`.
  machine: `hybrid_jax.machine.describe(devices)` (device kind and count, CPU model, vector
    extensions, cores).

`headline(record)` is the few numbers written to metrics.jsonl (as `cost/<name>`) and compared
across runs by `launch/summarize.py`. No jax import here: the compiled executable and the devices
are handed in.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from typing import Any, Iterator, Mapping

from hybrid_jax import machine
from hybrid_jax import paths

COST_FILE = "cost.json"
PHASES = ("startup", "compile", "train", "eval", "export")
_IMPORTED_AT = time.time()


def process_start_time() -> float:
  """The Unix time this process started (Linux: /proc/self/stat and the boot time), else the
  time this module was imported."""
  try:
    with open("/proc/self/stat") as f:
      # Field 22 (starttime, clock ticks after boot) follows the parenthesised command name.
      start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as f:
      boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    return boot + start_ticks / os.sysconf("SC_CLK_TCK")
  except (OSError, ValueError, IndexError, StopIteration):
    return _IMPORTED_AT


def peak_rss_bytes() -> int:
  """The process's peak resident set size in bytes (ru_maxrss: KiB on Linux, bytes on macOS)."""
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(rss if sys.platform == "darwin" else rss * 1024)


def encoder_forward_flops(hidden_size: int, intermediate_size: int, num_layers: int,
                          seq_len: int) -> float:
  """Matmul FLOPs of one sequence's encoder forward pass (a multiply-add is 2 FLOPs): per layer
  the Q, K, V, O projections 4 * 2*S*H^2, the feed-forward 2 * 2*S*H*I and the attention scores
  and weighted sum 2 * 2*S^2*H; embeddings, LayerNorm, softmax, GELU and pooling not counted
  (Kaplan et al. 2020, "Scaling laws", Table 1, counted per sequence)."""
  h, i, s = hidden_size, intermediate_size, seq_len
  return num_layers * (4 * 2 * s * h * h + 2 * 2 * s * h * i + 2 * 2 * s * s * h)


def step_flops(hidden_size: int, intermediate_size: int, num_layers: int, query_len: int,
               passage_len: int, global_batch_size: int, *, num_hard_negatives: int = 0,
               grad_cache: bool = False) -> dict[str, float]:
  """Training FLOPs of one global batch (the model of benchmarks/flops.py), by part.

  Forward + backward = 3 x forward; the gradient cache (`train.grad_cache_chunk_size`) encodes
  every row once more without gradients: 4 x forward. The loss: B x B(1+H) logits, 2*B*B*D
  forward, x3 for training (D = hidden_size).

  Returns:
    {"queries", "passages", "loss", "total"} in FLOPs.
  """
  passes = 4 if grad_cache else 3
  forward = lambda s: encoder_forward_flops(hidden_size, intermediate_size, num_layers, s)
  b = global_batch_size
  queries = passes * b * forward(query_len)
  passages = passes * b * (1 + num_hard_negatives) * forward(passage_len)
  loss = 3 * 2 * b * b * (1 + num_hard_negatives) * hidden_size
  return {
      "queries": queries, "passages": passages, "loss": loss, "total": queries + passages + loss
  }


def config_step_flops(config) -> float:
  """`step_flops(...)["total"]` of a run config (a ConfigDict or its JSON dict)."""
  model, data, train = config["model"], config["data"], config["train"]
  return step_flops(model["hidden_size"], model["intermediate_size"], model["num_hidden_layers"],
                    data["query_max_len"], data["passage_max_len"], train["global_batch_size"],
                    num_hard_negatives=config["loss"]["num_hard_negatives"],
                    grad_cache=bool(train["grad_cache_chunk_size"]))["total"]


def compiled_flops(compiled) -> float | None:
  """FLOPs of a compiled executable's program on one device (XLA cost analysis); None when the
  backend gives none."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per program
    analysis = analysis[0] if analysis else None
  flops = (analysis or {}).get("flops")
  return float(flops) if flops is not None and flops >= 0 else None


def directory_bytes(directory: str) -> int:
  """Bytes of the files under `directory` (local or gs://); 0 when missing."""
  if paths.is_remote(directory):
    import fsspec  # pylint: disable=import-outside-toplevel
    fs, root = fsspec.core.url_to_fs(directory)
    return int(fs.du(root)) if fs.exists(root) else 0
  return sum(
      os.path.getsize(os.path.join(d, name)) for d, _, names in os.walk(directory)
      for name in names)


class CostMeter:
  """Wall time by phase, the compiled step's FLOPs and the run's sizes; see the module doc."""

  def __init__(self, start_time: float | None = None):
    self._start = process_start_time() if start_time is None else start_time
    self._clock_offset = time.time() - time.perf_counter()  # perf_counter -> Unix time
    self.seconds = {name: 0.0 for name in PHASES}
    self._stack: list[list] = []  # [name, start, time charged to nested phases]
    self._facts: dict[str, Any] = {}

  def startup_done(self) -> None:
    """Ends the start-up phase (process start up to now)."""
    self.seconds["startup"] = time.time() - self._start

  @contextlib.contextmanager
  def phase(self, name: str) -> Iterator[None]:
    """Charges the block's wall time to `name`, less the time of phases nested in it."""
    if name not in PHASES:
      raise ValueError(f"unknown phase {name!r}; one of {PHASES}")
    frame = [name, time.perf_counter(), 0.0]
    self._stack.append(frame)
    try:
      yield
    finally:
      self._stack.pop()
      elapsed = time.perf_counter() - frame[1]
      self.seconds[name] += elapsed - frame[2]
      if self._stack:
        self._stack[-1][2] += elapsed

  def record_train_step(self, compiled, *, num_devices: int, analytic_flops: float,
                        loops_over_batch: bool, parameters: Mapping[str, float]) -> None:
    """The compiled train step's FLOPs (see the module doc) and the parameter summary.

    `loops_over_batch`: the step scans over chunks of the batch (the gradient cache), whose body
    XLA's cost analysis counts once: `analytic_flops` is recorded instead.
    """
    per_device = compiled_flops(compiled)
    xla = per_device * num_devices if per_device is not None else None
    loops = loops_over_batch
    self._facts.update(train_step_flops=analytic_flops if loops or xla is None else xla,
                       train_step_flops_source="model" if loops or xla is None else "xla",
                       train_step_flops_xla=xla, analytic_step_flops=analytic_flops,
                       parameters=dict(parameters))

  def finish(self, workdir: str, *, steps_trained: int, num_steps: int, global_batch_size: int,
             devices=None) -> dict[str, Any]:
    """This session's record; writes `<workdir>/cost.json` (this session added to those already
    there, `merge`) and returns the merged record."""
    total = time.time() - self._start
    seconds = dict(self.seconds)
    seconds["other"] = max(0.0, total - sum(seconds.values()))
    seconds["total"] = total
    step_flops_ = self._facts.get("train_step_flops")
    session = {
        "wall_seconds": seconds,
        "steps_trained": steps_trained,
        "examples_trained": steps_trained * global_batch_size,
        "examples_per_second": (steps_trained * global_batch_size
                                / seconds["train"] if steps_trained and seconds["train"] else None),
        "global_batch_size": global_batch_size,
        "num_steps": num_steps,
        **self._facts,
        "train_flops": step_flops_ * num_steps if step_flops_ is not None else None,
        "peak_rss_bytes": peak_rss_bytes(),
        "checkpoint_bytes": directory_bytes(paths.join(workdir, "checkpoints")),
        "model_bytes": directory_bytes(paths.join(workdir, "model")),
        "machine": machine.describe(devices),
        "finished_at": time.time(),
    }
    record = merge(read(workdir), session)
    paths.write_text(paths.join(workdir, COST_FILE), json.dumps(record, indent=2) + "\n")
    return record


def merge(previous: Mapping[str, Any] | None, session: Mapping[str, Any]) -> dict[str, Any]:
  """The record of a run after `session`: the session's fields, with `wall_seconds`,
  `steps_trained` and `examples_trained` summed over every session (`sessions` lists them all,
  oldest first), `peak_rss_bytes` their maximum, `examples_per_second` over all sessions, and the
  step FLOPs of the newest session that compiled a step."""
  sessions = list((previous or {}).get("sessions", [])) + [dict(session)]
  record = {k: v for k, v in session.items()}
  for key in ("train_step_flops", "train_step_flops_source", "train_step_flops_xla",
              "analytic_step_flops", "parameters"):
    if record.get(key) is None:
      record[key] = next((s[key] for s in reversed(sessions) if s.get(key) is not None), None)
  if record.get("train_step_flops") is not None:
    record["train_flops"] = record["train_step_flops"] * record["num_steps"]
  record["wall_seconds"] = {
      k: sum(s["wall_seconds"].get(k, 0.0) for s in sessions) for k in session["wall_seconds"]
  }
  record["steps_trained"] = sum(s["steps_trained"] for s in sessions)
  record["examples_trained"] = sum(s["examples_trained"] for s in sessions)
  train = record["wall_seconds"]["train"]
  record["examples_per_second"] = record["examples_trained"] / train if train else None
  record["peak_rss_bytes"] = max(s["peak_rss_bytes"] for s in sessions)
  record["sessions"] = sessions
  return record


def read(workdir: str) -> dict[str, Any] | None:
  """`<workdir>/cost.json`, or None when there is none (or it cannot be parsed)."""
  p = paths.path(paths.join(workdir, COST_FILE))
  try:
    return json.loads(p.read_text())
  except (OSError, ValueError):
    return None


def headline(record: Mapping[str, Any]) -> dict[str, float]:
  """The record's headline numbers: total / startup / compile / train / eval seconds, examples
  per second, train step and train FLOPs, peak RSS and checkpoint bytes (absent when None)."""
  out = {f"{k}_seconds": v for k, v in record["wall_seconds"].items()}
  for key in ("examples_per_second", "train_step_flops", "train_flops", "peak_rss_bytes",
              "checkpoint_bytes"):
    if record.get(key) is not None:
      out[key] = float(record[key])
  return out
