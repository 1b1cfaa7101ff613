"""Default model: a tiny random-init XLM-R-type encoder, 1 layer, hidden 512, 8 heads, intermediate
1024, mean pooling, L2-normalised embeddings (about the FLOPs per token of a 2-layer hidden-256
encoder).

Wide and shallow because, trained from scratch on the demo split within the default run's ~5 CPU
minutes, width kept more lexical detail than depth bought. Measured on xquad_r:eval (mono / cross /
multilingual mAP) after the default 450 steps, with the dropout masks of the time (before
`encoder.dropout_bits`): this model 0.508 / 0.077 / 0.072 (0.508 / 0.076 / 0.070 with the current
masks); 2 layers x hidden 256 0.483 / 0.063 / 0.062; 4 layers x hidden 256 (150 steps, 96-token
passages, same wall time) cross 0.042 / multilingual 0.054; 1 layer x hidden 1024 (2.2x the step
time) 0.465 / 0.078 / 0.067.
The vocabulary size matches the 16k tokenizer trained by `hybrid_jax.models.tokenizer`; the trainer
sets `vocab_size` from the tokenizer actually used.
"""

from hybrid_jax.models.config import model_config


def get_config():
  return model_config(name="tiny", num_hidden_layers=1, hidden_size=512, num_attention_heads=8,
                      intermediate_size=1024)
