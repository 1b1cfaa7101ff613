"""Config helpers: parse big_vision-style config arguments, load model presets, validate once.

A config file exposes `get_config(arg=None)`; `arg` is the text after the colon in
`--config=configs/hybrid.py:langs=en+de+ar,mono_prob=0.5`.
"""

from __future__ import annotations

import importlib.util
import os
import re

import ml_collections

from hybrid_jax.data.languages import parse_languages

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """'langs=en+de,mono_prob=0.5' -> ConfigDict, with values cast to the type of their default.

  Raises ValueError for a key that has no default (a typo) or a value of the wrong type.
  """
  out = ml_collections.ConfigDict(defaults)
  if not arg:
    return out
  for item in arg.split(","):
    if not item.strip():
      continue
    if "=" not in item:
      raise ValueError(f"config argument {item!r}: expected key=value (in {arg!r})")
    key, value = (s.strip() for s in item.split("=", 1))
    if key not in defaults:
      raise ValueError(f"config argument {key!r} is not one of {sorted(defaults)} (in {arg!r})")
    default = defaults[key]
    try:
      if isinstance(default, bool):
        if value.lower() not in ("true", "false", "1", "0"):
          raise ValueError(value)
        out[key] = value.lower() in ("true", "1")
      else:
        out[key] = type(default)(value)
    except ValueError:
      raise ValueError(f"config argument {key}={value!r}: expected a "
                       f"{type(default).__name__}") from None
  return out


def _load_module(path: str):
  spec = importlib.util.spec_from_file_location(
      "hybrid_jax_config_" + os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def model_preset(name: str) -> ml_collections.ConfigDict:
  """The model config `configs/models/<name>.py:get_config()`."""
  path = os.path.join(CONFIGS_DIR, "models", f"{name}.py")
  if not os.path.exists(path):
    names = sorted(f[:-3] for f in os.listdir(os.path.join(CONFIGS_DIR, "models"))
                   if f.endswith(".py") and not f.startswith("_"))
    raise ValueError(f"unknown model preset {name!r}; available: {names}")
  return _load_module(path).get_config()


def default_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`configs/default.py:get_config(arg)`, e.g. `default_config("langs=en+de,steps=10")`."""
  return _load_module(os.path.join(CONFIGS_DIR, "default.py")).get_config(arg)


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Checks values that a ConfigDict cannot type-check, before anything is compiled.

  Returns the config with `data.languages` normalised to a '+'-joined list of checked codes.
  """
  def fail(field, value, expected):
    raise ValueError(f"config.{field}={value!r}: {expected}")

  langs = parse_languages(config.data.languages, where="config.data.languages")
  with config.unlocked():
    config.data.languages = "+".join(langs)
  if not 0.0 <= config.sampler.mono_prob <= 1.0:
    fail("sampler.mono_prob", config.sampler.mono_prob, "must be in [0, 1]")
  if len(langs) == 1 and config.sampler.mono_prob != 1.0:
    fail("sampler.mono_prob", config.sampler.mono_prob,
         "must be 1 with a single language (no cross-lingual pair exists)")
  if config.sampler.language_scope not in ("batch", "example"):
    fail("sampler.language_scope", config.sampler.language_scope, "must be 'batch' or 'example'")
  for field in ("train.global_batch_size", "train.num_steps", "data.query_max_len",
                "data.passage_max_len"):
    section, name = field.split(".")
    if config[section][name] <= 0:
      fail(field, config[section][name], "must be positive")
  if config.optim.schedule not in ("linear", "cosine", "constant"):
    fail("optim.schedule", config.optim.schedule, "must be 'linear', 'cosine' or 'constant'")
  if config.optim.warmup_steps > config.train.num_steps:
    fail("optim.warmup_steps", config.optim.warmup_steps,
         f"exceeds train.num_steps={config.train.num_steps}")
  if config.loss.temperature <= 0:
    fail("loss.temperature", config.loss.temperature, "must be positive")
  if config.loss.num_hard_negatives < 0:
    fail("loss.num_hard_negatives", config.loss.num_hard_negatives, "must be >= 0")
  if config.train.grad_cache_chunk_size < 0:
    fail("train.grad_cache_chunk_size", config.train.grad_cache_chunk_size, "must be >= 0 (0 = off)")
  if config.train.fsdp < 1:
    fail("train.fsdp", config.train.fsdp, "must be >= 1 (1 = replicated parameters)")
  if config.model.dtype not in ("float32", "bfloat16"):
    fail("model.dtype", config.model.dtype, "must be 'float32' or 'bfloat16'")
  if config.data.get("eval_languages"):
    parse_languages(config.data.eval_languages, where="config.data.eval_languages")
  try:
    re.compile(config.optim.get("frozen", ""))
  except re.error as e:
    fail("optim.frozen", config.optim.frozen, f"is not a regular expression ({e})")
  return config
