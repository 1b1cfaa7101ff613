"""Token ids stored with prepared Arrow data: training gathers them instead of tokenising texts.

`python -m hybrid_jax.data --prepare SPEC --out DIR --tokenizer=MODEL_OR_DIR` (`prepare_token_ids`)
tokenises every query and every passage-with-context of a prepared directory (arrow.py) once, with
the same functions and truncation as the per-batch path of `input_pipeline.BatchBuilder`
(`tokenize_queries(query_prefix + query)`, `tokenize_passages(passage_prefix + sentence,
context)`), so the stored ids are the ids a batch would get. DIR/tokens/ holds, per records row R
of DIR/records (rows without a query / passage stay zero: sparse on disk):

  query_input_ids.npy      int32 [R, query_max_len]
  passage_input_ids.npy    int32 [R, passage_max_len]
  {tower}_num_tokens.npy   int16 [R]: the attention mask is `position < num_tokens`
  {tower}_type_start.npy   int16 [R]: token type 1 on `type_start <= position < num_tokens` (BERT's
                           second segment; max_len where there is none, e.g. XLM-R)
  settings.json            `settings(...)`: the tokenizer's identity (a content hash), its path,
                           the lengths and the prefixes
  done.npy                 bool [chunks]: the chunks written; an interrupted preparation resumes

Preparing runs over worker processes, a chunk of rows at a time, with a progress bar; every row's
mask and token types are checked against the compact form above. Training (`matching`) uses the
stored ids only when the run's tokenizer identity, lengths and prefixes equal the stored ones.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import os

from absl import logging
import numpy as np

from hybrid_jax.data import arrow
from hybrid_jax.errors import UserError
from hybrid_jax.models import tokenizer as tokenizer_lib

FORMAT_VERSION = 1
SUBDIR = "tokens"
SETTINGS_FILE = "settings.json"
TOWERS = ("query", "passage")
CHUNK_ROWS = 4096
# Compared with the run's; "tokenizer_path" is only reported.
COMPARED = ("format", "tokenizer", "query_max_len", "passage_max_len", "query_prefix",
            "passage_prefix")


def tokenizer_identity(tokenizer) -> str:
  """A content hash of a fast tokenizer: its tokenizer.json (vocabulary, normaliser,
  pre-tokeniser, model, post-processor; not the call-time truncation / padding state) and its pad
  token. Equal hashes give equal ids for equal texts."""
  state = json.loads(tokenizer.backend_tokenizer.to_str())
  state.pop("truncation", None)
  state.pop("padding", None)
  blob = json.dumps([state, tokenizer.pad_token_id], sort_keys=True, ensure_ascii=False)
  return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def settings(tokenizer, *, query_max_len: int, passage_max_len: int, query_prefix: str = "",
             passage_prefix: str = "", tokenizer_path: str = "") -> dict:
  """What stored ids depend on (`COMPARED`), plus the tokenizer's path for messages."""
  return {
      "format": FORMAT_VERSION, "tokenizer": tokenizer_identity(tokenizer),
      "tokenizer_path": tokenizer_path or tokenizer.name_or_path, "query_max_len": query_max_len,
      "passage_max_len": passage_max_len, "query_prefix": query_prefix,
      "passage_prefix": passage_prefix
  }


def _tokens_dir(directory: str) -> str:
  return os.path.join(directory, SUBDIR)


def _file(directory: str, tower: str, field: str) -> str:
  return os.path.join(_tokens_dir(directory), f"{tower}_{field}.npy")


def _work(directory: str) -> list[tuple[str, np.ndarray]]:
  """The chunks to tokenise, in a fixed order: (tower, sorted records rows)."""
  query_rows = np.load(os.path.join(directory, "query_rows.npy"))
  rows = {
      "query": np.unique(query_rows[query_rows >= 0]),
      "passage": np.unique(np.load(os.path.join(directory, "candidate_rows.npy")))
  }
  return [(tower, rows[tower][i:i + CHUNK_ROWS]) for tower in TOWERS
          for i in range(0, len(rows[tower]), CHUNK_ROWS)]


def _read_settings(directory: str) -> dict | None:
  path = os.path.join(_tokens_dir(directory), SETTINGS_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def _save_atomic(path: str, array: np.ndarray) -> None:
  tmp = path + ".tmp.npy"
  np.save(tmp, array)
  os.replace(tmp, path)


class _Chunker:
  """Tokenises chunks of records rows into the memory-mapped arrays (one per worker process)."""

  def __init__(self, directory: str, tokenizer_path: str, stored: dict):
    import datasets  # pylint: disable=g-import-not-at-top  (slow import, only when asked for)
    self.directory, self.stored = directory, stored
    self.tokenizer = tokenizer_lib.load_tokenizer(tokenizer_path)
    records = datasets.load_from_disk(arrow.records_path(directory)).with_format("arrow")
    self.columns = {key: records.select_columns([key]) for key in ("query", "passage", "context")}

  def _texts(self, key: str, rows: np.ndarray) -> list[str]:
    return [t or "" for t in self.columns[key][rows.tolist()].column(0).to_pylist()]

  def __call__(self, tower: str, rows: np.ndarray) -> None:
    max_len = self.stored[f"{tower}_max_len"]
    if tower == "query":
      encoded = tokenizer_lib.tokenize_queries(
          self.tokenizer,
          tokenizer_lib.with_prefix(self.stored["query_prefix"], self._texts("query", rows)),
          max_len)
    else:
      encoded = tokenizer_lib.tokenize_passages(
          self.tokenizer,
          tokenizer_lib.with_prefix(self.stored["passage_prefix"], self._texts("passage", rows)),
          self._texts("context", rows), max_len)
    num_tokens = encoded["attention_mask"].sum(axis=1)
    types = encoded["token_type_ids"]
    type_start = np.where(types.any(axis=1), np.argmax(types == 1, axis=1), max_len)
    compact = {"num_tokens": num_tokens, "type_start": type_start}
    rebuilt = expand(encoded["input_ids"], num_tokens, type_start)
    for key in ("attention_mask", "token_type_ids"):
      bad = np.flatnonzero(np.any(rebuilt[key] != encoded[key], axis=1))
      if len(bad):
        raise UserError(f"{self.stored['tokenizer_path']}: the {key} of records row "
                        f"{int(rows[bad[0]])} ({tower}) is not of the stored form (mask: a "
                        "prefix of ones; token types: one run of 1 at the end); train on the "
                        "texts instead (prepare without --tokenizer)")
    for field, values in (("input_ids", encoded["input_ids"]), *compact.items()):
      out = np.load(_file(self.directory, tower, field), mmap_mode="r+")
      out[rows] = values
      out.flush()
      del out


_WORKER: _Chunker | None = None


def _init_worker(directory: str, tokenizer_path: str, stored: dict) -> None:
  global _WORKER
  os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker process
  _WORKER = _Chunker(directory, tokenizer_path, stored)


def _run_chunk(index: int, tower: str, rows: np.ndarray) -> int:
  _WORKER(tower, rows)
  return index


def prepare_token_ids(directory: str, tokenizer_path: str, *, query_max_len: int,
                      passage_max_len: int, query_prefix: str = "", passage_prefix: str = "",
                      workers: int | None = None) -> dict:
  """Stores the token ids of a prepared directory's queries and passages (module docstring).

  Resumable: chunks already written (done.npy) are skipped, so the same call after an
  interruption finishes the work. Returns the stored settings.

  Args:
    directory: a prepared directory (`arrow.load_arrow`).
    tokenizer_path: a model or tokenizer directory (`tokenizer.load_tokenizer`).
    workers: worker processes (None: all cores); 0 tokenises in this process.

  Raises:
    UserError: DIR/tokens holds ids of other settings (nothing is overwritten), or a tokenizer
      whose mask / token types do not fit the stored form.
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  tokenizer = tokenizer_lib.load_tokenizer(tokenizer_path)
  wanted = settings(tokenizer, query_max_len=query_max_len, passage_max_len=passage_max_len,
                    query_prefix=query_prefix, passage_prefix=passage_prefix,
                    tokenizer_path=tokenizer_path)
  stored = _read_settings(directory)
  if stored is not None and differences(stored, wanted):
    raise UserError(f"{_tokens_dir(directory)} holds token ids of other settings "
                    f"({'; '.join(differences(stored, wanted))}); remove that directory to "
                    "tokenise again")
  work = _work(directory)
  done_path = os.path.join(_tokens_dir(directory), "done.npy")
  if stored is None:
    os.makedirs(_tokens_dir(directory), exist_ok=True)
    num_records = _num_records(directory)
    for tower in TOWERS:
      length = wanted[f"{tower}_max_len"]
      np.lib.format.open_memmap(
          _file(directory, tower, "input_ids"), "w+", np.int32, (num_records, length))
      for field in ("num_tokens", "type_start"):
        np.lib.format.open_memmap(_file(directory, tower, field), "w+", np.int16, (num_records,))
    _save_atomic(done_path, np.zeros(len(work), bool))
    with open(os.path.join(_tokens_dir(directory), SETTINGS_FILE), "w") as f:
      json.dump(wanted, f, indent=1)
  done = np.load(done_path)
  todo = np.flatnonzero(~done).tolist()
  workers = os.cpu_count() if workers is None else workers
  sizes = [len(rows) for _, rows in work]
  with tqdm.tqdm(
      total=sum(sizes), initial=sum(sizes) - sum(sizes[i] for i in todo), desc="prepare: token ids",
      unit="text") as progress:

    def mark(index):
      done[index] = True
      _save_atomic(done_path, done)
      progress.update(sizes[index])

    if workers == 0 or not todo:
      _init_worker(directory, tokenizer_path, wanted)
      for index in todo:
        mark(_run_chunk(index, *work[index]))
    else:
      with concurrent.futures.ProcessPoolExecutor(
          min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn"),
          initializer=_init_worker, initargs=(directory, tokenizer_path, wanted)) as pool:
        futures = [pool.submit(_run_chunk, index, *work[index]) for index in todo]
        for future in concurrent.futures.as_completed(futures):
          mark(future.result())
  return wanted


def _num_records(directory: str) -> int:
  import datasets  # pylint: disable=g-import-not-at-top
  return len(datasets.load_from_disk(arrow.records_path(directory)))


def differences(stored: dict, run: dict) -> list[str]:
  """'FIELD: stored X, run Y' for every compared field that differs."""
  out = []
  for key in COMPARED:
    if stored.get(key) != run.get(key):
      old, new = stored.get(key), run.get(key)
      if key == "tokenizer":
        old, new = f"{old} ({stored.get('tokenizer_path')})", f"{new} ({run.get('tokenizer_path')})"
      out.append(f"{key}: stored {old!r}, run {new!r}")
  return out


def expand(input_ids: np.ndarray, num_tokens: np.ndarray, type_start: np.ndarray) -> dict:
  """The tokenizer's output from the stored form: input_ids, attention_mask, token_type_ids,
  int32 [B, max_len] for input_ids [B, max_len], num_tokens and type_start [B]."""
  position = np.arange(input_ids.shape[1])
  mask = position < np.asarray(num_tokens)[:, None]
  types = mask & (position >= np.asarray(type_start)[:, None])
  return {
      "input_ids": np.asarray(input_ids, np.int32), "attention_mask": mask.astype(np.int32),
      "token_type_ids": types.astype(np.int32)
  }


class StoredTokens:
  """The stored ids of one prepared directory, memory-mapped (opened again after pickling, so a
  worker process maps the files instead of receiving a copy).

  `encode(tower, rows)`: the encoding of records rows `rows` [B] (int64), as `tokenize_queries`
  / `tokenize_passages` would give it: input_ids, attention_mask, token_type_ids int32 [B, len].
  """

  def __init__(self, directory: str, stored: dict):
    self.directory, self.settings = directory, stored
    self._arrays = None

  def __getstate__(self):
    return {"directory": self.directory, "settings": self.settings}

  def __setstate__(self, state):
    self.__init__(state["directory"], state["settings"])

  def encode(self, tower: str, rows: np.ndarray) -> dict:
    if self._arrays is None:
      self._arrays = {(t, f): np.load(_file(self.directory, t, f), mmap_mode="r") for t in TOWERS
                      for f in ("input_ids", "num_tokens", "type_start")}
    rows = np.asarray(rows, np.int64)
    if rows.size and rows.min() < 0:
      raise ValueError(f"{self.directory}: a {tower} row of -1 (no text) was asked for")
    return expand(
        *(self._arrays[tower, f][rows] for f in ("input_ids", "num_tokens", "type_start")))


def matching(data, tokenizer, *, query_max_len: int, passage_max_len: int, query_prefix: str = "",
             passage_prefix: str = "") -> StoredTokens | None:
  """The stored ids of `data` when it is prepared data whose ids match the run (its tokenizer's
  identity, lengths and prefixes); logs one line either way when ids are stored: that they are
  used, or a warning naming what differs (or that preparing them was interrupted) and that the
  texts are tokenised per batch. None for other data."""
  directory = getattr(data.queries, "directory", None)
  stored = _read_settings(directory) if directory and tokenizer is not None else None
  if stored is None:
    return None
  run = settings(tokenizer, query_max_len=query_max_len, passage_max_len=passage_max_len,
                 query_prefix=query_prefix, passage_prefix=passage_prefix)
  differ = differences(stored, run)
  done = np.load(os.path.join(_tokens_dir(directory), "done.npy"))
  if not differ and not done.all():
    differ = [
        f"preparing them was interrupted ({int(done.sum())} of {len(done)} chunks written; "
        "the same --prepare command finishes it)"
    ]
  if differ:
    logging.warning("%s: stored token ids not used, %s: tokenising the texts per batch", data.name,
                    "; ".join(differ))
    return None
  logging.info("%s: using the token ids stored at prepare time (tokenizer %s, %d/%d tokens)",
               data.name, stored["tokenizer"], query_max_len, passage_max_len)
  return StoredTokens(directory, stored)
