"""Flax NNX encoders (XLM-R / BERT / LaBSE family), their factory, Hugging Face directories in/out."""

from hybrid_jax.models.config import EncoderConfig
from hybrid_jax.models.encoder import (TOWERS, DualEncoder, TransformerEncoder, encode_fn,
                                       split_for_encoding)
from hybrid_jax.models.factory import create_model
from hybrid_jax.models.hf_io import load_pretrained, save_pretrained

__all__ = [
    "TOWERS",
    "DualEncoder",
    "EncoderConfig",
    "TransformerEncoder",
    "create_model",
    "encode_fn",
    "load_pretrained",
    "save_pretrained",
    "split_for_encoding",
]
