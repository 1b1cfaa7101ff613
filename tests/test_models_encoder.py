"""The NNX encoder: configs and presets against transformers, masking, towers, dropout, remat, bf16.

Parity of the forward pass with transformers is in test_models_hf_io.py (it needs saved
checkpoints); here the model is a small random init (2 layers, hidden 32), run eagerly except
for the one jitted gradient check.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx, traverse_util

from hybrid_jax import config_lib
from hybrid_jax import sharding
from hybrid_jax.errors import UserError
from hybrid_jax.models import DualEncoder, EncoderConfig, create_model
from hybrid_jax.models.config import model_config
from hybrid_jax.models import encoder as encoder_lib
from hybrid_jax.models.encoder import (dropout, dropout_bits, gelu, lora_matmul, matmul,
                                       position_ids)

PRESETS = ("tiny", "xlm_roberta_base", "xlm_roberta_large", "labse", "mbert")
SMALL = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=64, max_position_embeddings=40)


def _small_model(seed=0, **fields):
  return create_model(model_config(**{**SMALL, **fields}), seed=seed)


def _batch(seq=8, pad_token_id=1, lengths=(8, 5, 1), seed=0):
  rng = np.random.default_rng(seed)
  mask = (np.arange(seq)[None] < np.array(lengths)[:, None]).astype(np.int32)
  input_ids = np.where(mask, rng.integers(4, SMALL["vocab_size"], (len(lengths), seq)),
                       pad_token_id).astype(np.int32)
  return jnp.asarray(input_ids), jnp.asarray(mask)


@nnx.jit(static_argnames="tower")
def _encode(model, input_ids, mask, dropout_rng=None, tower="queries"):
  """Jitted `encode_queries` / `encode_passages`: one compile per model structure and shape."""
  return getattr(model, f"encode_{tower}")(input_ids, mask, dropout_rng=dropout_rng)


@nnx.jit
def _hidden(model, input_ids, mask):
  return model.encoder(input_ids, mask)


def _with_config(model, **changes):
  """`model`'s parameters under a config differing only in `changes` (no new random init)."""
  config = model.config.replace(**changes)
  graphdef, _ = nnx.split(nnx.eval_shape(lambda: DualEncoder(config, rngs=nnx.Rngs(0))))
  return nnx.merge(graphdef, nnx.state(model))


def _param_count(model):
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.fixture(scope="module")
def model():
  return _small_model()


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", PRESETS)
def test_preset_parameter_count_matches_transformers(name):
  config = config_lib.model_preset(name)
  assert config.name == name
  encoder_config = EncoderConfig.from_model_config(config)
  ours = _param_count(nnx.eval_shape(lambda: DualEncoder(encoder_config, rngs=nnx.Rngs(0))))
  hf_config = transformers.AutoConfig.for_model(**encoder_config.to_hf_dict())
  with torch.device("meta"):
    reference = transformers.AutoModel.from_config(hf_config)
  hidden = encoder_config.hidden_size
  pooler = 0 if encoder_config.pooling == "pooler" else hidden * hidden + hidden
  assert ours == sum(p.numel() for p in reference.parameters()) - pooler


def test_default_preset_is_the_tiny_model():
  config = config_lib.model_preset("tiny")
  assert (config.path, config.model_type, config.num_hidden_layers, config.hidden_size,
          config.num_attention_heads, config.intermediate_size, config.vocab_size,
          config.max_position_embeddings, config.pooling,
          config.normalize) == ("", "xlm-roberta", 1, 512, 8, 1024, 16000, 514, "mean", True)


@pytest.mark.parametrize("config_class", (transformers.XLMRobertaConfig, transformers.BertConfig))
def test_hf_dict_round_trip(config_class):
  hf_config = config_class(hidden_size=48, num_attention_heads=6, layer_norm_eps=1e-7,
                           pad_token_id=3, vocab_size=50, type_vocab_size=1).to_dict()
  config = EncoderConfig.from_hf_dict(hf_config, pooling="cls")
  assert (config.hidden_size, config.layer_norm_eps, config.pad_token_id,
          config.pooling) == (48, 1e-7, 3, "cls")
  rebuilt = config_class(**config.to_hf_dict()).to_dict()
  for field in ("hidden_size", "num_attention_heads", "layer_norm_eps", "pad_token_id",
                "vocab_size", "type_vocab_size", "intermediate_size", "hidden_act"):
    assert rebuilt[field] == hf_config[field], field
  assert config.to_hf_dict()["architectures"] == [config_class.__name__.replace("Config", "Model")]


@pytest.mark.parametrize("change,match", [
    (dict(model_type="gpt2"), r"unsupported model_type='gpt2'"),
    (dict(model_type=None), r"x/config.json has no model_type, so it is not a Hugging Face"),
    (dict(hidden_act="relu"), r"hidden_act='relu'"),
    (dict(position_embedding_type="relative_key"), r"position_embedding_type"),
])
def test_from_hf_dict_rejects_what_it_does_not_implement(change, match):
  """A user error (one line on the command line), not a traceback: `hybrid_jax.evaluate` on a
  GPT-2 directory or a sentence-transformers module folder printed a ValueError traceback."""
  hf_config = {**transformers.BertConfig().to_dict(), **change}
  with pytest.raises(UserError, match=match):
    EncoderConfig.from_hf_dict(hf_config, source="x/config.json")


@pytest.mark.parametrize("fields,match", [
    (dict(pooling="max"), r"pooling='max'"),
    (dict(hidden_size=30), r"not a multiple"),
    (dict(dtype="float16"), r"dtype='float16'"),
])
def test_bad_model_config_fields_are_errors(fields, match):
  with pytest.raises(ValueError, match=match):
    EncoderConfig.from_model_config(model_config(**{**SMALL, **fields}))


def test_unknown_model_config_field_is_an_error():
  with pytest.raises(KeyError, match="hiden_size"):
    model_config(hiden_size=3)


# ----------------------------------------------------------------------------- forward


def test_xlm_roberta_position_ids_match_transformers():
  input_ids, _ = _batch(seq=9, lengths=(9, 6, 3, 1))
  reference = transformers.models.xlm_roberta.modeling_xlm_roberta.XLMRobertaEmbeddings \
      .create_position_ids_from_input_ids(torch.tensor(np.asarray(input_ids)), padding_idx=1)
  config = EncoderConfig.from_model_config(model_config(**SMALL))
  np.testing.assert_array_equal(np.asarray(position_ids(input_ids, config)), reference.numpy())


def test_embeddings_shape_dtype_norm(model):
  input_ids, mask = _batch()
  last_hidden_state, pooled = _hidden(model, input_ids, mask)
  assert last_hidden_state.shape == (3, 8, 32) and pooled is None
  embedding = _encode(model, input_ids, mask)
  assert embedding.shape == (3, 32) and embedding.dtype == jnp.float32
  np.testing.assert_allclose(np.linalg.norm(np.asarray(embedding), axis=1), 1.0, rtol=1e-6)


def test_padding_to_a_longer_static_length_changes_nothing(model):
  input_ids, mask = _batch(seq=8)
  longer_ids = jnp.pad(input_ids, ((0, 0), (0, 4)), constant_values=1)
  longer_mask = jnp.pad(mask, ((0, 0), (0, 4)))
  np.testing.assert_allclose(
      np.asarray(_encode(model, longer_ids, longer_mask)),
      np.asarray(_encode(model, input_ids, mask)), atol=1e-6)


def test_shared_tower_encodes_queries_and_passages_alike(model):
  input_ids, mask = _batch()
  np.testing.assert_array_equal(
      np.asarray(_encode(model, input_ids, mask)),
      np.asarray(_encode(model, input_ids, mask, tower="passages")))
  assert model.passage_encoder is model.encoder
  assert {path[0] for path in traverse_util.flatten_dict(nnx.to_pure_dict(nnx.state(model)))
         } == {"encoder"}


def test_two_towers_have_their_own_parameters(model):
  two = _small_model(shared_tower=False, projection_dim=8)
  assert _param_count(two) == 2 * (_param_count(model) + 32 * 8 + 8)
  input_ids, mask = _batch()
  queries = _encode(two, input_ids, mask)
  passages = _encode(two, input_ids, mask, tower="passages")
  assert queries.shape == passages.shape == (3, 8)
  assert float(jnp.abs(queries - passages).max()) > 1e-3


def test_dropout_is_functional(model):
  input_ids, mask = _batch()
  deterministic = _encode(model, input_ids, mask)
  np.testing.assert_array_equal(
      np.asarray(_encode(model, input_ids, mask)), np.asarray(deterministic))
  key = jax.random.key(0)
  first = _encode(model, input_ids, mask, dropout_rng=key)
  np.testing.assert_array_equal(
      np.asarray(_encode(model, input_ids, mask, dropout_rng=key)), np.asarray(first))
  assert float(jnp.abs(first - deterministic).max()) > 1e-3
  other = _encode(model, input_ids, mask, dropout_rng=jax.random.key(1))
  assert float(jnp.abs(first - other).max()) > 1e-3
  no_dropout = _with_config(model, hidden_dropout_prob=0.0)
  np.testing.assert_array_equal(
      np.asarray(_encode(no_dropout, input_ids, mask, dropout_rng=key)),
      np.asarray(_encode(no_dropout, input_ids, mask)))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.03])
def test_dropout_rate_and_scale(rate):
  x = jnp.ones((64, 257, 65))  # odd feature count: the last 16-bit level of a word is unused
  y = np.asarray(dropout(x, rate, jax.random.key(3)))
  dropped = float((y == 0).mean())
  assert abs(dropped - rate) < 4 * np.sqrt(rate * (1 - rate) / y.size) + 2**-17
  np.testing.assert_allclose(y[y != 0], 1.0 / (1.0 - round(rate * 2**16) / 2**16), rtol=1e-6)
  assert abs(float(y.mean()) - 1.0) < 0.01  # inverted dropout keeps the expectation
  # Another key gives another mask.
  other = np.asarray(dropout(x, rate, jax.random.key(4)))
  assert (y != other).any()


def _levels(key, rows=1024, words=1024) -> np.ndarray:
  """16-bit dropout levels [rows, 2 * words] from `dropout_bits`, as the dropout reads them."""
  return np.asarray(dropout_bits(key, (rows, words))).view(np.uint16)


def test_dropout_bits_are_uniform():
  words = np.asarray(dropout_bits(jax.random.key(11), (1024, 1024)))
  bits = np.unpackbits(words.view(np.uint8)).reshape(-1, 32)
  assert np.abs(bits.mean(0) - 0.5).max() < 5 * 0.5 / np.sqrt(len(bits))  # every bit position
  levels = words.view(np.uint16).ravel()
  for byte in (levels >> 8, levels & 255):  # high and low byte of the 16-bit levels
    counts = np.bincount(byte, minlength=256)
    expected = levels.size / 256
    chi2 = float(((counts - expected)**2 / expected).sum())
    assert chi2 < 255 + 5 * np.sqrt(2 * 255), chi2  # 255 degrees of freedom, 5 sigma


def test_dropout_bits_are_uncorrelated():
  key, threshold = jax.random.key(12), round(0.1 * 2**16)  # dropout rate 0.1
  drop = (_levels(key) < threshold).astype(np.float64)
  other = (_levels(jax.random.fold_in(key, 1)) < threshold).astype(np.float64)
  limit = 5 / np.sqrt(drop.size)  # 5 standard errors of a correlation coefficient
  for a, b in (
      (drop[:, :-1], drop[:, 1:]),  # neighbours along features (and within a word)
      (drop[:-1], drop[1:]),  # neighbouring rows (tokens)
      (drop[:, :-2], drop[:, 2:]),  # the same half of neighbouring words
      (drop, other)):  # two keys
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < limit
  # No row or column drops more often than chance (chi-square per degree of freedom ~ 1).
  for axis, n in ((1, drop.shape[1]), (0, drop.shape[0])):
    z2 = (drop.mean(axis) - 0.1)**2 / (0.09 / n)
    assert z2.mean() < 1.5


def test_dropout_bits_reject_shapes_beyond_the_counter():
  with pytest.raises(ValueError, match="2\\*\\*32"):
    jax.eval_shape(lambda k: dropout_bits(k, (2**16, 2**16, 1)), jax.random.key(0))


def test_dropout_mask_does_not_depend_on_sharding():
  x = jnp.ones((16, 12, 32))
  key = jax.random.key(7)
  reference = np.asarray(jax.jit(lambda x: dropout(x, 0.1, key))(x))
  for num_devices in (2, 8):
    mesh = sharding.make_mesh(num_devices)
    sharded = jax.device_put(x, sharding.batch_sharding(mesh))
    np.testing.assert_array_equal(
        np.asarray(jax.jit(lambda x: dropout(x, 0.1, key))(sharded)), reference)


@pytest.mark.parametrize("dtype,tolerance", [(jnp.float32, 1e-5), (jnp.bfloat16, 3e-2)])
def test_matmul_value_and_gradients(dtype, tolerance):
  rng = np.random.default_rng(0)
  x, kernel, dy = (rng.standard_normal(shape) for shape in ((3, 5, 8), (8, 6), (3, 5, 6)))
  y, vjp = jax.vjp(matmul, jnp.asarray(x, dtype), jnp.asarray(kernel, dtype))
  dx, dkernel = vjp(jnp.asarray(dy, dtype))
  assert y.dtype == dx.dtype == dkernel.dtype == dtype
  for ours, reference in (
      (y, x @ kernel),
      (dx, dy @ kernel.T),  # float64 references
      (dkernel, np.einsum("bsi,bso->io", x, dy))):
    np.testing.assert_allclose(
        np.asarray(ours, np.float64), reference, rtol=tolerance,
        atol=tolerance * np.abs(reference).max())


def _plain_lora(x, kernel, a, b, scale):
  """x W + scale (x A) B, differentiated by JAX's autodiff (the reference of `lora_matmul`)."""
  return x @ kernel + scale * ((x @ a) @ b)


@pytest.mark.parametrize("dtype,tolerance", [(jnp.float32, 1e-5), (jnp.bfloat16, 3e-2)])
def test_lora_matmul_value_and_gradients_equal_autodiff_in_float64(dtype, tolerance):
  """Values and the gradients of x, the kernel, A and B against `jax.vjp` of the plain formula in
  float64; the parameters stay float32, x and the product are in the compute dtype."""
  rng = np.random.default_rng(0)
  x, kernel, a, b, dy = (
      rng.standard_normal(shape) for shape in ((3, 5, 8), (8, 6), (8, 4), (4, 6), (3, 5, 6)))
  scale = 0.75
  params = [jnp.asarray(v, jnp.float32) for v in (kernel, a, b)]
  y, vjp = jax.vjp(lambda *args: lora_matmul(*args, scale), jnp.asarray(x, dtype), *params)
  grads = vjp(jnp.asarray(dy, dtype))
  assert y.dtype == grads[0].dtype == dtype
  assert [g.dtype for g in grads[1:]] == [jnp.float32] * 3
  with jax.enable_x64(True):
    y64, vjp64 = jax.vjp(lambda *args: _plain_lora(*args, scale), x, kernel, a, b)
    references = [y64, *vjp64(dy)]
  for ours, reference in zip([y, *grads], references):
    reference = np.asarray(reference)
    np.testing.assert_allclose(
        np.asarray(ours, np.float64), reference, rtol=tolerance,
        atol=tolerance * np.abs(reference).max())


def test_lora_matmul_with_zero_b_is_the_plain_product_bitwise():
  """B = 0 (a new adapter): the merged kernel is the kernel, so step 0 is the base model."""
  rng = np.random.default_rng(1)
  x, kernel, a = (
      jnp.asarray(rng.standard_normal(s), jnp.float32) for s in ((4, 8), (8, 6), (8, 2)))
  np.testing.assert_array_equal(
      np.asarray(jax.jit(lora_matmul, static_argnums=4)(x, kernel, a, jnp.zeros((2, 6)), 2.0)),
      np.asarray(jax.jit(matmul)(x, kernel)))


def test_dense_uses_matmul_only_for_its_plain_contraction(model, monkeypatch):
  calls = []
  monkeypatch.setattr(encoder_lib, "matmul", lambda x, k: calls.append(1) or x @ k)
  layer = encoder_lib.dense(4, 3, model.encoder.config, nnx.Rngs(0))
  x = jnp.ones((2, 4))
  layer(x)
  assert calls == [1]
  layer.precision = jax.lax.Precision.HIGHEST  # anything but the default goes to dot_general
  np.testing.assert_allclose(
      np.asarray(layer(x)), np.asarray(x @ layer.kernel[...] + layer.bias[...]), rtol=1e-6)
  assert calls == [1]


def test_gelu_is_exact_erf_gelu():
  x = np.linspace(-8, 8, 2001)
  reference = x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))  # float64 x * Phi(x)
  np.testing.assert_allclose(
      np.asarray(gelu(jnp.asarray(x, jnp.float32))), reference, atol=2e-6, rtol=1e-6)
  torch_gelu = torch.nn.functional.gelu(torch.tensor(x, dtype=torch.float32)).numpy()
  np.testing.assert_allclose(np.asarray(gelu(jnp.asarray(x, jnp.float32))), torch_gelu, atol=1e-6)


def test_module_state_is_params_only(model):
  assert len(jax.tree.leaves(nnx.state(model))) == len(jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_bfloat16_compute_is_close_to_float32(model):
  input_ids, mask = _batch()
  bf16 = _with_config(model, dtype="bfloat16")
  last_hidden_state, _ = _hidden(bf16, input_ids, mask)
  assert last_hidden_state.dtype == jnp.bfloat16
  embedding = _encode(bf16, input_ids, mask)
  assert embedding.dtype == jnp.float32
  np.testing.assert_allclose(
      np.asarray(embedding), np.asarray(_encode(model, input_ids, mask)), atol=3e-2)


def test_remat_gives_identical_outputs_and_gradients(model):
  input_ids, mask = _batch()
  graphdef, params = nnx.split(model)
  graphdef_remat, _ = nnx.split(_with_config(model, remat=True))

  @jax.jit
  def loss_and_grads(params, key):

    def loss(params, graphdef):
      embedding = nnx.merge(graphdef, params).encode_queries(input_ids, mask, dropout_rng=key)
      return jnp.sum(embedding[0] * embedding[1:])

    return [jax.value_and_grad(loss)(params, g) for g in (graphdef, graphdef_remat)]

  (plain_loss, plain_grads), (remat_loss, remat_grads) = loss_and_grads(params, jax.random.key(3))
  np.testing.assert_allclose(float(remat_loss), float(plain_loss), rtol=1e-6)
  flat_plain = traverse_util.flatten_dict(nnx.to_pure_dict(plain_grads))
  flat_remat = traverse_util.flatten_dict(nnx.to_pure_dict(remat_grads))
  assert flat_plain.keys() == flat_remat.keys()
  assert any(float(jnp.abs(g).max()) > 0 for g in flat_plain.values())
  for path, grad in flat_plain.items():
    np.testing.assert_allclose(
        np.asarray(flat_remat[path]), np.asarray(grad), atol=1e-6, err_msg=str(path))
