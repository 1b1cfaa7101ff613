"""Forward throughput (sequences/s) of a model preset, jitted and warm, one line per length.

  python benchmarks/encoder_forward.py                      # tiny model, lengths 24 and 64
  python benchmarks/encoder_forward.py --preset=tiny --batch_size=64 --lengths=32,128
  python benchmarks/encoder_forward.py --smoke              # batch 2, length 8 (the test suite)

Inputs are random token ids with random lengths (at least half the padded length), padded to the
static length so the step compiles once per length. The time covers the forward pass and the
transfer of the [batch, D] embeddings back to the host.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hybrid_jax import config_lib
from hybrid_jax import machine
from hybrid_jax.models import create_model


def _batch(rng, batch_size, seq_len, config):
  lengths = rng.integers(seq_len // 2, seq_len + 1, batch_size)
  mask = (np.arange(seq_len)[None] < lengths[:, None]).astype(np.int32)
  ids = rng.integers(config.pad_token_id + 1, config.vocab_size, (batch_size, seq_len))
  return jnp.asarray(np.where(mask, ids, config.pad_token_id), jnp.int32), jnp.asarray(mask)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="tiny", help="A model preset in configs/models/.")
  parser.add_argument("--batch_size", type=int, default=64, help="Sequences per forward pass.")
  parser.add_argument(
      "--lengths", default="24,64", help="Comma-separated padded lengths: query_max_len and "
      "passage_max_len of the default config.")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="Compute dtype.")
  parser.add_argument("--min_seconds", type=float, default=3.0,
                      help="Time each length at least this long.")
  parser.add_argument("--smoke", action="store_true",
                      help="Batch 2, length 8, 3 calls: the test suite's quick run.")
  args = parser.parse_args(argv)
  if args.smoke:
    args.batch_size, args.lengths, args.min_seconds = 2, "8", 0.0
  return args


def main(argv=None):
  args = parse_args(argv)
  config = config_lib.model_preset(args.preset)
  config.dtype = args.dtype
  graphdef, params = nnx.split(create_model(config, seed=0))

  @jax.jit
  def forward(params, input_ids, attention_mask):
    return nnx.merge(graphdef, params).encode_queries(input_ids, attention_mask)

  rng = np.random.default_rng(0)
  print(f"preset={config.name} dtype={config.dtype} batch_size={args.batch_size} "
        f"backend={jax.default_backend()} devices={jax.device_count()}")
  print(f"machine: {machine.one_line(devices=jax.devices())}")
  for seq_len in map(int, args.lengths.split(",")):
    input_ids, mask = _batch(rng, args.batch_size, seq_len, config)
    start = time.perf_counter()
    forward(params, input_ids, mask).block_until_ready()
    compile_seconds = time.perf_counter() - start
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < args.min_seconds:
      np.asarray(forward(params, input_ids, mask))
      steps += 1
    seconds = (time.perf_counter() - start) / steps
    print(f"seq_len={seq_len:4d}  {args.batch_size / seconds:9.1f} sequences/s  "
          f"{seconds * 1e3:8.2f} ms/batch  (first call incl. compile {compile_seconds:.1f} s)")


if __name__ == "__main__":
  main()
