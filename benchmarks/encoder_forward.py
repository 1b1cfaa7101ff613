"""Forward throughput (sequences/s) of a model preset, jitted and warm, one line per length.

  python benchmarks/encoder_forward.py                      # tiny model, lengths 32 and 128
  python benchmarks/encoder_forward.py --preset=tiny --batch_size=64 --lengths=32,128

Inputs are random token ids with random lengths (at least half the padded length), padded to the
static length so the step compiles once per length. The time covers the forward pass and the
transfer of the [batch, D] embeddings back to the host.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx

from hybrid_jax import config_lib
from hybrid_jax.models import create_model

_PRESET = flags.DEFINE_string("preset", "tiny", "A model preset in configs/models/.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Sequences per forward pass.")
_LENGTHS = flags.DEFINE_list(
    "lengths", ["24", "64"], "Padded lengths: query_max_len and "
    "passage_max_len of the default config.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_MIN_SECONDS = flags.DEFINE_float("min_seconds", 3.0, "Time each length at least this long.")


def _batch(rng, batch_size, seq_len, config):
  lengths = rng.integers(seq_len // 2, seq_len + 1, batch_size)
  mask = (np.arange(seq_len)[None] < lengths[:, None]).astype(np.int32)
  ids = rng.integers(config.pad_token_id + 1, config.vocab_size, (batch_size, seq_len))
  return jnp.asarray(np.where(mask, ids, config.pad_token_id), jnp.int32), jnp.asarray(mask)


def main(argv):
  del argv
  config = config_lib.model_preset(_PRESET.value)
  config.dtype = _DTYPE.value
  graphdef, params = nnx.split(create_model(config, seed=0))

  @jax.jit
  def forward(params, input_ids, attention_mask):
    return nnx.merge(graphdef, params).encode_queries(input_ids, attention_mask)

  rng = np.random.default_rng(0)
  print(f"preset={config.name} dtype={config.dtype} batch_size={_BATCH_SIZE.value} "
        f"backend={jax.default_backend()} devices={jax.device_count()}")
  for seq_len in map(int, _LENGTHS.value):
    input_ids, mask = _batch(rng, _BATCH_SIZE.value, seq_len, config)
    start = time.perf_counter()
    forward(params, input_ids, mask).block_until_ready()
    compile_seconds = time.perf_counter() - start
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < _MIN_SECONDS.value:
      np.asarray(forward(params, input_ids, mask))
      steps += 1
    seconds = (time.perf_counter() - start) / steps
    print(f"seq_len={seq_len:4d}  {_BATCH_SIZE.value / seconds:9.1f} sequences/s  "
          f"{seconds * 1e3:8.2f} ms/batch  (first call incl. compile {compile_seconds:.1f} s)")


if __name__ == "__main__":
  app.run(main)
