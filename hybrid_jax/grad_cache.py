"""Gradient cache (GradCache, Gao et al. 2021): a contrastive step over a global batch whose
activations do not fit in memory, with the same loss and gradients as the plain step.

    1. encode the batch chunk by chunk, forward only (no activations kept)  -> embeddings [B, ...]
    2. loss of all embeddings at once (globally gathered negatives, as the plain step), and its
       gradient with respect to the embeddings (and to non-encoder params, e.g. the temperature)
    3. re-encode chunk by chunk and accumulate parameter gradients with `jax.vjp`, the chunk's
       embedding gradients as cotangents

Peak activation memory is that of one chunk; the price is a second forward pass per chunk.

Chunking and the batch sharding: the global batch `[B, ...]` is split over the devices in
contiguous blocks of `B / D` rows (sharding.BATCH_SPEC). `to_chunks` splits each device's block
into `num_chunks` consecutive slices and stacks them chunk-major, `[num_chunks, C, ...]` with
`C = B / num_chunks` rows per chunk, so every chunk is spread over all devices (`C / D` rows on
each) and chunking moves no data between devices. Chunk c holds, from device d, the rows
`d * B/D + c * C/D ...`: the chunks are not contiguous slices of the global batch, which is
immaterial because the loss sees the embeddings back in batch order (`from_chunks`).

Dropout: chunk c encodes with `fold_in(rng, c)` in both passes (the masks of pass 1 and pass 3
must agree). The plain step draws its masks for the whole batch from `rng`, so with dropout on
the two steps use different, identically distributed masks; they give the same update with
dropout off (as the tests check).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from hybrid_jax import sharding
from hybrid_jax.errors import ConfigError

# embed_fn(params, batch, rng) -> pytree of embeddings, each [rows, ...] for the batch's rows.
EmbedFn = Callable[[Any, Any, jax.Array], Any]
# loss_fn(params, embeddings, batch) -> (scalar loss, metrics), over the whole global batch.
EmbeddingLossFn = Callable[[Any, Any, Any], tuple[jax.Array, Any]]

CHUNK_SPEC = P(None, sharding.BATCH_AXES)


def num_chunks(global_batch_size: int, chunk_size: int, mesh: Mesh) -> int:
  """Number of chunks of `chunk_size` global rows, checking that the scheme applies.

  Args:
    global_batch_size: B, rows of the global batch.
    chunk_size: C, rows of the global batch encoded at once (`config.train.grad_cache_chunk_size`).
    mesh: the device mesh; each device encodes `C / num_devices` rows per chunk.

  Returns:
    `B // C`.

  Raises:
    ConfigError: unless C divides B and the number of devices divides C.
  """
  if chunk_size < 1 or global_batch_size % chunk_size:
    raise ConfigError(f"config.train.grad_cache_chunk_size={chunk_size} must divide the global "
                      f"batch ({global_batch_size} rows)")
  # Every chunk is spread over all devices.
  sharding.check_global_batch(chunk_size, mesh, field="config.train.grad_cache_chunk_size")
  return global_batch_size // chunk_size


def to_chunks(mesh: Mesh, tree: Any, count: int) -> Any:
  """`[B, ...]` batch-sharded leaves -> `[count, B / count, ...]`, each chunk over all devices.

  Each device splits its own `[B / D, ...]` rows into `count` consecutive slices (no
  communication); see the module docstring for the row order.
  """

  def split(x):
    return x.reshape((count, x.shape[0] // count) + x.shape[1:])

  return jax.shard_map(lambda t: jax.tree.map(split, t), mesh=mesh, in_specs=sharding.BATCH_SPEC,
                       out_specs=CHUNK_SPEC)(
                           tree)


def from_chunks(mesh: Mesh, tree: Any) -> Any:
  """Inverse of `to_chunks`: `[count, C, ...]` leaves -> `[count * C, ...]` in batch order."""

  def merge(x):
    return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])

  return jax.shard_map(lambda t: jax.tree.map(merge, t), mesh=mesh, in_specs=CHUNK_SPEC,
                       out_specs=sharding.BATCH_SPEC)(
                           tree)


def value_and_grad(
    embed_fn: EmbedFn, loss_fn: EmbeddingLossFn, chunk_size: int,
    mesh: Mesh) -> Callable[[Any, Any, jax.Array], tuple[tuple[jax.Array, Any], Any]]:
  """The gradient-cache counterpart of `jax.value_and_grad(plain_loss, has_aux=True)`.

  With `plain_loss(params, batch, rng) = loss_fn(params, embed_fn(params, batch, rng), batch)`,
  the returned function gives the same `((loss, metrics), grads)` (up to dropout masks, see the
  module docstring) while holding the activations of one chunk at a time.

  Args:
    embed_fn: `(params, batch, rng) -> embeddings`, a pytree of `[rows, ...]` arrays; called on
      chunks of the batch. It must treat rows independently (no cross-row interaction).
    loss_fn: `(params, embeddings, batch) -> (loss, metrics)` on the whole global batch; its
      gradient with respect to `params` (e.g. a learned temperature) is added to the encoder's.
    chunk_size: global rows per chunk (see `num_chunks`).
    mesh: the device mesh the batch is sharded over (sharding.BATCH_SPEC).

  Returns:
    `(params, batch, rng) -> ((loss, metrics), grads)`; every leaf of `batch` is `[B, ...]`.
  """

  def cached_value_and_grad(params, batch, rng):
    global_batch_size = jax.tree.leaves(batch)[0].shape[0]
    count = num_chunks(global_batch_size, chunk_size, mesh)
    chunks = to_chunks(mesh, batch, count)
    chunk_rngs = jax.vmap(lambda c: jax.random.fold_in(rng, c))(jnp.arange(count))

    def encode(carry, chunk_and_rng):
      chunk, chunk_rng = chunk_and_rng
      return carry, jax.lax.stop_gradient(embed_fn(params, chunk, chunk_rng))

    _, embedding_chunks = jax.lax.scan(encode, None, (chunks, chunk_rngs))
    embeddings = from_chunks(mesh, embedding_chunks)
    (loss, metrics), (loss_grads, embedding_grads) = jax.value_and_grad(
        loss_fn, argnums=(0, 1), has_aux=True)(params, embeddings, batch)

    def accumulate(grads, chunk_cotangent_rng):
      chunk, cotangent, chunk_rng = chunk_cotangent_rng
      _, embed_vjp = jax.vjp(lambda p: embed_fn(p, chunk, chunk_rng), params)
      (chunk_grads,) = embed_vjp(cotangent)
      return jax.tree.map(jnp.add, grads, chunk_grads), None

    grads, _ = jax.lax.scan(accumulate, loss_grads,
                            (chunks, to_chunks(mesh, embedding_grads, count), chunk_rngs))
    return (loss, metrics), grads

  return cached_value_and_grad
