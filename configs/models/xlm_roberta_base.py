"""XLM-RoBERTa base (FacebookAI/xlm-roberta-base), mean pooling, L2-normalised.

The architecture fields mirror the published config.json for reference; with `path` set they are
ignored and read from the checkpoint.
"""

from hybrid_jax.models.config import model_config


def get_config():
  return model_config(
      name="xlm_roberta_base",
      path="FacebookAI/xlm-roberta-base",
      model_type="xlm-roberta",
      vocab_size=250002,
      hidden_size=768,
      num_hidden_layers=12,
      num_attention_heads=12,
      intermediate_size=3072,
      max_position_embeddings=514,
      type_vocab_size=1,
      layer_norm_eps=1e-5,
      pad_token_id=1,
      pooling="mean",
      normalize=True,
  )
