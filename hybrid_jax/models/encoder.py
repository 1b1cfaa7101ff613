"""Flax NNX Transformer encoder equal to Hugging Face `BertModel` / `XLMRobertaModel`, and the
`DualEncoder` the trainer uses.

Architecture (post-LayerNorm BERT): embeddings (word + position + token type, LayerNorm,
dropout), then per layer: self-attention -> dense -> dropout -> LayerNorm(x + .), feed-forward
(dense -> exact GELU -> dense) -> dropout -> LayerNorm(x + .). XLM-R differs only in its position
ids (`position_ids`). The BERT pooler (dense + tanh on the first token) exists only when
`config.pooling == 'pooler'`.

Dropout is functional: `dropout_rng=None` is deterministic (evaluation); a key turns hidden
dropout on (embeddings, attention output, feed-forward output, `hidden_dropout_prob`).
Attention-probability dropout is NOT applied: `jax.nn.dot_product_attention` (which lets a GPU
pick its fused kernel) has no dropout; `attention_probs_dropout_prob` is kept only so config.json
round-trips. The modules hold nnx.Param state only, so `nnx.split(model)` gives a pure pytree.

Parameters are float32; `config.dtype` sets the compute dtype. Embeddings leave the model in
float32 whatever the compute dtype.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from hybrid_jax.models.config import EncoderConfig
from hybrid_jax.models.pooling import l2_normalize, pool

_DROPOUT_LEVELS = 2**16  # resolution of the dropout rate, see `dropout`
TOWERS = ("query", "passage")
# (params, tower, input_ids, attention_mask, token_type_ids[, adapter_language]) -> float32
# [batch, embedding_dim]; adapter_language: `Adapters.language` (per-language LoRA adapters).
EncodeFn = Callable[..., jax.Array]


def position_ids(input_ids: jax.Array, config: EncoderConfig) -> jax.Array:
  """Position ids as Hugging Face computes them when none are given.

  Args:
    input_ids: int [batch, seq].
    config: model_type and pad_token_id are read.

  Returns:
    int32 [batch, seq]. BERT: 0..seq-1. XLM-R (`create_position_ids_from_input_ids`): the running
    count of non-pad tokens plus pad_token_id on non-pad tokens, pad_token_id on pad tokens.
  """
  if config.model_type == "bert":
    return jnp.broadcast_to(jnp.arange(input_ids.shape[1], dtype=jnp.int32), input_ids.shape)
  not_pad = (input_ids != config.pad_token_id).astype(jnp.int32)
  return jnp.cumsum(not_pad, axis=1) * not_pad + config.pad_token_id


def _mix32(x: jax.Array) -> jax.Array:
  """Chris Wellons' `triple32` integer hash: a bijective, fully avalanching uint32 mix."""
  x = (x ^ (x >> 17)) * jnp.uint32(0xED5AD4BB)
  x = (x ^ (x >> 11)) * jnp.uint32(0xAC4C1B51)
  x = (x ^ (x >> 15)) * jnp.uint32(0x31848BAB)
  return x ^ (x >> 14)


def dropout_bits(rng: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Counter-based random uint32 words [*shape] for dropout masks: hash(row, column, key).

  Two words of `jax.random.bits(rng)` seed the hash. Rows (the flattened leading axes) get
  `_mix32(row ^ k0)`; element (row, column) is `_mix32((row_hash + column) ^ k1)`. One integer
  hash per word instead of Threefry's 20 rounds: five times cheaper on CPU, with uniform bits,
  no correlation between neighbours or between keys (tests/test_models_encoder.py measures it).
  A function of `rng` and the global index only, so the mask does not depend on sharding.
  """
  *lead, columns = shape
  rows = math.prod(lead)
  if rows >= 2**32 or columns >= 2**32:
    raise ValueError(f"dropout_bits: shape {shape} has over 2**32 rows or columns")
  k0, k1 = jax.random.bits(rng, (2,), jnp.uint32)
  row_hash = _mix32(jax.lax.iota(jnp.uint32, rows) ^ k0).reshape(*lead, 1)
  return _mix32((row_hash + jax.lax.iota(jnp.uint32, columns)) ^ k1)


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
  """Inverted dropout; the identity when `rng` is None or `rate` is 0.

  The keep mask compares 16-bit random integers with `round(rate * 2**16)`, two per 32-bit word
  of `dropout_bits`: the drop probability is `rate` to within 2**-17 (the scale uses the exact
  keep probability, so the expectation is unchanged). The mask depends only on `rng` and the
  shape, not on sharding.
  """
  if rng is None or rate == 0.0:
    return x
  threshold = round(rate * _DROPOUT_LEVELS)
  keep_prob = 1.0 - threshold / _DROPOUT_LEVELS
  *lead, features = x.shape
  words = dropout_bits(rng, (*lead, (features + 1) // 2))
  levels = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(*lead, -1)[..., :features]
  return jnp.where(levels >= threshold, x / keep_prob, 0).astype(x.dtype)


def gelu(x: jax.Array) -> jax.Array:
  """Exact GELU, x * Phi(x) written with erf as PyTorch does; `jax.nn.gelu(approximate=False)`
  uses erfc, equal to 1e-6 but three times slower on CPU."""
  return 0.5 * x * (1.0 + jax.lax.erf(x * (2.0**-0.5)))


def _fold(rng: jax.Array | None, index: int) -> jax.Array | None:
  return None if rng is None else jax.random.fold_in(rng, index)


def _last_with_first(ndim: int):
  """dot_general dimension numbers contracting x's last axis (of `ndim`) with a kernel's first."""
  return ((ndim - 1,), (0,)), ((), ())


@jax.custom_vjp
def matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """x [..., in] @ kernel [in, out] -> [..., out], with the weight gradient as one contraction.

  Same values and gradients as `x @ kernel`. The backward pass computes the kernel gradient as
  x^T dy, one `dot_general` contracting the token axis of x [tokens, in] and dy [tokens, out]
  directly. Autodiff's transpose of `dot_general` gives a contraction plus a transpose that
  XLA:CPU lowers by materialising a transposed copy of an activation or gradient before a slower
  matmul form: measured on the default model's train step (this 2-core CPU), 485 -> 438 ms.
  """
  return jax.lax.dot_general(x, kernel, _last_with_first(x.ndim))


def _matmul_fwd(x, kernel):
  return matmul(x, kernel), (x, kernel)


def _token_contraction(a: jax.Array, b: jax.Array) -> jax.Array:
  """a [..., m]^T b [..., n] -> [m, n], the sum over tokens of outer products: one contraction."""
  tokens = lambda v: v.reshape(-1, v.shape[-1])  # [..., features] -> [tokens, features]
  return jax.lax.dot_general(tokens(a), tokens(b), (((0,), (0,)), ((), ())))


def _times_transpose(dy: jax.Array, kernel: jax.Array) -> jax.Array:
  """dy [..., out] @ kernel [in, out]^T -> [..., in]."""
  return jax.lax.dot_general(dy, kernel, (((dy.ndim - 1,), (1,)), ((), ())))


def _matmul_bwd(residuals, dy):
  x, kernel = residuals
  return _times_transpose(dy, kernel), _token_contraction(x, dy)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def _merged_kernel(kernel: jax.Array, a: jax.Array, b: jax.Array, scale: float, dtype) -> jax.Array:
  """kernel + scale * a @ b in the parameters' dtype (a @ b at full precision), cast to `dtype`."""
  update = jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)
  return (kernel + scale * update.astype(kernel.dtype)).astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def lora_matmul(x: jax.Array, kernel: jax.Array, a: jax.Array, b: jax.Array,
                scale: float) -> jax.Array:
  """A Linear kernel with its LoRA adapter: x [..., in] @ (kernel [in, out] + scale a [in, rank]
  b [rank, out]) -> [..., out] in x's dtype (Hu et al. 2021, eq. 3, with the adapter merged).

  The same values (to rounding) and gradients as x @ kernel + scale (x @ a) @ b, in fewer and
  larger products: the forward is one product with the merged kernel W' = kernel + scale a b
  (formed in the parameters' dtype, then cast to x's) instead of a product, two rank-wide ones
  and an addition over [..., out]; the backward is dx = dy W'^T, da = scale x^T (dy b^T),
  db = scale (x a)^T dy. The kernel gradient x^T dy is returned too; when the kernel is frozen
  it is not used and XLA drops it from the compiled step (benchmarks/lora_step_flops.py checks).
  On the LoRA rank-16 train step of multilingual-e5-small (batch 32, 24/64 tokens, this 2-core
  CPU) about 12 % less time per step than autodiff of the separate products (BENCHMARKS.md, "LoRA
  step time, after the merged LoRA product").

  Args:
    x: [..., in], the compute dtype.
    kernel: [in, out]; a: [in, rank]; b: [rank, out]: parameters (their gradients in their
      dtypes).
    scale: alpha / rank (a Python float).
  """
  return matmul(x, _merged_kernel(kernel, a, b, scale, x.dtype))


def _lora_matmul_fwd(x, kernel, a, b, scale):
  return lora_matmul(x, kernel, a, b, scale), (x, kernel, a, b)


def _lora_matmul_bwd(scale, residuals, dy):
  x, kernel, a, b = residuals
  dx = _times_transpose(dy, _merged_kernel(kernel, a, b, scale, x.dtype))
  projected = scale * _times_transpose(dy, b.astype(dy.dtype))  # scale dy b^T [..., rank]
  # da = x^T projected, formed as its transpose [rank, in]: XLA:CPU runs a token contraction
  # with a narrow output [in, rank] as a slow generic dot (9.3 ms for [2048, 1536]^T [2048, 16]
  # on this 2-core CPU), the wide one in 1.6 ms; the barrier stops XLA from folding the
  # transposition back into the product.
  da = jax.lax.optimization_barrier(_token_contraction(projected, x)).T
  db = scale * _token_contraction(matmul(x, a.astype(x.dtype)), dy)
  dkernel = _token_contraction(x, dy)
  return (dx, dkernel.astype(kernel.dtype), da.astype(a.dtype), db.astype(b.dtype))


lora_matmul.defvjp(_lora_matmul_fwd, _lora_matmul_bwd)


def _linear_dot_general(x, kernel, dimension_numbers, precision=None, **kwargs):
  """`nnx.Linear`'s `dot_general` hook: `matmul` for its one contraction (x's last axis with the
  kernel's first, default precision); anything else goes to `lax.dot_general` unchanged."""
  standard = dimension_numbers == _last_with_first(x.ndim)
  if standard and precision is None and all(v is None for v in kwargs.values()):
    return matmul(x, kernel)
  return jax.lax.dot_general(x, kernel, dimension_numbers, precision=precision, **kwargs)


class Adapters(NamedTuple):
  """How the LoRA adapters of a forward pass are routed (`Dense`; `hybrid_jax.models.lora`).

  Attributes:
    language: int32 [batch], each row's language adapter (an index into the run's training
      languages), -1 for none (the shared adapter alone: a zero-shot language); None = the shared
      adapter alone for every row.
    dropout_rng: PRNG key enabling LoRA dropout; None = deterministic.
  """
  language: jax.Array | None = None
  dropout_rng: jax.Array | None = None


class Dense(nnx.Linear):
  """`nnx.Linear` with its product through `matmul`, and an optional LoRA adapter.

  Without adapter (`lora_a` None, as built) it is exactly `nnx.Linear`. `lora.add_lora` attaches
  `lora_a` (nnx.LoRAParam [sets, in, rank]), `lora_b` ([sets, rank, out]), `lora_scale`
  (alpha / rank), `lora_dropout` (rate on the adapter's input) and `lora_index` (folds the dropout
  key): then y = x W + b + scale * (x A_0 B_0 + x A_l B_l), LoRA (Hu et al. 2021, eq. 3) with
  set 0 the shared adapter and set l = 1 + row language (`Adapters.language`), a row without
  language (-1) or a model with one set using the shared adapter alone. The shared adapter goes
  through `lora_matmul` (merged into the kernel) unless LoRA dropout is on in training: then the
  adapter's input differs from the kernel's and its products are apart.
  """
  lora_a = None
  lora_b = None

  def __call__(self, inputs: jax.Array, adapters: Adapters | None = None) -> jax.Array:
    """inputs [batch, ..., in] -> [batch, ..., out]."""
    if self.lora_a is None:
      return super().__call__(inputs)
    adapters = adapters or Adapters()
    bias = None if self.bias is None else self.bias[...]
    x, bias = self.promote_dtype((inputs, bias), dtype=self.dtype)
    kernel, a, b = self.kernel[...], self.lora_a[...], self.lora_b[...]
    rng = adapters.dropout_rng
    if rng is None or self.lora_dropout == 0.0:
      x_adapter = x
      y = lora_matmul(x, kernel, a[0], b[0], self.lora_scale)
    else:
      x_adapter = dropout(x, self.lora_dropout, jax.random.fold_in(rng, self.lora_index))
      y = matmul(x, kernel.astype(x.dtype)) + self.lora_scale * matmul(
          matmul(x_adapter, a[0].astype(x.dtype)), b[0].astype(x.dtype))
    if a.shape[0] > 1 and adapters.language is not None:
      y = y + self._language_delta(x_adapter, a.astype(x.dtype), b.astype(x.dtype),
                                   adapters.language)
    return y if bias is None else y + bias

  def _language_delta(self, x: jax.Array, a: jax.Array, b: jax.Array,
                      language: jax.Array) -> jax.Array:
    """scale * x A_l B_l per row, l = 1 + `language` [batch]; 0 on rows whose language is -1."""
    chosen = jnp.maximum(language, 0) + 1  # [batch]: the set of each row
    hidden = jnp.einsum("b...i,bir->b...r", x, a[chosen])
    delta = jnp.einsum("b...r,bro->b...o", hidden, b[chosen])
    has_adapter = (language >= 0).reshape((-1,) + (1,) * (delta.ndim - 1))
    return self.lora_scale * jnp.where(has_adapter, delta, 0)


def dense(in_features: int, out_features: int, config: EncoderConfig, rngs: nnx.Rngs) -> Dense:
  """A `Dense` layer [in_features -> out_features]: float32 params, normal(initializer_range)."""
  return Dense(in_features, out_features, dtype=jnp.dtype(config.dtype), param_dtype=jnp.float32,
               kernel_init=nnx.initializers.normal(config.initializer_range), rngs=rngs,
               dot_general=_linear_dot_general)


def _layer_norm(config: EncoderConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps,
                       dtype=jnp.dtype(config.dtype), param_dtype=jnp.float32, rngs=rngs)


def _embed(num_embeddings: int, config: EncoderConfig, rngs: nnx.Rngs) -> nnx.Embed:
  return nnx.Embed(num_embeddings, config.hidden_size, dtype=jnp.dtype(config.dtype),
                   param_dtype=jnp.float32,
                   embedding_init=nnx.initializers.normal(config.initializer_range), rngs=rngs)


class Embeddings(nnx.Module):
  """Word + position + token type embeddings, LayerNorm, dropout."""

  def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.word_embeddings = _embed(config.vocab_size, config, rngs)
    self.position_embeddings = _embed(config.max_position_embeddings, config, rngs)
    self.token_type_embeddings = _embed(config.type_vocab_size, config, rngs)
    self.layer_norm = _layer_norm(config, rngs)

  def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array,
               dropout_rng: jax.Array | None) -> jax.Array:
    """[batch, seq] ids, [batch, seq] token types -> [batch, seq, hidden] (compute dtype)."""
    x = (
        self.word_embeddings(input_ids)
        + self.position_embeddings(position_ids(input_ids, self.config))
        + self.token_type_embeddings(token_type_ids))
    return dropout(self.layer_norm(x), self.config.hidden_dropout_prob, dropout_rng)


class SelfAttention(nnx.Module):
  """Multi-head self-attention with a padding mask, then output dense (HF `BertAttention`)."""

  def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
    self.config = config
    hidden = config.hidden_size
    self.query = dense(hidden, hidden, config, rngs)
    self.key = dense(hidden, hidden, config, rngs)
    self.value = dense(hidden, hidden, config, rngs)
    self.output = dense(hidden, hidden, config, rngs)

  def __call__(self, x: jax.Array, attention_mask: jax.Array,
               adapters: Adapters | None = None) -> jax.Array:
    """x [batch, seq, hidden], attention_mask bool [batch, 1, 1, seq] -> [batch, seq, hidden]."""
    batch, seq, hidden = x.shape
    heads = (batch, seq, self.config.num_attention_heads, self.config.head_dim)
    context = jax.nn.dot_product_attention(
        self.query(x, adapters).reshape(heads),
        self.key(x, adapters).reshape(heads),
        self.value(x, adapters).reshape(heads), mask=attention_mask, implementation=None)
    return self.output(context.reshape(batch, seq, hidden), adapters)


class EncoderLayer(nnx.Module):
  """One post-LN Transformer layer (HF `BertLayer`)."""

  def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.attention = SelfAttention(config, rngs=rngs)
    self.attention_layer_norm = _layer_norm(config, rngs)
    self.intermediate = dense(config.hidden_size, config.intermediate_size, config, rngs)
    self.output = dense(config.intermediate_size, config.hidden_size, config, rngs)
    self.output_layer_norm = _layer_norm(config, rngs)

  def __call__(self, x: jax.Array, attention_mask: jax.Array, dropout_rng: jax.Array | None,
               adapter_language: jax.Array | None = None) -> jax.Array:
    """x [batch, seq, hidden], attention_mask bool [batch, 1, 1, seq] -> [batch, seq, hidden];
    adapter_language: `Adapters.language`."""
    rate = self.config.hidden_dropout_prob
    adapters = Adapters(adapter_language, _fold(dropout_rng, 2))
    attended = dropout(self.attention(x, attention_mask, adapters), rate, _fold(dropout_rng, 0))
    x = self.attention_layer_norm(x + attended)
    feed_forward = self.output(gelu(self.intermediate(x, adapters)), adapters)
    return self.output_layer_norm(x + dropout(feed_forward, rate, _fold(dropout_rng, 1)))


def _apply_layer(layer: EncoderLayer, x: jax.Array, attention_mask: jax.Array,
                 dropout_rng: jax.Array | None, adapter_language: jax.Array | None) -> jax.Array:
  return layer(x, attention_mask, dropout_rng, adapter_language)


_apply_layer_remat = nnx.remat(_apply_layer)


class TransformerEncoder(nnx.Module):
  """HF `BertModel` / `XLMRobertaModel` forward pass (no attention-prob dropout)."""

  def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.embeddings = Embeddings(config, rngs=rngs)
    self.layers = nnx.List([
        EncoderLayer(config, rngs=rngs) for _ in range(config.num_hidden_layers)
    ])
    self.pooler = (
        dense(config.hidden_size, config.hidden_size, config, rngs)
        if config.pooling == "pooler" else None)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               token_type_ids: jax.Array | None = None, dropout_rng: jax.Array | None = None,
               adapter_language: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
    """Encodes a padded batch.

    Args:
      input_ids: int [batch, seq].
      attention_mask: [batch, seq], nonzero on real tokens.
      token_type_ids: int [batch, seq]; None = zeros.
      dropout_rng: PRNG key enabling hidden dropout; None = deterministic.
      adapter_language: int32 [batch], each row's LoRA language adapter (`Adapters.language`).

    Returns:
      last_hidden_state [batch, seq, hidden] and the pooler output [batch, hidden] (None without
      a pooler), both in the compute dtype.
    """
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    x = self.embeddings(input_ids, token_type_ids, _fold(dropout_rng, 0))
    mask = attention_mask.astype(bool)[:, None, None, :]
    apply = _apply_layer_remat if self.config.remat else _apply_layer
    for index, layer in enumerate(self.layers):
      x = apply(layer, x, mask, _fold(dropout_rng, index + 1), adapter_language)
    pooled = None if self.pooler is None else jnp.tanh(
        self.pooler(x[:, 0], Adapters(adapter_language, _fold(dropout_rng,
                                                              len(self.layers) + 1))))
    return x, pooled


class DualEncoder(nnx.Module):
  """Query and passage towers with pooling, optional projection and L2 normalisation.

  Parameter state (what `nnx.split` gives): `encoder` and `projection` (query tower, or the one
  shared tower), plus `separate_passage_encoder` and `separate_passage_projection` only when
  `shared_tower` is False; each parameter appears once.

  Attributes:
    config: the tower configuration (both towers share it).
    shared_tower: True when queries and passages go through the same parameters.
    encoder: the query tower's TransformerEncoder.
    projection: nnx.Linear [hidden -> projection_dim] of the query tower, or None.
    passage_encoder / passage_projection: the passage tower's (the query tower's when shared).
  """

  def __init__(self, config: EncoderConfig, *, shared_tower: bool = True, rngs: nnx.Rngs):
    self.config = config
    self.shared_tower = shared_tower
    self.encoder = TransformerEncoder(config, rngs=rngs)
    self.projection = self._new_projection(rngs)
    self.separate_passage_encoder = (None if shared_tower else TransformerEncoder(
        config, rngs=rngs))
    self.separate_passage_projection = None if shared_tower else self._new_projection(rngs)

  @property
  def passage_encoder(self) -> TransformerEncoder:
    return self.encoder if self.shared_tower else self.separate_passage_encoder

  @property
  def passage_projection(self) -> nnx.Linear | None:
    return self.projection if self.shared_tower else self.separate_passage_projection

  def _new_projection(self, rngs: nnx.Rngs) -> nnx.Linear | None:
    if not self.config.projection_dim:
      return None
    return dense(self.config.hidden_size, self.config.projection_dim, self.config, rngs)

  def encode_queries(self, input_ids: jax.Array, attention_mask: jax.Array,
                     token_type_ids: jax.Array | None = None, dropout_rng: jax.Array | None = None,
                     adapter_language: jax.Array | None = None) -> jax.Array:
    """Query embeddings.

    Args:
      input_ids: int32 [batch, seq].
      attention_mask: [batch, seq], nonzero on real tokens.
      token_type_ids: int [batch, seq] or None (zeros).
      dropout_rng: PRNG key enabling dropout; None = deterministic.
      adapter_language: int32 [batch], each row's LoRA language adapter, -1 = none
        (`Adapters.language`); None = the shared adapter alone (or no LoRA).

    Returns:
      float32 [batch, embedding_dim].
    """
    return self._embed(self.encoder, self.projection, input_ids, attention_mask, token_type_ids,
                       dropout_rng, adapter_language)

  def encode_passages(self, input_ids: jax.Array, attention_mask: jax.Array,
                      token_type_ids: jax.Array | None = None, dropout_rng: jax.Array | None = None,
                      adapter_language: jax.Array | None = None) -> jax.Array:
    """Passage embeddings, float32 [batch, embedding_dim]; arguments as `encode_queries`."""
    return self._embed(self.passage_encoder, self.passage_projection, input_ids, attention_mask,
                       token_type_ids, dropout_rng, adapter_language)

  def encode(self, tower: str, input_ids: jax.Array, attention_mask: jax.Array,
             token_type_ids: jax.Array | None = None, dropout_rng: jax.Array | None = None,
             adapter_language: jax.Array | None = None) -> jax.Array:
    """`encode_queries` (tower 'query') or `encode_passages` (tower 'passage'): the one place
    that maps a tower name to its parameters. Arguments and result as `encode_queries`.

    Raises:
      ValueError: `tower` is not in `TOWERS`.
    """
    if tower == "query":
      return self.encode_queries(input_ids, attention_mask, token_type_ids, dropout_rng,
                                 adapter_language)
    if tower == "passage":
      return self.encode_passages(input_ids, attention_mask, token_type_ids, dropout_rng,
                                  adapter_language)
    raise ValueError(f"tower={tower!r}: expected one of {TOWERS}")

  def _embed(self, encoder, projection, input_ids, attention_mask, token_type_ids, dropout_rng,
             adapter_language):
    last_hidden_state, pooled = encoder(input_ids, attention_mask, token_type_ids, dropout_rng,
                                        adapter_language)
    embedding = pool(self.config.pooling, last_hidden_state, attention_mask, pooled)
    if projection is not None:
      embedding = projection(embedding)
    embedding = embedding.astype(jnp.float32)
    return l2_normalize(embedding) if self.config.normalize else embedding


@functools.lru_cache(maxsize=8)
def encode_fn(graphdef: nnx.GraphDef) -> EncodeFn:
  """`DualEncoder.encode` as a pure function of the parameters, deterministic (no dropout).

  The encode function a trainer hands its evaluators: (params, tower, input_ids [batch, seq],
  attention_mask [batch, seq], token_type_ids [batch, seq], adapter_language int32 [batch] or
  None) -> float32 [batch, embedding_dim], with params the pure dict of the model's state
  (`nnx.to_pure_dict(nnx.split(model)[1])`); adapter_language routes per-language LoRA adapters
  (`Adapters.language`).
  One function object per `graphdef`, so a caller that jits it per (function, tower) compiles
  once per model structure however often it is asked.
  """

  def encode(params, tower: str, input_ids, attention_mask, token_type_ids,
             adapter_language=None) -> jax.Array:
    return nnx.merge(graphdef, params).encode(tower, input_ids, attention_mask, token_type_ids,
                                              adapter_language=adapter_language)

  return encode


def split_for_encoding(model: DualEncoder) -> tuple[EncodeFn, dict[str, Any]]:
  """(`encode_fn` of the model's structure, its parameters as a pure dict)."""
  graphdef, state = nnx.split(model)
  return encode_fn(graphdef), nnx.to_pure_dict(state)
