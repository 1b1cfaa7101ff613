"""Gradient cache: chunk layout, the chunk-size check, gradients with dropout against autodiff of
the same chunked forward (toy encoder), and the cached train step against the plain one (tiny
BERT, dropout off, 1 and 8 devices, with and without hard negatives / symmetric / learned
temperature)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_train import _batch, _config, _setup

from hybrid_jax import grad_cache
from hybrid_jax import losses
from hybrid_jax import sharding
from hybrid_jax import train
from hybrid_jax.models import encoder


def _chunk_rows(global_batch_size, chunk_size, num_devices):
  """Global row indices of each chunk, [num_chunks, chunk_size], from the documented scheme:
  chunk c holds rows d * B/D + c * C/D + j of every device d."""
  local, per_device = global_batch_size // num_devices, chunk_size // num_devices
  return np.array([[
      d * local + c * per_device + j for d in range(num_devices) for j in range(per_device)
  ] for c in range(global_batch_size // chunk_size)])


def test_chunks_stay_on_their_devices_and_invert():
  mesh = sharding.make_mesh(8)
  x = np.arange(32 * 3).reshape(32, 3)
  sharded = jax.device_put(x, sharding.batch_sharding(mesh))
  chunks = jax.jit(lambda t: grad_cache.to_chunks(mesh, t, 2))(sharded)
  np.testing.assert_array_equal(chunks, x[_chunk_rows(32, 16, 8)])
  # Every device holds in each chunk only rows it held in the batch: no data moved.
  before = {s.device: np.asarray(s.data) for s in sharded.addressable_shards}
  for shard in chunks.addressable_shards:
    assert shard.data.shape == (2, 2, 3)
    np.testing.assert_array_equal(np.asarray(shard.data).reshape(4, 3), before[shard.device])
  np.testing.assert_array_equal(jax.jit(lambda t: grad_cache.from_chunks(mesh, t))(chunks), x)


@pytest.mark.parametrize("chunk_size", [0, 6, 12, 64])
def test_chunk_size_must_divide_batch_and_be_a_multiple_of_devices(chunk_size):
  with pytest.raises(ValueError, match=f"grad_cache_chunk_size={chunk_size} must divide"):
    grad_cache.num_chunks(32, chunk_size, sharding.make_mesh(8))
  assert grad_cache.num_chunks(32, 8, sharding.make_mesh(8)) == 4


def test_chunk_size_must_spread_over_all_devices():
  with pytest.raises(
      ValueError, match=r"grad_cache_chunk_size=4 must be a positive multiple of "
      r"the number of devices \(8 = "):
    grad_cache.num_chunks(32, 4, sharding.make_mesh(8))


def test_gradients_with_dropout_equal_autodiff_of_the_chunked_forward():
  """Toy encoder (linear + dropout + L2 norm): pass 1 and pass 3 draw the same masks, and the
  accumulated vjp equals differentiating the chunked forward (written with plain indexing)."""
  mesh, batch_size, chunk_size, dim = sharding.make_mesh(8), 32, 16, 6
  rng = np.random.default_rng(0)
  params = {
      "w": jnp.asarray(rng.normal(size=(5, dim)), jnp.float32),
      "log_temperature": jnp.float32(np.log(0.1))
  }
  batch = {
      "q": rng.normal(size=(batch_size, 5)).astype(np.float32),
      "p": rng.normal(size=(batch_size, 5)).astype(np.float32),
      "passage_keys": np.arange(batch_size, dtype=np.int32)
  }

  def embed_fn(p, b, key):
    kq, kp = jax.random.split(key)
    enc = lambda x, k: encoder.dropout(x @ p["w"], 0.5, k)
    return {"query": enc(b["q"], kq), "passage": enc(b["p"], kp)}

  def loss_fn(p, emb, b):
    return losses.sharded_contrastive_loss(mesh, emb["query"], emb["passage"], b["passage_keys"],
                                           temperature=jnp.exp(p["log_temperature"]))

  def chunked_forward_loss(p, b, key):
    rows = _chunk_rows(batch_size, chunk_size, 8)
    emb = {"query": jnp.zeros((batch_size, dim)), "passage": jnp.zeros((batch_size, dim))}
    for c, chunk_rows in enumerate(rows):
      chunk_emb = embed_fn(p, jax.tree.map(lambda x: x[chunk_rows], b), jax.random.fold_in(key, c))
      emb = jax.tree.map(lambda e, ce: e.at[chunk_rows].set(ce), emb, chunk_emb)
    return loss_fn(p, emb, b)

  key = jax.random.key(7)
  cached = jax.jit(grad_cache.value_and_grad(embed_fn, loss_fn, chunk_size, mesh))
  (loss, _), grads = cached(params, jax.device_put(batch, sharding.batch_sharding(mesh)), key)
  (ref_loss, _), ref_grads = jax.value_and_grad(chunked_forward_loss, has_aux=True)(params, batch,
                                                                                    key)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads,
               ref_grads)
  # Dropout is on: without it the loss differs.
  (no_dropout_loss, _), _ = jax.value_and_grad(
      lambda p: loss_fn(p, {"query": batch["q"] @ p["w"], "passage": batch["p"] @ p["w"]}, batch),
      has_aux=True)(
          params)
  assert abs(float(no_dropout_loss) - float(loss)) > 1e-3


_COMPILED = {}  # (config, devices) -> jitted step


def _sgd_step(config, graphdef, state, batch, num_devices):
  """One step with SGD(1), no clipping: the parameter change is exactly minus the gradient."""
  mesh = sharding.make_mesh(num_devices)
  key = (config.to_json(), num_devices)
  if key not in _COMPILED:
    _COMPILED[key] = train.make_train_step(graphdef, config, optax.sgd(1.0), mesh)
  state = jax.device_put(jax.tree.map(jnp.copy, state), sharding.replicated(mesh))  # donated
  return _COMPILED[key](state, jax.device_put(batch, sharding.batch_sharding(mesh)))


@pytest.mark.parametrize(
    "loss, device_counts",
    [
        (dict(), (1, 8)),
        # 8 devices only, to keep compiles few; tests/test_fsdp.py also runs this case cached.
        (dict(symmetric=True, learnable_temperature=True, num_hard_negatives=1), (8,)),
    ])
def test_cached_step_equals_plain_step_on_1_and_8_devices(loss, device_counts):
  config = _config(**loss)
  config.model.hidden_dropout_prob = 0.0
  graphdef, _, state0 = _setup(config)
  state0 = state0.replace(opt_state=optax.sgd(1.0).init(state0.params))
  batch = _batch(0, config.loss.num_hard_negatives)
  plain_state, plain_metrics = _sgd_step(config, graphdef, state0, batch, 1)
  plain_grads = jax.tree.map(jnp.subtract, state0.params, plain_state.params)
  scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(plain_grads))

  config.train.grad_cache_chunk_size = 8
  for num_devices in device_counts:
    state, metrics = _sgd_step(config, graphdef, state0, batch, num_devices)
    assert int(metrics["skipped"]) == 0
    for name in ("loss", "accuracy", "positive_logit", "negative_logit", "num_masked",
                 "temperature", "grad_norm"):
      np.testing.assert_allclose(metrics[name], plain_metrics[name], rtol=2e-5,
                                 err_msg=f"{name} on {num_devices}")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * scale),
                 jax.tree.map(jnp.subtract, state0.params, state.params), plain_grads)
  if config.loss.learnable_temperature:  # the temperature's gradient reaches the update
    assert float(plain_grads["log_temperature"]) != 0.0


def test_step_rejects_a_chunk_size_that_does_not_split_the_batch():
  config = _config()
  config.train.grad_cache_chunk_size = 12  # does not divide the batch of 16
  graphdef, optimizer, state = _setup(config)
  step = train.make_train_step(graphdef, config, optimizer, sharding.make_mesh(8))
  with pytest.raises(ValueError, match="grad_cache_chunk_size=12"):
    step.lower(state, _batch(0))
