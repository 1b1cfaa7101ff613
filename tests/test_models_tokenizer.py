"""Tests of hybrid_jax.models.tokenizer: the default tokenizer and static-shape tokenisation."""

import json
import os
import stat
import unicodedata

import numpy as np
import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
import transformers

from hybrid_jax import data
from hybrid_jax.models import tokenizer as tokenizer_lib

MAX_UNK_RATE = 0.03  # Measured: zh 0.020 (characters unseen in training), every other language < 0.002.


@pytest.fixture(scope="module")
def train_texts():
  return data.load("xquad_r:train").texts()


@pytest.fixture(scope="module")
def long_paragraph(train_texts):
  """A context of more than 150 space-separated words."""
  return next(t for t in train_texts if len(t.split()) > 150)


@pytest.fixture(scope="module")
def default_tokenizer(train_texts):
  return tokenizer_lib.train_default_tokenizer(train_texts)


@pytest.fixture(scope="module")
def bert_tokenizer(train_texts):
  """A tiny BERT-style WordPiece tokenizer: [CLS] A [SEP] B [SEP] with type 1 on B."""
  backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
  backend.normalizer = normalizers.BertNormalizer(lowercase=True)
  backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  backend.train_from_iterator(
      train_texts[:300],
      trainers.WordPieceTrainer(vocab_size=600, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"],
                                show_progress=False))
  cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
  backend.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
      special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
  return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, cls_token="[CLS]",
                                              sep_token="[SEP]", pad_token="[PAD]",
                                              unk_token="[UNK]", model_max_length=512)


def test_special_tokens_follow_xlmr(default_tokenizer):
  tok = default_tokenizer
  assert len(tok) == tokenizer_lib.DEFAULT_VOCAB_SIZE
  assert (tok.bos_token_id, tok.cls_token_id, tok.pad_token_id, tok.eos_token_id, tok.sep_token_id,
          tok.unk_token_id) == (0, 0, 1, 2, 2, 3)
  assert tok.convert_ids_to_tokens([0, 1, 2, 3]) == ["<s>", "<pad>", "</s>", "<unk>"]
  assert tok.mask_token == "<mask>" and tok.mask_token_id is not None
  assert tok.model_max_length == 512
  a = tok("Where is the stadium?", add_special_tokens=False)["input_ids"]
  b = tok("Das Stadion liegt in Santa Clara.", add_special_tokens=False)["input_ids"]
  assert tok("Where is the stadium?")["input_ids"] == [0] + a + [2]
  assert tok("Where is the stadium?",
             "Das Stadion liegt in Santa Clara.")["input_ids"] == ([0] + a + [2, 2] + b + [2])


def test_normalisation_is_nfkc_with_collapsed_whitespace(default_tokenizer):
  tok = default_tokenizer
  text = "ＡＢＣ ﬁnal ①  \n café"  # Full-width letters, a ligature, a circled digit, whitespace.
  expected = " ".join(unicodedata.normalize("NFKC", text).split())
  assert tok.backend_tokenizer.normalizer.normalize_str(text) == expected
  assert tok(text)["input_ids"] == tok(expected)["input_ids"]
  assert tok.decode(tok(expected)["input_ids"], skip_special_tokens=True) == expected


def test_unknown_rate_is_low_in_every_language_on_the_eval_split(default_tokenizer):
  eval_data = data.load("xquad_r:eval")
  unk_id = default_tokenizer.unk_token_id
  for j, lang in enumerate(eval_data.languages):
    contexts = set(eval_data.candidates.context[eval_data.candidates.language == j].tolist())
    texts = [q for q in eval_data.queries[:, j].tolist() if q] + sorted(contexts)
    ids = default_tokenizer(texts, add_special_tokens=False)["input_ids"]
    num_tokens = sum(len(row) for row in ids)
    num_unk = sum(row.count(unk_id) for row in ids)
    num_chars = sum(len(t) for t in texts)
    assert num_unk / num_tokens <= MAX_UNK_RATE, (lang, num_unk / num_tokens)
    # Text without spaces (zh, th) is split into subwords, not kept as one token per sentence.
    assert 1.0 <= num_chars / num_tokens <= 5.0, (lang, num_chars / num_tokens)


def test_training_is_deterministic_and_depends_on_the_texts(default_tokenizer, train_texts,
                                                            tmp_path):

  def saved_bytes(tokenizer, name):
    tokenizer.save_pretrained(tmp_path / name)
    return {f: (tmp_path / name / f).read_bytes() for f in sorted(os.listdir(tmp_path / name))}

  first = saved_bytes(default_tokenizer, "first")
  assert "tokenizer.json" in first
  assert saved_bytes(tokenizer_lib.train_default_tokenizer(train_texts), "second") == first
  small = tokenizer_lib.train_default_tokenizer(train_texts[:100], vocab_size=800)
  fewer = tokenizer_lib.train_default_tokenizer(train_texts[:99], vocab_size=800)
  assert saved_bytes(small, "small")["tokenizer.json"] != saved_bytes(fewer,
                                                                      "fewer")["tokenizer.json"]


def test_repeated_texts_are_counted_once(train_texts):
  texts = train_texts[:200]
  once = tokenizer_lib.train_default_tokenizer(texts, vocab_size=800)
  thrice = tokenizer_lib.train_default_tokenizer(texts[:50] * 3 + texts, vocab_size=800)
  assert once.backend_tokenizer.to_str() == thrice.backend_tokenizer.to_str()


def test_vocab_size_below_the_alphabet_keeps_the_most_frequent_characters():
  # `model=tiny` with model.vocab_size=1000 on all 11 XQuAD-R languages (2454 characters) trained
  # a tokenizer larger than vocab_size, then refused it: ids beyond the embedding table.
  texts = ["".join(chr(0x4E00 + (i * 7 + j) % 300) for j in range(20)) for i in range(60)]
  texts.append("aaa bbb " * 20)
  tokenizer = tokenizer_lib.train_default_tokenizer(texts, vocab_size=100)
  assert len(tokenizer) <= 100
  assert tokenizer.unk_token_id not in tokenizer("aaa bbb")["input_ids"]


def test_cache_trains_once_then_loads(train_texts, tmp_path):
  calls = []

  def texts_fn():
    calls.append(1)
    return train_texts[:200]

  old_mask = os.umask(0o027)  # a umask other than the usual one: modes follow it
  try:
    first = tokenizer_lib.get_or_train_default_tokenizer(tmp_path, texts_fn, vocab_size=800)
  finally:
    os.umask(old_mask)
  assert len(calls) == 1
  # Was mkdtemp's 0700: a second user of a shared machine could not read the run's tokenizer.
  assert stat.S_IMODE(os.stat(tmp_path / "tokenizer").st_mode) == 0o750
  assert stat.S_IMODE(os.stat(tmp_path / "tokenizer" / "tokenizer.json").st_mode) == 0o640
  assert os.path.isfile(tmp_path / "tokenizer" / "tokenizer.json")
  assert [p for p in os.listdir(tmp_path) if p != "tokenizer"] == []  # No temporary leftovers.
  second = tokenizer_lib.get_or_train_default_tokenizer(tmp_path, texts_fn, vocab_size=800)
  assert len(calls) == 1
  assert second.backend_tokenizer.to_str() == first.backend_tokenizer.to_str()
  assert second.model_max_length == 512 and second.pad_token_id == 1
  sample = train_texts[200:210]
  assert second(sample)["input_ids"] == first(sample)["input_ids"]
  with pytest.raises(ValueError, match="more than vocab_size=700"):
    tokenizer_lib.get_or_train_default_tokenizer(tmp_path, texts_fn, vocab_size=700)
  assert len(calls) == 1


def test_load_tokenizer_reads_a_saved_directory(default_tokenizer, tmp_path):
  default_tokenizer.save_pretrained(tmp_path)
  loaded = tokenizer_lib.load_tokenizer(str(tmp_path))
  assert loaded.is_fast
  texts = ["Wann wurde die Yuan-Dynastie gegründet?", "元朝是什么时候建立的？"]
  assert loaded(texts)["input_ids"] == default_tokenizer(texts)["input_ids"]


def test_load_tokenizer_skips_the_auto_lookup_only_for_directories_it_wrote(
    default_tokenizer, tmp_path, monkeypatch):
  """A directory of a tokenizer.json-only class loads as that class directly, the same tokenizer
  AutoTokenizer builds; a directory naming a model-specific class goes through AutoTokenizer."""
  default_tokenizer.save_pretrained(tmp_path)
  auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  calls = []
  monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                      lambda *args, **kwargs: calls.append(args) or auto)
  direct = tokenizer_lib.load_tokenizer(str(tmp_path))
  assert calls == [] and type(direct) is type(auto)
  queries = ["Wann wurde die Yuan-Dynastie gegründet?", "元朝是什么时候建立的？"]
  passages = ["Die Yuan-Dynastie wurde 1271 gegründet.", "元朝建立于1271年。"]
  assert direct(queries, passages)["input_ids"] == auto(queries, passages)["input_ids"]
  for attribute in ("all_special_ids", "pad_token_id", "model_max_length", "padding_side"):
    assert getattr(direct, attribute) == getattr(auto, attribute), attribute
  config_path = tmp_path / "tokenizer_config.json"
  config = json.loads(config_path.read_text())
  config_path.write_text(json.dumps({**config, "tokenizer_class": "XLMRobertaTokenizer"}))
  assert tokenizer_lib.load_tokenizer(str(tmp_path)) is auto and calls == [(str(tmp_path),)]


def test_training_texts_are_the_train_split_queries_and_contexts(train_texts):
  train = data.load("xquad_r:train")
  queries = train.queries[train.available].tolist()
  contexts = set(train.candidates.context.tolist())
  assert len(train_texts) == len(queries) + len(contexts)
  assert set(train_texts) == set(queries) | contexts
  eval_contexts = set(data.load("xquad_r:eval").candidates.context.tolist())
  assert not eval_contexts & contexts


def _reference_row(tok, sentence, context, max_len):
  """What the tokenizer itself gives for one passage (the documented fall-back rule)."""
  n_sentence = len(tok(sentence, add_special_tokens=False, verbose=False)["input_ids"])
  if context and n_sentence + tok.num_special_tokens_to_add(pair=True) < max_len:
    return tok(sentence, context, truncation="only_second", max_length=max_len,
               padding="max_length", return_token_type_ids=True)
  return tok(sentence, truncation=True, max_length=max_len, padding="max_length",
             return_token_type_ids=True)


def _check_static(encoded, batch_size, max_len):
  assert set(encoded) == {"input_ids", "attention_mask", "token_type_ids"}
  for value in encoded.values():
    assert value.dtype == np.int32 and value.shape == (batch_size, max_len)


@pytest.mark.parametrize("tokenizer_name", ["default_tokenizer", "bert_tokenizer"])
def test_tokenize_queries_matches_the_tokenizer(tokenizer_name, request, train_texts,
                                                long_paragraph):
  tok = request.getfixturevalue(tokenizer_name)
  max_len = 24
  texts = ["", "short", train_texts[1], long_paragraph]
  encoded = tokenizer_lib.tokenize_queries(tok, texts, max_len)
  _check_static(encoded, len(texts), max_len)
  for i, text in enumerate(texts):
    ref = tok(text, truncation=True, max_length=max_len, padding="max_length",
              return_token_type_ids=True)
    for key in encoded:
      np.testing.assert_array_equal(encoded[key][i], ref[key], err_msg=f"{key} row {i}")
  mask = encoded["attention_mask"]
  assert mask[3].all() and encoded["input_ids"][3, -1] == tok.sep_token_id  # Truncated, closed.
  assert np.all(encoded["input_ids"][mask == 0] == tok.pad_token_id)
  assert np.all(np.diff(mask, axis=1) <= 0)  # Right padding: ones, then zeros.


@pytest.mark.parametrize("tokenizer_name", ["default_tokenizer", "bert_tokenizer"])
def test_tokenize_passages_matches_the_tokenizer(tokenizer_name, request, long_paragraph):
  tok = request.getfixturevalue(tokenizer_name)
  max_len = 32
  long_context = long_paragraph
  long_sentence = " ".join(long_context.split()[:60])
  words = long_context.split()
  # A sentence that leaves exactly one context position, and one that leaves none.
  room = max_len - tok.num_special_tokens_to_add(pair=True)
  fits = next(" ".join(words[:k]) for k in range(len(words), 0, -1)
              if len(tok(" ".join(words[:k]), add_special_tokens=False)["input_ids"]) < room)
  full = next(" ".join(words[:k]) for k in range(1, len(words))
              if len(tok(" ".join(words[:k]), add_special_tokens=False)["input_ids"]) >= room)
  sentences = ["The stadium is in Santa Clara.", "Short.", long_sentence, fits, full, "No context."]
  contexts = [long_context, "Tiny context.", long_context, long_context, long_context, ""]
  encoded = tokenizer_lib.tokenize_passages(tok, sentences, contexts, max_len)
  _check_static(encoded, len(sentences), max_len)
  for i, (sentence, context) in enumerate(zip(sentences, contexts)):
    ref = _reference_row(tok, sentence, context, max_len)
    for key in encoded:
      np.testing.assert_array_equal(encoded[key][i], ref[key], err_msg=f"{key} row {i}")
  ids = encoded["input_ids"]
  # The sentence is never truncated when a context token fits: it is the first segment, whole.
  for i in (0, 1, 3):
    sentence_ids = tok(sentences[i], add_special_tokens=False)["input_ids"]
    np.testing.assert_array_equal(ids[i, 1:1 + len(sentence_ids)], sentence_ids)
  num_sep = (ids == tok.sep_token_id).sum(axis=1)
  single_seps = tok.num_special_tokens_to_add(pair=False) - 1  # Separators after one segment.
  pair_seps = tok.num_special_tokens_to_add(pair=True) - 1
  np.testing.assert_array_equal(
      num_sep, [pair_seps, pair_seps, single_seps, pair_seps, single_seps, single_seps])
  assert encoded["attention_mask"][[0, 2, 3]].all()  # Truncated rows fill max_len exactly.
  assert encoded["attention_mask"][[1, 5], -1].sum() == 0  # Short rows are padded.
  types = encoded["token_type_ids"]
  if tokenizer_name == "bert_tokenizer":  # Type 1 on the context and its closing [SEP] only.
    first_sep = np.argmax(ids == tok.sep_token_id, axis=1)
    expected = ((np.arange(max_len) > first_sep[:, None]) & (encoded["attention_mask"] == 1) &
                (num_sep == pair_seps)[:, None])
    np.testing.assert_array_equal(types, expected.astype(np.int32))
    assert types[0].sum() > 0
  else:
    assert not types.any()


def test_tokenize_checks_its_input(default_tokenizer):
  tok = default_tokenizer
  with pytest.raises(TypeError, match=r"texts\[1\] is None"):
    tokenizer_lib.tokenize_queries(tok, ["a", None], 8)
  with pytest.raises(ValueError, match="2 sentences but 1 contexts"):
    tokenizer_lib.tokenize_passages(tok, ["a", "b"], ["c"], 8)
  with pytest.raises(ValueError, match="max_len=2 is too short"):
    tokenizer_lib.tokenize_queries(tok, ["a"], 2)
  empty = tokenizer_lib.tokenize_passages(tok, np.array([], object), np.array([], object), 8)
  _check_static(empty, 0, 8)


def test_padding_is_on_the_right_even_for_a_left_padding_tokenizer(bert_tokenizer):
  texts = ["a short one", "a somewhat longer query than the other one"]
  right = tokenizer_lib.tokenize_queries(bert_tokenizer, texts, 16)
  bert_tokenizer.padding_side = "left"
  try:
    left = tokenizer_lib.tokenize_queries(bert_tokenizer, texts, 16)
  finally:
    bert_tokenizer.padding_side = "right"
  for key in right:
    np.testing.assert_array_equal(left[key], right[key])
  assert right["attention_mask"][0, 0] == 1 and right["attention_mask"][0, -1] == 0
