"""Hugging Face / sentence-transformers model directories in and out (weights, head, prompts).

Not to be confused with `hybrid_jax.checkpoint` (orbax train state: parameters, optimizer,
step, for resuming a run); this module reads and writes the exported model that other tools load.

`load_pretrained(path_or_hub_name)` reads a Hugging Face directory: `config.json` plus
`model.safetensors`, or the sharded form `model.safetensors.index.json`. A hub name is first
fetched with `huggingface_hub.snapshot_download` and then read the same way. A directory with only
`pytorch_model.bin` is converted in memory when torch is installed, otherwise the error explains
how to convert it. Keys may carry the `bert.` / `roberta.` prefix of the task-head classes or be
bare; torch Linear weights [out, in] are transposed into Flax kernels [in, out]. Known harmless
extras (position_ids / token_type_ids buffers, MLM/NSP heads) are dropped with a logged note; any
other unexpected key, a missing key or a shape mismatch is an error naming the key and shapes.

A directory saved by sentence-transformers (`modules.json`) also gives the head: its Pooling mode,
a `Dense` with tanh right after CLS pooling (= the BERT pooler, so pooling='pooler' with those
weights), a `Dense` without activation (= the projection) and `Normalize`. Explicit keyword
arguments override what the directory says.

Never initialised at random: any encoder weight. The only fresh parameters are a projection that
the checkpoint lacks (projection_dim > 0 on a checkpoint without one, logged). The BERT pooler
exists only when pooling == 'pooler', so a checkpoint's pooler weights are dropped (logged) under
'cls' / 'mean', and a missing pooler is an error under 'pooler'.

`save_pretrained(model, path, tokenizer)` writes a directory that both
`transformers.AutoModel.from_pretrained` and `sentence_transformers.SentenceTransformer` load:
config.json + model.safetensors (the query tower as BertModel / XLMRobertaModel), tokenizer
files, and the sentence-transformers modules: `1_Pooling` (mode 'cls' or 'mean'), for 'pooler'
a `Dense` with tanh holding the pooler weights after CLS pooling (sentence-transformers has no
pooler-output mode; this is the same computation, as in sentence-transformers/LaBSE), a `Dense`
without activation for the projection, and `Normalize`. A two-tower model keeps its passage tower
as a complete directory of the same form in `passage_encoder/`; `load_pretrained` finds it there.
"""

from __future__ import annotations

import json
import os
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx, traverse_util
from safetensors.numpy import load_file, save_file

from hybrid_jax import paths
from hybrid_jax.models.config import HEAD_FIELDS, EncoderConfig
from hybrid_jax.models.encoder import DualEncoder, dense

PASSAGE_SUBDIR = "passage_encoder"
_KEY_PREFIXES = ("bert.", "roberta.")
# Keys a Hugging Face checkpoint may carry that the bare encoder does not use.
_HARMLESS_KEYS = ("embeddings.position_ids", "embeddings.token_type_ids")
_HARMLESS_PREFIXES = ("lm_head.", "cls.", "classifier.", "qa_outputs.")
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt"]
_ST_TYPES = {
    "transformer": "sentence_transformers.base.modules.transformer.Transformer",
    "pooling": "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
    "dense": "sentence_transformers.base.modules.dense.Dense",
    "normalize": "sentence_transformers.base.modules.normalize.Normalize",
}
_TANH = "torch.nn.modules.activation.Tanh"
_IDENTITY = "torch.nn.modules.linear.Identity"

# ----------------------------------------------------------------------------- names and paths


def hf_weight_paths(config: EncoderConfig) -> dict[str, tuple[tuple[Any, ...], bool]]:
  """Bare Hugging Face weight name -> (path in `TransformerEncoder`'s state, transpose?).

  `transpose` is True for Linear weights (torch [out, in] vs Flax kernel [in, out]).
  """

  def linear(hf: str, path: tuple[Any, ...]) -> dict[str, tuple[tuple[Any, ...], bool]]:
    return {f"{hf}.weight": (path + ("kernel",), True), f"{hf}.bias": (path + ("bias",), False)}

  def layer_norm(hf: str, path: tuple[Any, ...]) -> dict[str, tuple[tuple[Any, ...], bool]]:
    return {f"{hf}.weight": (path + ("scale",), False), f"{hf}.bias": (path + ("bias",), False)}

  paths = {
      f"embeddings.{name}.weight": (("embeddings", name, "embedding"), False)
      for name in ("word_embeddings", "position_embeddings", "token_type_embeddings")
  }
  paths.update(layer_norm("embeddings.LayerNorm", ("embeddings", "layer_norm")))
  for i in range(config.num_hidden_layers):
    hf, flax_path = f"encoder.layer.{i}", ("layers", i)
    for name in ("query", "key", "value"):
      paths.update(linear(f"{hf}.attention.self.{name}", flax_path + ("attention", name)))
    paths.update(linear(f"{hf}.attention.output.dense", flax_path + ("attention", "output")))
    paths.update(
        layer_norm(f"{hf}.attention.output.LayerNorm", flax_path + ("attention_layer_norm",)))
    paths.update(linear(f"{hf}.intermediate.dense", flax_path + ("intermediate",)))
    paths.update(linear(f"{hf}.output.dense", flax_path + ("output",)))
    paths.update(layer_norm(f"{hf}.output.LayerNorm", flax_path + ("output_layer_norm",)))
  if config.pooling == "pooler":
    paths.update(linear("pooler.dense", ("pooler",)))
  return paths


def _bare_name(name: str) -> str:
  """Strips a task-class prefix and renames old LayerNorm gamma/beta to weight/bias."""
  for prefix in _KEY_PREFIXES:
    if name.startswith(prefix):
      name = name[len(prefix):]
      break
  if name.endswith(".gamma"):
    name = name[:-len(".gamma")] + ".weight"
  elif name.endswith(".beta"):
    name = name[:-len(".beta")] + ".bias"
  return name


# ----------------------------------------------------------------------------- reading files


def _read_json(path: str) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def read_hf_weights(directory: str) -> dict[str, np.ndarray]:
  """All tensors of a Hugging Face directory, by their names in the files.

  Reads model.safetensors, or every shard listed in model.safetensors.index.json, or (when torch
  is importable) pytorch_model.bin / its index.

  Raises:
    FileNotFoundError: no weights file; or only pytorch_model.bin and torch is not installed.
  """
  single = os.path.join(directory, "model.safetensors")
  index = os.path.join(directory, "model.safetensors.index.json")
  if os.path.exists(single):
    return load_file(single)
  if os.path.exists(index):
    return _read_sharded(directory, index, load_file)
  bin_single = os.path.join(directory, "pytorch_model.bin")
  bin_index = os.path.join(directory, "pytorch_model.bin.index.json")
  if os.path.exists(bin_single) or os.path.exists(bin_index):
    return _read_torch_bin(directory, bin_single, bin_index)
  raise FileNotFoundError(f"{directory}: no model.safetensors, model.safetensors.index.json or "
                          "pytorch_model.bin")


def _read_sharded(directory: str, index_path: str, read_shard) -> dict[str, np.ndarray]:
  weight_map = _read_json(index_path).get("weight_map")
  if not isinstance(weight_map, dict):
    raise ValueError(f"{index_path}: no 'weight_map' object")
  tensors = {}
  for shard in sorted(set(weight_map.values())):
    tensors.update(read_shard(os.path.join(directory, shard)))
  return tensors


def _read_torch_bin(directory: str, bin_single: str, bin_index: str) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise FileNotFoundError(
        f"{directory} holds only a PyTorch pickle (pytorch_model.bin), which needs torch to read. "
        "Install torch (pip install 'hybrid-jax[torch]') or convert it once to safetensors on a "
        "machine with torch: python -c \"import transformers; "
        f"transformers.AutoModel.from_pretrained('{directory}').save_pretrained('OUT_DIR')\" "
        "and load OUT_DIR.") from e

  def read(path: str) -> dict[str, np.ndarray]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {name: tensor.float().numpy() for name, tensor in state.items()}

  logging.info("%s: converting pytorch_model.bin with torch (save as safetensors to skip this)",
               directory)
  if os.path.exists(bin_single):
    return read(bin_single)
  return _read_sharded(directory, bin_index, read)


def _resolve(path_or_hub_name: str) -> str:
  """A local directory as is, a remote one (`gs://...`) downloaded; otherwise a hub name fetched
  with snapshot_download."""
  if paths.is_remote(path_or_hub_name):
    return paths.local_copy(path_or_hub_name)
  if os.path.isdir(path_or_hub_name):
    return path_or_hub_name
  if (os.path.isabs(path_or_hub_name) or path_or_hub_name.startswith((".", "~"))
      or path_or_hub_name.count("/") > 1 or os.path.exists(path_or_hub_name)):
    raise FileNotFoundError(f"{path_or_hub_name}: not a directory (nor a hub name 'org/name')")
  import huggingface_hub  # pylint: disable=g-import-not-at-top
  directory = huggingface_hub.snapshot_download(path_or_hub_name, allow_patterns=_HUB_PATTERNS)
  has_safetensors = any(name.endswith(".safetensors") for name in os.listdir(directory))
  if not has_safetensors:
    directory = huggingface_hub.snapshot_download(
        path_or_hub_name, allow_patterns=_HUB_PATTERNS + ["pytorch_model*.bin*"])
  return directory


# ----------------------------------------------------------------------------- heads


def _read_sentence_transformers_head(directory: str, hidden_size: int) -> tuple[dict, dict]:
  """Head fields and weights of a sentence-transformers directory (empty when not one).

  Returns:
    (fields, weights): fields among pooling / projection_dim / normalize; weights maps 'pooler'
    and/or 'projection' to (kernel [in, out], bias [out]).

  Raises:
    ValueError: a module this encoder cannot express, naming its directory.
  """
  modules_path = os.path.join(directory, "modules.json")
  if not os.path.exists(modules_path):
    return {}, {}
  fields, weights = {}, {}
  for module in _read_json(modules_path):
    kind = module["type"].rsplit(".", 1)[-1]
    module_dir = os.path.join(directory, module.get("path", ""))
    if kind == "Transformer":
      continue
    if kind == "Pooling":
      fields["pooling"] = _pooling_mode(os.path.join(module_dir, "config.json"))
    elif kind == "Dense":
      dense_config = _read_json(os.path.join(module_dir, "config.json"))
      tensors = read_hf_weights(module_dir)
      if "linear.bias" not in tensors:
        raise ValueError(f"{module_dir}: unsupported Dense without bias")
      kernel_bias = (tensors["linear.weight"].T, tensors["linear.bias"])
      activation = dense_config.get("activation_function", _TANH)
      if (activation == _TANH and fields.get("pooling") == "cls" and "pooler" not in weights
          and "projection" not in weights
          and dense_config["in_features"] == dense_config["out_features"] == hidden_size):
        fields["pooling"] = "pooler"
        weights["pooler"] = kernel_bias
      elif activation == _IDENTITY and "projection" not in weights:
        fields["projection_dim"] = dense_config["out_features"]
        weights["projection"] = kernel_bias
      else:
        raise ValueError(f"{module_dir}: unsupported Dense (activation={activation}, "
                         f"{dense_config['in_features']}->{dense_config['out_features']}); "
                         "supported: tanh H->H after CLS pooling (BERT pooler), then one Dense "
                         "without activation (projection)")
    elif kind == "Normalize":
      fields["normalize"] = True
    else:
      raise ValueError(f"{modules_path}: unsupported sentence-transformers module {module['type']}")
  fields.setdefault("normalize", False)
  return fields, weights


def _pooling_mode(config_path: str) -> str:
  """'cls' or 'mean' from a sentence-transformers Pooling config (new or legacy keys)."""
  config = _read_json(config_path)
  mode = config.get("pooling_mode")
  if mode is None:  # Older saves: one boolean per mode.
    active = tuple(k for k, v in config.items() if k.startswith("pooling_mode_") and v)
    mode = {("pooling_mode_cls_token",): "cls",
            ("pooling_mode_mean_tokens",): "mean"}.get(active, "+".join(active))
  if mode not in ("cls", "mean"):
    raise ValueError(f"{config_path}: unsupported pooling mode {mode!r}; supported: cls, mean")
  return mode


# ----------------------------------------------------------------------------- loading


def _tower_params(
    directory: str, config: EncoderConfig, st_weights: dict,
    abstract: dict[tuple[Any, ...], jax.ShapeDtypeStruct]) -> dict[tuple[Any, ...], np.ndarray]:
  """The encoder's parameters from a directory, keyed by path in `TransformerEncoder`'s state.

  Args:
    directory: the Hugging Face directory.
    config: the architecture (built from the directory's config.json) and head.
    st_weights: the sentence-transformers head weights of the directory (may hold the pooler).
    abstract: path -> expected shape, from the model built from `config`.

  Raises:
    ValueError: missing or unexpected weight, or shape mismatch; the message names the key(s),
      the directory and the shapes.
  """
  expected = hf_weight_paths(config)
  tensors = {}
  for name, tensor in read_hf_weights(directory).items():
    tensors.setdefault(_bare_name(name), tensor)
  if config.pooling == "pooler" and "pooler" in st_weights:
    kernel, bias = st_weights["pooler"]  # The sentence-transformers Dense is the pooler in use.
    tensors["pooler.dense.weight"], tensors["pooler.dense.bias"] = kernel.T, bias

  harmless = sorted(
      n for n in tensors
      if n not in expected and (n in _HARMLESS_KEYS or n.startswith(_HARMLESS_PREFIXES) or
                                (n.startswith("pooler.") and config.pooling != "pooler")))
  if harmless:
    logging.info("%s: ignoring weights the encoder does not use: %s", directory, harmless)
  unexpected = sorted(set(tensors) - set(expected) - set(harmless))
  if unexpected:
    raise ValueError(f"{directory}: unexpected weight(s) {unexpected}")
  missing = sorted(set(expected) - set(tensors))
  if missing:
    raise ValueError(f"{directory}: missing weight(s) {missing} for {config.model_type} with "
                     f"{config.num_hidden_layers} layers, pooling={config.pooling!r}")

  params = {}
  for name, (path, transpose) in expected.items():
    tensor = tensors[name].T if transpose else tensors[name]
    if tensor.shape != tuple(abstract[path].shape):
      want = tuple(abstract[path].shape)
      if transpose:
        want = want[::-1]
      raise ValueError(f"{directory}: weight {name!r} has shape {tuple(tensors[name].shape)} in "
                       f"the checkpoint, but config.json implies {want}")
    params[path] = tensor
  return params


def load_pretrained(path_or_hub_name: str, *, config: ml_collections.ConfigDict | None = None,
                    seed: int = 0, shared_tower: bool | None = None,
                    **head_overrides: Any) -> DualEncoder:
  """A `DualEncoder` with Hugging Face weights.

  Args:
    path_or_hub_name: local directory (config.json + weights) or a hub name.
    config: a `model_config()` dict (`config.model`): its head and run fields (pooling,
      projection_dim, normalize, dtype, remat) and shared_tower act as the keyword arguments
      below; its architecture fields are ignored (config.json fixes the architecture).
    seed: initialises a projection the checkpoint does not have (nothing else is random).
    shared_tower: one tower for queries and passages. Default: False when the directory has a
      `passage_encoder/` subdirectory (saved by `save_pretrained`), else True. A two-tower model
      loaded from a one-tower checkpoint starts with both towers equal to it.
    **head_overrides: any of pooling, projection_dim, normalize, dtype, remat; they override what
      a sentence-transformers directory says (defaults otherwise: `EncoderConfig`'s).

  Returns:
    The model, parameters float32.

  Raises:
    ValueError: unsupported model_type / module, missing / unexpected weight, shape mismatch.
    FileNotFoundError: no config.json or no weights.
  """
  if config is not None:
    head_overrides = {**{f: config[f] for f in HEAD_FIELDS}, **head_overrides}
    shared_tower = config.shared_tower if shared_tower is None else shared_tower
  unknown = set(head_overrides) - set(HEAD_FIELDS)
  if unknown:
    raise TypeError(f"load_pretrained: unknown argument(s) {sorted(unknown)}; head fields are "
                    f"{HEAD_FIELDS}")
  directory = _resolve(path_or_hub_name)
  passage_dir = os.path.join(directory, PASSAGE_SUBDIR)
  has_passage_dir = os.path.exists(os.path.join(passage_dir, "config.json"))
  if shared_tower is None:
    shared_tower = not has_passage_dir

  config_path = os.path.join(directory, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{directory}: no config.json")
  hf_config = _read_json(config_path)
  st_fields, st_weights = _read_sentence_transformers_head(directory,
                                                           hf_config.get("hidden_size", 0))
  encoder_config = EncoderConfig.from_hf_dict(hf_config, source=config_path,
                                              **{**st_fields, **head_overrides})

  towers = [("encoder", "projection", directory, st_weights)]
  if not shared_tower:
    passage_source = directory  # A one-tower checkpoint starts both towers.
    passage_st_weights = st_weights
    if has_passage_dir:
      passage_source = passage_dir
      _, passage_st_weights = _read_sentence_transformers_head(passage_dir,
                                                               encoder_config.hidden_size)
    towers.append(("separate_passage_encoder", "separate_passage_projection", passage_source,
                   passage_st_weights))

  abstract_model = nnx.eval_shape(
      lambda: DualEncoder(encoder_config, shared_tower=shared_tower, rngs=nnx.Rngs(seed)))
  graphdef, abstract_state = nnx.split(abstract_model)
  abstract_tree = nnx.to_pure_dict(abstract_state)
  abstract = traverse_util.flatten_dict(abstract_tree)
  params = {}
  for encoder_name, projection_name, tower_dir, tower_st_weights in towers:
    tower = _tower_params(tower_dir, encoder_config, tower_st_weights,
                          traverse_util.flatten_dict(abstract_tree[encoder_name]))
    params.update({(encoder_name,) + path: value for path, value in tower.items()})
    if encoder_config.projection_dim:
      params.update(
          _projection_params(projection_name, encoder_config, tower_st_weights, tower_dir, seed))
  not_filled = sorted(map(str, set(abstract) - set(params)))
  if not_filled:  # A programming error, never a silent random init.
    raise AssertionError(f"parameters not loaded: {not_filled}")
  pure = traverse_util.unflatten_dict({
      path: jnp.asarray(value, jnp.float32) for path, value in params.items()
  })
  nnx.replace_by_pure_dict(abstract_state, pure)
  return nnx.merge(graphdef, abstract_state)


def _projection_params(projection_name: str, config: EncoderConfig, st_weights: dict,
                       directory: str, seed: int) -> dict[tuple[Any, ...], np.ndarray]:
  """The projection's kernel and bias: from the checkpoint if it has one of the right size."""
  if "projection" in st_weights:
    kernel, bias = st_weights["projection"]
    if kernel.shape == (config.hidden_size, config.projection_dim):
      return {(projection_name, "kernel"): kernel, (projection_name, "bias"): bias}
  logging.info("%s: no %dx%d projection in the checkpoint; initialising %s from seed %d", directory,
               config.hidden_size, config.projection_dim, projection_name, seed)
  # The same draw for both towers: a two-tower model from a one-tower checkpoint starts symmetric.
  fresh = dense(config.hidden_size, config.projection_dim, config, nnx.Rngs(seed))
  return {(projection_name, "kernel"): np.asarray(fresh.kernel[...]),
          (projection_name, "bias"): np.asarray(fresh.bias[...])}


# ----------------------------------------------------------------------------- saving


def save_pretrained(model: DualEncoder, path: str, tokenizer: Any = None,
                    max_seq_length: int | None = None,
                    prompts: dict[str, str] | None = None) -> None:
  """Writes a Hugging Face + sentence-transformers directory (see the module docstring).

  Args:
    model: the model; a two-tower model also writes `path/passage_encoder/`.
    path: output directory (created); its files get the umask's modes (0644 under 022), readable
      by the other users of a shared machine.
    tokenizer: anything with `save_pretrained(directory)` (a transformers tokenizer), or None.
    max_seq_length: sentence-transformers truncation length; default the longest the position
      table allows (max_position_embeddings, minus pad_token_id + 1 for XLM-R).
    prompts: {"query": prefix, "passage": prefix} written as the sentence-transformers prompts
      (`config_sentence_transformers.json`; `read_prompts` gives them back); None = none.

  Under pooling 'cls' / 'mean' the model has no BERT pooler, so `AutoModel.from_pretrained`
  initialises `pooler_output` at random (and says so); last_hidden_state and the
  sentence-transformers embedding do not use it.
  """
  config = model.config
  if max_seq_length is None:
    offset = config.pad_token_id + 1 if config.model_type == "xlm-roberta" else 0
    max_seq_length = config.max_position_embeddings - offset
  flat = traverse_util.flatten_dict(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  towers = [("encoder", "projection", path)]
  if not model.shared_tower:
    towers.append(("separate_passage_encoder", "separate_passage_projection",
                   os.path.join(path, PASSAGE_SUBDIR)))
  for encoder_name, projection_name, directory in towers:
    os.makedirs(directory, exist_ok=True)
    tensors = {}
    for name, (weight_path, transpose) in hf_weight_paths(config).items():
      value = np.asarray(flat[(encoder_name,) + weight_path], np.float32)
      tensors[name] = np.ascontiguousarray(value.T if transpose else value)
    save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    _write_json(os.path.join(directory, "config.json"), config.to_hf_dict())
    projection = None
    if config.projection_dim:
      projection = (flat[(projection_name, "kernel")], flat[(projection_name, "bias")])
    pooler = tensors.get("pooler.dense.weight"), tensors.get("pooler.dense.bias")
    write_sentence_transformers_modules(directory, config, pooler, projection, max_seq_length,
                                        prompts)
    if tokenizer is not None:
      tokenizer.save_pretrained(directory)
  paths.default_permissions(path)  # save_file writes 0600


def write_sentence_transformers_modules(directory: str, config: EncoderConfig, pooler, projection,
                                        max_seq_length: int,
                                        prompts: dict[str, str] | None = None) -> None:
  """The sentence-transformers files of `directory` (modules.json, Pooling, Dense, Normalize,
  sentence_bert_config.json, config_sentence_transformers.json with `prompts`).

  Args:
    pooler: (weight [H, H] torch layout, bias [H]) when pooling == 'pooler', else unused.
    projection: (kernel [H, P], bias [P]) or None.
    prompts: {"query": prefix, "passage": prefix}; empty prefixes are left out.
  """
  modules = [("transformer", "", None)]
  hidden = config.hidden_size
  modules.append(("pooling", "Pooling", {
      "embedding_dimension": hidden,
      "pooling_mode": "mean" if config.pooling == "mean" else "cls",
      "include_prompt": True,
  }))
  dense_modules = []
  if config.pooling == "pooler":
    dense_modules.append((_TANH, pooler[0], pooler[1]))  # Already torch layout [out, in].
  if projection is not None:
    kernel, bias = projection
    dense_modules.append((_IDENTITY, np.asarray(kernel, np.float32).T, np.asarray(bias)))
  dense_weights = {}
  for activation, weight, bias in dense_modules:
    dense_weights[len(modules)] = weight, bias
    modules.append(("dense", "Dense", {
        "in_features": int(weight.shape[1]),
        "out_features": int(weight.shape[0]),
        "bias": True,
        "activation_function": activation,
        "module_input_name": "sentence_embedding",
        "module_output_name": "sentence_embedding",
    }))
  if config.normalize:
    modules.append(
        ("normalize", "Normalize",
         {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"}))

  entries = []
  for idx, (kind, folder, module_config) in enumerate(modules):
    subdir = f"{idx}_{folder}" if folder else ""
    entries.append({"idx": idx, "name": str(idx), "path": subdir, "type": _ST_TYPES[kind]})
    if module_config is None:
      continue
    os.makedirs(os.path.join(directory, subdir), exist_ok=True)
    _write_json(os.path.join(directory, subdir, "config.json"), module_config)
    if idx in dense_weights:
      weight, bias = dense_weights[idx]
      save_file(
          {
              "linear.weight": np.ascontiguousarray(weight, np.float32),
              "linear.bias": np.ascontiguousarray(bias, np.float32)
          }, os.path.join(directory, subdir, "model.safetensors"), metadata={"format": "pt"})
  _write_json(os.path.join(directory, "modules.json"), entries)
  _write_json(
      os.path.join(directory, "sentence_bert_config.json"),
      {"max_seq_length": int(max_seq_length), "do_lower_case": False})
  _write_json(
      os.path.join(directory, "config_sentence_transformers.json"), {
          "model_type": "SentenceTransformer", "prompts":
              {name: prefix for name, prefix in (prompts or {}).items() if prefix},
          "default_prompt_name": None, "similarity_fn_name": "cosine" if config.normalize else "dot"
      })


def read_prompts(directory: str) -> dict[str, str]:
  """{"query": prefix, "passage": prefix} from a sentence-transformers directory's
  `config_sentence_transformers.json` ("" for a prompt it does not name, or without the file).
  Names other than query/passage (e.g. "document") are not read."""
  path = os.path.join(paths.local_copy(directory), "config_sentence_transformers.json")
  prompts = (_read_json(path).get("prompts") or {}) if os.path.exists(path) else {}
  return {"query": prompts.get("query", ""), "passage": prompts.get("passage", "")}


def _write_json(path: str, value: Any) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=2)
    f.write("\n")
