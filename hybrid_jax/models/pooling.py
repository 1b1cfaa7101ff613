"""Sentence embeddings from token vectors: cls, masked mean, BERT pooler; L2 normalisation."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def pool(pooling: str, last_hidden_state: jax.Array, attention_mask: jax.Array,
         pooler_output: jax.Array | None) -> jax.Array:
  """One vector per sequence.

  Args:
    pooling: 'cls' (first token), 'mean' (mean over tokens whose mask is nonzero) or 'pooler'
      (`pooler_output`, the BERT pooler's dense + tanh on the first token).
    last_hidden_state: [batch, seq, hidden].
    attention_mask: [batch, seq], nonzero on real tokens.
    pooler_output: [batch, hidden], or None when the encoder has no pooler.

  Returns:
    float32 [batch, hidden]. A row with no real token pools to zeros under 'mean'.
  """
  if pooling == "cls":
    return last_hidden_state[:, 0].astype(jnp.float32)
  if pooling == "mean":
    mask = attention_mask.astype(jnp.float32)
    summed = jnp.einsum("bs,bsh->bh", mask, last_hidden_state.astype(jnp.float32),
                        precision=jax.lax.Precision.HIGHEST)  # exact float32 on TPU too
    return summed / jnp.maximum(jnp.sum(mask, axis=1, keepdims=True), 1.0)
  if pooling == "pooler":
    if pooler_output is None:
      raise ValueError("pooling='pooler' needs an encoder built with a pooler")
    return pooler_output.astype(jnp.float32)
  raise ValueError(f"unknown pooling={pooling!r}; expected 'cls', 'mean' or 'pooler'")


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """x / max(||x||_2, eps) along the last axis (as torch.nn.functional.normalize).

  Written with rsqrt of the clamped squared norm so an all-zero row has a finite gradient.
  """
  squared_norm = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(squared_norm, eps * eps))
