"""Default model: a tiny random-init XLM-R-type encoder (4 layers, hidden 256), mean pooling.

The vocabulary size matches the 16k tokenizer trained by `hybrid_jax.models.tokenizer`; the
trainer sets `vocab_size` from the tokenizer actually used.
"""

from hybrid_jax.models.config import model_config


def get_config():
  return model_config(name="tiny")
