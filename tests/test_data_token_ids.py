"""Token ids stored at prepare time: bitwise the per-batch path's ids (XLM-R-like and BERT-like
token types, prefixes, truncation, hard negatives), used only when the run's tokenizer, lengths
and prefixes match (else one warning naming what differs), and an interrupted preparation
resumes to the same files (over a worker process)."""

import shutil

from absl import logging
import numpy as np
import pytest
from tokenizers import processors

from hybrid_jax import config_lib
from hybrid_jax import data as data_lib
from hybrid_jax import input_pipeline
from hybrid_jax.data import __main__ as data_main
from hybrid_jax.data import token_ids
from hybrid_jax.models import tokenizer as tokenizer_lib
from hybrid_jax.sampler import HybridBatchSampler

LANGS = ("en", "de", "zh")
QUERY_LEN, PASSAGE_LEN = 12, 40  # short: queries and contexts are truncated
PREFIXES = {"query_prefix": "query: ", "passage_prefix": "passage: "}


def _bert_like(tokenizer):
  """The same vocabulary with token type 1 on the second segment, as BERT's pairs have."""
  tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
      single="<s> $A </s>", pair="<s> $A </s> </s> $B:1 </s>:1", special_tokens=[("<s>", 0),
                                                                                 ("</s>", 2)])
  return tokenizer


@pytest.fixture(scope="module")
def texts_dir(tmp_path_factory):
  """A prepared directory (texts only) of a JSONL file, and a tokenizer trained on it."""
  root = tmp_path_factory.mktemp("token_ids")
  data_lib.write_jsonl(data_lib.load("xquad_r:eval", languages=LANGS), root / "x.jsonl")
  data = data_lib.prepare(f"jsonl:{root / 'x.jsonl'}", str(root / "texts"))
  tokenizer = tokenizer_lib.train_default_tokenizer(data.texts(), vocab_size=1000)
  return root, f"jsonl:{root / 'x.jsonl'}", tokenizer


def _prepare(texts_dir, name, *extra, bert_like=False):
  """A copy of the prepared texts with token ids written by the command line (in-process)."""
  root, spec, tokenizer = texts_dir
  tokenizer_dir, out = str(root / f"{name}_tokenizer"), str(root / name)
  tokenizer.save_pretrained(tokenizer_dir)
  if bert_like:
    _bert_like(tokenizer_lib.load_tokenizer(tokenizer_dir)).save_pretrained(tokenizer_dir)
  shutil.copytree(root / "texts", out)
  assert data_main.main([
      "--prepare", spec, "--out", out, f"--tokenizer={tokenizer_dir}",
      f"--query_max_len={QUERY_LEN}", f"--passage_max_len={PASSAGE_LEN}",
      f"--query_prefix={PREFIXES['query_prefix']}",
      f"--passage_prefix={PREFIXES['passage_prefix']}", *extra
  ]) == 0
  return out, tokenizer_lib.load_tokenizer(tokenizer_dir)


@pytest.mark.parametrize("token_types", ["xlmr", "bert"])
def test_stored_ids_are_the_per_batch_ids_bitwise(texts_dir, token_types):
  directory, tokenizer = _prepare(texts_dir, f"ids_{token_types}", "--workers=0",
                                  bert_like=token_types == "bert")
  data = data_lib.load(f"arrow:{directory}").select_languages(("de", "zh", "en"))
  stored = token_ids.matching(data, tokenizer, query_max_len=QUERY_LEN, passage_max_len=PASSAGE_LEN,
                              **PREFIXES)
  assert stored is not None
  # Every query and passage, against the tokenizer on the texts.
  available = data.available
  expected = tokenizer_lib.tokenize_queries(
      tokenizer, tokenizer_lib.with_prefix("query: ", data.queries[available].tolist()), QUERY_LEN)
  got = stored.encode("query", data.queries[available].rows)
  expected_p = tokenizer_lib.tokenize_passages(
      tokenizer, tokenizer_lib.with_prefix("passage: ", data.candidates.text.tolist()),
      data.candidates.context.tolist(), PASSAGE_LEN)
  got_p = stored.encode("passage", data.candidates.text.rows)
  for key in expected:
    np.testing.assert_array_equal(got[key], expected[key])
    np.testing.assert_array_equal(got_p[key], expected_p[key])
    assert got[key].dtype == got_p[key].dtype == np.int32
  assert (expected_p["input_ids"][:, -1] != tokenizer.pad_token_id).any()  # truncated rows
  assert expected_p["token_type_ids"].any() == (token_types == "bert")
  # Whole batches with hard negatives: the stored and the tokenising builder agree bitwise.
  sampler = HybridBatchSampler(data.available, data.languages, 16, 0.5, 0,
                               passage_keys=data.passage_keys)
  builders = [
      input_pipeline.BatchBuilder(data, sampler, tokenizer, query_max_len=QUERY_LEN,
                                  passage_max_len=PASSAGE_LEN, num_hard_negatives=2,
                                  stored_tokens=[store], **PREFIXES) for store in (stored, None)
  ]
  for step in range(3):
    a, b = builders[0](step), builders[1](step)
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _config(directory, **data):
  config = config_lib.default_config("model=tiny,langs=en+de+zh")
  config.data.update({
      "train": f"arrow:{directory}", "query_max_len": QUERY_LEN, "passage_max_len": PASSAGE_LEN,
      **data
  })
  config.model.update(PREFIXES)
  config.train.global_batch_size = 8
  return config


def test_a_run_uses_matching_ids_and_falls_back_naming_what_differs(texts_dir, monkeypatch):
  directory, tokenizer = _prepare(texts_dir, "run", "--workers=0")
  lines = []
  monkeypatch.setattr(logging, "info", lambda fmt, *a: lines.append(("info", fmt % a)))
  monkeypatch.setattr(logging, "warning", lambda fmt, *a: lines.append(("warning", fmt % a)))
  data = data_lib.load(f"arrow:{directory}")
  builder = input_pipeline.make_batch_builder(_config(directory), data, tokenizer)
  assert builder.stored_tokens[0] is not None
  assert lines[-1][0] == "info" and "using the token ids stored at prepare time" in lines[-1][1]
  other = tokenizer_lib.train_default_tokenizer(data.texts(), vocab_size=900)
  other_prefix = _config(directory)
  other_prefix.model.query_prefix = "q: "
  for config, tok, differs in ((_config(directory, passage_max_len=PASSAGE_LEN + 1), tokenizer,
                                f"passage_max_len: stored {PASSAGE_LEN}, run {PASSAGE_LEN + 1}"),
                               (_config(directory), other, "tokenizer: stored "),
                               (other_prefix, tokenizer,
                                "query_prefix: stored 'query: ', run 'q: '")):
    lines.clear()
    builder = input_pipeline.make_batch_builder(config, data, tok)
    assert builder.stored_tokens == [None]
    assert len(lines) == 1 and lines[0][0] == "warning", lines
    assert differs in lines[0][1] and "tokenising the texts per batch" in lines[0][1]
    assert "\n" not in lines[0][1]


def test_interrupted_preparation_resumes_to_the_same_files(texts_dir, monkeypatch):
  complete, _ = _prepare(texts_dir, "complete", "--workers=0")
  monkeypatch.setattr(token_ids, "CHUNK_ROWS", 200)
  calls = []
  call = token_ids._Chunker.__call__

  def failing(self, tower, rows):
    calls.append(tower)
    if len(calls) == 3:
      raise KeyboardInterrupt
    call(self, tower, rows)

  monkeypatch.setattr(token_ids._Chunker, "__call__", failing)
  with pytest.raises(KeyboardInterrupt):
    _prepare(texts_dir, "resumed", "--workers=0")
  root = texts_dir[0]
  done = np.load(root / "resumed" / "tokens" / "done.npy")
  assert done.sum() == 2 and len(done) > 3
  tokenizer = tokenizer_lib.load_tokenizer(str(root / "resumed_tokenizer"))
  assert token_ids.matching(
      data_lib.load(f"arrow:{root / 'resumed'}"), tokenizer, query_max_len=QUERY_LEN,
      passage_max_len=PASSAGE_LEN, **PREFIXES) is None  # interrupted: not used
  monkeypatch.setattr(token_ids._Chunker, "__call__", call)
  # The same command again, in a worker process.
  assert data_main.main([
      "--prepare", texts_dir[1], "--out",
      str(root / "resumed"), f"--tokenizer={root / 'resumed_tokenizer'}",
      f"--query_max_len={QUERY_LEN}", f"--passage_max_len={PASSAGE_LEN}",
      f"--query_prefix={PREFIXES['query_prefix']}",
      f"--passage_prefix={PREFIXES['passage_prefix']}", "--workers=1"
  ]) == 0
  assert np.load(root / "resumed" / "tokens" / "done.npy").all()
  for tower in token_ids.TOWERS:
    for field in ("input_ids", "num_tokens", "type_start"):
      name = f"{tower}_{field}.npy"
      np.testing.assert_array_equal(
          np.load(root / "resumed" / "tokens" / name), np.load(f"{complete}/tokens/{name}"))
