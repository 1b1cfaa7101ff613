"""Compiled train-step FLOPs, full fine-tuning vs LoRA: the frozen kernels' weight gradients are
not computed.

Both steps are `train.make_train_step` for the same model, batch and lengths, compiled for one
device; the FLOPs are XLA's cost analysis of the compiled executables (`compiled.cost_analysis()`,
counted by XLA from the optimised HLO, a multiply-add = 2 FLOPs). The full step trains every
parameter but the frozen word embeddings (`optim.frozen`, the default run's); the LoRA step
(`model.lora.rank`, default targets: attention query/key/value/output and both feed-forward
kernels) trains the adapters only. On paper, the weight gradients of the adapted kernels cost
2 * tokens * in * out FLOPs each (x^T dy), a third of those kernels' training FLOPs; the script
prints that count and checks that the LoRA step saves at least 90 % of it (exit status 1
otherwise): XLA would keep them if autodiff formed them. Beside each XLA count it prints the
matmul FLOP model of the run's cost record (`hybrid_jax.cost.config_step_flops` with the run's
trainable set, `analytic_step_flops` in cost.json) and checks that it is within 10 % of XLA's
(exit status 1 otherwise).

`--timed_cycles=N`: then the wall and process CPU time of the full step, the frozen base's step
(rank 0 with every parameter frozen but the LayerNorm scales: the backward pass through every
layer that LoRA needs, without the adapters' cost) and the LoRA step, one step of each in turn
for N cycles (so drifting load from other processes hits all three), each after two untimed
steps. full / this is the median of the per-cycle ratios. On a machine shared with other jobs
report the printed load average with the figures.

The model has the architecture of multilingual-e5-small (12 layers, hidden 384, intermediate
1536; random weights: FLOPs do not depend on values) with a 1000-row vocabulary (the word
embeddings are frozen on both sides and cost no matmul); `--smoke`: the tiny model (configs/
models/tiny.py: 1 layer, hidden 512, intermediate 1024), rank 4, batch 8, 8/16 tokens, one timed
cycle (seconds; the test suite runs it). `--out=FILE` writes the figures as JSON.

  python benchmarks/lora_step_flops.py                 # e5-small shape, batch 32, 24/64 tokens
  python benchmarks/lora_step_flops.py --rank=64 --global_batch_size=64
  python benchmarks/lora_step_flops.py --timed_cycles=9   # + step times: full, frozen base, LoRA
  python benchmarks/lora_step_flops.py --smoke
"""

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

from hybrid_jax import config_lib
from hybrid_jax import cost
from hybrid_jax import machine
from hybrid_jax import models
from hybrid_jax import optimizer as optimizer_lib
from hybrid_jax import sharding
from hybrid_jax import train
from hybrid_jax.models import lora as lora_lib

# `optim.frozen` of the frozen base's step: every parameter but the LayerNorm scales.
FROZEN_BASE = "embeddings|kernel|bias"


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--rank", type=int, default=16, help="also compiled at twice this rank")
  parser.add_argument("--global_batch_size", type=int, default=32)
  parser.add_argument("--query_max_len", type=int, default=24)
  parser.add_argument("--passage_max_len", type=int, default=64)
  parser.add_argument(
      "--timed_cycles", type=int, default=0,
      help="> 0: also time the full, frozen-base and LoRA steps, in turn, this many cycles")
  parser.add_argument(
      "--smoke", action="store_true",
      help="the tiny model, rank 4, batch 8, 8/16 tokens, one timed cycle (seconds)")
  parser.add_argument("--out", default="", help="write the figures to this JSON file")
  args = parser.parse_args(argv)
  if args.smoke:
    args.rank, args.global_batch_size, args.query_max_len, args.passage_max_len = 4, 8, 8, 16
    args.timed_cycles = 1
  return args


def make_config(args, rank: int):
  """The default run's config with the e5-small architecture (or the tiny model), random init
  and a 1000-row vocabulary; LoRA of `rank` (0 = full fine-tuning)."""
  config = config_lib.default_config("model=tiny" if args.smoke else "model=multilingual_e5_small")
  config.model.path = ""  # random weights of the preset's architecture
  config.model.vocab_size = 1000
  config.train.global_batch_size = args.global_batch_size
  config.data.update(query_max_len=args.query_max_len, passage_max_len=args.passage_max_len)
  config.optim.frozen = "word_embeddings"
  config.model.lora.rank = rank  # set after the preset: validation would ask for model.path
  return config


def random_batch(args) -> dict[str, np.ndarray]:
  """Token arrays [batch, max_len] of random ids, every row full length (FLOPs are the same)."""
  rng = np.random.default_rng(0)
  batch = {"passage_keys": np.arange(args.global_batch_size, dtype=np.int32)}
  for prefix, length in (("query", args.query_max_len), ("passage", args.passage_max_len)):
    shape = (args.global_batch_size, length)
    batch[f"{prefix}_input_ids"] = rng.integers(3, 1000, shape).astype(np.int32)
    batch[f"{prefix}_attention_mask"] = np.ones(shape, np.int32)
    batch[f"{prefix}_token_type_ids"] = np.zeros(shape, np.int32)
  return batch


def compiled_step(config, batch):
  """(compiled train step, model, its initial train state) for one device."""
  model = models.create_model(config.model, seed=0)
  train.add_lora(config, model)
  optimizer = optimizer_lib.make_optimizer(config.optim, config.train.num_steps)
  graphdef, params = train.init_params(model, config.loss)
  state = train.create_train_state(params, optimizer, config.seed, train.frozen_pattern(config))
  mesh = sharding.make_mesh(1)
  step = train.make_train_step(graphdef, config, optimizer, mesh)
  return step.lower(state, batch).compile(), model, state


def flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older JAX: one dict per program
    analysis = analysis[0]
  return float(analysis["flops"])


def kernel_gradient_flops(model, tokens: int) -> float:
  """2 * tokens * in * out summed over the adapted kernels: their weight gradients x^T dy."""
  return sum(2.0 * tokens * layer.in_features * layer.out_features
             for layer in lora_lib.adapted_layers(model).values())


def time_steps(steps: dict[str, tuple], batch, cycles: int) -> None:
  """Prints each step's median wall and process CPU milliseconds over `cycles` cycles of one step
  of each (in turn, after two untimed steps each), and full / it, the median per-cycle ratio.
  `steps`: name -> (compiled step, its train state), the first the full step."""
  states = {}
  for name, (step, state) in steps.items():
    for _ in range(2):
      state, _ = step(state, batch)
    states[name] = jax.block_until_ready(state)
  wall, cpu = ({name: [] for name in steps} for _ in range(2))
  for _ in range(cycles):
    for name, (step, _) in steps.items():
      start_wall, start_cpu = time.perf_counter(), time.process_time()
      states[name], _ = step(states[name], batch)
      jax.block_until_ready(states[name])
      wall[name].append(time.perf_counter() - start_wall)
      cpu[name].append(time.process_time() - start_cpu)
  load = os.getloadavg()
  print(f"step time, {cycles} cycles of one step each in turn (load average at the end "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {machine.one_line()}):")
  full = next(iter(steps))
  for name in steps:
    print(f"  {name + ':':40s} {np.median(wall[name]) * 1e3:8.1f} ms wall, "
          f"{np.median(cpu[name]) * 1e3:8.1f} ms CPU; full / this: wall "
          f"{np.median(np.divide(wall[full], wall[name])):.3f}, CPU "
          f"{np.median(np.divide(cpu[full], cpu[name])):.3f}")


def main(argv=None) -> int:
  args = parse_args(argv)
  batch = random_batch(args)
  print(f"machine: {machine.one_line()}")
  steps, models, runnable = [], {}, {}
  for rank in (0, args.rank, 2 * args.rank):
    config = make_config(args, rank)
    compiled, models[rank], state = compiled_step(config, batch)
    runnable[rank] = (compiled, state)
    steps.append({
        "rank": rank, "xla_flops": flops(compiled),
        "analytic_flops": cost.config_step_flops(config, train.frozen_pattern(config))
    })
  full_flops, lora_flops, doubled_flops = (s["xla_flops"] for s in steps)
  tokens = args.global_batch_size * (args.query_max_len + args.passage_max_len)
  # The adapters' own cost is linear in the rank: rank 0 is the frozen model's step.
  frozen_flops = lora_flops - (doubled_flops - lora_flops)
  saved = full_flops - frozen_flops
  expected = kernel_gradient_flops(models[args.rank], tokens)
  print(f"train step, batch {args.global_batch_size}, {args.query_max_len}/"
        f"{args.passage_max_len} tokens ({'tiny model' if args.smoke else 'e5-small shape'}), "
        "XLA's count and the cost record's FLOP model:")
  for step in steps:
    name = f"LoRA rank {step['rank']:3d}:" if step["rank"] else "full fine-tuning:"
    step["analytic_over_xla"] = step["analytic_flops"] / step["xla_flops"]
    print(f"  {name:18s} {step['xla_flops'] / 1e9:10.3f} GFLOP  (full / this = "
          f"{full_flops / step['xla_flops']:.3f}); model {step['analytic_flops'] / 1e9:.3f} GFLOP "
          f"({step['analytic_over_xla']:.3f} of XLA's)")
  print(f"  LoRA extrapolated to rank 0 (the frozen base's step): {frozen_flops / 1e9:.3f} GFLOP; "
        f"full - that = {saved / 1e9:.3f} GFLOP; the adapted kernels' weight gradients on paper "
        f"(2 * tokens * in * out): {expected / 1e9:.3f} GFLOP ({saved / expected:.1%})")
  if args.timed_cycles:
    config = make_config(args, 0)
    config.optim.frozen = FROZEN_BASE
    compiled, _, state = compiled_step(config, batch)
    print(f"  frozen base (rank 0, only the LayerNorm scales trained): "
          f"{flops(compiled) / 1e9:.3f} GFLOP")
    time_steps(
        {
            "full fine-tuning": runnable[0], "frozen base (LayerNorm scales trained)":
                (compiled, state), f"LoRA rank {args.rank}": runnable[args.rank]
        }, jax.device_put(batch), args.timed_cycles)
  if args.out:
    with open(args.out, "w") as f:
      json.dump(
          {
              "machine": machine.one_line(), "steps": steps, "saved_flops": saved,
              "kernel_gradient_flops": expected
          }, f, indent=2)
  status = 0
  if saved < 0.9 * expected:
    print("FAIL: the LoRA step still computes the frozen kernels' weight gradients")
    status = 1
  if any(abs(step["analytic_over_xla"] - 1) > 0.1 for step in steps):
    print("FAIL: the FLOP model of hybrid_jax.cost is more than 10 % from XLA's count")
    status = 1
  return status


if __name__ == "__main__":
  sys.exit(main())
