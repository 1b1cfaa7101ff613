"""Step time of contrastive training with global vs per-device in-batch negatives.

A CPU proxy: 8 virtual XLA devices on this host's cores, a tiny MLP "encoder" in place of a
transformer, and all-gathers that are memory copies rather than interconnect transfers. It shows
what gathering costs relative to the rest of a step at these shapes, not accelerator numbers.

  PYTHONPATH=. python benchmarks/global_negatives.py [--global_batch_size 512] [--steps 20]

(from the repository root; or `pip install -e .` first and drop PYTHONPATH).
"""

import argparse
import os

NUM_DEVICES = 8
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           f" --xla_force_host_platform_device_count={NUM_DEVICES}").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import time  # pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from hybrid_jax import losses, sharding  # pylint: disable=g-import-not-at-top,wrong-import-position


def init_encoder(seed, input_dim, hidden_dim, embed_dim):
  """Parameters of a 2-layer MLP: {"w1": [input, hidden], "w2": [hidden, embed]}."""
  k1, k2 = jax.random.split(jax.random.key(seed))
  return {"w1": jax.random.normal(k1, (input_dim, hidden_dim)) / np.sqrt(input_dim),
          "w2": jax.random.normal(k2, (hidden_dim, embed_dim)) / np.sqrt(hidden_dim)}


def encode(params, features):
  """[batch, input] features -> [batch, embed] unit-norm embeddings."""
  emb = jnp.tanh(features @ params["w1"]) @ params["w2"]
  return emb / jnp.linalg.norm(emb, axis=-1, keepdims=True)


def make_train_step(mesh, global_negatives, temperature=0.05, learning_rate=0.1):
  """A jitted SGD step on (params, batch) with the sharded loss."""

  def loss_fn(params, batch):
    return losses.sharded_contrastive_loss(
        mesh, encode(params, batch["query"]), encode(params, batch["passage"]), batch["keys"],
        temperature=temperature, global_negatives=global_negatives)

  def train_step(params, batch):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
    return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads), loss

  return jax.jit(train_step, donate_argnums=0)


def time_steps(train_step, params, batch, steps):
  """Median wall time of one step in seconds (after one compile-and-warm-up step)."""
  params, loss = train_step(params, batch)
  jax.block_until_ready(loss)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    params, loss = train_step(params, batch)
    jax.block_until_ready(loss)
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--global_batch_size", type=int, default=512)
  parser.add_argument("--input_dim", type=int, default=256)
  parser.add_argument("--hidden_dim", type=int, default=512)
  parser.add_argument("--embed_dim", type=int, default=128)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  mesh = sharding.make_mesh(NUM_DEVICES)
  sharding.check_global_batch(args.global_batch_size, mesh)
  rng = np.random.default_rng(args.seed)
  features = rng.normal(size=(2, args.global_batch_size, args.input_dim)).astype(np.float32)
  batch = jax.device_put({"query": features[0], "passage": features[1],
                          "keys": np.arange(args.global_batch_size, dtype=np.int32)},
                         sharding.batch_sharding(mesh))
  print(f"CPU proxy on {NUM_DEVICES} virtual devices ({os.cpu_count()} cores), not an accelerator "
        f"measurement. global_batch_size={args.global_batch_size}, MLP encoder "
        f"{args.input_dim}->{args.hidden_dim}->{args.embed_dim}")
  seconds = {}
  for global_negatives in (False, True):
    params = jax.device_put(
        init_encoder(args.seed, args.input_dim, args.hidden_dim, args.embed_dim),
        sharding.replicated(mesh))
    seconds[global_negatives] = time_steps(make_train_step(mesh, global_negatives), params,
                                           batch, args.steps)
    negatives = args.global_batch_size if global_negatives else (
        args.global_batch_size // NUM_DEVICES)
    print(f"{'global' if global_negatives else 'local':>6} negatives ({negatives:>5} passages "
          f"per query): {1e3 * seconds[global_negatives]:8.2f} ms/step")
  print(f"step time global / local = {seconds[True] / seconds[False]:.2f}")


if __name__ == "__main__":
  main()
