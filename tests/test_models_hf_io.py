"""Hugging Face checkpoints in and out, checked against transformers and sentence-transformers.

Reference models: tiny random `XLMRobertaModel` / `BertModel` built by transformers (2 layers,
hidden 32, 4 heads, vocab 100, seeded), saved to a temporary directory. Our forward runs eagerly
(no jit) on one batch shape, so no test waits for a compile.
"""

import json
import os
import shutil
import stat
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx, traverse_util
from safetensors.numpy import load_file, save_file

from hybrid_jax.models import create_model, load_pretrained, save_pretrained
from hybrid_jax.models.hf_io import hf_weight_paths, read_prompts
from hybrid_jax.models.config import model_config

KINDS = ("xlm-roberta", "bert")
LENGTHS = (7, 4, 2)  # Real tokens per row of the test batch; the rest is padding.
TOLERANCE = 1e-5


def _hf_classes(kind):
  if kind == "xlm-roberta":
    return transformers.XLMRobertaConfig, transformers.XLMRobertaModel
  return transformers.BertConfig, transformers.BertModel


def _tokenizer(kind):
  """A word-level tokenizer whose special ids match the tiny models' pad_token_id."""
  from tokenizers import Tokenizer, models, pre_tokenizers  # pylint: disable=g-import-not-at-top
  if kind == "xlm-roberta":
    specials = dict(bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
  else:
    specials = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]")
  vocab = {token: i for i, token in enumerate(specials.values())}
  vocab.update({f"w{i}": i for i in range(len(vocab), 100)})
  tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=specials["unk_token"]))
  tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
  return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, **specials)


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
  """kind -> (checkpoint directory, transformers model, numpy batch, torch outputs)."""
  result = {}
  for seed, kind in enumerate(KINDS):
    config_class, model_class = _hf_classes(kind)
    torch.manual_seed(seed)
    config = config_class(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=4, intermediate_size=64, max_position_embeddings=40,
                          hidden_dropout_prob=0.1)
    model = model_class(config).eval()
    directory = str(tmp_path_factory.mktemp(kind))
    model.save_pretrained(directory)
    batch = _batch(config, seed)
    result[kind] = directory, model, batch, _torch_forward(model, batch)
  return result


def _batch(config, seed):
  rng = np.random.default_rng(seed)
  seq = max(LENGTHS)
  mask = (np.arange(seq)[None] < np.array(LENGTHS)[:, None]).astype(np.int32)
  input_ids = np.where(mask, rng.integers(4, config.vocab_size, (len(LENGTHS), seq)),
                       config.pad_token_id).astype(np.int32)
  token_type_ids = np.where(mask, rng.integers(0, config.type_vocab_size, mask.shape), 0)
  return input_ids, mask, token_type_ids.astype(np.int32)


def _torch_forward(model, batch):
  with torch.no_grad():
    out = model(
        **{
            name: torch.tensor(x, dtype=torch.long)
            for name, x in zip(("input_ids", "attention_mask", "token_type_ids"), batch)
        })
  pooler = None if out.pooler_output is None else out.pooler_output.numpy()
  return out.last_hidden_state.numpy(), pooler


def _reference_embedding(pooling, outputs, mask):
  """float64 numpy pooling of the transformers outputs."""
  last_hidden_state, pooler_output = (None if x is None else np.float64(x) for x in outputs)
  if pooling == "cls":
    return last_hidden_state[:, 0]
  if pooling == "mean":
    return (last_hidden_state * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
  return pooler_output


def _ours(model, batch, tower="queries"):
  input_ids, mask, token_type_ids = (jnp.asarray(x) for x in batch)
  return np.asarray(getattr(model, f"encode_{tower}")(input_ids, mask, token_type_ids))


def _hidden(encoder, batch):
  last_hidden_state, pooled = encoder(*(jnp.asarray(x) for x in batch))
  return np.asarray(last_hidden_state), None if pooled is None else np.asarray(pooled)


def _assert_close_on_tokens(ours, reference, mask):
  real = mask.astype(bool)
  np.testing.assert_allclose(ours[real], reference[real], atol=TOLERANCE, rtol=0)


def _flat_params(model):
  return traverse_util.flatten_dict(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def _assert_same_params(a, b):
  flat_a, flat_b = _flat_params(a), _flat_params(b)
  assert flat_a.keys() == flat_b.keys()
  for path in flat_a:
    np.testing.assert_array_equal(
        np.asarray(flat_a[path]), np.asarray(flat_b[path]), err_msg=str(path))


def _variant(source, target, edit_tensors=None, edit_config=None):
  """Copies a checkpoint directory, editing its tensors dict and/or config dict in place."""
  os.makedirs(target, exist_ok=True)
  tensors = load_file(os.path.join(source, "model.safetensors"))
  config = json.load(open(os.path.join(source, "config.json")))
  if edit_tensors:
    edit_tensors(tensors)
  if edit_config:
    edit_config(config)
  save_file(tensors, os.path.join(target, "model.safetensors"), metadata={"format": "pt"})
  json.dump(config, open(os.path.join(target, "config.json"), "w"))
  return str(target)


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pooling", ("cls", "mean", "pooler"))
def test_outputs_match_transformers(hf, kind, pooling):
  directory, _, batch, outputs = hf[kind]
  model = load_pretrained(directory, pooling=pooling, normalize=False)
  last_hidden_state, pooled = _hidden(model.encoder, batch)
  _assert_close_on_tokens(last_hidden_state, outputs[0], batch[1])
  assert (pooled is None) == (pooling != "pooler")
  embedding = _ours(model, batch)
  assert embedding.dtype == np.float32 and embedding.shape == (len(LENGTHS), 32)
  np.testing.assert_allclose(embedding, _reference_embedding(pooling, outputs, batch[1]),
                             atol=TOLERANCE, rtol=0)


def test_normalized_embedding_is_unit_reference_direction(hf):
  directory, _, batch, outputs = hf["xlm-roberta"]
  embedding = _ours(load_pretrained(directory, pooling="mean", normalize=True), batch)
  reference = _reference_embedding("mean", outputs, batch[1])
  np.testing.assert_allclose(embedding,
                             reference / np.linalg.norm(reference, axis=1, keepdims=True),
                             atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_transformers(hf, kind):
  """Every weight's gradient of a mean-pooled loss equals torch autograd's through transformers
  (dropout off), each Linear's kernel gradient coming from `encoder.matmul`'s backward."""
  directory, torch_model, batch, _ = hf[kind]
  model = load_pretrained(directory, pooling="mean", normalize=False)
  input_ids, mask, token_type_ids = batch
  direction = np.random.default_rng(7).standard_normal((len(LENGTHS), 32)).astype(np.float32)

  graphdef, params = nnx.split(model.encoder)

  def loss(params):
    last_hidden_state, _ = nnx.merge(graphdef, params)(jnp.asarray(input_ids), jnp.asarray(mask),
                                                       jnp.asarray(token_type_ids))
    pooled = (last_hidden_state * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
    return jnp.sum(pooled * direction)

  ours = traverse_util.flatten_dict(nnx.to_pure_dict(jax.grad(loss)(params)))

  torch_model.zero_grad()
  out = torch_model(
      **{
          name: torch.tensor(x, dtype=torch.long)
          for name, x in zip(("input_ids", "attention_mask", "token_type_ids"), batch)
      })
  torch_mask = torch.tensor(mask, dtype=torch.float32)[:, :, None]
  pooled = (out.last_hidden_state * torch_mask).sum(1) / torch_mask.sum(1)
  (pooled * torch.from_numpy(direction)).sum().backward()
  reference = dict(torch_model.named_parameters())

  config = model.encoder.config
  checked = 0
  for hf_name, (path, transpose) in hf_weight_paths(config).items():
    expected = reference[hf_name].grad.numpy()
    np.testing.assert_allclose(
        np.asarray(ours[path]), expected.T if transpose else expected, atol=2e-5, rtol=1e-4,
        err_msg=hf_name)
    checked += 1
  assert checked == len(ours)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", KINDS)
def test_save_then_transformers_load_gives_same_outputs(hf, kind, tmp_path):
  directory, _, batch, outputs = hf[kind]
  save_pretrained(load_pretrained(directory, pooling="pooler"), str(tmp_path))
  config = json.load(open(tmp_path / "config.json"))
  assert config["architectures"] == [_hf_classes(kind)[1].__name__]
  reloaded = transformers.AutoModel.from_pretrained(str(tmp_path)).eval()
  assert isinstance(reloaded, _hf_classes(kind)[1])
  last_hidden_state, pooler_output = _torch_forward(reloaded, batch)
  _assert_close_on_tokens(last_hidden_state, outputs[0], batch[1])
  np.testing.assert_allclose(pooler_output, outputs[1], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("kind,pooling,projection_dim", [("bert", "pooler", 8),
                                                         ("xlm-roberta", "mean", 0)])
def test_sentence_transformers_load_of_our_save(hf, kind, pooling, projection_dim, tmp_path):
  from sentence_transformers import SentenceTransformer  # pylint: disable=g-import-not-at-top
  directory, _, batch, _ = hf[kind]
  model = load_pretrained(directory, pooling=pooling, projection_dim=projection_dim, normalize=True,
                          seed=3)
  expected = _ours(model, batch)
  prompts = {"query": "query: ", "passage": "passage: "}
  save_pretrained(model, str(tmp_path), tokenizer=_tokenizer(kind), max_seq_length=16,
                  prompts=prompts)

  st_model = SentenceTransformer(str(tmp_path), device="cpu")
  assert st_model.max_seq_length == 16
  assert prompts.items() <= st_model.prompts.items() and read_prompts(str(tmp_path)) == prompts
  kinds = [type(module).__name__ for module in st_model]
  dense = ["Dense"] * ((pooling == "pooler") + (projection_dim > 0))
  assert kinds == ["Transformer", "Pooling"] + dense + ["Normalize"]
  with torch.no_grad():
    features = {
        name: torch.tensor(x, dtype=torch.long)
        for name, x in zip(("input_ids", "attention_mask", "token_type_ids"), batch)
    }
    st_embedding = st_model(features)["sentence_embedding"].numpy()
  np.testing.assert_allclose(st_embedding, expected, atol=TOLERANCE, rtol=0)
  # Our own load reads the head back from the sentence-transformers modules.
  reloaded = load_pretrained(str(tmp_path))
  assert (reloaded.config.pooling, reloaded.config.projection_dim) == (pooling, projection_dim)
  np.testing.assert_array_equal(_ours(reloaded, batch), expected)


def test_two_towers_round_trip(hf, tmp_path):
  from sentence_transformers import SentenceTransformer  # pylint: disable=g-import-not-at-top
  directory, _, batch, _ = hf["bert"]
  model = load_pretrained(directory, shared_tower=False, pooling="cls", projection_dim=4)
  np.testing.assert_array_equal(_ours(model, batch, "passages"), _ours(model, batch, "queries"))
  kernel = model.passage_encoder.layers[0].intermediate.kernel
  kernel[...] = kernel[...] * 3.0
  queries, passages = _ours(model, batch, "queries"), _ours(model, batch, "passages")
  assert np.abs(queries - passages).max() > 1e-3

  save_pretrained(model, str(tmp_path), tokenizer=_tokenizer("bert"))
  reloaded = load_pretrained(str(tmp_path))
  assert not reloaded.shared_tower
  np.testing.assert_array_equal(_ours(reloaded, batch, "queries"), queries)
  np.testing.assert_array_equal(_ours(reloaded, batch, "passages"), passages)
  st_passages = SentenceTransformer(str(tmp_path / "passage_encoder"), device="cpu")
  with torch.no_grad():
    features = {
        "input_ids": torch.tensor(batch[0], dtype=torch.long), "attention_mask": torch.tensor(
            batch[1], dtype=torch.long), "token_type_ids": torch.tensor(batch[2], dtype=torch.long)
    }
    np.testing.assert_allclose(
        st_passages(features)["sentence_embedding"].numpy(), passages, atol=TOLERANCE, rtol=0)


def test_shared_tower_model_has_one_set_of_params(hf):
  model = load_pretrained(hf["bert"][0], pooling="cls")
  assert model.shared_tower and model.passage_encoder is model.encoder
  assert {path[0] for path in _flat_params(model)} == {"encoder"}


def test_create_model_with_path_takes_head_from_model_config(hf):
  config = model_config(path=hf["bert"][0], pooling="pooler", projection_dim=8, normalize=False,
                        hidden_size=999)  # Architecture fields are ignored when path is set.
  model = create_model(config, seed=0)
  assert model.config.hidden_size == 32 and model.config.embedding_dim == 8
  assert model.encoder.pooler is not None


# ----------------------------------------------------------------------------- file forms


def test_sharded_safetensors_index_loads(hf, tmp_path):
  directory = hf["xlm-roberta"][0]
  tensors = load_file(os.path.join(directory, "model.safetensors"))
  names = sorted(tensors)
  shards = {
      "model-00001-of-00002.safetensors": names[::2],
      "model-00002-of-00002.safetensors": names[1::2]
  }
  weight_map = {}
  for shard, shard_names in shards.items():
    save_file({n: tensors[n] for n in shard_names}, str(tmp_path / shard), metadata={"format": "pt"})
    weight_map.update({n: shard for n in shard_names})
  json.dump({"metadata": {}, "weight_map": weight_map},
            open(tmp_path / "model.safetensors.index.json", "w"))
  shutil.copy(os.path.join(directory, "config.json"), tmp_path)
  _assert_same_params(
      load_pretrained(str(tmp_path), pooling="pooler"),
      load_pretrained(directory, pooling="pooler"))


def test_prefixed_names_and_harmless_extras_load(hf, tmp_path):
  directory = hf["xlm-roberta"][0]

  def prefix_and_add_heads(tensors):
    for name in list(tensors):
      tensors["roberta." + name] = tensors.pop(name)
    tensors["roberta.embeddings.position_ids"] = np.arange(40, dtype=np.int64)[None]
    tensors["lm_head.dense.weight"] = np.zeros((32, 32), np.float32)

  variant = _variant(directory, tmp_path, edit_tensors=prefix_and_add_heads)
  _assert_same_params(
      load_pretrained(variant, pooling="pooler"), load_pretrained(directory, pooling="pooler"))


@pytest.mark.parametrize("torch_available", (True, False))
def test_pytorch_bin_only_directory(hf, tmp_path, monkeypatch, torch_available):
  directory, hf_model, _, _ = hf["bert"]
  shutil.copy(os.path.join(directory, "config.json"), tmp_path)
  torch.save(hf_model.state_dict(), tmp_path / "pytorch_model.bin")
  if torch_available:
    _assert_same_params(
        load_pretrained(str(tmp_path), pooling="pooler"),
        load_pretrained(directory, pooling="pooler"))
  else:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError.
    with pytest.raises(FileNotFoundError, match=r"pytorch_model\.bin.*safetensors"):
      load_pretrained(str(tmp_path))


# ----------------------------------------------------------------------------- errors


def test_missing_weight_is_an_error(hf, tmp_path):
  name = "encoder.layer.1.output.dense.bias"
  variant = _variant(hf["bert"][0], tmp_path, edit_tensors=lambda t: t.pop(name))
  with pytest.raises(ValueError, match=rf"missing weight.*{name}"):
    load_pretrained(variant)


def test_missing_pooler_is_an_error_only_for_pooler_pooling(hf, tmp_path):

  def drop_pooler(tensors):
    for name in [n for n in tensors if n.startswith("pooler.")]:
      del tensors[name]

  variant = _variant(hf["bert"][0], tmp_path, edit_tensors=drop_pooler)
  assert load_pretrained(variant, pooling="mean").encoder.pooler is None
  with pytest.raises(ValueError, match=r"missing weight.*pooler\.dense\.bias"):
    load_pretrained(variant, pooling="pooler")


def test_shape_mismatch_names_key_and_both_shapes(hf, tmp_path):
  name = "encoder.layer.0.intermediate.dense.weight"

  def widen(tensors):
    tensors[name] = np.zeros((65, 32), np.float32)

  variant = _variant(hf["bert"][0], tmp_path, edit_tensors=widen)
  with pytest.raises(ValueError, match=rf"{name}.*\(65, 32\).*\(64, 32\)"):
    load_pretrained(variant)


def test_unexpected_weight_is_an_error(hf, tmp_path):

  def add(tensors):
    tensors["encoder.layer.0.adapter.weight"] = np.zeros((2, 2), np.float32)

  variant = _variant(hf["bert"][0], tmp_path, edit_tensors=add)
  with pytest.raises(ValueError, match=r"unexpected weight.*adapter"):
    load_pretrained(variant)


def test_missing_local_directory_is_an_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="not a directory"):
    load_pretrained(str(tmp_path / "no_such_model"))


def test_unsupported_model_type_is_an_error(hf, tmp_path):
  variant = _variant(hf["bert"][0], tmp_path,
                     edit_config=lambda c: c.update(model_type="distilbert"))
  with pytest.raises(ValueError, match=r"config\.json.*model_type='distilbert'"):
    load_pretrained(variant)


def test_saved_files_get_the_modes_of_the_umask(tmp_path):
  """safetensors wrote model.safetensors 0600: a second user of a shared machine could not read
  an exported model. Its files and directories get 0666 / 0777 less the umask."""
  config = model_config(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        shared_tower=False, intermediate_size=16, max_position_embeddings=16)
  old_mask = os.umask(0o027)
  try:
    save_pretrained(create_model(config, seed=0), str(tmp_path / "model"))
  finally:
    os.umask(old_mask)
  for root, dirs, files in os.walk(tmp_path / "model"):
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o750, root
    for name in files:
      assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o640, name
  assert os.path.exists(tmp_path / "model" / "passage_encoder" / "model.safetensors")
