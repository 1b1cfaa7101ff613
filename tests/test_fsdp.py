"""FSDP: the train step with parameters and optimizer state sharded over the fsdp axis gives the
replicated step's loss and update (8 devices: data=4 x fsdp=2, data=1 x fsdp=8, and fsdp=2 with
the gradient cache, against data=8; with LoRA adapters, fsdp=2 with the gradient cache), actually
shards, LoRA factors are placed as their kernel, and checkpoints round-trip sharded. (LoRA with
fsdp on 1, 2, 4 and 8 devices against the unsharded step: test_train.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import LORA, _batch, _config, _setup, assert_trained

from flax import traverse_util
from jax.sharding import PartitionSpec as P

from hybrid_jax import checkpoint as checkpoint_lib
from hybrid_jax import sharding
from hybrid_jax import train

# The tiny test model has no parameter of 2**14 elements; lower the threshold so that every
# kernel and embedding table is split (biases and LayerNorm, 1-D, stay replicated).
MIN_PARAM_SIZE = 2**10


@pytest.fixture(autouse=True)
def _small_threshold(monkeypatch):
  monkeypatch.setattr(sharding, "FSDP_MIN_PARAM_SIZE", MIN_PARAM_SIZE)


def _run_step(config, fsdp):
  graphdef, optimizer, state0 = _setup(config)
  mesh = sharding.make_mesh(8, fsdp=fsdp)
  state_sharding = sharding.state_shardings(mesh, state0)
  step = train.make_train_step(graphdef, config, optimizer, mesh, state_sharding)
  state = jax.device_put(jax.tree.map(jnp.copy, state0), state_sharding)  # donated
  batch = _batch(0, config.loss.num_hard_negatives, languages=config.model.lora.per_language)
  return state0, step(state, jax.device_put(batch, sharding.batch_sharding(mesh)))


def _word_embeddings(params):
  return params["model"]["encoder"]["embeddings"]["word_embeddings"]["embedding"]


@pytest.mark.parametrize("lora, variants", [
    (None, ((False, 2), (False, 8), (True, 2))),
    (dict(LORA, dropout=0.0), ((True, 2),)),
])
def test_fsdp_step_equals_replicated_step_and_shards(lora, variants):
  """`variants`: (gradient cache?, fsdp) steps compared with the replicated plain step."""
  config = _config(lora, symmetric=True, learnable_temperature=True, num_hard_negatives=1)
  config.optim.warmup_steps = 0
  config.model.hidden_dropout_prob = 0.0  # the gradient-cache case draws other masks
  state0, (base_state, base_metrics) = _run_step(config, fsdp=1)
  cached = config.copy_and_resolve_references()
  cached.train.grad_cache_chunk_size = 8
  for run_config, fsdp in ((cached if c else config, fsdp) for c, fsdp in variants):
    _, (state, metrics) = _run_step(run_config, fsdp)
    what = f"fsdp={fsdp} chunks={run_config.train.grad_cache_chunk_size}"
    for name in ("loss", "grad_norm", "accuracy", "temperature"):
      np.testing.assert_allclose(metrics[name], base_metrics[name], rtol=2e-5,
                                 err_msg=f"{name} {what}")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6, err_msg=what),
                 (state.params, state.opt_state), (base_state.params, base_state.opt_state))
    # Sharded after the step: the word embeddings [97, 32] are split on their hidden dimension
    # (97 is prime), as are Adam's moments of them; a bias stays whole.
    # (With LoRA the table is frozen: no moments.)
    mu = state.opt_state[1][0].mu
    for array in (_word_embeddings(state.params),) + (() if lora else (_word_embeddings(mu),)):
      assert array.addressable_shards[0].data.shape == (97, 32 // fsdp), what
    bias = state.params["model"]["encoder"]["layers"][0]["output"]["bias"]
    assert bias.addressable_shards[0].data.shape == bias.shape
  assert_trained(base_state.params, state0.params, config)


def _device_blocks(named_sharding, shape):
  """{device: the global indices it holds, one range per dimension}."""
  return {
      device: tuple(range(*index.indices(size)) for index, size in zip(indices, shape))
      for device, indices in named_sharding.devices_indices_map(tuple(shape)).items()
  }


@pytest.mark.parametrize("fsdp", [1, 2, 4, 8])
def test_lora_factors_and_their_moments_are_placed_as_their_kernel(fsdp, monkeypatch):
  """Every device holds the rows of A [sets, in, rank] that it holds of the kernel W [in, out]
  and the columns of B [sets, rank, out] that it holds of W, all sets and the whole rank; AdamW's
  moments of A and B are placed as A and B. The threshold 2**11 keeps the attention kernels
  [32, 32] replicated and splits the feed-forward ones ([32, 64] on its output dimension, [64, 32]
  on its input), so every case occurs once fsdp > 1; A and B alone are below it (384 and 768
  elements: the size rule would replicate them)."""
  monkeypatch.setattr(sharding, "FSDP_MIN_PARAM_SIZE", 2**11)
  _, _, state = _setup(_config(LORA))  # per-language: 3 sets (shared, en, de), rank 4
  mesh = sharding.make_mesh(8, fsdp=fsdp)
  shardings = sharding.state_shardings(mesh, state)
  params = traverse_util.flatten_dict(state.params)
  placed = traverse_util.flatten_dict(shardings.params)
  moments = [
      traverse_util.flatten_dict(getattr(shardings.opt_state[1][0], m)) for m in ("mu", "nu")
  ]
  kernel_specs = set()
  for key in (k for k in params if k[-1] == "lora_a"):
    layer = key[:-1]
    kernel, a, b = (params[layer + (name,)].shape for name in ("kernel", "lora_a", "lora_b"))
    assert a == (3, kernel[0], 4) and b == (3, 4, kernel[1])
    kernel_blocks = _device_blocks(placed[layer + ("kernel",)], kernel)
    a_blocks = _device_blocks(placed[layer + ("lora_a",)], a)
    b_blocks = _device_blocks(placed[layer + ("lora_b",)], b)
    for device, (rows, columns) in kernel_blocks.items():
      assert a_blocks[device] == (range(3), rows, range(4)), (layer, device)
      assert b_blocks[device] == (range(3), range(4), columns), (layer, device)
    for name in ("lora_a", "lora_b"):
      assert all(m[layer + (name,)] == placed[layer + (name,)] for m in moments), layer
    kernel_specs.add(placed[layer + ("kernel",)].spec)
  expected = {P()} if fsdp == 1 else {P(), P("fsdp", None), P(None, "fsdp")}
  assert kernel_specs == expected


def test_checkpoint_round_trip_keeps_fsdp_sharding(tmp_path):
  config = _config(learnable_temperature=True)
  _, _, state0 = _setup(config)
  mesh = sharding.make_mesh(8, fsdp=2)
  state_sharding = sharding.state_shardings(mesh, state0)
  rng = np.random.default_rng(0)
  saved = jax.device_put(
      jax.tree.map(  # distinct values everywhere, so a mix-up shows
          lambda x: x + rng.normal(size=x.shape).astype(x.dtype)
          if jnp.issubdtype(x.dtype, jnp.floating) else x, state0),
      state_sharding)
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path), async_save=False)
  try:
    checkpointer.save(3, saved, {"step": 3})
    target = jax.device_put(state0, state_sharding)  # as train_and_evaluate places it
    restored, meta, step = checkpointer.restore_latest(target)
  finally:
    checkpointer.close()
  assert step == 3 and meta["step"] == 3
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), restored, saved)
  jax.tree.map(lambda a, expected: assert_equivalent(a.sharding, expected, a.ndim), restored,
               state_sharding)
  assert _word_embeddings(restored.params).addressable_shards[0].data.shape == (97, 16)


def assert_equivalent(actual, expected, ndim):
  assert actual.is_equivalent_to(expected, ndim), (actual, expected)
