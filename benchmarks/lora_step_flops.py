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
otherwise): XLA would keep them if autodiff formed them.

The model has the architecture of multilingual-e5-small (12 layers, hidden 384, intermediate
1536; random weights: FLOPs do not depend on values) with a 1000-row vocabulary (the word
embeddings are frozen on both sides and cost no matmul); `--smoke`: a 1-layer, hidden-32 model,
rank 2, batch 8 (seconds; the test suite runs it).

  python benchmarks/lora_step_flops.py                 # e5-small shape, batch 32, 24/64 tokens
  python benchmarks/lora_step_flops.py --rank=64 --global_batch_size=64
  python benchmarks/lora_step_flops.py --smoke
"""

import argparse
import sys

import jax
import numpy as np

from hybrid_jax import config_lib
from hybrid_jax import machine
from hybrid_jax import models
from hybrid_jax import optimizer as optimizer_lib
from hybrid_jax import sharding
from hybrid_jax import train
from hybrid_jax.models import lora as lora_lib

SMOKE_MODEL = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--rank", type=int, default=16, help="also compiled at twice this rank")
  parser.add_argument("--global_batch_size", type=int, default=32)
  parser.add_argument("--query_max_len", type=int, default=24)
  parser.add_argument("--passage_max_len", type=int, default=64)
  parser.add_argument("--smoke", action="store_true",
                      help="the smoke model, rank 2, batch 8, 8/16 tokens (seconds)")
  args = parser.parse_args(argv)
  if args.smoke:
    args.rank, args.global_batch_size, args.query_max_len, args.passage_max_len = 2, 8, 8, 16
  return args


def make_config(args, rank: int):
  """The default run's config with the e5-small architecture (or the smoke model), random init
  and a 1000-row vocabulary; LoRA of `rank` (0 = full fine-tuning)."""
  config = config_lib.default_config("model=tiny" if args.smoke else "model=multilingual_e5_small")
  config.model.path = ""  # random weights of the preset's architecture
  config.model.vocab_size = 1000
  if args.smoke:
    config.model.update(SMOKE_MODEL)
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
  """(compiled train step, model) for one device."""
  model = models.create_model(config.model, seed=0)
  train.add_lora(config, model)
  optimizer = optimizer_lib.make_optimizer(config.optim, config.train.num_steps)
  graphdef, params = train.init_params(model, config.loss)
  state = train.create_train_state(params, optimizer, config.seed, train.frozen_pattern(config))
  mesh = sharding.make_mesh(1)
  step = train.make_train_step(graphdef, config, optimizer, mesh)
  return step.lower(state, batch).compile(), model


def flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older JAX: one dict per program
    analysis = analysis[0]
  return float(analysis["flops"])


def kernel_gradient_flops(model, tokens: int) -> float:
  """2 * tokens * in * out summed over the adapted kernels: their weight gradients x^T dy."""
  return sum(2.0 * tokens * layer.in_features * layer.out_features
             for layer in lora_lib.adapted_layers(model).values())


def main(argv=None) -> int:
  args = parse_args(argv)
  batch = random_batch(args)
  print(f"machine: {machine.one_line()}")
  full, _ = compiled_step(make_config(args, 0), batch)
  adapted, model = compiled_step(make_config(args, args.rank), batch)
  doubled, _ = compiled_step(make_config(args, 2 * args.rank), batch)
  tokens = args.global_batch_size * (args.query_max_len + args.passage_max_len)
  full_flops, lora_flops, doubled_flops = flops(full), flops(adapted), flops(doubled)
  # The adapters' own cost is linear in the rank: rank 0 is the frozen model's step.
  frozen_flops = lora_flops - (doubled_flops - lora_flops)
  saved = full_flops - frozen_flops
  expected = kernel_gradient_flops(model, tokens)
  print(f"train step, batch {args.global_batch_size}, {args.query_max_len}/"
        f"{args.passage_max_len} tokens ({'smoke model' if args.smoke else 'e5-small shape'}):")
  print(f"  full fine-tuning:  {full_flops / 1e9:10.3f} GFLOP")
  for rank, value in ((args.rank, lora_flops), (2 * args.rank, doubled_flops)):
    print(f"  LoRA rank {rank:3d}:     {value / 1e9:10.3f} GFLOP  (full / LoRA = "
          f"{full_flops / value:.3f})")
  print(f"  LoRA extrapolated to rank 0 (the frozen base's step): {frozen_flops / 1e9:.3f} GFLOP; "
        f"full - that = {saved / 1e9:.3f} GFLOP; the adapted kernels' weight gradients on paper "
        f"(2 * tokens * in * out): {expected / 1e9:.3f} GFLOP ({saved / expected:.1%})")
  if saved < 0.9 * expected:
    print("FAIL: the LoRA step still computes the frozen kernels' weight gradients")
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
