"""Evaluation encoding: token arrays -> embeddings with a given encode function, length-bucketed,
batch-sharded and jitted (`Encoder`).

The encode function is handed in (`hybrid_jax.models.encode_fn`: the trainer's, or that of a
loaded model via `models.split_for_encoding`), so evaluation never reaches into a model: it jits
`encode_fn(params, tower, input_ids, attention_mask, token_type_ids) -> [B, D]` once per
(function, tower, mesh), batch sharded over every device of the mesh, parameters replicated.

Rows are sorted by token length and cut into buckets of static padded length
`bucket_lengths(max_len)` = 32, 64, 128, ... (doubling) up to `max_len` (the last bucket is
`max_len` itself: 96 -> 32/64/96), and every batch is padded to the same `batch_size` rows (a
multiple of the device count), so a whole evaluation compiles at most one program per (tower,
bucket) and the final partial batch reuses it. Embeddings come back in the original row order.
Bucketing only drops padding columns: with right padding and masked attention/pooling, a row's
embedding does not depend on its bucket (to float rounding). It pays off for queries and for
passages without context (BEIR); an XQuAD-R candidate (sentence + paragraph) nearly always fills
`passage_max_len`, so candidate encoding costs its full length.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from hybrid_jax import progress as progress_lib
from hybrid_jax import sharding
from hybrid_jax.models.encoder import TOWERS, EncodeFn

SMALLEST_BUCKET = 32
DEFAULT_BATCH_SIZE = 128

Tokens = dict[str, np.ndarray]


def bucket_lengths(max_len: int, smallest: int = SMALLEST_BUCKET) -> tuple[int, ...]:
  """Static padded lengths: smallest, 2*smallest, ... below `max_len`, then `max_len`.

  Args:
    max_len: the tokenizer's padded length (tokens).
    smallest: the first bucket.

  Returns:
    Increasing lengths ending with max_len, e.g. 96 -> (32, 64, 96), 32 -> (32,).
  """
  if max_len < 1:
    raise ValueError(f"bucket_lengths: max_len={max_len} must be positive")
  lengths, length = [], smallest
  while length < max_len:
    lengths.append(length)
    length *= 2
  return tuple(lengths) + (max_len,)


def round_batch_size(batch_size: int, mesh) -> int:
  """`batch_size` rounded up to a multiple of the number of batch shards of `mesh`."""
  shards = sharding.num_batch_shards(mesh)
  if batch_size < 1:
    raise ValueError(f"eval batch_size={batch_size} must be positive")
  return -(-batch_size // shards) * shards


@functools.lru_cache(maxsize=16)
def _jitted_encode(encode_fn: EncodeFn, tower: str, mesh, with_language: bool = False):
  """(params, input_ids, attention_mask, token_type_ids[, adapter_language]) -> [B, D], jitted
  once per (encode_fn, tower, mesh, with_language) so repeated evaluations in training reuse the
  compiled programs."""

  def encode(params, *arrays):
    return encode_fn(params, tower, *arrays)

  batch = sharding.batch_sharding(mesh)
  return jax.jit(encode, in_shardings=(sharding.replicated(mesh),) + (batch,) *
                 (4 if with_language else 3), out_shardings=sharding.replicated(mesh))


class Encoder:
  """Length-bucketed, sharded, jitted encoding of token arrays with a given encode function.

  Args:
    encode_fn: (params, tower, input_ids, attention_mask, token_type_ids) -> float32 [B, D]
      (`hybrid_jax.models.encode_fn`); the same object for every call, so its programs are
      compiled once.
    params: its parameters (a pytree; copied to every device of `mesh`, replicated).
    mesh: device mesh; batches are split over `sharding.batch_sharding(mesh)`.
    batch_size: rows per encoded batch, rounded up to a multiple of the device count.
    smallest_bucket: first padded length of `bucket_lengths`.
    show_progress: draw a progress bar (process 0 only).
  """

  def __init__(self, encode_fn: EncodeFn, params, mesh, batch_size: int = DEFAULT_BATCH_SIZE, *,
               smallest_bucket: int = SMALLEST_BUCKET, show_progress: bool = True):
    self.mesh = mesh
    self.batch_size = round_batch_size(batch_size, mesh)
    self.smallest_bucket = smallest_bucket
    self.show_progress = show_progress and jax.process_index() == 0
    self._params = jax.device_put(params, sharding.replicated(mesh))
    self._encode_fn = encode_fn
    self._batch_sharding = sharding.batch_sharding(mesh)

  def _device_batch(self, array: np.ndarray) -> jax.Array:
    # Every process passes the whole (identical) batch and contributes its own devices' rows.
    return jax.make_array_from_callback(array.shape, self._batch_sharding,
                                        lambda index: array[index])

  def _batches(self, mask: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """(row indices, padded length) of every batch: rows sorted by token length (stably), cut
    into buckets, each bucket into batches of at most `batch_size` rows."""
    num_rows, max_len = mask.shape
    lengths = mask.astype(bool).sum(axis=1)
    last_real = np.where(mask.any(axis=1), max_len - np.argmax(mask[:, ::-1] != 0, axis=1), 0)
    if np.any(last_real != lengths):
      raise ValueError("Encoder: token rows must be right-padded (attention_mask 1...1 0...0)")
    buckets = bucket_lengths(max_len, self.smallest_bucket)
    bucket_of = np.searchsorted(np.asarray(buckets), lengths, side="left")
    order = np.lexsort((np.arange(num_rows), lengths))  # by length, stable
    batches = []
    for b, length in enumerate(buckets):
      rows = order[bucket_of[order] == b]
      batches += [
          (rows[i:i + self.batch_size], length) for i in range(0, len(rows), self.batch_size)
      ]
    return batches

  def __call__(self, tokens: Tokens, tower: str, desc: str = "",
               adapter_language: np.ndarray | None = None) -> np.ndarray:
    """Embeds tokenized rows.

    Args:
      tokens: input_ids, attention_mask, token_type_ids: int32 [N, max_len], right-padded.
      tower: "query" or "passage".
      desc: progress bar label.
      adapter_language: int32 [N], each row's LoRA language adapter (-1: the shared adapter
        alone), passed to the encode function; None = not passed.

    Returns:
      float32 [N, D], row i = embedding of tokens row i.

    Raises:
      ValueError: an unknown tower; rows not right-padded.
    """
    if tower not in TOWERS:
      raise ValueError(f"tower={tower!r}: expected one of {TOWERS}")
    mask = np.asarray(tokens["attention_mask"])
    num_rows = mask.shape[0]
    encode = _jitted_encode(self._encode_fn, tower, self.mesh, adapter_language is not None)
    batches = self._batches(mask)
    out = None
    progress = progress_lib.Progress(num_rows, desc=desc or f"encode {tower} tower", unit="seq",
                                     enabled=self.show_progress and num_rows > 0)
    done, pending = 0, None

    def collect(item):
      nonlocal out, done
      rows, emb = item
      emb = np.asarray(emb)[:len(rows)]
      if out is None:
        out = np.empty((num_rows, emb.shape[1]), np.float32)
      out[rows] = emb
      done += len(rows)
      progress.update(done)

    for rows, length in batches:
      # Pad with copies of the batch's first row: a valid input whose output is dropped.
      padded = np.concatenate([rows, np.full(self.batch_size - len(rows), rows[0])])
      arrays = [
          self._device_batch(np.ascontiguousarray(tokens[key][padded, :length]))
          for key in ("input_ids", "attention_mask", "token_type_ids")
      ]
      if adapter_language is not None:
        arrays.append(self._device_batch(np.asarray(adapter_language, np.int32)[padded]))
      emb = encode(self._params, *arrays)
      if pending is not None:  # Fetch the previous batch while this one computes.
        collect(pending)
      pending = (rows, emb)
    if pending is not None:
      collect(pending)
    if out is None:
      return np.zeros((0, 0), np.float32)
    return out
