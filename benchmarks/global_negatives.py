"""Step time of contrastive training with global vs per-device in-batch negatives.

A CPU proxy: 8 virtual XLA devices on this host's cores and all-gathers that are memory copies
rather than interconnect transfers. It shows what gathering costs relative to the rest of a step
at these shapes, not accelerator numbers. Two encoders:

  --encoder=mlp   a tiny MLP in place of a transformer (the loss is a large part of the step:
                  the worst case for the gather's relative cost);
  --encoder=tiny  the real train step (`train.make_train_step`, configs/default.py with the
                  tiny model, the default run's first XQuAD-R batch), with
                  `config.loss.global_negatives` True vs False.

  PYTHONPATH=. python benchmarks/global_negatives.py [--encoder mlp|tiny] [--global_batch_size 512]
  PYTHONPATH=. python benchmarks/global_negatives.py --smoke  # both encoders, tiny shapes, 1 step

Run as a script it sets XLA_FLAGS for 8 host devices itself; imported (the test suite calls
`main(argv)`), the process must already have 8 devices (tests/conftest.py gives it 8).

(from the repository root; or `pip install -e .` first and drop PYTHONPATH).
"""

import argparse
import os
import tempfile

NUM_DEVICES = 8
if __name__ == "__main__":  # XLA reads its flags when jax starts its backend: set them before.
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + f" --xla_force_host_platform_device_count={NUM_DEVICES}").strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

import time  # pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from hybrid_jax import losses, machine, sharding  # pylint: disable=g-import-not-at-top,wrong-import-position

# --smoke: the tiny encoder path's model (the test suite's quick run).
SMOKE_MODEL = dict(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=64)


def init_encoder(seed, input_dim, hidden_dim, embed_dim):
  """Parameters of a 2-layer MLP: {"w1": [input, hidden], "w2": [hidden, embed]}."""
  k1, k2 = jax.random.split(jax.random.key(seed))
  return {
      "w1": jax.random.normal(k1, (input_dim, hidden_dim)) / np.sqrt(input_dim),
      "w2": jax.random.normal(k2, (hidden_dim, embed_dim)) / np.sqrt(hidden_dim)
  }


def encode(params, features):
  """[batch, input] features -> [batch, embed] unit-norm embeddings."""
  emb = jnp.tanh(features @ params["w1"]) @ params["w2"]
  return emb / jnp.linalg.norm(emb, axis=-1, keepdims=True)


def make_train_step(mesh, global_negatives, temperature=0.05, learning_rate=0.1):
  """A jitted SGD step on (params, batch) with the sharded loss."""

  def loss_fn(params, batch):
    return losses.sharded_contrastive_loss(mesh, encode(params, batch["query"]),
                                           encode(params, batch["passage"]), batch["keys"],
                                           temperature=temperature,
                                           global_negatives=global_negatives)

  def train_step(params, batch):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
    return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads), loss

  return jax.jit(train_step, donate_argnums=0)


def time_steps(train_step, params, batch, steps):
  """Median wall time of one step `(params, batch) -> (params, aux)` in seconds, after one
  compile-and-warm-up step."""
  params, loss = train_step(params, batch)
  jax.block_until_ready(loss)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    params, loss = train_step(params, batch)
    jax.block_until_ready(loss)
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def real_step_seconds(global_negatives: bool, global_batch_size: int, steps: int, mesh,
                      workdir: str, smoke: bool = False):
  """Median step time of the real train step (the tiny model; `smoke`: SMOKE_MODEL and 8 /
  16-token queries / passages) on `mesh`; the tokenizer is trained into (or read from) `workdir`."""
  from hybrid_jax import config_lib, input_pipeline, train  # pylint: disable=g-import-not-at-top

  config = config_lib.default_config("model=tiny")
  config.train.global_batch_size = global_batch_size
  config.loss.global_negatives = global_negatives
  if smoke:
    config.model.update(SMOKE_MODEL)
    config.data.query_max_len, config.data.passage_max_len = 8, 16
  config = config_lib.validate(config)
  train_data, tokenizer, graphdef, optimizer, state = train.build_run(config, workdir)
  batch = jax.device_put(
      input_pipeline.make_batch_builder(config, train_data, tokenizer)(0),
      sharding.batch_sharding(mesh))
  step = train.make_train_step(graphdef, config, optimizer, mesh)
  return time_steps(step, jax.device_put(state, sharding.replicated(mesh)), batch, steps)


def run_tiny(args, mesh):
  """Prints the real train step's time with local and with global negatives."""
  print(
      f"CPU proxy on {args.num_devices} virtual devices ({machine.one_line()}), not an accelerator "
      f"measurement. Real train step, tiny model, global_batch_size="
      f"{args.global_batch_size}")
  with tempfile.TemporaryDirectory() as workdir:  # build_run trains the tokenizer into it
    seconds = {
        g: real_step_seconds(g, args.global_batch_size, args.steps, mesh, workdir, args.smoke)
        for g in (False, True)
    }
  for g, sec in seconds.items():
    print(f"{'global' if g else 'local':>6} negatives: {1e3 * sec:8.1f} ms/step")
  print(f"step time global / local = {seconds[True] / seconds[False]:.3f}")


def run_mlp(args, mesh):
  """Prints the MLP proxy's step time with local and with global negatives."""
  rng = np.random.default_rng(args.seed)
  features = rng.normal(size=(2, args.global_batch_size, args.input_dim)).astype(np.float32)
  batch = jax.device_put(
      {
          "query": features[0], "passage": features[1], "keys": np.arange(
              args.global_batch_size, dtype=np.int32)
      }, sharding.batch_sharding(mesh))
  print(
      f"CPU proxy on {args.num_devices} virtual devices ({machine.one_line()}), not an accelerator "
      f"measurement. global_batch_size={args.global_batch_size}, MLP encoder "
      f"{args.input_dim}->{args.hidden_dim}->{args.embed_dim}")
  seconds = {}
  for global_negatives in (False, True):
    params = jax.device_put(
        init_encoder(args.seed, args.input_dim, args.hidden_dim, args.embed_dim),
        sharding.replicated(mesh))
    seconds[global_negatives] = time_steps(
        make_train_step(mesh, global_negatives), params, batch, args.steps)
    negatives = args.global_batch_size if global_negatives else (args.global_batch_size
                                                                 // args.num_devices)
    print(f"{'global' if global_negatives else 'local':>6} negatives ({negatives:>5} passages "
          f"per query): {1e3 * seconds[global_negatives]:8.2f} ms/step")
  print(f"step time global / local = {seconds[True] / seconds[False]:.2f}")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--encoder", choices=("mlp", "tiny"), default="mlp")
  parser.add_argument("--global_batch_size", type=int, default=512)
  parser.add_argument("--input_dim", type=int, default=256)
  parser.add_argument("--hidden_dim", type=int, default=512)
  parser.add_argument("--embed_dim", type=int, default=128)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num_devices", type=int, default=NUM_DEVICES,
                      help=f"Mesh size (at most the {NUM_DEVICES} host devices).")
  parser.add_argument(
      "--smoke", action="store_true", help="Both encoders (tiny: a 1-layer hidden-32 model), "
      "2 devices, global batch 16, 1 timed step: the test suite's quick run.")
  args = parser.parse_args(argv)
  if args.smoke:
    args.num_devices, args.global_batch_size, args.steps = 2, 16, 1
    args.input_dim, args.hidden_dim, args.embed_dim = 16, 16, 8

  mesh = sharding.make_mesh(args.num_devices)
  sharding.check_global_batch(args.global_batch_size, mesh)
  if args.smoke or args.encoder == "mlp":
    run_mlp(args, mesh)
  if args.smoke or args.encoder == "tiny":
    run_tiny(args, mesh)


if __name__ == "__main__":
  main()
