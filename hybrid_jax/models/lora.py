"""LoRA adapters on the encoder's Linear layers, per-language adapters, merging and PEFT export.

LoRA (Hu et al. 2021, arXiv 2106.09685): a frozen kernel W [in, out] gets a trainable low-rank
update, y = x W + b + (alpha / rank) x A B with A [in, rank] random and B [rank, out] zero, so the
adapted model starts exactly at the base model. The adapters live in `encoder.Dense` layers
(`add_lora` attaches them as `nnx.LoRAParam`s `lora_a`, `lora_b`): the shared adapter goes
through `encoder.lora_matmul` (one product with the merged kernel W + (alpha / rank) A B, and a
backward pass that forms the gradients of x, A and B only), and the base kernels stay ordinary
parameters the trainer freezes (`train.frozen_pattern`), so no kernel gradient of the base is ever
formed.

Per-language adapters (`LoraSpec.languages`): each targeted layer holds 1 + L adapter sets, set 0
shared by every text and set 1 + l added for texts in training language l (`encoder.Adapters`);
a text in a language without an adapter (zero-shot) uses the shared set alone. This is the
stacked language + task adapter of Litschko et al. (COLING 2022, arXiv 2204.02292) with LoRA.

Export (`merge`, `save_peft_adapter`): the shared adapter folded into the kernels,
W + (alpha / rank) A_0 B_0, is a plain model; every adapter set is also written in PEFT's format
(`adapter_config.json` + `adapter_model.safetensors`, keys
`base_model.model.<HF module>.lora_A.weight` [rank, in] and `...lora_B.weight` [out, rank]), which
`peft.PeftModel.from_pretrained(AutoModel.from_pretrained(base), directory)` loads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util
from safetensors.numpy import save_file

from hybrid_jax.errors import ConfigError, UserError
from hybrid_jax.models.config import LORA_DEFAULT_TARGETS
from hybrid_jax.models.encoder import Dense, DualEncoder
from hybrid_jax.models.hf_io import PASSAGE_SUBDIR, hf_weight_paths

# Parameter-path names of the adapters (`train.frozen_pattern` keeps them trainable).
PARAM_NAMES = ("lora_a", "lora_b")
_TOWERS = ("encoder", "separate_passage_encoder")


@dataclasses.dataclass(frozen=True)
class LoraSpec:
  """What `add_lora` attaches.

  Attributes:
    rank: r, columns of A / rows of B (> 0).
    alpha: the update is scaled by alpha / rank.
    targets: regular expression searched in every Linear layer's '/'-joined path in the
      `DualEncoder` (e.g. 'encoder/layers/3/attention/query'); only encoder layers may match.
    dropout: dropout rate on the adapters' input in training.
    languages: per-language adapters for these training languages (their order gives the
      indices of `encoder.Adapters.language`); () = the shared adapter only.
  """
  rank: int
  alpha: float
  targets: str = LORA_DEFAULT_TARGETS
  dropout: float = 0.0
  languages: tuple[str, ...] = ()

  @property
  def scale(self) -> float:
    return self.alpha / self.rank


def spec_from_config(model_config, languages: tuple[str, ...]) -> LoraSpec | None:
  """The `LoraSpec` of `config.model.lora` (None when rank is 0 or there is no lora section);
  `languages`: the run's training languages (used when `per_language`)."""
  lora = model_config.get("lora")
  if lora is None or not lora.rank:
    return None
  return LoraSpec(rank=lora.rank, alpha=float(lora.alpha), targets=lora.targets,
                  dropout=float(lora.dropout), languages=tuple(languages) if lora.per_language else
                  ())


def linear_paths(model: DualEncoder) -> dict[str, Dense]:
  """Every `Dense` layer of `model` by its '/'-joined path."""
  return {
      "/".join(map(str, path)): module for path, module in nnx.iter_graph(model)
      if isinstance(module, Dense)
  }


def adapted_layers(model: DualEncoder) -> dict[str, Dense]:
  """The layers of `model` that carry a LoRA adapter, by path."""
  return {path: m for path, m in linear_paths(model).items() if m.lora_a is not None}


def add_lora(model: DualEncoder, spec: LoraSpec, seed: int) -> DualEncoder:
  """Attaches LoRA adapters to the Linear layers of `model` that `spec.targets` matches (in
  place; returns `model`).

  A (every set) is drawn as PEFT does, uniform(+-1/sqrt(in)) (kaiming_uniform with a=sqrt(5)),
  from `seed` and the layer's index in path order; B is zero, so outputs are unchanged.

  Raises:
    ConfigError: `spec.targets` matches no layer, or a layer outside the encoders (the
      projection: PEFT's format cannot express it on the exported model).
  """
  layers = linear_paths(model)
  chosen = sorted(path for path in layers if re.search(spec.targets, path))
  if not chosen:
    raise ConfigError(f"config.model.lora.targets={spec.targets!r} matches no Linear layer; "
                      f"layers are e.g. {sorted(layers)[:3]}")
  outside = [path for path in chosen if path.split("/")[0] not in _TOWERS]
  if outside:
    raise ConfigError(f"config.model.lora.targets={spec.targets!r} matches {outside}: only the "
                      "encoders' layers can carry an adapter")
  sets = 1 + len(spec.languages)
  key = jax.random.key(seed)
  for index, path in enumerate(chosen):
    layer = layers[path]
    fan_in, fan_out = layer.in_features, layer.out_features
    bound = 1.0 / np.sqrt(fan_in)
    layer.lora_a = nnx.LoRAParam(
        jax.random.uniform(
            jax.random.fold_in(key, index), (sets, fan_in, spec.rank), jnp.float32, -bound, bound))
    layer.lora_b = nnx.LoRAParam(jnp.zeros((sets, spec.rank, fan_out), jnp.float32))
    layer.lora_scale = spec.scale
    layer.lora_dropout = spec.dropout
    layer.lora_index = index
  return model


def merge(model: DualEncoder, adapter_set: int = 0) -> DualEncoder:
  """A copy of `model` without adapters: every adapted kernel becomes W + scale A_s B_s (float32)
  for `adapter_set` s (0: the shared adapter)."""
  merged = nnx.clone(model)
  for layer in adapted_layers(merged).values():
    a, b = layer.lora_a[...][adapter_set], layer.lora_b[...][adapter_set]
    layer.kernel[...] = layer.kernel[...] + layer.lora_scale * jnp.matmul(
        a, b, precision=jax.lax.Precision.HIGHEST)
    del layer.lora_a, layer.lora_b, layer.lora_scale, layer.lora_dropout, layer.lora_index
  return merged


def _hf_module_names(model: DualEncoder) -> dict[str, str]:
  """Tower-relative Flax path of every Linear ('layers/0/attention/query') -> its Hugging Face
  module name ('encoder.layer.0.attention.self.query')."""
  return {
      "/".join(map(str, path[:-1])): name[:-len(".weight")]
      for name, (path, _) in hf_weight_paths(model.config).items() if path[-1] == "kernel"
  }


def save_peft_adapter(model: DualEncoder, directory: str, base_model: str, *, adapter_set: int = 0,
                      tower: str = "encoder") -> None:
  """Writes adapter set `adapter_set` of `tower` in PEFT's LoRA format to `directory`.

  Loading: `peft.PeftModel.from_pretrained(transformers.AutoModel.from_pretrained(base), directory)`
  where `base` is the model the adapter applies to: the base model for set 0; for a language set
  (s >= 1), the merged shared model (`merge(model, 0)`, the exported `model/`).

  Args:
    model: a model with adapters (`add_lora`).
    directory: created.
    base_model: recorded as `base_model_name_or_path`.
    adapter_set: 0 = shared, 1 + l = training language l.
    tower: 'encoder' or 'separate_passage_encoder'.
  """
  names = _hf_module_names(model)
  tensors, targets, rank, alpha, dropout = {}, [], None, None, 0.0
  for path, layer in adapted_layers(model).items():
    if path.split("/")[0] != tower:
      continue
    name = names[path.split("/", 1)[1]]
    a = np.asarray(layer.lora_a[...][adapter_set], np.float32)  # [in, rank]
    b = np.asarray(layer.lora_b[...][adapter_set], np.float32)  # [rank, out]
    tensors[f"base_model.model.{name}.lora_A.weight"] = np.ascontiguousarray(a.T)
    tensors[f"base_model.model.{name}.lora_B.weight"] = np.ascontiguousarray(b.T)
    targets.append(name)
    rank, dropout = a.shape[1], layer.lora_dropout
    alpha = layer.lora_scale * rank
  os.makedirs(directory, exist_ok=True)
  save_file(tensors, os.path.join(directory, "adapter_model.safetensors"),
            metadata={"format": "pt"})
  config = {
      "peft_type": "LORA",
      "task_type": "FEATURE_EXTRACTION",
      "base_model_name_or_path": base_model,
      "r": rank,
      "lora_alpha": alpha,
      "lora_dropout": dropout,
      "target_modules": sorted(targets),
      "bias": "none",
      "fan_in_fan_out": False,
      "use_rslora": False,
      "init_lora_weights": True,
      "inference_mode": True,
  }
  with open(os.path.join(directory, "adapter_config.json"), "w", encoding="utf-8") as f:
    json.dump(config, f, indent=2, sort_keys=True)


def export_adapters(model: DualEncoder, model_dir: str, base_model: str,
                    languages: tuple[str, ...] = ()) -> None:
  """Writes every adapter of `model` beside its merged export `model_dir` (`merge(model)` saved
  with `save_pretrained`), in PEFT's format:

    <model_dir>/adapter/              the shared adapter, on `base_model`
    <model_dir>/adapters/<language>/  each language's adapter, on the merged model `model_dir`
    <model_dir>/passage_encoder/adapter[s/...]  the same for the passage tower of a two-tower
                                      model (its base: `base_model`'s passage tower)
  """
  towers = [("encoder", model_dir)]
  if not model.shared_tower:
    towers.append(("separate_passage_encoder", os.path.join(model_dir, PASSAGE_SUBDIR)))
  for tower, directory in towers:
    save_peft_adapter(model, os.path.join(directory, "adapter"), base_model, tower=tower)
    for index, language in enumerate(languages):
      save_peft_adapter(model, os.path.join(directory, "adapters", language), directory,
                        adapter_set=1 + index, tower=tower)


def check_base(saved: dict[str, str] | None, current: dict[str, str] | None,
               checkpoint: str) -> None:
  """Checks that `checkpoint` (its meta's "base", None for a full run) was trained on the base
  `current` loads (None for a full run).

  Raises:
    UserError: the base's parameters changed, or a LoRA checkpoint meets a full run or the reverse.
  """
  if saved == current:
    return
  if saved and current:
    raise UserError(
        f"{checkpoint} holds LoRA adapters of the base model {saved.get('path')!r} with "
        f"parameter SHA-256 {saved.get('sha256')}, but config.model.path={current['path']!r} now "
        f"loads parameters with SHA-256 {current['sha256']}: restore that base model, or use "
        "another --workdir")
  raise UserError(f"{checkpoint} was saved by a {'LoRA' if saved else 'full'} run and this is a "
                  f"{'LoRA' if current else 'full'} run (config.model.lora.rank): use another "
                  "--workdir")


def base_identity(path: str, base_params: Any) -> dict[str, str]:
  """What a LoRA checkpoint records of its frozen base: {"path": `model.path`, "sha256":
  `params_sha256({"model": base_params})`} with `base_params` the base model's pure state dict."""
  return {"path": path, "sha256": params_sha256({"model": base_params})}


def params_sha256(params: Any) -> str:
  """SHA-256 of a parameter pytree: every leaf's '/'-joined path, dtype, shape and bytes, in path
  order (the identity a LoRA checkpoint records of its frozen base)."""
  digest = hashlib.sha256()
  for path, leaf in sorted(
      traverse_util.flatten_dict(params).items(), key=lambda item: "/".join(map(str, item[0]))):
    value = np.asarray(jax.device_get(leaf))
    digest.update(f"{'/'.join(map(str, path))}:{value.dtype}:{value.shape}\n".encode())
    digest.update(np.ascontiguousarray(value).tobytes())
  return digest.hexdigest()
