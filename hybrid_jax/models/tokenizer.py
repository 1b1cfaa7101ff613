"""Tokenizers: load a pretrained one, or train the embedded default; batch tokenisation to static
shapes on the host.

The embedded default model has no downloadable weights: it is a small randomly initialised
XLM-R-type encoder whose tokenizer is trained here, with `tokenizers`, on the training split. It
follows XLM-R's conventions: `<s>` (bos/cls) = 0, `<pad>` = 1, `</s>` (eos/sep) = 2, `<unk>` = 3,
`<mask>` = 4; NFKC normalisation with whitespace runs collapsed; Metaspace pre-tokenisation ("▁"
marks a word start, so text without spaces such as Chinese or Thai stays one pre-token and is
split by the subword model alone), then digit runs split off (numbers tokenise alike in every
language); `<s> A </s>` and `<s> A </s></s> B </s>` with token type 0
throughout. The subword model is BPE: training it on the XQuAD-R training split takes about a
second, where a Unigram model (XLM-R's) takes about 25 s on 2 cores for a near-identical unknown
rate. BPE training has no random choice (no dropout is used), so the result depends only on the
texts: the same texts give byte-identical files.

Tokenisation (`tokenize_queries`, `tokenize_passages`) runs in numpy outside jit and always pads to
exactly `max_len`, so a jitted step sees one shape and compiles once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from typing import Callable, Iterable, Sequence

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers import processors, trainers
import transformers

from hybrid_jax import paths

BOS, PAD, EOS, UNK, MASK = "<s>", "<pad>", "</s>", "<unk>", "<mask>"
SPECIAL_TOKENS = (BOS, PAD, EOS, UNK, MASK
                 )  # In id order: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4.
DEFAULT_VOCAB_SIZE = 16000
MODEL_MAX_LENGTH = 512
CACHE_SUBDIR = "tokenizer"

Encoding = dict[str, np.ndarray]

# The class names `save_pretrained` writes for a tokenizer that is its tokenizer.json alone (those
# this package trains or builds). Such a directory is loaded as that class directly: AutoTokenizer
# would only look the same class up, through transformers' model-configuration machinery, which
# imports torch where it is installed (~4 s per process). Other directories and hub names go
# through AutoTokenizer (model-specific classes).
_GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def _saved_tokenizer_class(directory: str) -> str | None:
  """`tokenizer_class` of a local directory's tokenizer_config.json, else None."""
  try:
    with open(os.path.join(directory, "tokenizer_config.json"), encoding="utf-8") as f:
      return json.load(f).get("tokenizer_class")
  except (OSError, ValueError, AttributeError):
    return None


def load_tokenizer(path_or_hub_name: str) -> transformers.PreTrainedTokenizerFast:
  """The fast (Rust) tokenizer of a pretrained model: a local directory or a hub name."""
  local = paths.local_copy(path_or_hub_name)
  if (_saved_tokenizer_class(local) in _GENERIC_TOKENIZER_CLASSES
      and os.path.isfile(os.path.join(local, "tokenizer.json"))):
    tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(local)
  else:
    tokenizer = transformers.AutoTokenizer.from_pretrained(local, use_fast=True)
  if not tokenizer.is_fast:
    raise ValueError(f"{path_or_hub_name}: no fast tokenizer (tokenizer.json) could be loaded; "
                     "hybrid_jax needs one for batch tokenisation")
  return tokenizer


def train_default_tokenizer(
    texts: Iterable[str],
    vocab_size: int = DEFAULT_VOCAB_SIZE) -> transformers.PreTrainedTokenizerFast:
  """Trains the default multilingual BPE tokenizer (XLM-R conventions, see the module docstring).

  Args:
    texts: training texts (queries and passage contexts of the training split only). Repeated
      texts are counted once, so a context shared by many candidates does not dominate.
    vocab_size: size of the vocabulary, special tokens and the character alphabet included (a
      corpus too small to learn that many merges gives fewer: `len(tokenizer)`); an alphabet
      beyond it keeps its `vocab_size - 5` most frequent characters.

  Returns:
    A fast tokenizer with `model_max_length` 512. Deterministic: equal texts in equal order give
    byte-identical saved files.
  """
  unique_texts = [t for t in dict.fromkeys(texts) if t]
  if not unique_texts:
    raise ValueError("train_default_tokenizer: no non-empty training text was given")
  if vocab_size <= len(SPECIAL_TOKENS):
    raise ValueError(f"train_default_tokenizer: vocab_size={vocab_size} leaves no room beyond the "
                     f"{len(SPECIAL_TOKENS)} special tokens")
  backend = Tokenizer(models.BPE(unk_token=UNK))
  backend.normalizer = normalizers.Sequence([
      normalizers.NFKC(),
      normalizers.Replace(Regex(r"\s+"), " "),
      normalizers.Strip()
  ])
  # Digit runs become pre-tokens of their own, so a number ("1271") gets the same tokens in every
  # language, whatever script or lack of spaces surrounds it: the cheapest shared anchor between
  # languages for a model trained from scratch.
  backend.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
      pre_tokenizers.Digits(individual_digits=False)
  ])
  backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
  # An alphabet larger than the vocabulary keeps its most frequent characters (the rest become
  # <unk>): every id stays below vocab_size, the rows of the embedding table.
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                show_progress=False,
                                limit_alphabet=vocab_size - len(SPECIAL_TOKENS))
  backend.train_from_iterator(unique_texts, trainer=trainer)
  for i, token in enumerate(SPECIAL_TOKENS):
    assert backend.token_to_id(token) == i, (token, backend.token_to_id(token))
  backend.post_processor = processors.TemplateProcessing(single=f"{BOS} $A {EOS}",
                                                         pair=f"{BOS} $A {EOS} {EOS} $B {EOS}",
                                                         special_tokens=[(BOS, 0), (EOS, 2)])
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=backend, model_max_length=MODEL_MAX_LENGTH, padding_side="right",
      bos_token=BOS, cls_token=BOS, eos_token=EOS, sep_token=EOS, pad_token=PAD, unk_token=UNK,
      mask_token=MASK)


def get_or_train_default_tokenizer(
    cache_dir: str | os.PathLike, texts_fn: Callable[[], Iterable[str]],
    vocab_size: int = DEFAULT_VOCAB_SIZE) -> transformers.PreTrainedTokenizerFast:
  """The default tokenizer cached in `<cache_dir>/tokenizer/`: trained on the first call only.

  The cache is keyed by directory alone: a different `texts_fn` or `vocab_size` with the same
  `cache_dir` loads the cached tokenizer (delete the directory to retrain), except that a cached
  vocabulary larger than `vocab_size` is an error (its ids would overflow an embedding table of
  `vocab_size` rows). Writing is atomic (save into a temporary directory, then rename), so
  processes racing on one `cache_dir` never see a half-written tokenizer. On an object store
  (`gs://` cache_dir) every file is one atomic upload. (A multi-process training calls this on
  process 0 alone: `train.load_tokenizer_and_model`.)

  Args:
    cache_dir: a run's working directory.
    texts_fn: returns the training texts; called only when there is no cache.
    vocab_size: see `train_default_tokenizer`.

  Raises:
    ValueError: the cached tokenizer has more tokens than `vocab_size`.
  """
  tokenizer_dir = os.path.join(os.fspath(cache_dir), CACHE_SUBDIR)
  if paths.is_remote(tokenizer_dir):
    if not paths.path(tokenizer_dir).is_dir():
      with paths.local_output(tokenizer_dir) as local_dir:
        train_default_tokenizer(texts_fn(), vocab_size=vocab_size).save_pretrained(local_dir)
  elif not os.path.isdir(tokenizer_dir):
    tokenizer = train_default_tokenizer(texts_fn(), vocab_size=vocab_size)
    os.makedirs(cache_dir, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f".{CACHE_SUBDIR}-", dir=cache_dir)
    tokenizer.save_pretrained(tmp_dir)
    paths.default_permissions(tmp_dir)  # mkdtemp's 0700: other users could not read the run
    try:
      os.rename(tmp_dir, tokenizer_dir)
    except OSError:  # Another process renamed its copy first: identical texts, identical files.
      shutil.rmtree(tmp_dir)
      if not os.path.isdir(tokenizer_dir):
        raise
  tokenizer = load_tokenizer(tokenizer_dir)
  if len(tokenizer) > vocab_size:
    raise ValueError(f"{tokenizer_dir}: cached tokenizer has {len(tokenizer)} tokens, more than "
                     f"vocab_size={vocab_size}; delete the directory to retrain")
  return tokenizer


def prompts(model_config) -> dict[str, str]:
  """{"query": model.query_prefix, "passage": model.passage_prefix} ('' when a config predates
  the fields): the text put before every query / passage sentence, in training and evaluation."""
  return {
      "query": model_config.get("query_prefix", ""),
      "passage": model_config.get("passage_prefix", "")
  }


def with_prefix(prefix: str, texts) -> list[str]:
  """`prefix + text` for every text (the list itself when the prefix is empty)."""
  return [prefix + text for text in texts] if prefix else list(texts)


# A fast tokenizer sets its truncation and padding on the shared Rust object before each call,
# so two threads calling one tokenizer with different lengths (the input pipeline's prefetch
# thread and an evaluation, say) can truncate with each other's settings ("Sequence to truncate
# too short to respect the provided max_length"). Every call here holds this lock.
_TOKENIZER_LOCK = threading.Lock()


def tokenize_queries(tokenizer: transformers.PreTrainedTokenizerBase, texts: Sequence[str],
                     max_len: int) -> Encoding:
  """Tokenizes queries, truncated and padded to exactly `max_len`.

  Args:
    tokenizer: a fast tokenizer with a pad token.
    texts: B query strings.
    max_len: tokens per row, special tokens included.

  Returns:
    input_ids, attention_mask, token_type_ids: int32 [B, max_len].
  """
  texts = _check_strings(texts, "texts")
  _check_tokenizer(tokenizer, max_len)
  if not texts:
    return _zeros(0, max_len)
  return _encode(tokenizer, texts, None, max_len, truncation=True)


def tokenize_passages(tokenizer: transformers.PreTrainedTokenizerBase, sentences: Sequence[str],
                      contexts: Sequence[str], max_len: int) -> Encoding:
  """Tokenizes passages as the pair (answer sentence, context), padded to exactly `max_len`.

  Only the context is truncated. A row whose context is empty, or whose sentence leaves no room
  for a single context token, is encoded as the sentence alone (truncated if it exceeds
  `max_len`).

  Args:
    tokenizer: a fast tokenizer with a pad token.
    sentences: B answer sentences.
    contexts: B contexts ("" for none).
    max_len: tokens per row, special tokens included.

  Returns:
    input_ids, attention_mask, token_type_ids: int32 [B, max_len]; token_type_ids follow the
    tokenizer (all 0 for XLM-R, 1 on the context segment for BERT).
  """
  sentences = _check_strings(sentences, "sentences")
  contexts = [_head_words(c, max_len) for c in _check_strings(contexts, "contexts")]
  if len(sentences) != len(contexts):
    raise ValueError(f"tokenize_passages: {len(sentences)} sentences but {len(contexts)} contexts")
  _check_tokenizer(tokenizer, max_len)
  if not sentences:
    return _zeros(0, max_len)
  with _TOKENIZER_LOCK:
    sentence_ids = tokenizer(sentences, add_special_tokens=False, verbose=False)["input_ids"]
  sentence_lens = np.array([len(ids) for ids in sentence_ids])
  pair_room = max_len - tokenizer.num_special_tokens_to_add(pair=True)
  is_pair = np.array([bool(c) for c in contexts]) & (sentence_lens < pair_room)
  out = _zeros(len(sentences), max_len)
  for rows, as_pair in ((np.flatnonzero(is_pair), True), (np.flatnonzero(~is_pair), False)):
    if len(rows):
      encoded = _encode(tokenizer, [sentences[i] for i in rows],
                        [contexts[i] for i in rows] if as_pair else None, max_len,
                        truncation="only_second" if as_pair else True)
      for key, value in encoded.items():
        out[key][rows] = value
  return out


def _head_words(text: str, max_len: int) -> str:
  """`text` cut after 2 * max_len whitespace-separated words. Every word gives at least one
  token, so the cut never removes a token that truncation to `max_len` would keep, and it spares
  tokenizing whole paragraphs (the bulk of passage tokenisation time). Text without spaces
  (Chinese, Thai) is one "word" and stays whole."""
  words = text.split(maxsplit=2 * max_len)
  return text if len(words) <= 2 * max_len else " ".join(words[:2 * max_len])


def _encode(tokenizer, texts, text_pairs, max_len: int, truncation) -> Encoding:
  """One batch call of the tokenizer, as int32 [B, max_len] arrays, padded on the right."""
  with _TOKENIZER_LOCK:
    encoded = tokenizer(texts, text_pairs, max_length=max_len, truncation=truncation,
                        padding="max_length", padding_side="right", return_attention_mask=True,
                        return_token_type_ids=True)
  return {
      key: np.asarray(encoded[key], np.int32)
      for key in ("input_ids", "attention_mask", "token_type_ids")
  }


def _zeros(batch_size: int, max_len: int) -> Encoding:
  return {
      key: np.zeros((batch_size, max_len), np.int32)
      for key in ("input_ids", "attention_mask", "token_type_ids")
  }


def _check_strings(texts, name: str) -> list[str]:
  texts = list(texts.tolist() if isinstance(texts, np.ndarray) else texts)
  for i, text in enumerate(texts):
    if not isinstance(text, str):
      raise TypeError(f"{name}[{i}] is {text!r} ({type(text).__name__}), expected a str")
  return texts


def _check_tokenizer(tokenizer, max_len: int) -> None:
  if not getattr(tokenizer, "is_fast", False):
    raise ValueError(f"{type(tokenizer).__name__} is not a fast tokenizer")
  if tokenizer.pad_token_id is None:
    raise ValueError(f"{tokenizer.name_or_path or type(tokenizer).__name__}: tokenizer has no "
                     "pad token, which padding to a static shape needs")
  min_len = tokenizer.num_special_tokens_to_add(pair=False) + 1
  if max_len < min_len:
    raise ValueError(f"max_len={max_len} is too short: the special tokens alone take "
                     f"{min_len - 1} positions")
