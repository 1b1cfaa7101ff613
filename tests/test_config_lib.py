"""Config parsing and validation: typos and bad values fail before anything compiles."""

import pytest

from hybrid_jax import config_lib


def test_parse_arg_casts_to_default_types():
  arg = config_lib.parse_arg("langs=en+de,mono_prob=0.25,steps=7,flag=false",
                             langs="xquad_r", mono_prob=0.5, steps=1, flag=True)
  assert (arg.langs, arg.mono_prob, arg.steps, arg.flag) == ("en+de", 0.25, 7, False)


@pytest.mark.parametrize("arg, match", [
    ("lang=en", "not one of"),           # typo in the key
    ("mono_prob=half", "expected a float"),
    ("mono_prob", "key=value"),
])
def test_parse_arg_errors(arg, match):
  with pytest.raises(ValueError, match=match):
    config_lib.parse_arg(arg, langs="xquad_r", mono_prob=0.5)


def _default_config():
  return config_lib.default_config("model=tiny,langs=en+de")


@pytest.mark.parametrize("field, value, match", [
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
    ("data.languages", "en+dx", "unknown language code 'dx'"),
    ("data.eval_languages", "en+dx", "unknown language code 'dx'"),
    ("optim.frozen", "word_(", "not a regular expression"),
])
def test_validate_rejects_bad_values(field, value, match):
  config = _default_config()
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(ValueError, match=match):
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
