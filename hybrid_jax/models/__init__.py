"""Flax NNX encoders (XLM-R / BERT / LaBSE family) and Hugging Face checkpoints in and out."""

from hybrid_jax.models.checkpoint_io import create_model, load_pretrained, save_pretrained
from hybrid_jax.models.config import EncoderConfig
from hybrid_jax.models.encoder import (TOWERS, DualEncoder, TransformerEncoder, encode_fn,
                                       split_for_encoding)

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
