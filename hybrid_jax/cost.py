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
    prints) for the model as loaded (with `model.path`, the checkpoint's architecture) and the
    run's trainable set (LoRA: no weight gradient of a frozen kernel, the adapters' matmuls
    added), for comparison.
  peak_rss_bytes: the process's peak resident set (getrusage ru_maxrss).
  parameters: `diagnostics.parameter_summary` (trainable / frozen parameters and bytes,
    optimizer-state bytes, ...).
  checkpoint_bytes: bytes on disk under `<workdir>/checkpoints` (every checkpoint kept there,
    checkpoint.keep of them); last_checkpoint_bytes: those of the newest step's checkpoint alone
    (the size of one checkpoint); model_bytes: under `model/`.
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
import re
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


def linear_layers(model: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
  """The Linear layers of the `DualEncoder` that `model` describes: path -> (in_features,
  out_features), named as `hybrid_jax.models.lora.linear_paths` names them
  ('encoder/layers/0/attention/query'), each tower in forward order.

  `model`: `config.model`'s fields (a ConfigDict or dict): hidden_size, intermediate_size,
  num_hidden_layers; optional pooling ('pooler': the BERT pooler), projection_dim (> 0: a
  projection after pooling) and shared_tower (False: a second tower, 'separate_passage_encoder').
  """
  h, i = int(model["hidden_size"]), int(model["intermediate_size"])
  projection = int(model.get("projection_dim") or 0)
  shared = model.get("shared_tower", True)
  out = {}
  for tower, head in (("encoder", "projection"),) + (() if shared else (
      ("separate_passage_encoder", "separate_passage_projection"),)):
    for layer in range(int(model["num_hidden_layers"])):
      prefix = f"{tower}/layers/{layer}"
      for name in ("query", "key", "value", "output"):
        out[f"{prefix}/attention/{name}"] = (h, h)
      out[f"{prefix}/intermediate"] = (h, i)
      out[f"{prefix}/output"] = (i, h)
    if model.get("pooling") == "pooler":
      out[f"{tower}/pooler"] = (h, h)
    if projection:
      out[head] = (h, projection)
  return out


def _tower_flops(model: Mapping[str, Any], tower: str, head: str, seq_len: int, rows: int,
                 trains) -> tuple[float, float]:
  """(forward, forward + backward) matmul FLOPs of `rows` sequences of `seq_len` tokens through
  one tower (`step_flops`); `trains(parameter path)` says whether a parameter trains."""
  lora = model.get("lora") or {}
  rank = int(lora.get("rank") or 0)
  # The shared adapter is merged into its kernel (`encoder.lora_matmul`) unless LoRA dropout is
  # on; a row's language adapter (per_language) is always a separate product.
  merged = 0 if lora.get("dropout") else 1
  separate = (2 if lora.get("per_language") else 1) - merged
  h = int(model["hidden_size"])
  layers = linear_layers(model)
  totals = [0.0, 0.0]
  # Whether a parameter before the current point trains: input gradients must reach it.
  upstream = any(
      trains(f"model/{tower}/embeddings/{name}")
      for name in ("word_embeddings/embedding", "position_embeddings/embedding",
                   "token_type_embeddings/embedding", "layer_norm/scale", "layer_norm/bias"))

  def linear(path: str, tokens: int, needs_input_gradient: bool) -> bool:
    """Adds the layer's FLOPs; returns whether any of its parameters trains."""
    n_in, n_out = layers[path]
    forward = 2.0 * tokens * n_in * n_out
    kernel = trains(f"model/{path}/kernel")
    train = forward * (1 + needs_input_gradient + kernel)
    any_trains = kernel or trains(f"model/{path}/bias")
    if rank and re.search(lora["targets"], path):
      a, b = trains(f"model/{path}/lora_a"), trains(f"model/{path}/lora_b")
      a_forward = 2.0 * tokens * n_in * rank  # x A, one adapter
      b_forward = 2.0 * tokens * rank * n_out  # (x A) B
      a_train = a_forward * (1 + a + needs_input_gradient)
      b_train = b_forward * (1 + b + (a or needs_input_gradient))
      forward += separate * (a_forward + b_forward)
      # Merged: the forward and the input gradient are the kernel's products; B's gradient
      # needs x A and (x A)^T dy, A's dy B^T and x^T (dy B^T).
      train += separate * (a_train + b_train) + merged * (a + b) * (a_forward + b_forward)
      any_trains = any_trains or a or b
    totals[0] += forward
    totals[1] += train
    return any_trains

  def layer_norm_trains(path: str) -> bool:
    return trains(f"model/{path}/scale") or trains(f"model/{path}/bias")

  tokens = rows * seq_len
  for layer in range(int(model["num_hidden_layers"])):
    prefix = f"{tower}/layers/{layer}"
    before = upstream
    q, k, v = (
        linear(f"{prefix}/attention/{name}", tokens, before) for name in ("query", "key", "value"))
    # Scores Q K^T and the weighted sum P V, 2*S*S*H each per sequence; backward: dQ, dK and
    # dP when the query/key side trains, dV when the value side does.
    product = 2.0 * rows * seq_len * seq_len * h
    totals[0] += 2 * product
    totals[1] += 2 * product + 3 * product * (before or q or k) + product * (before or v)
    after = before or q or k or v
    after = linear(f"{prefix}/attention/output", tokens, after) or after
    after = layer_norm_trains(f"{prefix}/attention_layer_norm") or after
    after = linear(f"{prefix}/intermediate", tokens, after) or after
    after = linear(f"{prefix}/output", tokens, after) or after
    upstream = layer_norm_trains(f"{prefix}/output_layer_norm") or after
  if f"{tower}/pooler" in layers:
    upstream = linear(f"{tower}/pooler", rows, upstream) or upstream
  if head in layers:
    linear(head, rows, upstream)
  return totals[0], totals[1]


def step_flops(model: Mapping[str, Any], query_len: int, passage_len: int, global_batch_size: int,
               *, num_hard_negatives: int = 0, grad_cache: bool = False,
               frozen: str = "") -> dict[str, float]:
  """Matmul FLOPs of one training step on a global batch (the model of benchmarks/flops.py), by
  part, for the model's trainable set.

  A multiply-add is 2 FLOPs. Every Linear layer of `linear_layers(model)` costs 2*T*in*out
  forward over its T tokens (rows for the pooler and the projection); its backward adds the
  input gradient dy W^T (as much) when a parameter before it in the tower trains, and the weight
  gradient x^T dy (as much) when its kernel trains: so 3 x forward when everything trains, as in
  Kaplan et al. 2020 ("Scaling laws", Table 1, counted per sequence). A LoRA adapter of rank r
  (`model["lora"]`: rank, targets, per_language, dropout) that is a separate product adds x A and
  (x A) B, 2*T*r*(in + out) forward per adapter a row uses, with A's and B's gradients when they
  train and the input gradients through them in the same way; the shared adapter without dropout
  is merged into its kernel (`encoder.lora_matmul`: no forward or input-gradient cost of its own,
  the merge W + s A B not counted) and adds 2*T*r*(in + out) for each of A and B that trains
  (x A, dy B^T and their products with dy and x). The language adapter of per_language is always
  separate. Attention
  scores Q K^T and the weighted sum P V cost 2 * 2*S^2*H per layer and sequence forward, and
  backward dQ, dK and dP when a parameter before the query or key trains, dV when one before the
  value does (twice the forward when everything trains). The loss: B x B(1+K) logits, 2*B*B(1+K)*D forward,
  x3 (D the embedding width, K hard negatives). The gradient cache (`grad_cache`) encodes every
  row once more without gradients: + the encoders' forward. Not counted: embedding lookups,
  LayerNorm, softmax, GELU, pooling, biases, the optimizer update.

  Args:
    model: the architecture, `config.model`'s fields (`linear_layers`) and its `lora`.
    query_len, passage_len: tokens per query / passage.
    global_batch_size: B.
    frozen: the trainer's frozen-parameter pattern (`train.frozen_pattern`: `optim.frozen`, or
      with LoRA every base parameter), searched in parameter paths such as
      'model/encoder/layers/0/attention/query/kernel'; '' = everything trains.

  Returns:
    {"queries", "passages", "loss", "total"} in FLOPs.
  """
  trains = lambda path: not (frozen and re.search(frozen, path))
  shared = model.get("shared_tower", True)
  b, k = global_batch_size, num_hard_negatives
  query = _tower_flops(model, "encoder", "projection", query_len, b, trains)
  passage = _tower_flops(model, "encoder" if shared else "separate_passage_encoder",
                         "projection" if shared else "separate_passage_projection", passage_len,
                         b * (1 + k), trains)
  queries, passages = (
      (forward if grad_cache else 0.0) + train for forward, train in (query, passage))
  width = int(model.get("projection_dim") or 0) or int(model["hidden_size"])
  loss = 3 * 2 * b * b * (1 + k) * width
  return {
      "queries": queries, "passages": passages, "loss": loss, "total": queries + passages + loss
  }


def config_step_flops(config, frozen: str, architecture: Mapping[str, Any] | None = None) -> float:
  """`step_flops(...)["total"]` of a run config (a ConfigDict or its JSON dict) with its frozen
  pattern (`train.frozen_pattern(config)`); `architecture`: fields that replace `config.model`'s,
  e.g. the loaded model's (`EncoderConfig` as a dict: with `model.path` the checkpoint's
  config.json, not the preset, fixes the architecture)."""
  model = {**config["model"], **(architecture or {})}
  data, train = config["data"], config["train"]
  return step_flops(model, data["query_max_len"], data["passage_max_len"],
                    train["global_batch_size"],
                    num_hard_negatives=config["loss"]["num_hard_negatives"],
                    grad_cache=bool(train["grad_cache_chunk_size"]), frozen=frozen)["total"]


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


def last_checkpoint_bytes(directory: str) -> int:
  """Bytes of the newest step's checkpoint under `directory` (its largest all-digit
  subdirectory, as orbax names steps; not one set aside or in writing); 0 without one."""
  root = paths.path(directory)
  steps = [int(p.name) for p in root.iterdir() if p.name.isdigit()] if root.exists() else []
  return directory_bytes(paths.join(directory, str(max(steps)))) if steps else 0


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
        "last_checkpoint_bytes": last_checkpoint_bytes(paths.join(workdir, "checkpoints")),
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
  per second, train step and train FLOPs, peak RSS, checkpoint bytes (all kept, and the last
  one's) (absent when None)."""
  out = {f"{k}_seconds": v for k, v in record["wall_seconds"].items()}
  for key in ("examples_per_second", "train_step_flops", "train_flops", "peak_rss_bytes",
              "checkpoint_bytes", "last_checkpoint_bytes"):
    if record.get(key) is not None:
      out[key] = float(record[key])
  return out
