"""On-paper train-step FLOPs and accelerator estimates for XLM-R-base / -large dual encoders.

ESTIMATES, not measurements: nothing here runs a model. FLOPs are counted from the shapes
(a multiply-add is 2 FLOPs); times are roofline-style, FLOPs / (peak x assumed MFU).

Counting, per sequence of S tokens (hidden H, intermediate I, L layers):
  * embedding lookups, LayerNorm, softmax, GELU, pooling: not counted (no matmul);
  * per layer: Q, K, V, O projections 4 * 2*S*H^2; feed-forward 2 * 2*S*H*I;
    attention scores Q K^T and probabilities x V 2 * 2*S^2*H;
  * training = 3 x forward (backward = 2 x forward);
  * one example = a query of `--query_len` tokens + a passage of S tokens (one shared tower);
  * the loss: B x B logits, 2*B*B*D forward (x3 for training) per global batch of B.
Communication per step with B examples and embedding width D:
  * global negatives: all-gather of the passage embeddings, B*D*bytes received by every chip
    (a ring all-gather moves (n-1)/n of it), and its transpose (a reduce-scatter of the same size)
    in the backward pass;
  * for scale: the data-parallel gradient all-reduce, 2 * (n-1)/n * params * 4 bytes (float32
    gradients, as hybrid_jax.train keeps them), and the AdamW update, memory bound: 7 float32
    tensors of params size touched (read param, grad, mu, nu; write param, mu, nu) per chip with
    replicated optimizer state.

  python benchmarks/flops.py                                    # the tables in BENCHMARKS.md
  python benchmarks/flops.py --global_batch_size=4096 --seq_lens=128,256 --num_chips=32
  python benchmarks/flops.py --smoke       # one passage length, 8 chips (the test suite runs it)

Vendor figures used (dense bf16 peak, HBM bandwidth, interconnect bandwidth per chip in one
direction, used for the collectives):
  TPU v4 (Cloud TPU docs): 275 TFLOP/s, 1200 GB/s; all-reduce bandwidth 1.1 PB/s per 4096-chip
    pod = 268 GB/s per chip.
  TPU v5e (Cloud TPU docs): 197 TFLOP/s, 819 GB/s; all-reduce bandwidth 51.2 TB/s per 256-chip
    pod = 200 GB/s per chip (ICI 400 GB/s bidirectional).
  A100 SXM 80 GB: 312 TFLOP/s, 2039 GB/s; NVLink 3 600 GB/s bidirectional = 300 GB/s.
  H100 SXM: 989 TFLOP/s, 3350 GB/s; NVLink 4 900 GB/s bidirectional = 450 GB/s.
GPU figures hold inside one NVLink node (8 GPUs); across nodes, InfiniBand gives ~25-50 GB/s
per GPU, which `--internode_gbps` shows separately.
"""

import argparse
import dataclasses

from hybrid_jax import cost


@dataclasses.dataclass(frozen=True)
class Shape:
  name: str
  vocab_size: int
  hidden_size: int
  num_layers: int
  intermediate_size: int
  max_positions: int = 514
  type_vocab_size: int = 1


@dataclasses.dataclass(frozen=True)
class Chip:
  name: str
  peak_tflops: float  # dense bf16
  hbm_gb_per_s: float
  collective_gb_per_s: float  # per chip, one direction


MODELS = (
    Shape("XLM-R-base", 250002, 768, 12, 3072),
    Shape("XLM-R-large", 250002, 1024, 24, 4096),
)
CHIPS = (
    Chip("TPU v4", 275.0, 1200.0, 1.1e6 / 4096),
    Chip("TPU v5e", 197.0, 819.0, 51.2e3 / 256),
    Chip("A100 SXM", 312.0, 2039.0, 300.0),
    Chip("H100 SXM", 989.0, 3350.0, 450.0),
)


def num_params(m: Shape) -> int:
  """Encoder parameters without the BERT pooler (mean pooling), as in hybrid_jax."""
  h, i = m.hidden_size, m.intermediate_size
  embeddings = (m.vocab_size + m.max_positions + m.type_vocab_size) * h + 2 * h
  layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h
  return embeddings + m.num_layers * layer


def step_flops(m: Shape, query_len: int, passage_len: int, batch: int) -> dict[str, float]:
  """Training FLOPs of one global batch, split by part (forward + backward = 3 x forward): the
  FLOP model of `hybrid_jax.cost.step_flops`, which the runs' cost records compare XLA's count
  with."""
  model = dict(hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
               num_hidden_layers=m.num_layers)
  return cost.step_flops(model, query_len, passage_len, batch)


def _fmt_flops(x: float) -> str:
  for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
    if x >= scale:
      return f"{x / scale:.3g} {unit}"
  return f"{x:.3g} FLOP"


def _fmt_seconds(x: float) -> str:
  if x >= 1.0:
    return f"{x:.2f} s"
  if x >= 1e-3:
    return f"{x * 1e3:.1f} ms"
  return f"{x * 1e6:.0f} us"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true",
                      help="One passage length (128) on 8 chips: the test suite's quick run.")
  parser.add_argument("--global_batch_size", type=int, default=4096)
  parser.add_argument("--query_len", type=int, default=32)
  parser.add_argument("--seq_lens", default="128,256", help="Passage lengths.")
  parser.add_argument("--mfu", default="0.4,0.5", help="Assumed model FLOP utilisations.")
  parser.add_argument("--num_chips", type=int, default=32, help="Chips sharing the global batch.")
  parser.add_argument(
      "--embedding_bytes", type=int, default=4,
      help="Bytes per gathered embedding value: 4 = float32 as hybrid_jax "
      "gathers today, 2 = bfloat16.")
  parser.add_argument("--internode_gbps", type=float, default=50.0,
                      help="GB/s per GPU across nodes (400 Gb/s InfiniBand = 50 GB/s).")
  args = parser.parse_args(argv)
  if args.smoke:
    args.seq_lens, args.num_chips = "128", 8
  batch, n = args.global_batch_size, args.num_chips
  seq_lens = [int(s) for s in args.seq_lens.split(",")]
  mfus = [float(x) for x in args.mfu.split(",")]
  lo, hi = min(mfus), max(mfus)

  print(f"ESTIMATES (python benchmarks/flops.py --global_batch_size={batch} "
        f"--query_len={args.query_len} --seq_lens={args.seq_lens} --mfu={args.mfu} "
        f"--num_chips={n} --embedding_bytes={args.embedding_bytes})\n")
  print(f"### Train-step FLOPs, global batch {batch}, query {args.query_len} tokens\n")
  print("| model | params | passage len | queries | passages | loss (BxB logits) | total per "
        "step | per example |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for m in MODELS:
    for s in seq_lens:
      f = step_flops(m, args.query_len, s, batch)
      print(f"| {m.name} | {num_params(m) / 1e6:.1f} M | {s} | {_fmt_flops(f['queries'])} | "
            f"{_fmt_flops(f['passages'])} | {_fmt_flops(f['loss'])} "
            f"({100 * f['loss'] / f['total']:.3f} %) | {_fmt_flops(f['total'])} | "
            f"{_fmt_flops(f['total'] / batch)} |")

  print(f"\n### Step time and throughput at {100 * lo:.0f}-{100 * hi:.0f} % MFU "
        f"(global batch {batch} on {n} chips)\n")
  print("| chip | model | passage len | examples/s per chip | step time on "
        f"{n} chips |")
  print("|---|---|---:|---:|---:|")
  for chip in CHIPS:
    for m in MODELS:
      for s in seq_lens:
        total = step_flops(m, args.query_len, s, batch)["total"]
        rate = lambda mfu: chip.peak_tflops * 1e12 * mfu
        print(f"| {chip.name} | {m.name} | {s} | {rate(lo) * batch / total:,.0f} - "
              f"{rate(hi) * batch / total:,.0f} | {_fmt_seconds(total / n / rate(hi))} - "
              f"{_fmt_seconds(total / n / rate(lo))} |")

  print(f"\n### Communication and optimizer per step on {n} chips, against the compute step "
        f"time at {100 * hi:.0f} % MFU, passage length {min(seq_lens)}\n")
  print("| chip | model | compute step | global-negatives gather + its backward | share | "
        "gradient all-reduce (f32) | AdamW update (HBM, replicated) |")
  print("|---|---|---:|---:|---:|---:|---:|")
  ring = (n - 1) / n
  for chip in CHIPS:
    for m in MODELS:
      total = step_flops(m, args.query_len, min(seq_lens), batch)["total"]
      compute = total / n / (chip.peak_tflops * 1e12 * hi)
      gather_bytes = batch * m.hidden_size * args.embedding_bytes
      gather = 2 * ring * gather_bytes / (chip.collective_gb_per_s * 1e9)
      allreduce = 2 * ring * num_params(m) * 4 / (chip.collective_gb_per_s * 1e9)
      adamw = 7 * 4 * num_params(m) / (chip.hbm_gb_per_s * 1e9)
      print(f"| {chip.name} | {m.name} | {_fmt_seconds(compute)} | "
            f"{gather_bytes / 1e6:.1f} MB: {_fmt_seconds(gather)} | "
            f"{100 * gather / compute:.2f} % | {_fmt_seconds(allreduce)} | "
            f"{_fmt_seconds(adamw)} |")
  for m in MODELS:
    gather_bytes = batch * m.hidden_size * args.embedding_bytes
    print(f"\nAcross GPU nodes at {args.internode_gbps:g} GB/s per GPU, {m.name}: gather + "
          f"backward {_fmt_seconds(2 * ring * gather_bytes / (args.internode_gbps * 1e9))}, "
          f"gradient all-reduce "
          f"{_fmt_seconds(2 * ring * num_params(m) * 4 / (args.internode_gbps * 1e9))}.")


if __name__ == "__main__":
  main()
