"""XLM-RoBERTa large (FacebookAI/xlm-roberta-large), mean pooling, L2-normalised.

The base preset with the large architecture; the architecture fields mirror the published
config.json for reference; with `path` set they are ignored and read from the checkpoint.
"""

from hybrid_jax import config_lib


def get_config():
  config = config_lib.model_preset("xlm_roberta_base")
  config.update(
      name="xlm_roberta_large",
      path="FacebookAI/xlm-roberta-large",
      hidden_size=1024,
      num_hidden_layers=24,
      num_attention_heads=16,
      intermediate_size=4096,
  )
  return config
