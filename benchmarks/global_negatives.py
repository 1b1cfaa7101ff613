"""Step time of contrastive training with global vs per-device in-batch negatives.

A CPU proxy: 8 virtual XLA devices on this host's cores and all-gathers that are memory copies
rather than interconnect transfers. It shows what gathering costs relative to the rest of a step
at these shapes, not accelerator numbers. Two encoders:

  --encoder=mlp   a tiny MLP in place of a transformer (the loss is a large part of the step:
                  the worst case for the gather's relative cost);
  --encoder=tiny  the real train step (`train.make_train_step`, configs/default.py, the tiny
                  default model, the default run's first XQuAD-R batch), with
                  `config.loss.global_negatives` True vs False.

  PYTHONPATH=. python benchmarks/global_negatives.py [--encoder mlp|tiny] [--global_batch_size 512]

(from the repository root; or `pip install -e .` first and drop PYTHONPATH).
"""

import argparse
import os
import tempfile

NUM_DEVICES = 8
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + f" --xla_force_host_platform_device_count={NUM_DEVICES}").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import time  # pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from hybrid_jax import losses, sharding  # pylint: disable=g-import-not-at-top,wrong-import-position


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


def real_step_seconds(global_negatives: bool, global_batch_size: int, steps: int, mesh):
  """Median step time of the real train step (tiny default model) on `mesh`."""
  from hybrid_jax import config_lib, input_pipeline, train  # pylint: disable=g-import-not-at-top

  config = config_lib.default_config()
  config.train.global_batch_size = global_batch_size
  config.loss.global_negatives = global_negatives
  config = config_lib.validate(config)
  with tempfile.TemporaryDirectory() as workdir:  # build_run trains the tokenizer into it
    train_data, tokenizer, graphdef, optimizer, state = train.build_run(config, workdir)
  batch = jax.device_put(
      input_pipeline.make_batch_builder(config, train_data, tokenizer)(0),
      sharding.batch_sharding(mesh))
  step = train.make_train_step(graphdef, config, optimizer, mesh)
  return time_steps(step, jax.device_put(state, sharding.replicated(mesh)), batch, steps)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--encoder", choices=("mlp", "tiny"), default="mlp")
  parser.add_argument("--global_batch_size", type=int, default=512)
  parser.add_argument("--input_dim", type=int, default=256)
  parser.add_argument("--hidden_dim", type=int, default=512)
  parser.add_argument("--embed_dim", type=int, default=128)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  mesh = sharding.make_mesh(NUM_DEVICES)
  sharding.check_global_batch(args.global_batch_size, mesh)
  if args.encoder == "tiny":
    print(f"CPU proxy on {NUM_DEVICES} virtual devices ({os.cpu_count()} cores), not an "
          f"accelerator measurement. Real train step, tiny default model, global_batch_size="
          f"{args.global_batch_size}")
    seconds = {
        g: real_step_seconds(g, args.global_batch_size, args.steps, mesh) for g in (False, True)
    }
    for g, sec in seconds.items():
      print(f"{'global' if g else 'local':>6} negatives: {1e3 * sec:8.1f} ms/step")
    print(f"step time global / local = {seconds[True] / seconds[False]:.3f}")
    return
  rng = np.random.default_rng(args.seed)
  features = rng.normal(size=(2, args.global_batch_size, args.input_dim)).astype(np.float32)
  batch = jax.device_put(
      {
          "query": features[0], "passage": features[1], "keys": np.arange(
              args.global_batch_size, dtype=np.int32)
      }, sharding.batch_sharding(mesh))
  print(f"CPU proxy on {NUM_DEVICES} virtual devices ({os.cpu_count()} cores), not an accelerator "
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
                                                                 // NUM_DEVICES)
    print(f"{'global' if global_negatives else 'local':>6} negatives ({negatives:>5} passages "
          f"per query): {1e3 * seconds[global_negatives]:8.2f} ms/step")
  print(f"step time global / local = {seconds[True] / seconds[False]:.2f}")


if __name__ == "__main__":
  main()
