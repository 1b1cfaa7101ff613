"""Gradient cache: peak memory of the compiled train step, and step time, vs the plain step.

Memory: the tiny model (configs/models/tiny.py; BENCHMARKS.md names the architecture measured),
the default config's query and passage lengths (printed), one CPU device. Each step is only compiled, with
abstract batches (`jax.ShapeDtypeStruct`), and XLA's `memory_analysis()` of the executable gives
argument + output + temp bytes (the donated state is counted in both argument and output; the
alias column is the part they share).

Time: a real run of the same model at a smaller scale (default: global batch 256, chunks of 64,
vs the plain step at 256), random token ids with random lengths, the median of a few steps after
a warm-up step. Dropout is on (the default config) in both. A step compiled for the memory table
is run for the timing when the shapes agree (e.g. the plain step at 256).

  PYTHONPATH=. python benchmarks/grad_cache_memory.py [--batch 4096 --chunk 256] \
      [--time_batch 256 --time_chunk 64 --steps 3]
  PYTHONPATH=. python benchmarks/grad_cache_memory.py --smoke   # tiny shapes (the test suite)
"""

import argparse
import os
import time

import jax
import numpy as np

from hybrid_jax import config_lib
from hybrid_jax import machine
from hybrid_jax import models
from hybrid_jax import optimizer as optimizer_lib
from hybrid_jax import sharding
from hybrid_jax import train

# --smoke: a 1-layer hidden-32 model, 8 / 16-token queries / passages (the test suite's quick run).
SMOKE_MODEL = dict(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=64)


def make_config(global_batch_size: int, chunk_size: int, smoke: bool = False):
  config = config_lib.default_config("model=tiny")
  config.train.global_batch_size = global_batch_size
  config.train.grad_cache_chunk_size = chunk_size
  if smoke:
    config.model.update(SMOKE_MODEL)
    config.data.query_max_len, config.data.passage_max_len = 8, 16
  return config_lib.validate(config)


def batch_shapes(config) -> dict[str, tuple[tuple[int, ...], type]]:
  rows = config.train.global_batch_size
  shapes = {}
  for prefix, length in (("query", config.data.query_max_len), ("passage",
                                                                config.data.passage_max_len)):
    for field in ("input_ids", "attention_mask", "token_type_ids"):
      shapes[f"{prefix}_{field}"] = ((rows, length), np.int32)
  shapes["passage_keys"] = ((rows,), np.int32)
  return shapes


def random_batch(config, seed: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  batch = {}
  for name, (shape, dtype) in batch_shapes(config).items():
    if name == "passage_keys":
      batch[name] = np.arange(shape[0], dtype=dtype)
    elif name.endswith("input_ids"):
      batch[name] = rng.integers(3, config.model.vocab_size, size=shape).astype(dtype)
    elif name.endswith("attention_mask"):
      lengths = rng.integers(4, shape[1] + 1, size=shape[:1])
      batch[name] = (np.arange(shape[1]) < lengths[:, None]).astype(dtype)
    else:
      batch[name] = np.zeros(shape, dtype)
  return batch


def setup(config, mesh):
  model = models.create_model(config.model, seed=config.seed)
  optimizer = optimizer_lib.make_optimizer(config.optim, config.train.num_steps)
  graphdef, params = train.init_params(model, config.loss)
  state = jax.device_put(
      train.create_train_state(params, optimizer, config.seed), sharding.replicated(mesh))
  return train.make_train_step(graphdef, config, optimizer, mesh), state


def compile_step(config, mesh):
  """(compiled train step for `config`'s batch shapes, its initial state, memory figures: XLA's
  argument / output / alias / temp bytes and the compile seconds)."""
  step, state = setup(config, mesh)
  batch = {
      name: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding.batch_sharding(mesh))
      for name, (shape, dtype) in batch_shapes(config).items()
  }
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  analysis = compiled.memory_analysis()
  return compiled, state, {
      "argument": analysis.argument_size_in_bytes, "output": analysis.output_size_in_bytes,
      "alias": analysis.alias_size_in_bytes, "temp": analysis.temp_size_in_bytes,
      "compile_seconds": time.perf_counter() - t0
  }


def seconds_per_step(compiled, state, config, mesh, steps: int) -> float:
  """Median seconds of `steps` calls of the compiled step after a warm-up call."""
  times = []
  for index in range(steps + 1):
    batch = jax.device_put(random_batch(config, index), sharding.batch_sharding(mesh))
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  return float(np.median(times[1:]))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=4096)
  parser.add_argument("--chunk", type=int, default=256)
  parser.add_argument("--time_batch", type=int, default=256)
  parser.add_argument("--time_chunk", type=int, default=64)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument(
      "--smoke", action="store_true", help="A 1-layer hidden-32 model, 8 / 16 tokens, batch 8 in "
      "chunks of 4 for both parts, 1 timed step: the test suite's quick run.")
  args = parser.parse_args(argv)
  if args.smoke:
    args.batch, args.chunk, args.time_batch, args.time_chunk, args.steps = 8, 4, 8, 4, 1
  mesh = sharding.make_mesh(1)
  data = make_config(args.batch, 0, args.smoke).data
  print(f"jax {jax.__version__}, {jax.devices()[0].platform}, 1 device "
        f"({machine.one_line(devices=jax.devices()[:1])}); load average "
        f"{os.getloadavg()[0]:.1f}; tiny model, query/passage {data.query_max_len}/"
        f"{data.passage_max_len} tokens, float32")

  compiled = {}  # (global batch, chunk) -> (compiled step, its state, memory figures)

  def compile_once(batch_size, chunk):
    if (batch_size, chunk) not in compiled:
      compiled[batch_size, chunk] = compile_step(make_config(batch_size, chunk, args.smoke), mesh)
    return compiled[batch_size, chunk]

  mib = lambda b: f"{b / 2**20:,.1f}"
  print("\n| step | global batch | chunk | argument MiB | output MiB | alias MiB | temp MiB "
        "| argument + output + temp MiB |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for batch_size, chunk in ((args.chunk, 0), (args.batch, 0), (args.batch, args.chunk)):
    m = compile_once(batch_size, chunk)[2]
    name = "gradient cache" if chunk else "plain"
    print(
        f"| {name} | {batch_size} | {chunk or '-'} | {mib(m['argument'])} | {mib(m['output'])} "
        f"| {mib(m['alias'])} | {mib(m['temp'])} | "
        f"{mib(m['argument'] + m['output'] + m['temp'])} |", flush=True)

  seconds = {}
  for chunk in (0, args.time_chunk):
    step, state, _ = compile_once(args.time_batch, chunk)
    seconds[chunk] = seconds_per_step(step, state, make_config(args.time_batch, chunk, args.smoke),
                                      mesh, args.steps)
  plain, cached = seconds[0], seconds[args.time_chunk]
  print(f"\nseconds per step, global batch {args.time_batch} (median of {args.steps}): plain "
        f"{plain:.2f}, gradient cache (chunks of {args.time_chunk}) {cached:.2f}, ratio "
        f"{cached / plain:.2f}; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
