"""InfoNCE over in-batch negatives gathered across the global batch.

Query i of the global batch scores against every passage of the global batch (and every hard
negative, if given); its positive is passage i. A passage whose key equals the key of query i's
positive (other than passage i itself) is the same passage under another example, not a
negative: it is masked out of query i's softmax, so correctness does not depend on the sampler
avoiding duplicates. The symmetric variant adds the passage-to-query direction (passage i scores
against every query; queries whose positive has passage i's key are masked) and averages.

Scores are dot products of the embeddings as given (normalize them in the encoder for cosine),
divided by `temperature`, computed in float32 whatever the embedding dtype.

Two entry points compute the same numbers:
  * `contrastive_loss`: global view, plain jnp on `[global_batch, ...]` arrays; the reference,
    and usable under jit on sharded arrays (the mesh must have Auto axes, see sharding.py).
  * `sharded_contrastive_loss`: `jax.shard_map` over the batch axes; each device scores its own
    queries against passages all-gathered from every device (on every host). Gradients flow back
    through `all_gather` (its transpose is a reduce-scatter).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from hybrid_jax import sharding

Metrics = dict[str, jax.Array]


def _direction_sums(anchors, anchor_keys, positive_index, candidates, candidate_keys,
                    temperature) -> Metrics:
  """InfoNCE of some anchor rows against a candidate pool, summed over the rows.

  Args:
    anchors: [rows, dim] embeddings of the scored rows (queries, or passages when symmetric).
    anchor_keys: int [rows], passage key of each row's positive.
    positive_index: int [rows], column of each row's positive in `candidates`.
    candidates: [pool, dim] embeddings of every candidate.
    candidate_keys: int [pool], passage key of each candidate.
    temperature: scalar; logits are scores / temperature.

  Returns:
    Sums over rows: `loss`, `correct` (positive is the top-1), `positive_logit`;
    over (row, candidate) negatives: `negative_logit`, `num_negatives`; and `num_masked`, the
    number of (row, candidate) pairs masked as duplicates of the row's positive.
  """
  logits = jnp.einsum("rd,pd->rp", anchors, candidates,
                      preferred_element_type=jnp.float32) / temperature
  is_positive = jnp.arange(candidates.shape[0])[None, :] == positive_index[:, None]
  is_masked = (candidate_keys[None, :] == anchor_keys[:, None]) & ~is_positive
  is_negative = ~is_positive & ~is_masked
  scored = jnp.where(is_masked, -jnp.inf, logits)
  positive_logit = jnp.take_along_axis(logits, positive_index[:, None], axis=1)[:, 0]
  row_loss = jax.nn.logsumexp(scored, axis=1) - positive_logit
  return {
      "loss": jnp.sum(row_loss),
      "correct": jnp.sum(jnp.argmax(scored, axis=1) == positive_index, dtype=jnp.float32),
      "positive_logit": jnp.sum(positive_logit),
      "negative_logit": jnp.sum(jnp.where(is_negative, logits, 0.0)),
      "num_negatives": jnp.sum(is_negative, dtype=jnp.float32),
      "num_masked": jnp.sum(is_masked, dtype=jnp.float32),
  }


def _loss_sums(query_rows, passage_rows, key_rows, positive_index, all_queries, all_passages,
               all_keys, all_hard_negatives, all_hard_negative_keys, temperature,
               symmetric) -> list[Metrics]:
  """Sums of one or both directions for some rows of the batch against the whole pool.

  Args:
    query_rows, passage_rows: [rows, dim], the rows this call scores.
    key_rows: int [rows], their passage keys.
    positive_index: int [rows], global batch index of each row.
    all_queries: [batch, dim] (used only if symmetric), the pool of queries.
    all_passages: [batch, dim], the pool of passages (global, or local for local negatives).
    all_keys: int [batch].
    all_hard_negatives: [batch, hard, dim] or None.
    all_hard_negative_keys: int [batch, hard] or None.
    temperature: scalar.
    symmetric: also score passage rows against all queries.

  Returns:
    `[query_to_passage_sums]`, plus `passage_to_query_sums` if symmetric.
  """
  candidates, candidate_keys = all_passages, all_keys
  if all_hard_negatives is not None:
    dim = all_hard_negatives.shape[-1]
    candidates = jnp.concatenate([candidates, all_hard_negatives.reshape(-1, dim)])
    candidate_keys = jnp.concatenate([candidate_keys, all_hard_negative_keys.reshape(-1)])
  sums = [
      _direction_sums(query_rows, key_rows, positive_index, candidates, candidate_keys, temperature)
  ]
  if symmetric:
    sums.append(
        _direction_sums(passage_rows, key_rows, positive_index, all_queries, all_keys, temperature))
  return sums


def _metrics(sums: list[Metrics], global_batch_size: int) -> tuple[jax.Array, Metrics]:
  """Loss and metrics from the summed directions (metrics other than loss: query-to-passage)."""
  q2p = sums[0]
  loss = sum(s["loss"] for s in sums) / (len(sums) * global_batch_size)
  metrics = {
      "loss": loss,
      "accuracy": q2p["correct"] / global_batch_size,
      "positive_logit": q2p["positive_logit"] / global_batch_size,
      "negative_logit": q2p["negative_logit"] / jnp.maximum(q2p["num_negatives"], 1.0),
      "num_masked": q2p["num_masked"],
  }
  return loss, metrics


def _check_inputs(query_emb, passage_emb, passage_keys, hard_negative_emb, hard_negative_keys):
  """Raises ValueError naming the argument whose shape or dtype is wrong."""
  if query_emb.ndim != 2 or passage_emb.shape != query_emb.shape:
    raise ValueError(f"contrastive loss: query_emb {query_emb.shape} and passage_emb "
                     f"{passage_emb.shape} must both be [batch, dim]")
  batch, dim = query_emb.shape
  if passage_keys.shape != (batch,) or not jnp.issubdtype(passage_keys.dtype, jnp.integer):
    raise ValueError(f"contrastive loss: passage_keys must be int [batch={batch}], got "
                     f"{passage_keys.dtype} {passage_keys.shape}")
  if (hard_negative_emb is None) != (hard_negative_keys is None):
    raise ValueError("contrastive loss: pass hard_negative_emb and hard_negative_keys together")
  if hard_negative_emb is not None:
    if hard_negative_emb.ndim != 3 or hard_negative_emb.shape[::2] != (batch, dim):
      raise ValueError(f"contrastive loss: hard_negative_emb must be [batch={batch}, hard, "
                       f"dim={dim}], got {hard_negative_emb.shape}")
    if (hard_negative_keys.shape != hard_negative_emb.shape[:2]
        or not jnp.issubdtype(hard_negative_keys.dtype, jnp.integer)):
      raise ValueError(f"contrastive loss: hard_negative_keys must be int "
                       f"{hard_negative_emb.shape[:2]}, got {hard_negative_keys.dtype} "
                       f"{hard_negative_keys.shape}")


def contrastive_loss(query_emb: jax.Array, passage_emb: jax.Array, passage_keys: jax.Array, *,
                     temperature: float | jax.Array, symmetric: bool = False,
                     hard_negative_emb: jax.Array | None = None,
                     hard_negative_keys: jax.Array | None = None) -> tuple[jax.Array, Metrics]:
  """InfoNCE with in-batch negatives, global view.

  Args:
    query_emb: [batch, dim] query embeddings of the global batch.
    passage_emb: [batch, dim] positive passage embeddings; passage i is query i's positive.
    passage_keys: int [batch]; equal keys mean the same passage (see module docstring).
    temperature: positive scalar (float, or array, e.g. exp of a learned log-temperature).
    symmetric: average with the passage-to-query loss.
    hard_negative_emb: optional [batch, hard, dim]; every hard negative of every example is a
      candidate for every query.
    hard_negative_keys: int [batch, hard], passage keys of the hard negatives (required with
      `hard_negative_emb`).

  Returns:
    `(loss, metrics)`: scalar mean loss, and scalars `loss`, `accuracy` (positive ranked first),
    `positive_logit` (mean), `negative_logit` (mean over unmasked negatives), `num_masked`
    (number of masked (query, passage) pairs); all but `loss` are query-to-passage.
  """
  _check_inputs(query_emb, passage_emb, passage_keys, hard_negative_emb, hard_negative_keys)
  batch = query_emb.shape[0]
  sums = _loss_sums(query_emb, passage_emb, passage_keys, jnp.arange(batch), query_emb, passage_emb,
                    passage_keys, hard_negative_emb, hard_negative_keys, temperature, symmetric)
  return _metrics(sums, batch)


def sharded_contrastive_loss(mesh: Mesh, query_emb: jax.Array, passage_emb: jax.Array,
                             passage_keys: jax.Array, *, temperature: float | jax.Array,
                             symmetric: bool = False, hard_negative_emb: jax.Array | None = None,
                             hard_negative_keys: jax.Array | None = None,
                             global_negatives: bool = True) -> tuple[jax.Array, Metrics]:
  """`contrastive_loss` computed per device with `shard_map` over the batch axes of `mesh`.

  Arguments and results are those of `contrastive_loss` (global arrays, batch-sharded or not;
  the global batch must be a multiple of the number of devices), plus:

  Args:
    mesh: the device mesh (sharding.make_mesh).
    global_negatives: True (the method): all-gather passages, hard negatives and (symmetric)
      queries so every query scores against the global pool. False: each device scores only
      its own slice (a baseline; the loss then differs from `contrastive_loss`).
  """
  _check_inputs(query_emb, passage_emb, passage_keys, hard_negative_emb, hard_negative_keys)
  global_batch_size = query_emb.shape[0]
  local_batch_size = sharding.check_global_batch(global_batch_size, mesh)

  def per_device(queries, passages, keys, temperature, *hard_negatives):
    rows = jnp.arange(local_batch_size)
    if global_negatives:
      gather = lambda x: jax.lax.all_gather(x, sharding.BATCH_AXES, tiled=True)
      positive_index = jax.lax.axis_index(sharding.BATCH_AXES) * local_batch_size + rows
    else:
      gather = lambda x: x
      positive_index = rows
    all_hard_negatives = [gather(x) for x in hard_negatives] or [None, None]
    all_queries = gather(queries) if symmetric else None
    sums = _loss_sums(queries, passages, keys, positive_index, all_queries, gather(passages),
                      gather(keys), *all_hard_negatives, temperature, symmetric)
    return jax.lax.psum(sums, sharding.BATCH_AXES)

  hard_negative_args = (() if hard_negative_emb is None else
                        (hard_negative_emb, hard_negative_keys))
  sums = jax.shard_map(
      per_device,
      mesh=mesh,
      in_specs=(sharding.BATCH_SPEC,) * 3 + (P(),) +
      (sharding.BATCH_SPEC,) * len(hard_negative_args),
      out_specs=P(),
  )(query_emb, passage_emb, passage_keys, jnp.asarray(temperature, jnp.float32),
    *hard_negative_args)
  return _metrics(sums, global_batch_size)
