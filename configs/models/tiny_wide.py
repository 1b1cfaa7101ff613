"""A wider, shallower variant of the default tiny model: 1 layer, hidden 512, 8 heads,
intermediate 1024 (random init, mean pooling, L2-normalised), about the same FLOPs per token.

Measured on xquad_r:eval after the default run's 450 steps (`--config=configs/default.py:
model=tiny_wide`): mono / cross / multilingual mAP 0.509 / 0.076 / 0.071, against 0.483 / 0.063 /
0.062 for `tiny`: wider embeddings keep more lexical detail for a model trained from scratch.
"""

from hybrid_jax.models.config import model_config


def get_config():
  return model_config(name="tiny_wide", num_hidden_layers=1, hidden_size=512,
                      num_attention_heads=8, intermediate_size=1024)
