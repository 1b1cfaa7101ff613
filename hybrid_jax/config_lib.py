"""Config helpers: parse big_vision-style config arguments, load model presets, validate once.

A config file exposes `get_config(arg=None)`; `arg` is the text after the colon in
`--config=configs/hybrid.py:langs=en+de+ar,mono_prob=0.5`. Every mistake found here raises
`ConfigError` (a `hybrid_jax.errors.UserError`) naming the config key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
from collections.abc import Mapping

import ml_collections

from hybrid_jax import optimizer
from hybrid_jax import paths
from hybrid_jax import sampler
from hybrid_jax.data.languages import parse_groupings, parse_languages
from hybrid_jax.data.parallel_qa import ON_ERROR_CHOICES
from hybrid_jax.data.registry import SCHEMES
from hybrid_jax.errors import ConfigError, UserError
from hybrid_jax.models import config as model_config_lib

# Padded lengths (tokens) of the default config (configs/default.py), also those at which
# `hybrid_jax.evaluate` scores a model without a training config, so that in-training and
# stand-alone evaluation score the same inputs; and the evaluation batch (rows per encoded batch).
DEFAULT_QUERY_MAX_LEN = 24
DEFAULT_PASSAGE_MAX_LEN = 64
DEFAULT_EVAL_BATCH_SIZE = 128
# Tokens per unit of an alignment evaluation (`config.eval.alignment_max_len`; stand-alone
# `hybrid_jax.evaluate --dataset=udhr:...` without a run): 99.5 % of UDHR articles fit whole.
DEFAULT_ALIGNMENT_MAX_LEN = 256


def _configs_dir() -> str:
  """The config files: `hybrid_jax/configs/` in an installed wheel (setup.cfg ships the top-level
  configs/ there), else the checkout's top-level `configs/` (a source tree, an editable install)."""
  package_dir = os.path.dirname(os.path.abspath(__file__))
  installed = os.path.join(package_dir, "configs")
  return installed if os.path.isdir(installed) else os.path.join(
      os.path.dirname(package_dir), "configs")


CONFIGS_DIR = _configs_dir()


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """'langs=en+de,mono_prob=0.5' -> ConfigDict, with values cast to the type of their default.

  Raises ConfigError for a key that has no default (a typo) or a value of the wrong type.
  """
  out = ml_collections.ConfigDict(defaults)
  if not arg:
    return out
  for item in arg.split(","):
    if not item.strip():
      continue
    if "=" not in item:
      raise ConfigError(f"config argument {item!r}: expected key=value (in {arg!r})")
    key, value = (s.strip() for s in item.split("=", 1))
    if key not in defaults:
      raise ConfigError(f"config argument {key!r} is not one of {sorted(defaults)} (in {arg!r})")
    default = defaults[key]
    try:
      if isinstance(default, bool):
        if value.lower() not in ("true", "false", "1", "0"):
          raise ValueError(value)
        out[key] = value.lower() in ("true", "1")
      else:
        out[key] = type(default)(value)
    except ValueError:
      raise ConfigError(f"config argument {key}={value!r}: expected a "
                        f"{type(default).__name__}") from None
  return out


def _load_module(path: str):
  spec = importlib.util.spec_from_file_location("hybrid_jax_config_" + os.path.basename(path)[:-3],
                                                path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def model_preset(name: str) -> ml_collections.ConfigDict:
  """The model config `configs/models/<name>.py:get_config()`."""
  path = os.path.join(CONFIGS_DIR, "models", f"{name}.py")
  if not os.path.exists(path):
    names = sorted(f[:-3] for f in os.listdir(os.path.join(CONFIGS_DIR, "models"))
                   if f.endswith(".py") and not f.startswith("_"))
    raise ConfigError(f"unknown model preset {name!r}; available: {names}")
  return _load_module(path).get_config()


def default_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`configs/default.py:get_config(arg)`, e.g. `default_config("langs=en+de,steps=10")`."""
  return _load_module(os.path.join(CONFIGS_DIR, "default.py")).get_config(arg)


def max_tokens(model_type: str, max_position_embeddings: int, pad_token_id: int) -> int:
  """Longest token sequence a model's position table covers.

  BERT numbers positions 0..S-1, so S <= max_position_embeddings (512 for BERT/mBERT/LaBSE).
  XLM-R numbers them from pad_token_id + 1 (Hugging Face `create_position_ids_from_input_ids`),
  so S <= max_position_embeddings - pad_token_id - 1 (514 - 1 - 1 = 512 for XLM-R).
  """
  if model_type == "xlm-roberta":
    return max_position_embeddings - pad_token_id - 1
  return max_position_embeddings


def _checkpoint_model_fields(path: str) -> tuple[dict, str] | None:
  """(config.json dict, its path) of a local Hugging Face directory, or of a hub name already in
  the local Hugging Face cache (no download); None when neither is there."""
  config_path = os.path.join(path, "config.json")
  if not paths.path(config_path).is_file():
    try:
      import huggingface_hub  # pylint: disable=g-import-not-at-top
      cached = huggingface_hub.try_to_load_from_cache(path, "config.json")
    except ValueError:  # not a valid repo id
      cached = None
    if not isinstance(cached, str):
      return None
    config_path = cached
  try:
    return json.loads(paths.path(config_path).read_text()), config_path
  except (OSError, ValueError) as e:
    raise ConfigError(f"config.model.path={path!r}: cannot read {config_path}: {e}") from None


def model_max_tokens(model: Mapping) -> tuple[int, str]:
  """(longest sequence the position table of `config.model` covers, where that comes from).

  The architecture is the checkpoint's config.json when `model.path` names a local directory or a
  cached hub model (as `models.create_model` reads it), else the fields of `model` itself.
  """
  fields, source = model, "config.model"
  found = _checkpoint_model_fields(model["path"]) if model.get("path") else None
  if found is not None:
    fields, source = found
  return (max_tokens(
      fields.get("model_type", "bert"), int(fields["max_position_embeddings"]),
      int(fields.get("pad_token_id", 0))), source)


def check_max_len(field: str, value: int, limit: int, source: str) -> None:
  """Raises ConfigError when `value` tokens exceed the position table's `limit`."""
  if value > limit:
    raise ConfigError(f"{field}={value}: longer than the model's position table, which covers "
                      f"{limit} tokens ({source}); use at most {limit}")


# (config key, smallest allowed value, what it means)
_LOWER_BOUNDS = (
    ("train.global_batch_size", 1, ""),
    ("train.num_steps", 1, ""),
    ("train.max_consecutive_nonfinite", 1, "steps with a non-finite loss before stopping"),
    ("train.prefetch_batches", 0, ""),
    ("train.input_workers", -1, "-1 = half the host's cores, 0 = in the training process"),
    ("train.grad_cache_chunk_size", 0, "0 = off"),
    ("train.fsdp", 1, "1 = replicated parameters"),
    ("data.query_max_len", 1, "tokens"),
    ("data.passage_max_len", 1, "tokens"),
    ("loss.num_hard_negatives", 0, ""),
    ("optim.warmup_steps", 0, ""),
    ("checkpoint.every_steps", 1, "a checkpoint every N steps"),
    ("checkpoint.keep", 1, "checkpoints kept; the newest is needed to resume"),
    ("eval.every_steps", 0, "0 = only at the end"),
    ("eval.batch_size", 1, ""),
    ("eval.alignment_max_len", 1, "tokens"),
    ("log.every_steps", 1, "a log line every N steps"),
)

# (config key, its allowed values), each defined once by the code that reads the value.
_CHOICES = (
    ("data.on_error", ON_ERROR_CHOICES),
    ("sampler.language_scope", sampler.LANGUAGE_SCOPES),
    ("optim.schedule", optimizer.SCHEDULES),
    ("model.model_type", model_config_lib.MODEL_TYPES),
    ("model.dtype", model_config_lib.DTYPES),
    ("model.pooling", model_config_lib.POOLINGS),
)


def languages(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The checked language codes of `config.data.languages` ('+'-joined codes or a named set).

  Raises:
    LanguageError: an unknown or repeated code, or none.
  """
  return parse_languages(config.data.languages, where="config.data.languages")


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Checks values that a ConfigDict cannot type-check, before anything is compiled.

  Returns the config with `data.languages` normalised to a '+'-joined list of checked codes.

  Raises:
    ConfigError: the first bad value, naming its key and the allowed range; a query/passage
      length beyond the model's position table.
    LanguageError: a language code the program does not know (both are UserErrors).
  """

  def fail(field, value, expected):
    raise ConfigError(f"config.{field}={value!r}: {expected}")

  langs = languages(config)
  if len(langs) > sampler.MAX_LANGUAGES:
    fail(
        "data.languages", f"{len(langs)} languages",
        f"the hybrid batch sampler supports at most {sampler.MAX_LANGUAGES} training languages "
        "(one bit per language in its availability patterns)")
  with config.unlocked():
    config.data.languages = "+".join(langs)
  for field, lowest, meaning in _LOWER_BOUNDS:
    section, name = field.split(".")
    value = config[section][name]
    if value < lowest:
      fail(field, value, f"must be >= {lowest}" + (f" ({meaning})" if meaning else ""))
  if not 0.0 <= config.sampler.mono_prob <= 1.0:
    fail("sampler.mono_prob", config.sampler.mono_prob, "must be in [0, 1]")
  if len(langs) == 1 and config.sampler.mono_prob != 1.0:
    fail("sampler.mono_prob", config.sampler.mono_prob,
         "must be 1 with a single language (no cross-lingual pair exists)")
  parse_groupings(config.eval.get("language_groups", ""), where="config.eval.language_groups")
  for field, allowed in _CHOICES:
    section, name = field.split(".")
    if config[section][name] not in allowed:
      fail(field, config[section][name], f"must be one of {allowed}")
  if config.optim.warmup_steps > config.train.num_steps:
    fail("optim.warmup_steps", config.optim.warmup_steps,
         f"exceeds train.num_steps={config.train.num_steps}")
  if not config.loss.temperature > 0:
    fail("loss.temperature", config.loss.temperature, "must be positive")
  for name in ("learning_rate", "eps", "grad_clip_norm"):
    if not config.optim[name] > 0:  # Also catches nan.
      fail(f"optim.{name}", config.optim[name], "must be positive")
  if not config.optim.weight_decay >= 0:
    fail("optim.weight_decay", config.optim.weight_decay, "must be >= 0")
  for name in ("b1", "b2"):
    if not 0 <= config.optim[name] < 1:
      fail(f"optim.{name}", config.optim[name], "must be in [0, 1)")
  if not 0 <= config.optim.end_learning_rate_factor <= 1:
    fail("optim.end_learning_rate_factor", config.optim.end_learning_rate_factor,
         "must be in [0, 1] (a fraction of optim.learning_rate)")
  limit, source = model_max_tokens(config.model)
  length_fields = ["data.query_max_len", "data.passage_max_len"]
  if config.eval.get("alignment"):  # units are encoded only when alignment is evaluated
    length_fields.append("eval.alignment_max_len")
  for field in length_fields:
    section, name = field.split(".")
    check_max_len(f"config.{field}", config[section][name], limit, source)
  validate_train_sources(config)
  if config.data.get("eval_languages"):
    parse_languages(config.data.eval_languages, where="config.data.eval_languages")
  try:
    re.compile(config.optim.get("frozen", ""))
  except re.error as e:
    fail("optim.frozen", config.optim.frozen, f"is not a regular expression ({e})")
  if config.model.get("lora") is not None:
    _validate_lora(config.model, fail)
  return config


def _validate_lora(model: ml_collections.ConfigDict, fail) -> None:
  """Checks `model.lora` (`hybrid_jax.models.lora`); `fail(field, value, expected)` raises."""
  lora = model.lora
  if not isinstance(lora.rank, int) or lora.rank < 0:
    fail("model.lora.rank", lora.rank, "must be an integer >= 0 (0 = off: full fine-tuning)")
  if lora.per_language and not lora.rank:
    fail("model.lora.per_language", lora.per_language, "needs config.model.lora.rank > 0")
  if not lora.rank:
    return
  if not model.path:
    fail(
        "model.lora.rank", lora.rank, "adapts a pretrained model: set config.model.path (LoRA "
        "freezes every weight of the base)")
  if not lora.alpha > 0:
    fail("model.lora.alpha", lora.alpha, "must be positive (the update is scaled by alpha / rank)")
  if not 0 <= lora.dropout < 1:
    fail("model.lora.dropout", lora.dropout, "must be in [0, 1)")
  try:
    re.compile(lora.targets)
  except re.error as e:
    fail("model.lora.targets", lora.targets, f"is not a regular expression ({e})")


# A '+' starts a new source only where a spec scheme follows, so paths may contain '+'.
_SOURCE_SEPARATOR = re.compile(rf"\+(?=(?:{'|'.join(SCHEMES)}):)")


@dataclasses.dataclass(frozen=True)
class TrainSource:
  """One training source of `config.data.train`.

  Attributes:
    spec: a `hybrid_jax.data.load` spec.
    weight: its given relative frequency, or None to weigh it by size (`source_weights`).
  """

  spec: str
  weight: float | None


def _as_list(value, separator) -> list[str]:
  """A '+'-joined string (split by `separator`) or a list/tuple of strings -> stripped items."""
  if isinstance(value, str):
    return [item.strip() for item in separator.split(value) if item.strip()]
  return [str(item).strip() for item in value]


def train_sources(config: ml_collections.ConfigDict) -> list[TrainSource]:
  """The sources of `config.data.train` with their given weights (`config.data.train_weights`).

  `data.train` is one spec, several specs joined by '+' (`jsonl:en.jsonl+arrow:/data/mmarco`; a
  '+' splits only where a scheme follows) or, in a config file, a list of specs.
  `data.train_weights` is '' (weigh by size, see `source_weights`) or one positive number per
  source, '+'-joined or a list.

  Raises:
    UserError: no source, a repeated source, or weights that do not match the sources.
  """
  specs = _as_list(config.data.train, _SOURCE_SEPARATOR)
  if not specs:
    raise UserError("config.data.train is empty: give a data spec such as 'xquad_r:train', or "
                    "several joined by '+'")
  repeated = sorted({s for s in specs if specs.count(s) > 1})
  if repeated:
    raise UserError(f"config.data.train names {repeated} more than once: give each source once "
                    "and weigh it with config.data.train_weights")
  given = _as_list(config.data.get("train_weights", ""), re.compile(r"\+"))
  if not given:
    return [TrainSource(spec, None) for spec in specs]
  if len(given) != len(specs):
    raise UserError(f"config.data.train_weights={config.data.train_weights!r} has {len(given)} "
                    f"weight(s) for the {len(specs)} source(s) of config.data.train: give one "
                    "per source, '+'-joined, or '' to weigh by size")
  weights = []
  for text in given:
    try:
      weight = float(text)
    except ValueError:
      weight = float("nan")
    if not weight > 0 or weight == float("inf"):
      raise UserError(f"config.data.train_weights={config.data.train_weights!r}: {text!r} is not "
                      "a positive number")
    weights.append(weight)
  return [TrainSource(spec, weight) for spec, weight in zip(specs, weights)]


def source_weights(sources: list[TrainSource], sizes, alpha: float) -> list[float]:
  """Relative frequency of each source: its given weight, else size**alpha (the temperature
  sampling of multilingual pretraining, Lample & Conneau 2019 (XLM) eq. 1; XLM-R used 0.3;
  alpha=1 samples by size as the paper, arXiv:2408.10536, does; alpha=0 uniformly).
  `sizes`: examples per source. `train_sources` gives weights to all sources or to none."""
  return [s.weight if s.weight is not None else float(n)**alpha for s, n in zip(sources, sizes)]


def validate_train_sources(config: ml_collections.ConfigDict) -> None:
  """Checks `data.train`, `data.train_weights` and `data.source_temperature_alpha`.

  Raises:
    UserError: see `train_sources`; alpha outside [0, 1], or alpha with given weights.
  """
  sources = train_sources(config)
  alpha = config.data.get("source_temperature_alpha", 1.0)
  if not 0.0 <= alpha <= 1.0:
    raise UserError(f"config.data.source_temperature_alpha={alpha!r}: must be in [0, 1] (1: by "
                    "size, 0: uniform over sources)")
  if alpha != 1.0 and sources[0].weight is not None:
    raise UserError(f"config.data.source_temperature_alpha={alpha!r} weighs sources by size but "
                    "config.data.train_weights gives the weights: set one of them")
