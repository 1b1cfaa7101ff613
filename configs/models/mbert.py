"""Multilingual BERT (google-bert/bert-base-multilingual-cased), mean pooling, L2-normalised.

The architecture fields mirror the published config.json for reference; with `path` set they are
ignored and read from the checkpoint.
"""

from hybrid_jax.models.config import model_config


def get_config():
  return model_config(
      name="mbert",
      path="google-bert/bert-base-multilingual-cased",
      model_type="bert",
      vocab_size=119547,
      hidden_size=768,
      num_hidden_layers=12,
      num_attention_heads=12,
      intermediate_size=3072,
      max_position_embeddings=512,
      type_vocab_size=2,
      layer_norm_eps=1e-12,
      pad_token_id=0,
      pooling="mean",
      normalize=True,
  )
