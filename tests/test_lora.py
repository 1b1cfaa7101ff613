"""LoRA adapters (hybrid_jax.models.lora): step 0 is the base model bitwise, per-language routing
reaches exactly the routed rows and towers, the merged and PEFT exports equal the adapted model
(PyTorch + peft as the reference), checkpoints hold the adapters and the base's identity only.
The sharded steps with LoRA are in test_train / test_fsdp / test_grad_cache; a whole LoRA run,
its exact resume and its evaluation in test_lora_run.py."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import peft
import pytest
import torch
import transformers
from flax import nnx

from hybrid_jax import sharding
from hybrid_jax import train
from hybrid_jax.errors import UserError
from hybrid_jax.models import create_model, encoder, lora, save_pretrained
from hybrid_jax.models.config import model_config

LANGUAGES = ("en", "de", "ar")
BATCH, SEQ, VOCAB = 6, 12, 97


def _model(**fields):
  config = model_config(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=40,
                        **fields)
  return create_model(config, seed=0)


def _tokens(seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(3, SEQ + 1, size=BATCH)
  mask = (np.arange(SEQ) < lengths[:, None]).astype(np.int32)
  ids = np.where(mask, rng.integers(3, VOCAB, size=(BATCH, SEQ)), 1).astype(np.int32)
  return ids, mask, np.zeros_like(ids)


def _randomize(model, seed=1, scale=0.2):
  """Random B (and A) in every adapter set: a trained-looking adapter."""
  for index, layer in enumerate(lora.adapted_layers(model).values()):
    key = jax.random.fold_in(jax.random.key(seed), index)
    layer.lora_b[...] = scale * jax.random.normal(key, layer.lora_b.shape)
  return model


@nnx.jit
def _encode_queries(model, ids, mask, types, language=None):
  return model.encode("query", ids, mask, types, adapter_language=language)


def test_step_zero_is_the_base_model_bitwise_and_only_targets_adapt():
  """(The passage tower of this one-tower model is the same encoder.)"""
  model = _model()
  ids, mask, types = _tokens()
  expected = np.asarray(_encode_queries(model, ids, mask, types))
  lora.add_lora(model, lora.LoraSpec(rank=4, alpha=8.0, languages=LANGUAGES), seed=0)
  adapted = sorted(lora.adapted_layers(model))
  assert adapted == sorted(f"encoder/layers/{i}/{name}" for i in range(1)
                           for name in ("attention/query", "attention/key", "attention/value",
                                        "attention/output", "intermediate", "output"))
  layer = lora.adapted_layers(model)["encoder/layers/0/intermediate"]
  assert layer.lora_a.shape == (4, 32, 4) and layer.lora_b.shape == (4, 4, 64)  # 1 + 3 sets
  assert float(jnp.abs(layer.lora_a[...]).max()) > 0 and not jnp.any(layer.lora_b[...])
  for routing in (None, jnp.asarray([0, 1, 2, -1, 0, 1])):
    got = np.asarray(_encode_queries(model, ids, mask, types, routing))
    assert np.array_equal(got, expected), routing


def test_targets_outside_the_encoder_or_matching_nothing_are_config_errors():
  with pytest.raises(UserError, match=r"model.lora.targets='projection' matches \['projection'\]"):
    lora.add_lora(_model(projection_dim=8), lora.LoraSpec(4, 8.0, targets="projection"), seed=0)
  with pytest.raises(UserError, match="matches no Linear layer"):
    lora.add_lora(_model(), lora.LoraSpec(4, 8.0, targets="nothing_like_this"), seed=0)


def _config_with_lora(**lora_fields):
  config = train.config_lib.default_config("model=tiny,langs=en+de+ar,steps=10")
  config.model.update(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=40)
  config.model.lora.update(rank=4, alpha=8.0, **lora_fields)
  return config


def test_each_tower_uses_its_own_texts_language_adapter():
  """Perturbing the 'de' adapter changes exactly the query rows whose query is German and the
  passage rows whose passage is German (a cross-lingual batch trains two adapters against each
  other); the shared adapter reaches every row."""
  config = _config_with_lora(per_language=True)
  model = _model()
  train.add_lora(config, model)
  _randomize(model)
  graphdef, params = train.init_params(model, config.loss)
  mesh = sharding.make_mesh(1)
  embed = jax.jit(train.make_embed_fn(graphdef, config, mesh))
  ids, mask, types = _tokens()
  batch = {
      f"{p}_{k}": v for p in ("query", "passage")
      for k, v in (("input_ids", ids), ("attention_mask", mask), ("token_type_ids", types))
  }
  batch["passage_keys"] = np.arange(BATCH, dtype=np.int32)
  batch["query_language"] = np.asarray([0, 1, 2, 0, 1, 2], np.int32)  # en de ar ...
  batch["passage_language"] = np.asarray([1, 1, 0, 2, 0, 1], np.int32)
  rng = jax.random.key(0)
  before = embed(params, batch, rng)

  def perturbed(adapter_set):
    flat = train.traverse_util.flatten_dict(params)
    key = ("model", "encoder", "layers", 0, "attention", "value", "lora_b")
    flat[key] = flat[key].at[adapter_set].add(0.5)
    return embed(train.traverse_util.unflatten_dict(flat), batch, rng)

  def changed(after):
    return {t: np.any(np.asarray(after[t]) != np.asarray(before[t]), axis=1) for t in before}

  german = changed(perturbed(1 + LANGUAGES.index("de")))
  np.testing.assert_array_equal(german["query"], batch["query_language"] == 1)
  np.testing.assert_array_equal(german["passage"], batch["passage_language"] == 1)
  shared = changed(perturbed(0))
  assert shared["query"].all() and shared["passage"].all()


def test_adapted_layer_gradients_equal_autodiff_of_the_plain_formula_in_float64():
  """An adapted Linear with per-language adapters (the shared one merged into the kernel by
  `encoder.lora_matmul`): output and gradients of the input and of every adapter set against
  `jax.vjp` of y_i = x_i (W + s A_0 B_0 + s A_l B_l) + bias per row i of language l (none for
  -1), in float64."""
  model = _randomize(
      lora.add_lora(_model(), lora.LoraSpec(rank=4, alpha=8.0, languages=LANGUAGES), seed=0))
  layer = lora.adapted_layers(model)["encoder/layers/0/intermediate"]
  language = np.asarray([0, 1, 2, -1, 0, 1], np.int32)
  rng = np.random.default_rng(0)
  x, dy = rng.standard_normal((BATCH, SEQ, 32)), rng.standard_normal((BATCH, SEQ, 64))
  graphdef, adapters, rest = nnx.split(layer, nnx.LoRAParam, ...)

  def ours(x, adapters):
    return nnx.merge(graphdef, adapters, rest)(x, encoder.Adapters(jnp.asarray(language)))

  y, vjp = jax.vjp(jax.jit(ours), jnp.asarray(x, jnp.float32), adapters)
  dx, dadapters = vjp(jnp.asarray(dy, jnp.float32))
  kernel, bias = (np.asarray(v[...], np.float64) for v in (layer.kernel, layer.bias))
  scale = layer.lora_scale

  def plain(x, a, b):
    rows = []
    for i, lang in enumerate(language):
      w = kernel + scale * a[0] @ b[0] + (scale * a[1 + lang] @ b[1 + lang] if lang >= 0 else 0)
      rows.append(x[i] @ w + bias)
    return jnp.stack(rows)

  with jax.enable_x64(True):
    a64, b64 = (np.asarray(v[...], np.float64) for v in (layer.lora_a, layer.lora_b))
    y64, vjp64 = jax.vjp(jax.jit(plain), x, a64, b64)
    references = [y64, *vjp64(dy)]
  for ours_value, reference in zip((y, dx, dadapters["lora_a"][...], dadapters["lora_b"][...]),
                                   references):
    reference = np.asarray(reference)
    np.testing.assert_allclose(
        np.asarray(ours_value, np.float64), reference, rtol=1e-5,
        atol=1e-5 * np.abs(reference).max())


def test_merged_and_peft_exports_equal_the_adapted_model(tmp_path):
  """`model/` (merged) read by transformers, and the PEFT adapters on their bases read by peft,
  give the embeddings of the unmerged JAX model (mean pooling, L2-normalised) to 1e-5: the shared
  adapter on the base, each language's adapter on the merged model."""
  base_dir, merged_dir = str(tmp_path / "base"), str(tmp_path / "model")
  model = _model()
  save_pretrained(model, base_dir)
  lora.add_lora(model, lora.LoraSpec(rank=4, alpha=8.0, languages=LANGUAGES), seed=0)
  _randomize(model)
  save_pretrained(lora.merge(model), merged_dir)
  lora.export_adapters(model, merged_dir, base_dir, LANGUAGES)
  adapter_config = json.load(open(os.path.join(merged_dir, "adapter", "adapter_config.json")))
  assert (adapter_config["r"], adapter_config["lora_alpha"]) == (4, 8.0)
  ids, mask, types = _tokens()

  def torch_embed(torch_model):
    with torch.no_grad():
      hidden = torch_model(
          input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
          token_type_ids=torch.tensor(types)).last_hidden_state.numpy()
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

  load = lambda d: transformers.AutoModel.from_pretrained(d, add_pooling_layer=False).eval()
  shared = np.asarray(_encode_queries(model, ids, mask, types))
  np.testing.assert_allclose(torch_embed(load(merged_dir)), shared, atol=1e-5)
  on_base = peft.PeftModel.from_pretrained(load(base_dir), os.path.join(merged_dir, "adapter"))
  np.testing.assert_allclose(torch_embed(on_base), shared, atol=1e-5)
  german = np.asarray(_encode_queries(model, ids, mask, types, jnp.full(BATCH, 1)))
  assert np.abs(german - shared).max() > 1e-3  # the language adapter matters
  on_merged = peft.PeftModel.from_pretrained(
      load(merged_dir), os.path.join(merged_dir, "adapters", "de"))
  np.testing.assert_allclose(torch_embed(on_merged), german, atol=1e-5)


def test_checkpointed_state_holds_the_adapters_and_a_changed_base_is_refused():
  config = _config_with_lora()
  model = _model()
  base = lora.base_identity("base", nnx.to_pure_dict(nnx.state(model)))
  train.add_lora(config, model)
  graphdef, params = train.init_params(model, config.loss)
  optimizer = train.optimizer_lib.make_optimizer(config.optim, config.train.num_steps)
  state = train.create_train_state(params, optimizer, 0, train.frozen_pattern(config))
  assert train.base_identity(config, state) == {**base, "path": config.model.path}
  saved = train.traverse_util.flatten_dict(train.checkpointed(config, state).params)
  assert saved and all(path[-1] in lora.PARAM_NAMES for path in saved)
  assert len(jax.tree.leaves(state.opt_state[1][0].mu)) == len(saved)  # Adam moments: adapters
  lora.check_base(base, dict(base), "checkpoint 3")
  changed = dict(base, sha256="0" * 64)
  with pytest.raises(
      UserError, match="checkpoint 3 holds LoRA adapters of the base model 'base' "
      f"with parameter SHA-256 {base['sha256']}, but"):
    lora.check_base(base, changed, "checkpoint 3")
  with pytest.raises(UserError, match="saved by a full run and this is a LoRA run"):
    lora.check_base(None, base, "checkpoint 3")
