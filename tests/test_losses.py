"""InfoNCE (global view and shard_map) against a plain float64 numpy InfoNCE.

Gradients of the reference are central finite differences in float64. Sub-meshes of the 8
virtual CPU devices (conftest) check that the sharded loss is the global one on 1 to 8 devices.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax import losses, sharding

GLOBAL_BATCH = 16
DIM = 8
HARD = 2
TEMPERATURE = 0.2
# Duplicated passage keys: (4, 5) sit on one device of every sub-mesh; (2, 9) and (6, 14) sit on
# different devices when there are 2 or more.
KEYS = np.array([0, 1, 2, 3, 4, 4, 6, 7, 8, 2, 10, 11, 12, 13, 6, 15])
CASES = {
    "duplicates": dict(symmetric=False, hard_negatives=False),
    "hard_negatives": dict(symmetric=False, hard_negatives=True),
    "symmetric": dict(symmetric=True, hard_negatives=True),
}
MESHES = [(1, 1), (2, 1), (4, 1), (8, 1), (8, 2)]  # (devices, fsdp)


def _unit_rows(rng, shape):
  x = rng.normal(size=shape)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


@functools.cache
def _inputs(hard_negatives):
  """float64 numpy inputs; hard negative keys include a key of the batch and a query's own."""
  rng = np.random.default_rng(0)
  # As in real batches, equal keys are the same passage text: the same embedding.
  first_of_key = np.unique(KEYS, return_inverse=True)[1]
  passage_emb = _unit_rows(rng, (GLOBAL_BATCH, DIM))[first_of_key]
  query_emb = _unit_rows(rng, (GLOBAL_BATCH, DIM)) + passage_emb  # queries near positives
  inputs = dict(query_emb=query_emb / np.linalg.norm(query_emb, axis=-1, keepdims=True),
                passage_emb=passage_emb, passage_keys=KEYS)
  if hard_negatives:
    hard_keys = 100 + np.arange(GLOBAL_BATCH * HARD).reshape(GLOBAL_BATCH, HARD)
    hard_emb = _unit_rows(rng, (GLOBAL_BATCH, HARD, DIM))
    # Mined "negatives" that are really positives: example 0's is query 3's positive passage,
    # example 6's is its own.
    for example, hard, positive in [(0, 1, 3), (6, 0, 6)]:
      hard_keys[example, hard], hard_emb[example, hard] = KEYS[positive], passage_emb[positive]
    inputs.update(hard_negative_emb=hard_emb, hard_negative_keys=hard_keys)
  return inputs


def numpy_infonce(query_emb, passage_emb, passage_keys, temperature, symmetric=False,
                  hard_negative_emb=None, hard_negative_keys=None, mask=True):
  """Plain float64 InfoNCE, one row at a time. Returns (loss, metrics)."""
  batch = len(query_emb)
  pool, pool_keys = passage_emb, passage_keys
  if hard_negative_emb is not None:
    pool = np.concatenate([pool, hard_negative_emb.reshape(-1, hard_negative_emb.shape[-1])])
    pool_keys = np.concatenate([pool_keys, hard_negative_keys.reshape(-1)])

  def one_direction(anchors, candidates, candidate_keys):
    losses_, correct, positives, negatives, num_masked = [], [], [], [], 0
    for i in range(batch):
      logits = candidates @ anchors[i] / temperature
      keep = np.ones(len(candidates), bool)
      if mask:
        keep = candidate_keys != passage_keys[i]
        keep[i] = True
      num_masked += int(np.sum(~keep))
      kept = logits[keep]
      log_softmax_positive = logits[i] - (kept.max() + np.log(np.sum(np.exp(kept - kept.max()))))
      losses_.append(-log_softmax_positive)
      others = np.delete(np.where(keep, logits, -np.inf), i)
      correct.append(logits[i] > others.max())
      positives.append(logits[i])
      negatives.extend(others[others > -np.inf])
    return np.mean(losses_), dict(
        accuracy=np.mean(correct), positive_logit=np.mean(positives),
        negative_logit=np.mean(negatives), num_masked=num_masked)

  loss, metrics = one_direction(query_emb, pool, pool_keys)
  if symmetric:
    loss = (loss + one_direction(passage_emb, query_emb, passage_keys)[0]) / 2
  return loss, dict(metrics, loss=loss)


def _finite_difference_grads(fn, args, step=1e-6):
  """Central differences of scalar fn(*args) w.r.t. every entry of every float64 arg."""
  grads = []
  for a, arg in enumerate(args):
    grad = np.zeros_like(arg)
    for idx in np.ndindex(np.shape(arg)):
      plus, minus = [np.array(x, np.float64) for x in args], [np.array(x, np.float64) for x in args]
      plus[a][idx] += step
      minus[a][idx] -= step
      grad[idx] = (fn(*plus) - fn(*minus)) / (2 * step)
    grads.append(grad)
  return grads


@functools.cache
def _reference(case):
  """(loss, metrics, [d/d query_emb, d/d passage_emb, d/d temperature]) in float64."""
  config = CASES[case]
  inputs = _inputs(config["hard_negatives"])
  rest = {k: v for k, v in inputs.items() if k not in ("query_emb", "passage_emb")}
  loss_fn = lambda q, p, t: numpy_infonce(q, p, temperature=t, symmetric=config["symmetric"], **rest
                                         )[0]
  args = [inputs["query_emb"], inputs["passage_emb"], np.float64(TEMPERATURE)]
  loss, metrics = numpy_infonce(*args[:2], temperature=TEMPERATURE, symmetric=config["symmetric"],
                                **rest)
  return loss, metrics, _finite_difference_grads(loss_fn, args)


def _value_and_grads(loss_fn, case, **kwargs):
  """Loss, metrics and grads w.r.t. (query_emb, passage_emb, temperature) of a jax loss."""
  config = CASES[case]
  inputs = {
      k: jnp.asarray(v, jnp.float32 if v.dtype == np.float64 else jnp.int32)
      for k, v in _inputs(config["hard_negatives"]).items()
  }
  query_emb, passage_emb = inputs.pop("query_emb"), inputs.pop("passage_emb")

  def fn(q, p, t):
    return loss_fn(q, p, temperature=t, symmetric=config["symmetric"], **inputs, **kwargs)

  (loss, metrics), grads = jax.jit(jax.value_and_grad(fn, argnums=(0, 1, 2),
                                                      has_aux=True))(query_emb, passage_emb,
                                                                     jnp.float32(TEMPERATURE))
  return loss, metrics, grads


def _assert_matches_reference(case, loss, metrics, grads):
  ref_loss, ref_metrics, ref_grads = _reference(case)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  for name, value in ref_metrics.items():
    np.testing.assert_allclose(metrics[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
  for name, grad, ref in zip(["query_emb", "passage_emb", "temperature"], grads, ref_grads):
    np.testing.assert_allclose(grad, ref, rtol=1e-4, atol=1e-5, err_msg=f"d loss / d {name}")


@pytest.mark.parametrize("case", CASES)
def test_global_view_matches_numpy(case):
  _assert_matches_reference(case, *_value_and_grads(losses.contrastive_loss, case))


@pytest.mark.parametrize("case,num_devices,fsdp",
                         [(case, *mesh) for case in ("duplicates", "symmetric") for mesh in MESHES]
                         + [("hard_negatives", 8, 1)])
def test_sharded_matches_numpy(case, num_devices, fsdp):
  mesh = sharding.make_mesh(num_devices, fsdp=fsdp)
  loss_fn = functools.partial(losses.sharded_contrastive_loss, mesh)
  _assert_matches_reference(case, *_value_and_grads(loss_fn, case))


def test_duplicate_keys_are_masked():
  """With duplicates the loss differs from unmasked InfoNCE; with distinct keys it equals it."""
  inputs = _inputs(hard_negatives=True)
  masked = numpy_infonce(temperature=TEMPERATURE, **inputs)[0]
  unmasked = numpy_infonce(temperature=TEMPERATURE, mask=False, **inputs)[0]
  assert abs(masked - unmasked) > 1e-2
  mesh = sharding.make_mesh(4)
  distinct = dict(
      inputs, passage_keys=np.arange(GLOBAL_BATCH),
      hard_negative_keys=GLOBAL_BATCH + np.arange(GLOBAL_BATCH * HARD).reshape(GLOBAL_BATCH, HARD))
  for loss_fn in losses.contrastive_loss, functools.partial(losses.sharded_contrastive_loss, mesh):
    loss_fn = jax.jit(loss_fn)
    loss, metrics = loss_fn(**{k: jnp.asarray(v) for k, v in inputs.items()},
                            temperature=TEMPERATURE)
    np.testing.assert_allclose(loss, masked, rtol=1e-5)
    assert metrics["num_masked"] > 0
    loss, metrics = loss_fn(**{k: jnp.asarray(v) for k, v in distinct.items()},
                            temperature=TEMPERATURE)
    np.testing.assert_allclose(loss, unmasked, rtol=1e-5)
    assert metrics["num_masked"] == 0


@pytest.mark.parametrize("num_devices", [2, 8])
def test_positive_is_the_global_index(num_devices, monkeypatch):
  """Query i == passage i == one-hot e_i: near-zero loss only if query i's positive is passage i
  of the global batch; with the local row as index (device offset 0) the loss is large."""
  eye = jnp.eye(GLOBAL_BATCH)
  mesh = sharding.make_mesh(num_devices)
  args = dict(query_emb=eye, passage_emb=eye, passage_keys=jnp.arange(GLOBAL_BATCH),
              temperature=0.1)
  loss, metrics = jax.jit(functools.partial(losses.sharded_contrastive_loss, mesh))(**args)
  ref_loss = numpy_infonce(
      np.eye(GLOBAL_BATCH), np.eye(GLOBAL_BATCH), np.arange(GLOBAL_BATCH), 0.1)[0]
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
  assert loss < 1e-2 and metrics["accuracy"] == 1.0
  monkeypatch.setattr(jax.lax, "axis_index", lambda axis_name: 0)  # the classic bug
  wrong_loss, wrong_metrics = jax.jit(functools.partial(losses.sharded_contrastive_loss,
                                                        mesh))(**args)
  assert wrong_loss > 1.0 and wrong_metrics["accuracy"] < 1.0


def test_local_negatives_score_each_device_slice_alone():
  inputs = _inputs(hard_negatives=True)
  num_devices = 4
  mesh = sharding.make_mesh(num_devices)
  loss, _ = jax.jit(
      functools.partial(losses.sharded_contrastive_loss, mesh, temperature=TEMPERATURE,
                        symmetric=True,
                        global_negatives=False))(**{k: jnp.asarray(v) for k, v in inputs.items()})
  per_device = [
      numpy_infonce(**{k: np.split(v, num_devices)[d]
                       for k, v in inputs.items()}, temperature=TEMPERATURE, symmetric=True)[0]
      for d in range(num_devices)
  ]
  np.testing.assert_allclose(loss, np.mean(per_device), rtol=1e-5)
  assert abs(loss - _reference("symmetric")[0]) > 1e-2


@pytest.mark.parametrize("loss_fn", ["global_view", "sharded"])
def test_jit_on_batch_sharded_inputs(loss_fn):
  mesh = sharding.make_mesh(8)
  fn = {
      "global_view": losses.contrastive_loss,
      "sharded": functools.partial(losses.sharded_contrastive_loss, mesh)
  }[loss_fn]
  case = "symmetric"
  inputs = {
      k:
          jax.device_put(
              jnp.asarray(v, jnp.float32 if v.dtype == np.float64 else jnp.int32),
              sharding.batch_sharding(mesh)) for k, v in _inputs(hard_negatives=True).items()
  }
  query_emb, passage_emb = inputs.pop("query_emb"), inputs.pop("passage_emb")
  temperature = jax.device_put(jnp.float32(TEMPERATURE), sharding.replicated(mesh))

  @jax.jit
  def step(q, p, t, rest):
    return jax.value_and_grad(lambda q, p, t: fn(q, p, temperature=t, symmetric=True, **rest),
                              argnums=(0, 1, 2), has_aux=True)(q, p, t)

  (loss, metrics), grads = step(query_emb, passage_emb, temperature, inputs)
  _assert_matches_reference(case, loss, metrics, grads)
  assert grads[0].sharding.is_equivalent_to(sharding.batch_sharding(mesh), 2)


def test_bfloat16_embeddings_give_a_float32_loss_near_the_float32_one():
  mesh = sharding.make_mesh(8)
  inputs = _inputs(hard_negatives=False)
  keys = jnp.asarray(inputs["passage_keys"])

  @jax.jit
  def loss_and_query_grad(q, p):
    return jax.value_and_grad(
        lambda q: losses.sharded_contrastive_loss(mesh, q, p, keys, temperature=TEMPERATURE)[0])(
            q)

  loss, grad = loss_and_query_grad(
      *(jnp.asarray(inputs[k], jnp.bfloat16) for k in ("query_emb", "passage_emb")))
  assert loss.dtype == jnp.float32 and grad.dtype == jnp.bfloat16
  np.testing.assert_allclose(loss, _reference("duplicates")[0], rtol=2e-2)


def test_bad_inputs_name_the_argument():
  q = jnp.zeros((GLOBAL_BATCH, DIM))
  keys = jnp.arange(GLOBAL_BATCH)
  with pytest.raises(ValueError, match="passage_emb"):
    losses.contrastive_loss(q, q[:, :2], keys, temperature=0.1)
  with pytest.raises(ValueError, match="passage_keys"):
    losses.contrastive_loss(q, q, keys.astype(jnp.float32), temperature=0.1)
  with pytest.raises(ValueError, match="together"):
    losses.contrastive_loss(q, q, keys, temperature=0.1, hard_negative_emb=q[:, None])
  with pytest.raises(ValueError, match="hard_negative_keys"):
    losses.contrastive_loss(q, q, keys, temperature=0.1, hard_negative_emb=q[:, None],
                            hard_negative_keys=keys)
  with pytest.raises(ValueError, match="multiple of the number of devices"):
    losses.sharded_contrastive_loss(
        sharding.make_mesh(8), q[:12], q[:12], keys[:12], temperature=0.1)
