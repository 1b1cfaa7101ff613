"""Flax NNX encoders (XLM-R / BERT / LaBSE family), their factory, Hugging Face directories in/out."""

from hybrid_jax.models.config import EncoderConfig
from hybrid_jax.models.encoder import DualEncoder, TransformerEncoder
from hybrid_jax.models.factory import create_model
from hybrid_jax.models.hf_io import load_pretrained, save_pretrained

__all__ = [
    "DualEncoder",
    "EncoderConfig",
    "TransformerEncoder",
    "create_model",
    "load_pretrained",
    "save_pretrained",
]
