"""Accelerator check: train-step MFU, the largest global batch that fits, evaluation throughput.

One prepared script for the day a GPU or TPU is lent for a short while: on one chip it finishes in
under 8 minutes (`--budget_seconds`, default 420) and writes one JSON of figures.

  python benchmarks/accelerator_check.py --out=accelerator_check.json
  python benchmarks/accelerator_check.py --smoke --out=/tmp/check.json   # CPU, tiny shapes

`--smoke` runs every part on tiny shapes in float32 on whatever backend there is, in seconds; the
test suite runs it (tests/test_benchmarks.py) so the script cannot rot between leases.

Everything runs on the first local device alone (a mesh of one), with XLM-R-base shapes (12
layers, hidden 768, vocabulary 250,002; random weights: a timing needs no checkpoint) and
`model.dtype=auto` (bfloat16 compute with float32 parameters on GPU/TPU):

1. Train-step MFU at passage lengths `--seq_lens` (128, 256; queries `--query_len` = 32 tokens)
   and global batch `--batch_size`: the real jitted `hybrid_jax.train` step (AdamW, InfoNCE over
   in-batch negatives, dropout on), the median of `--steps` steps after a warm-up step. FLOPs are
   counted with benchmarks/flops.py's rules (matmuls only, training = 3 x forward) from the model's
   own shapes; MFU = FLOPs / step time / the chip's dense bf16 peak (`PEAK_TFLOPS`, by device
   kind; an unknown kind reports the achieved TFLOP/s and `mfu: null`).
2. The largest global batch that fits at the first passage length, with the plain step and with
   the gradient cache (`--grad_cache_chunk_size` rows per chunk): a candidate fits when its step
   compiles and its compiled memory (arguments + outputs + temporaries, XLA's memory analysis)
   stays within the device's memory limit (`memory_stats()["bytes_limit"]`, or
   `--memory_limit_bytes`). Doubling from `--batch_size` to the first failure or `--max_batch`,
   then bisecting to a multiple of `--batch_granularity`; the largest fitting size is then run for
   one real step to confirm. The search of each mode stops when its share of the budget is spent
   and reports the bounds it proved (`fits`, `fails`).
3. Evaluation throughput: the jitted passage encoder (forward only, embeddings copied to the host,
   as the evaluator runs it) in sequences/s at each passage length, batch `--eval_batch_size`.

Output: one JSON object (`--out`, also printed): machine (`hybrid_jax.machine.one_line`), device,
settings, `train_step` rows (seq_len, step_seconds, examples_per_second, flops_per_step,
achieved_tflops, mfu), `max_global_batch` (plain / grad_cache: fits, fails, confirmed, memory
bytes), `eval` rows, and `elapsed_seconds`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flops  # noqa: E402  (benchmarks/flops.py: the FLOP counting rules)

from hybrid_jax import config_lib  # noqa: E402
from hybrid_jax import diagnostics  # noqa: E402
from hybrid_jax import machine  # noqa: E402
from hybrid_jax import models  # noqa: E402
from hybrid_jax import optimizer as optimizer_lib  # noqa: E402
from hybrid_jax import sharding  # noqa: E402
from hybrid_jax import train  # noqa: E402

# Dense bfloat16 peak TFLOP/s by `device_kind` substring (vendor data sheets; SXM parts for GPUs).
PEAK_TFLOPS = (
    ("H200", 989.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L4", 121.0),
    ("A10", 125.0),
    ("TPU v6", 918.0),
    ("TPU v5p", 459.0),
    ("TPU v5 lite", 197.0),
    ("TPU v5e", 197.0),
    ("TPU v4", 275.0),
)

SMOKE_MODEL = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=128, dtype="float32")


def peak_tflops(device_kind: str) -> float | None:
  """Dense bf16 peak of a device kind, or None when the kind is not in `PEAK_TFLOPS`."""
  for name, peak in PEAK_TFLOPS:
    if name.lower() in device_kind.lower():
      return peak
  return None


def _config(args, batch_size: int, grad_cache_chunk_size: int = 0):
  config = config_lib.default_config(f"model={'tiny' if args.smoke else 'xlm_roberta_base'},"
                                     "langs=en+de,steps=1000")
  config.model.path = ""  # random weights
  if args.smoke:
    config.model.update(SMOKE_MODEL)
  config.optim.warmup_steps = 10
  config.train.global_batch_size = batch_size
  config.train.grad_cache_chunk_size = grad_cache_chunk_size
  return config_lib.validate(config)


def _shape(config) -> flops.Shape:
  m = config.model
  return flops.Shape(m.name, m.vocab_size, m.hidden_size, m.num_hidden_layers, m.intermediate_size,
                     m.max_position_embeddings, m.type_vocab_size)


def _batch(batch_size: int, query_len: int, passage_len: int, vocab_size: int, pad_id: int,
           seed: int = 0, abstract: bool = False, mesh=None):
  """A training batch of random tokens (lengths between half and all of the padded length), as
  arrays on the mesh, or as ShapeDtypeStructs with the batch sharding when `abstract`."""
  shapes = {}
  for side, length in (("query", query_len), ("passage", passage_len)):
    for field in ("input_ids", "attention_mask", "token_type_ids"):
      shapes[f"{side}_{field}"] = (batch_size, length)
  shapes["passage_keys"] = (batch_size,)
  batch_sharding = sharding.batch_sharding(mesh)
  if abstract:
    return {
        k: jax.ShapeDtypeStruct(s, jnp.int32, sharding=batch_sharding) for k, s in shapes.items()
    }
  rng = np.random.default_rng(seed)
  batch = {"passage_keys": np.arange(batch_size, dtype=np.int32)}
  for side, length in (("query", query_len), ("passage", passage_len)):
    lengths = rng.integers(length // 2, length + 1, batch_size)
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    ids = rng.integers(pad_id + 1, vocab_size, (batch_size, length))
    batch[f"{side}_input_ids"] = np.where(mask, ids, pad_id).astype(np.int32)
    batch[f"{side}_attention_mask"] = mask
    batch[f"{side}_token_type_ids"] = np.zeros_like(mask)
  return jax.device_put(batch, batch_sharding)


class _Step:
  """One config's jitted train step, initial state and compiled executables on a one-device mesh."""

  def __init__(self, config, mesh):
    self.config, self.mesh = config, mesh
    model = models.create_model(config.model, seed=0)
    optimizer = optimizer_lib.make_optimizer(config.optim, config.train.num_steps)
    graphdef, params = train.init_params(model, config.loss)
    self.graphdef = graphdef
    self.state = jax.device_put(
        train.create_train_state(params, optimizer, config.seed), sharding.replicated(mesh))
    self.step = train.make_train_step(graphdef, config, optimizer, mesh)
    self.compiled = {}  # (batch_size, query_len, passage_len) -> `compile_step`'s result

  def batch(self, batch_size, query_len, passage_len, **kwargs):
    m = self.config.model
    return _batch(batch_size, query_len, passage_len, m.vocab_size, m.pad_token_id, mesh=self.mesh,
                  **kwargs)


def time_train_steps(step: _Step, executable, batch_size: int, query_len: int, passage_len: int,
                     steps: int) -> float | None:
  """Median seconds of `steps` train steps of `executable` (`compile_step`'s, for this shape)
  after one warm-up step (None for steps=0: the warm-up step alone)."""
  batch = step.batch(batch_size, query_len, passage_len)
  state = step.state
  state, metrics = executable(state, batch)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = executable(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  step.state = state
  return statistics.median(times) if times else None


def compile_step(step: _Step, batch_size: int, query_len: int, passage_len: int):
  """(compiled step at `batch_size`, device bytes from XLA's memory analysis: arguments +
  outputs + temporaries - donated aliases, or None where the backend gives no analysis), compiled
  once per shape (kept in `step.compiled`: the MFU row, the batch search and its confirming step
  share it). Raises what the compiler raises (RESOURCE_EXHAUSTED when the step cannot fit)."""
  key = (batch_size, query_len, passage_len)
  if key not in step.compiled:
    abstract = step.batch(batch_size, query_len, passage_len, abstract=True)
    compiled = step.step.lower(step.state, abstract).compile()
    memory = diagnostics.memory_summary(compiled)
    step.compiled[key] = compiled, None if memory is None else memory["total_bytes"]
  return step.compiled[key]


def search_largest(fits, start: int, granularity: int, max_batch: int, deadline: float) -> dict:
  """Doubling (or halving, when `start` does not fit) then bisection search for the largest
  global batch, a multiple of `granularity`, for which `fits(size) -> (ok, bytes or None)` holds
  (assumed monotone in size). Returns {fits, fails, bytes_at_fits, probes, stopped_early}: `fits`
  is None when nothing down to `granularity` fits, `fails` None when everything up to `max_batch`
  fits; `stopped_early` when `deadline` (a time.perf_counter value) cut the search short."""
  probes = []

  def probe(size):
    ok, used = fits(size)
    probes.append({"global_batch_size": size, "bytes": used, "fits": ok})
    return ok, used

  fit, fail, fit_bytes, stopped = None, None, None, False
  size = start
  while True:  # doubling from `start` (halving first while `start` itself does not fit)
    if time.perf_counter() > deadline:
      stopped = True
      break
    ok, used = probe(size)
    if ok:
      fit, fit_bytes = size, used
      if fail is not None or size * 2 > max_batch:
        break
      size *= 2
    else:
      fail = size
      if fit is not None or size // 2 < granularity:
        break
      size //= 2
  while fit is not None and fail is not None and fail - fit > granularity:
    if time.perf_counter() > deadline:
      stopped = True
      break
    middle = (fit + fail) // 2 // granularity * granularity
    if middle <= fit:
      break
    ok, used = probe(middle)
    if ok:
      fit, fit_bytes = middle, used
    else:
      fail = middle
  return {
      "fits": fit, "fails": fail, "bytes_at_fits": fit_bytes, "probes": probes,
      "stopped_early": stopped
  }


def memory_fits(step: _Step, limit: int | None, query_len: int, passage_len: int):
  """`fits(batch_size) -> (ok, bytes)` for `search_largest`: the step compiles and its compiled
  memory is within `limit` bytes (no limit, or no memory analysis: compiling is enough)."""

  def fits(batch_size):
    try:
      _, used = compile_step(step, batch_size, query_len, passage_len)
    except Exception as e:  # pylint: disable=broad-except
      if not _out_of_memory(e):
        raise
      return False, None
    return limit is None or used is None or used <= limit, used

  return fits


def _out_of_memory(error: Exception) -> bool:
  return "RESOURCE_EXHAUSTED" in str(error) or "out of memory" in str(error).lower()


def eval_throughput(step: _Step, batch_size: int, seq_len: int, min_seconds: float) -> float:
  """Sequences/s of the jitted passage encoder at [batch_size, seq_len], embeddings to host."""
  graphdef = step.graphdef

  @jax.jit
  def encode(params, input_ids, attention_mask):
    return nnx.merge(graphdef, params).encode_passages(input_ids, attention_mask)

  batch = step.batch(batch_size, 8, seq_len)
  params = step.state.params["model"]  # the state is donated by each step: read it now
  ids, mask = batch["passage_input_ids"], batch["passage_attention_mask"]
  np.asarray(encode(params, ids, mask))
  count, start = 0, time.perf_counter()
  while count < 3 or time.perf_counter() - start < min_seconds:
    np.asarray(encode(params, ids, mask))
    count += 1
  return batch_size * count / (time.perf_counter() - start)


def run(args) -> dict:
  """All three measurements; returns the JSON-able figures."""
  t0 = time.perf_counter()
  device = jax.local_devices()[0]
  mesh = sharding.make_mesh(devices=[device])
  seq_lens = [int(s) for s in args.seq_lens.split(",")]
  stats = device.memory_stats() or {}
  limit = args.memory_limit_bytes or stats.get("bytes_limit")
  peak = peak_tflops(device.device_kind)
  plain = _Step(_config(args, args.batch_size), mesh)
  out = {
      "machine": machine.one_line(devices=[device]), "device": {
          "platform": device.platform, "kind": device.device_kind, "memory_limit_bytes": limit,
          "peak_bf16_tflops": peak
      }, "jax": jax.__version__, "settings": {k: v for k, v in vars(args).items() if k != "out"},
      "model": {
          "name": plain.config.model.name,
          "dtype": models.EncoderConfig.from_model_config(plain.config.model).dtype,
          "params": flops.num_params(_shape(plain.config))
      }, "train_step": [], "max_global_batch": {}, "eval": []
  }

  for seq_len in seq_lens:
    executable, _ = compile_step(plain, args.batch_size, args.query_len, seq_len)
    seconds = time_train_steps(plain, executable, args.batch_size, args.query_len, seq_len,
                               args.steps)
    step_flops = flops.step_flops(_shape(plain.config), args.query_len, seq_len,
                                  args.batch_size)["total"]
    achieved = step_flops / seconds / 1e12
    out["train_step"].append({
        "seq_len": seq_len, "global_batch_size": args.batch_size, "step_seconds": seconds,
        "examples_per_second": args.batch_size / seconds, "flops_per_step": step_flops,
        "achieved_tflops": achieved, "mfu": achieved / peak if peak else None
    })
    print(json.dumps(out["train_step"][-1]), flush=True)

  for seq_len in seq_lens:
    rate = eval_throughput(plain, args.eval_batch_size, seq_len, args.eval_seconds)
    out["eval"].append({
        "seq_len": seq_len, "batch_size": args.eval_batch_size, "sequences_per_second": rate
    })
    print(json.dumps(out["eval"][-1]), flush=True)

  remaining = args.budget_seconds - (time.perf_counter() - t0)
  modes = (("plain", 0, args.batch_size), ("grad_cache", args.grad_cache_chunk_size,
                                           args.grad_cache_chunk_size))
  for i, (name, chunk, start) in enumerate(modes):
    deadline = time.perf_counter() + max(0.0, remaining) / (len(modes) - i) * 0.8
    step = plain if not chunk else _Step(_config(args, start, chunk), mesh)
    granularity = max(args.batch_granularity, chunk)
    found = search_largest(
        memory_fits(step, limit, args.query_len, seq_lens[0]), start, granularity, args.max_batch,
        deadline)
    found["confirmed"] = None
    if found["fits"]:
      try:  # one real step at the largest size that fits, with the executable the search built
        executable, _ = compile_step(step, found["fits"], args.query_len, seq_lens[0])
        time_train_steps(step, executable, found["fits"], args.query_len, seq_lens[0], 0)
        found["confirmed"] = True
      except Exception as e:  # pylint: disable=broad-except
        if not _out_of_memory(e):
          raise
        found["confirmed"] = False
    found.update(seq_len=seq_lens[0], chunk_size=chunk or None)
    out["max_global_batch"][name] = found
    print(json.dumps({name: {k: v for k, v in found.items() if k != "probes"}}), flush=True)
    remaining = args.budget_seconds - (time.perf_counter() - t0)
  out["elapsed_seconds"] = time.perf_counter() - t0
  return out


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="accelerator_check.json", help="Where the JSON goes.")
  parser.add_argument("--smoke", action="store_true",
                      help="Tiny shapes in float32 (CPU test mode): overrides the sizes below.")
  parser.add_argument("--seq_lens", default="128,256", help="Passage lengths (tokens).")
  parser.add_argument("--query_len", type=int, default=32, help="Query length (tokens).")
  parser.add_argument("--batch_size", type=int, default=256,
                      help="Global batch for the MFU rows; the plain search starts here.")
  parser.add_argument("--steps", type=int, default=10, help="Timed steps per MFU row.")
  parser.add_argument("--grad_cache_chunk_size", type=int, default=256)
  parser.add_argument("--max_batch", type=int, default=16384,
                      help="The search stops here (a step at 16k rows takes seconds).")
  parser.add_argument("--batch_granularity", type=int, default=64)
  parser.add_argument("--memory_limit_bytes", type=int, default=0,
                      help="Memory limit for the search; 0 = the device's bytes_limit.")
  parser.add_argument("--eval_batch_size", type=int, default=512)
  parser.add_argument("--eval_seconds", type=float, default=5.0)
  parser.add_argument("--budget_seconds", type=float, default=420.0,
                      help="Wall-time budget; the batch searches share what the rest leaves.")
  args = parser.parse_args(argv)
  if args.smoke:
    args.seq_lens, args.query_len, args.batch_size, args.steps = "16", 8, 8, 2
    args.grad_cache_chunk_size, args.max_batch, args.batch_granularity = 8, 16, 8
    args.eval_batch_size, args.eval_seconds, args.budget_seconds = 16, 0.2, 600.0
  return args


def main(argv=None):
  args = parse_args(argv)
  out = run(args)
  with open(args.out, "w") as f:
    json.dump(out, f, indent=2)
  print(f"wrote {args.out} ({out['elapsed_seconds']:.0f} s on {out['machine']})")


if __name__ == "__main__":
  main()
