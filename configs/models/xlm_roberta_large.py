"""XLM-RoBERTa large (FacebookAI/xlm-roberta-large), mean pooling, L2-normalised.

The architecture fields mirror the published config.json for reference; with `path` set they are
ignored and read from the checkpoint.
"""

from hybrid_jax.models.config import model_config


def get_config():
  return model_config(
      name="xlm_roberta_large",
      path="FacebookAI/xlm-roberta-large",
      model_type="xlm-roberta",
      vocab_size=250002,
      hidden_size=1024,
      num_hidden_layers=24,
      num_attention_heads=16,
      intermediate_size=4096,
      max_position_embeddings=514,
      type_vocab_size=1,
      layer_norm_eps=1e-5,
      pad_token_id=1,
      pooling="mean",
      normalize=True,
  )
