"""Evaluation encoding: bucketed/sharded encoding with a given encode function equals plain
encoding through the model's own tower methods."""

import jax
import numpy as np
import pytest

from conftest import EVAL_BATCH_SIZE, plain_encode
from hybrid_jax import encoding
from hybrid_jax import models
from hybrid_jax import sharding


def _encoder(model, mesh):
  return encoding.Encoder(*models.split_for_encoding(model), mesh, EVAL_BATCH_SIZE,
                          show_progress=False)


def test_bucket_lengths():
  assert encoding.bucket_lengths(96) == (32, 64, 96)
  assert encoding.bucket_lengths(32) == (32,)
  assert encoding.bucket_lengths(256) == (32, 64, 128, 256)
  assert encoding.bucket_lengths(20) == (20,)


def test_round_batch_size():
  mesh = sharding.make_mesh()
  assert encoding.round_batch_size(13, mesh) == 16
  assert encoding.round_batch_size(16, mesh) == 16


def test_encode_fn_is_one_function_per_structure_and_picks_the_tower(eval_model,
                                                                     eval_passage_tokens):
  encode_fn, params = models.split_for_encoding(eval_model)
  assert models.split_for_encoding(eval_model)[0] is encode_fn  # jitted once per structure
  tokens = {key: value[:4] for key, value in eval_passage_tokens.items()}
  arrays = (tokens["input_ids"], tokens["attention_mask"], tokens["token_type_ids"])
  for tower in models.TOWERS:
    np.testing.assert_allclose(
        np.asarray(jax.jit(encode_fn, static_argnums=1)(params, tower, *arrays)),
        plain_encode(eval_model, tower, tokens), rtol=0, atol=1e-6)
  with pytest.raises(ValueError, match="tower='answer'"):
    eval_model.encode("answer", *arrays)


def test_encode_order_and_bucketing_invariance(eval_model, eval_passage_tokens):
  lengths = eval_passage_tokens["attention_mask"].sum(1)
  assert lengths.min() <= 32 < lengths.max()  # both buckets are used
  # Reference: one unbucketed, unpadded batch at the full length, on one device.
  expected = plain_encode(eval_model, "passage", eval_passage_tokens)
  # 45 rows in batches of EVAL_BATCH_SIZE: a padded final batch in both buckets.
  encoder = _encoder(eval_model, sharding.make_mesh())
  np.testing.assert_allclose(encoder(eval_passage_tokens, "passage"), expected, rtol=0, atol=2e-5)


def test_sharded_encode_equals_one_device(eval_model, eval_passage_tokens):
  one = _encoder(eval_model, sharding.make_mesh(1))
  eight = _encoder(eval_model, sharding.make_mesh(8))
  assert len(jax.devices()) == 8
  np.testing.assert_allclose(
      eight(eval_passage_tokens, "passage"), one(eval_passage_tokens, "passage"), rtol=0, atol=2e-5)


def test_encoder_rejects_left_padding(eval_model, eval_passage_tokens):
  flipped = {key: value[:, ::-1].copy() for key, value in eval_passage_tokens.items()}
  with pytest.raises(ValueError, match="right-padded"):
    _encoder(eval_model, sharding.make_mesh(1))(flipped, "passage")
