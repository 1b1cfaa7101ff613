"""Wall time of a full XQuAD-R evaluation (11 languages, 13,090 queries, 13,014 candidates) with
the default tiny model (random init: the timing does not depend on the weights).

    python benchmarks/eval_xquad_r.py [--workdir=/tmp/hj_bench] [--batch_size=128]

Prints the split (tokenize / encode / score + metrics / total), candidates encoded per second and
the number of devices; the results (and the trained tokenizer, cached in --workdir) go to
<workdir>/eval/xquad_r_all/benchmark/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hybrid_jax import config_lib  # noqa: E402
from hybrid_jax import data as data_lib  # noqa: E402
from hybrid_jax import evaluate  # noqa: E402
from hybrid_jax import models  # noqa: E402
from hybrid_jax import sharding  # noqa: E402
from hybrid_jax.models import tokenizer as tokenizer_lib  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", default="/tmp/hj_bench_eval")
  parser.add_argument("--dataset", default="xquad_r:all")
  parser.add_argument("--batch_size", type=int, default=evaluate.DEFAULT_BATCH_SIZE)
  parser.add_argument("--query_max_len", type=int, default=evaluate.DEFAULT_QUERY_MAX_LEN)
  parser.add_argument("--passage_max_len", type=int, default=evaluate.DEFAULT_PASSAGE_MAX_LEN)
  args = parser.parse_args()

  t0 = time.perf_counter()
  train_data = data_lib.load("xquad_r:train")
  tokenizer = tokenizer_lib.get_or_train_default_tokenizer(
      args.workdir, lambda: tokenizer_lib.parallel_qa_texts(train_data))
  model_config = config_lib.model_preset("tiny")
  with model_config.unlocked():
    model_config.vocab_size = len(tokenizer)
  model = models.create_model(model_config, seed=0)
  mesh = sharding.make_mesh()
  setup_seconds = time.perf_counter() - t0

  retriever = evaluate.DenseRetriever(
      model, tokenizer, mesh, query_max_len=args.query_max_len,
      passage_max_len=args.passage_max_len, batch_size=args.batch_size)
  output_dir = evaluate.output_dir_for(args.workdir, args.dataset, None, "benchmark")
  results = evaluate.evaluate(retriever, args.dataset, model_name="tiny (random init)",
                              output_dir=output_dir)
  timing = results["timing"]
  counts = results["counts"]
  summary = {
      "dataset": args.dataset,
      "num_queries": sum(c["examples"] for c in counts.values()),
      "num_candidates": sum(c["candidates"] for c in counts.values()),
      "num_devices": int(mesh.size),
      "setup_seconds (tokenizer + model init, not timed below)": round(setup_seconds, 2),
      **{key: round(value, 2) for key, value in timing.items()},
      "multilingual_map (random init)": round(results["metrics"]["map_multi_mean"], 4),
      "output_dir": output_dir,
  }
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  main()
