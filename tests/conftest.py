"""Test set-up: 8 virtual CPU devices for every test (sub-meshes take 1, 2 or 4 of them).

XLA reads the flag when the backend starts, so it is set here, before any test imports jax.
"""

import os

from tiny_run import xla_flags

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + xla_flags(8)).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402  (after the environment above)


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
  """A real 2-run sweep (mono-only vs hybrid, en+de, tiny model, 4 steps, evaluated on
  xquad_r:eval) made with launch/sweep.py; shared by the launch and notebook tests.

  Returns (root, {run name: workdir}).
  """
  import subprocess
  import sys

  from tiny_run import REPO, TINY_MODEL, env

  root = str(tmp_path_factory.mktemp("sweep"))
  command = [
      sys.executable, "launch/sweep.py", f"--root={root}", "--lang_sets=en+de",
      "--config=configs/default.py:model=tiny", "--mono_probs=1,0.5", "--",
      "--config.train.num_steps=4", *TINY_MODEL
  ]
  proc = subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
  runs = {
      name: os.path.join(root, name) for name in sorted(os.listdir(root))
      if os.path.isdir(os.path.join(root, name))  # (root also holds the sweep's sweep.json)
  }
  return root, runs


# ----------------------------------------------------------------------------- evaluation
# A tiny random model, its tokenizer and 3 languages of xquad_r:eval, shared by the evaluation
# tests (test_encoding, test_retrievers, test_evaluators, test_evaluate) so that their compiled
# programs are shared too (one batch shape throughout).
EVAL_LANGUAGES = ("en", "de", "ar")
EVAL_QUERY_MAX_LEN, EVAL_PASSAGE_MAX_LEN = 32, 64  # buckets (32,) and (32, 64)
EVAL_BATCH_SIZE = 16


@pytest.fixture(scope="session")
def eval_data():
  from hybrid_jax import data as data_lib

  return data_lib.load("xquad_r:eval", languages=list(EVAL_LANGUAGES))


@pytest.fixture(scope="session")
def eval_tokenizer(eval_data):
  from hybrid_jax.models import tokenizer as tokenizer_lib

  return tokenizer_lib.train_default_tokenizer(eval_data.texts(), vocab_size=1500)


@pytest.fixture(scope="session")
def eval_model(eval_tokenizer):
  from hybrid_jax import models
  from hybrid_jax.models.config import model_config

  config = model_config(
      vocab_size=len(eval_tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
      intermediate_size=64, max_position_embeddings=80)
  return models.create_model(config, seed=0)


@pytest.fixture(scope="session")
def eval_passage_tokens(eval_data, eval_tokenizer):
  """45 passages of mixed lengths: every third one with its context (full length), the others
  the sentence alone (short)."""
  import numpy as np

  from hybrid_jax.models import tokenizer as tokenizer_lib

  rows = np.random.default_rng(0).choice(len(eval_data.candidates), 45, replace=False)
  contexts = np.where(np.arange(45) % 3 == 0, eval_data.candidates.context[rows], "")
  return tokenizer_lib.tokenize_passages(eval_tokenizer, eval_data.candidates.text[rows], contexts,
                                         EVAL_PASSAGE_MAX_LEN)


def plain_encode(model, tower, tokens):
  """Reference embeddings: all rows in one batch at the tokenizer's length (no buckets, no
  mesh), through the tower's own method."""
  import numpy as np
  from flax import nnx

  encode = nnx.jit(lambda m, ids, mask, types:
                   (m.encode_queries if tower == "query" else m.encode_passages)(ids, mask, types))
  return np.asarray(
      encode(model, tokens["input_ids"], tokens["attention_mask"], tokens["token_type_ids"]))


@pytest.fixture(scope="session")
def gcs_env():
  """A local GCS emulator for the session (tests/gcs_emulator.py): the environment variables a
  subprocess needs to reach it (its bucket is `gcs_emulator.BUCKET`; give each test its own
  prefix). Skips when the emulator or gcsfs is not installed."""
  import gcs_emulator

  if not gcs_emulator.available():
    pytest.skip("gcp-storage-emulator / gcsfs not installed (pip install -e '.[test]')")
  process, emulator_env = gcs_emulator.start()
  yield {k: v for k, v in emulator_env.items() if k not in os.environ or os.environ[k] != v}
  gcs_emulator.stop(process, emulator_env)
