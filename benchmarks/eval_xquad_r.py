"""Wall time of a full XQuAD-R evaluation (11 languages, 13,090 queries, 13,014 candidates) with
the default tiny model (random init: the timing does not depend on the weights).

    python benchmarks/eval_xquad_r.py [--workdir=/tmp/hj_bench] [--batch_size=128]
    python benchmarks/eval_xquad_r.py --smoke   # xquad_r:eval en+de, a 1-layer hidden-32 model

Prints the split (tokenize / encode / score + metrics / total), candidates encoded per second, the
encoder's achieved GFLOP/s next to a plain matmul's measured at the same time (this machine is often
shared: the load average is printed too), and the encode time a perfect matmul rate would give; the results (and the trained tokenizer, cached in --workdir) go to
<workdir>/eval/xquad_r_all/benchmark/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hybrid_jax import config_lib  # noqa: E402
from hybrid_jax import data as data_lib  # noqa: E402
from hybrid_jax import encoding  # noqa: E402
from hybrid_jax import evaluators  # noqa: E402
from hybrid_jax import machine  # noqa: E402
from hybrid_jax import models  # noqa: E402
from hybrid_jax import retrievers  # noqa: E402
from hybrid_jax import sharding  # noqa: E402
from hybrid_jax.models import tokenizer as tokenizer_lib  # noqa: E402


def matmul_gflops(rows: int = 8192, width: int = 256, out: int = 1024, repeats: int = 5) -> float:
  """Measured float32 matmul rate of this machine now (the reference for the encode rate)."""
  a, b = jnp.ones((rows, width)), jnp.ones((width, out))
  matmul = jax.jit(jnp.matmul)
  matmul(a, b).block_until_ready()
  t0 = time.perf_counter()
  for _ in range(repeats):
    matmul(a, b).block_until_ready()
  return 2 * rows * width * out * repeats / (time.perf_counter() - t0) / 1e9


def encoder_flops(config, num_rows: int, seq_len: int) -> float:
  """Forward FLOPs of `num_rows` sequences of `seq_len` tokens (dense layers and attention)."""
  h, ff = config.hidden_size, config.intermediate_size
  per_token = 2 * (4 * h * h + 2 * h * ff) + 2 * 2 * seq_len * h
  return float(num_rows * seq_len * config.num_hidden_layers * per_token)


# --smoke: the test suite's quick run (a temporary workdir, a few seconds).
SMOKE_MODEL = dict(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=64)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", default="/tmp/hj_bench_eval")
  parser.add_argument("--dataset", default="xquad_r:all")
  parser.add_argument("--languages", default="", help="Comma-separated; default: all of them.")
  parser.add_argument("--batch_size", type=int, default=config_lib.DEFAULT_EVAL_BATCH_SIZE)
  parser.add_argument("--query_max_len", type=int, default=config_lib.DEFAULT_QUERY_MAX_LEN)
  parser.add_argument("--passage_max_len", type=int, default=config_lib.DEFAULT_PASSAGE_MAX_LEN)
  parser.add_argument(
      "--smoke", action="store_true", help="xquad_r:eval in en and de, a 1-layer hidden-32 model "
      "(1000-token vocabulary), 16/32-token queries/passages, a temporary workdir: the test "
      "suite's quick run.")
  args = parser.parse_args(argv)
  if args.smoke:
    with tempfile.TemporaryDirectory(prefix="hj_bench_eval_") as workdir:
      args.workdir, args.dataset, args.languages = workdir, "xquad_r:eval", "en,de"
      args.batch_size, args.query_max_len, args.passage_max_len = 16, 16, 32
      run(args, SMOKE_MODEL)
  else:
    run(args)


def run(args, model_overrides=None):
  """Trains (or reads) the tokenizer in `args.workdir`, evaluates a random tiny model, prints."""
  t0 = time.perf_counter()
  train_data = data_lib.load("xquad_r:train")
  model_config = config_lib.model_preset("tiny")
  if model_overrides:
    model_config.update(model_overrides)
  tokenizer = tokenizer_lib.get_or_train_default_tokenizer(args.workdir, train_data.texts,
                                                           vocab_size=model_config.vocab_size)
  with model_config.unlocked():
    model_config.vocab_size = len(tokenizer)
  model = models.create_model(model_config, seed=0)
  mesh = sharding.make_mesh()
  setup_seconds = time.perf_counter() - t0

  encoder = encoding.Encoder(*models.split_for_encoding(model), mesh, args.batch_size)
  retriever = retrievers.DenseRetriever(encoder, tokenizer, query_max_len=args.query_max_len,
                                        passage_max_len=args.passage_max_len)
  output_dir = evaluators.output_dir_for(args.workdir, args.dataset, None, "benchmark")
  results = evaluators.evaluate(retriever, args.dataset,
                                languages=args.languages.split(",") if args.languages else None,
                                model_name="tiny (random init)", output_dir=output_dir)
  timing = results["timing"]
  counts = results["counts"]
  num_queries = sum(c["examples"] for c in counts.values())
  num_candidates = sum(c["candidates"] for c in counts.values())
  flops = (
      encoder_flops(model.config, num_queries, args.query_max_len)
      + encoder_flops(model.config, num_candidates, args.passage_max_len))
  reference_gflops = matmul_gflops()
  summary = {
      "machine": machine.one_line(devices=jax.devices()),
      "dataset": args.dataset,
      "languages": list(counts),
      "num_queries": num_queries,
      "num_candidates": num_candidates,
      "num_devices": int(mesh.size),
      "setup_seconds (tokenizer + model init, not timed below)": round(setup_seconds, 2),
      **{key: round(value, 2) for key, value in timing.items()},
      "encode_gflops (upper bound: all rows at full length)": round(
          flops / 1e9 / timing["encode_seconds"], 1),
      "matmul_gflops_now (reference)": round(reference_gflops, 1),
      "encode_floor_seconds_at_reference": round(flops / 1e9 / reference_gflops, 1),
      "load_average": [round(x, 2) for x in os.getloadavg()],
      "multilingual_map (random init)": round(results["metrics"]["map_multi_mean"], 4),
      "output_dir": output_dir,
  }
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  main()
