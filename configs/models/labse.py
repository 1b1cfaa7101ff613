"""LaBSE (sentence-transformers/LaBSE): BERT, CLS pooler (dense + tanh), L2-normalised.

The sentence-transformers release keeps the pooler as a tanh `2_Dense` after CLS pooling;
`load_pretrained` reads it as pooling='pooler'. The architecture fields mirror the published
config.json for reference; with `path` set they are ignored and read from the checkpoint.
"""

from hybrid_jax.models.config import model_config


def get_config():
  return model_config(
      name="labse",
      path="sentence-transformers/LaBSE",
      model_type="bert",
      vocab_size=501153,
      hidden_size=768,
      num_hidden_layers=12,
      num_attention_heads=12,
      intermediate_size=3072,
      max_position_embeddings=512,
      type_vocab_size=2,
      layer_norm_eps=1e-12,
      pad_token_id=0,
      pooling="pooler",
      normalize=True,
  )
