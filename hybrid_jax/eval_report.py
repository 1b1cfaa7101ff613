"""Evaluation reports: the results dict as JSON, a Markdown table, and a heatmap PNG.

`hybrid_jax.evaluators.evaluate` produces one results dict per (model, data set); this module
only formats it. The dict's shape (every writer reads these keys):

    {"task": "lareqa" | "beir", "dataset": spec, "dataset_name": str, "model": str,
     "step": int | None, "languages": [L codes], "metrics": {...}, "timing": {...}, ...}

LAReQA metrics hold language-keyed dicts: "map_xy" {query lang: {target lang: mAP}},
"map_multi" / "rank_gap" / "own_share" / "rank_range" / "recall@1" / "recall@10" {query lang:
value}, the scalars "map_mono", "map_cross", "map_multi_mean", "rank_gap_mean", "own_share_mean",
"rank_range_mean", "recall@1_mean", "recall@10_mean", "top_k". BEIR metrics are a flat
{name: value} dict ("ndcg@10", "recall@100", "mrr@10", "num_queries").

Both may hold "groups": {grouping: {label: {"languages": [codes], macro averages}}} for the
groupings of `eval.language_groups` (docs/languages.md): "trained" (labels "trained" and
"zero-shot": evaluated, not trained on; only when some language is zero-shot), "family",
"script", "resource_class", and crossings of them such as "family*trained" (labels such as
"Indo-European / zero-shot": the languages in both). LAReQA averages as
`retrieval_metrics.language_group_averages`;
BEIR (a single-language corpus, its language in "languages") as `retrieval_metrics.
macro_averages`.
Alignment metrics (task "alignment", `hybrid_jax.evaluators.evaluate_alignment`): "mean"
{metric: macro average over languages}, "groups" (as above; "trained" splits the languages into
"trained", "zero-shot" (evaluated in the run, not trained on) and "unseen"), "per_language"
{metric: {lang: value}}, the language-pair matrices "p_at_1", "xsim_error", "alignment_gap_pairs"
{x: {y: value}}, and "alignment_gap", "probe", "num_units", "xsim_k", "pool_top_k",
"pool_uniform_share".

JSON has no NaN: NaN and infinities are written as null.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from hybrid_jax import paths
from hybrid_jax.data import languages as languages_lib

JSON_NAME = "results.json"
MARKDOWN_NAME = "results.md"
HEATMAP_NAME = "heatmap.png"

# (metrics key, column title) of the one-line-per-run LAReQA summary.
LAREQA_SUMMARY = (("map_mono", "mono mAP"), ("map_cross", "cross mAP"),
                  ("map_multi_mean", "multilingual mAP"), ("rank_gap_mean", "rank gap"),
                  ("own_share_mean", "own-lang share@k"), ("rank_range_mean", "max−min rank"),
                  ("recall@1_mean", "R@1"), ("recall@10_mean", "R@10"))
# Keys formatted with 2 decimals (ranks); the rest with 3.
RANK_KEYS = ("rank_gap_mean", "rank_range_mean")
BEIR_SUMMARY = (("ndcg@10", "nDCG@10"), ("recall@100", "Recall@100"), ("mrr@10", "MRR@10"),
                ("num_queries", "queries"))


def to_jsonable(value):
  """`value` with numpy arrays/scalars as lists/numbers, tuples as lists, NaN/inf as None."""
  if isinstance(value, Mapping):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return to_jsonable(value.tolist())
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def write_json(results: Mapping, path: str) -> str:
  """Writes `results` as indented, strictly valid JSON; returns `path`."""
  with open(path, "w") as f:
    json.dump(to_jsonable(results), f, indent=2, allow_nan=False)
    f.write("\n")
  return path


def _fmt(value, digits: int = 3) -> str:
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "–"
  if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
    return str(int(value))
  return f"{float(value):.{digits}f}"


def _table(header, rows) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return lines


def _title(results: Mapping) -> str:
  step = results.get("step")
  at_step = f" @ step {step}" if step is not None else ""
  return f"{results['dataset']} — {results['model']}{at_step}"


def lareqa_markdown(results: Mapping) -> str:
  """The L x L X->Y mAP matrix, the multilingual pool and the bias per query language (a row
  each), then the macro averages."""
  m, langs = results["metrics"], list(results["languages"])
  k = m["top_k"]
  header = [
      "query \\ target", *langs, "multilingual", "rank gap", f"own share@{k}", "max−min rank",
      "R@1", "R@10"
  ]
  per_language = lambda key, x: (m.get(key) or {}).get(x)  # noqa: E731  (older results lack some)
  groups = m.get("groups") or {}
  zero_shot = set(groups.get("trained", {}).get("zero-shot", {}).get("languages", ()))
  rows = [[
      f"**{x}**" + (" (zero-shot)" if x in zero_shot else ""), *(_fmt(m["map_xy"][x][y])
                                                                 for y in langs),
      _fmt(m["map_multi"][x]),
      _fmt(m["rank_gap"][x], 2),
      _fmt(m["own_share"][x]),
      _fmt(per_language("rank_range", x), 2),
      _fmt(per_language("recall@1", x)),
      _fmt(per_language("recall@10", x))
  ] for x in langs]
  summary = [_fmt(m.get(key), 2 if key in RANK_KEYS else 3) for key, _ in LAREQA_SUMMARY]
  lines = [
      f"### {_title(results)}", "",
      f"mAP of X→Y (rows: query language X, columns: pool language Y); multilingual: pool "
      f"of all {len(langs)} languages. Rank gap: mean rank of the other-language answers "
      f"minus the rank of the same-language answer in the multilingual pool (0 = "
      f"language-agnostic). Own share@{k}: share of the query's language in the top {k} "
      f"(uniform = {_fmt(m['uniform_share'])}). Max−min rank: the paper's language bias "
      f"(Huang et al. 2023): max minus min rank of a query's parallel answers in the pool. "
      f"R@k: share of a query's answers (all languages) in the pool's top k.", ""
  ]
  lines += _table(header, rows)
  lines += [""]
  titles = [title.replace("share@k", f"share@{k}") for _, title in LAREQA_SUMMARY]
  group_columns = [
      (key, t) for (key, _), t in zip(LAREQA_SUMMARY, titles) if key != "own_share_mean"
  ]
  lines += _group_tables(
      groups, group_columns,
      [_fmt(m.get(key), 2 if key in RANK_KEYS else 3) for key, _ in group_columns], len(langs))
  if groups:
    lines += [
        "Groups: macro averages over their languages (cross: the pairs with a query or pool "
        "language in the group; zero-shot: evaluated but not trained on; a × b: the languages "
        "in both, labelled 'a / b'). Families: Glottolog; scripts: ISO 15924; resource classes: "
        "Joshi et al. 2020, 0-5 (docs/languages.md).", ""
    ]
  lines += _table(titles, [summary])
  return "\n".join(lines) + "\n"


def _grouping_title(grouping: str) -> str:
  """'resource_class' -> 'resource class', 'family*trained' -> 'family × trained'."""
  return grouping.replace("_", " ").replace(languages_lib.CROSS, " × ")


def _group_tables(groups: Mapping, columns, overall: list[str], num_languages: int) -> list[str]:
  """A table per grouping: a row per group ('label (n): codes') with its macro averages of
  `columns` ((key, title) pairs), and the overall row `overall` last."""
  lines = []
  for grouping, by_label in groups.items():
    rows = [[
        f"{label} ({len(g['languages'])}: {' '.join(g['languages'])})",
        *(_fmt(g.get(key), 2 if key in RANK_KEYS else 3) for key, _ in columns)
    ] for label, g in by_label.items()]
    rows.append([f"all ({num_languages})", *overall])
    lines += _table([_grouping_title(grouping), *(t for _, t in columns)], rows) + [""]
  return lines


def beir_markdown(results: Mapping) -> str:
  """One row: nDCG@10, Recall@100, MRR@10 and the number of queries."""
  m = results["metrics"]
  lines = [f"### {_title(results)}", ""]
  lines += _table([title for _, title in BEIR_SUMMARY],
                  [[_fmt(m.get(key)) for key, _ in BEIR_SUMMARY]])
  if m.get("groups"):
    groups = ", ".join(f"{_grouping_title(grouping)} {label}"
                       for grouping, by_label in m["groups"].items() for label in by_label)
    lines += ["", f"Corpus language {', '.join(results['languages'])}: {groups}."]
  return "\n".join(lines) + "\n"


def markdown(results: Mapping) -> str:
  """The Markdown report of one results dict (its warnings, e.g. train/test overlap, on top)."""
  writers = {
      "lareqa": lareqa_markdown, "beir": beir_markdown, "alignment": alignment_markdown,
      "bitext": bitext_markdown, "nli_probe": nli_probe_markdown
  }
  if results["task"] not in writers:
    raise ValueError(f"unknown results task {results['task']!r}")
  warnings = "".join(f"> **Warning:** {w}\n\n" for w in results.get("warnings") or ())
  return warnings + writers[results["task"]](results)


def comparison_table(results_by_name: Mapping[str, Mapping]) -> str:
  """Side-by-side summary of several runs on one task, a row per run (e.g. mono-only vs hybrid,
  with a TF-IDF lexical reference row).

  Args:
    results_by_name: {row name: results dict}; all of one task.
  """
  tasks = {r["task"] for r in results_by_name.values()}
  if len(tasks) != 1:
    raise ValueError(f"comparison_table: results of different tasks {sorted(tasks)}")
  columns = LAREQA_SUMMARY if tasks.pop() == "lareqa" else BEIR_SUMMARY
  rows = []
  for name, results in results_by_name.items():
    m = results["metrics"]
    title_k = m.get("top_k")
    rows.append([
        name, results["dataset"],
        _fmt(results.get("step")),
        *(_fmt(m.get(key), 2 if key in RANK_KEYS else 3) for key, _ in columns)
    ])
  header = [
      "run", "dataset", "step", *(t.replace("share@k", f"share@{title_k}") for _, t in columns)
  ]
  return "\n".join(_table(header, rows)) + "\n"


def _pair_matrix(table: Mapping, langs: Sequence[str]) -> np.ndarray:
  """float64 [L, L] of a {x: {y: value}} table, row x and column y in `langs` order, None -> NaN."""
  return np.array([[np.nan if table[x][y] is None else table[x][y] for y in langs] for x in langs],
                  np.float64)


def plot_heatmap(results: Mapping, path: str) -> str:
  """PNG of the X->Y mAP matrix with the multilingual-pool column beside it, values in the cells.

  Args:
    results: LAReQA results.
    path: output .png path.
  """
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  m, langs = results["metrics"], list(results["languages"])
  num_langs = len(langs)
  matrix = _pair_matrix(m["map_xy"], langs)
  multi = np.array([np.nan if m["map_multi"][x] is None else m["map_multi"][x] for x in langs],
                   np.float64)[:, None]
  cell = 0.62
  fig, (ax, ax_multi, ax_bar) = plt.subplots(
      1, 3, figsize=(cell * (num_langs + 1) + 2.6, cell * num_langs + 1.6),
      gridspec_kw={"width_ratios": [num_langs, 1.4, 0.35], "wspace": 0.1}, squeeze=True)
  cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
  font = max(6, min(11, int(110 / max(num_langs, 1))))

  def draw(axis, values, xlabels):
    image = axis.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    axis.set_xticks(range(values.shape[1]), xlabels)
    axis.set_yticks(range(values.shape[0]), langs)
    axis.tick_params(length=0)
    for (i, j), value in np.ndenumerate(values):
      text = "–" if np.isnan(value) else f"{value:.2f}"
      color = "black" if np.isnan(value) or value > 0.6 else "white"
      axis.text(j, i, text, ha="center", va="center", fontsize=font, color=color)
    return image

  image = draw(ax, matrix, langs)
  ax.set_xlabel("pool language Y")
  ax.set_ylabel("query language X")
  ax.xaxis.set_label_position("top")
  ax.xaxis.tick_top()
  draw(ax_multi, multi, ["all"])
  ax_multi.set_yticks([])
  ax_multi.xaxis.tick_top()
  ax_multi.set_xlabel("multilingual\npool")
  ax_multi.xaxis.set_label_position("top")
  fig.colorbar(image, cax=ax_bar, label="mAP")
  fig.suptitle(
      f"LAReQA mAP X→Y — {_title(results)}\nmono {_fmt(m['map_mono'])} | cross "
      f"{_fmt(m['map_cross'])} | multilingual {_fmt(m['map_multi_mean'])}", fontsize=10, y=0.02,
      va="bottom")
  fig.subplots_adjust(bottom=0.14)
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)
  return path


# (per-language metric key, column title, digits) of the alignment report.
ALIGNMENT_COLUMNS = (("p_at_1", "P@1", 3), ("xsim_error", "xsim error", 3),
                     ("pool_map", "pool mAP", 3), ("pool_recall@10", "pool R@10", 3),
                     ("pool_recall@100", "pool R@100", 3), ("rank_range", "max−min rank", 1),
                     ("own_share", "own share@10", 3), ("alignment_gap", "alignment gap",
                                                        3), ("probe_accuracy", "language-ID acc.",
                                                             3))


def alignment_markdown(results: Mapping) -> str:
  """The alignment summary (all languages and every group, a row each), then a row per
  language; the pair matrices are in results.json and the heatmap."""
  m, langs = results["metrics"], list(results["languages"])
  header = ["languages", *(title for _, title, _ in ALIGNMENT_COLUMNS)]

  def row(name, values):
    return [name, *(_fmt(values.get(key), digits) for key, _, digits in ALIGNMENT_COLUMNS)]

  gap, probe = m["alignment_gap"], m["probe"]
  lines = [
      f"### {_title(results)}", "",
      f"{len(langs)} languages x {m['num_units']} parallel units. P@1: bitext retrieval X→Y, "
      f"nearest neighbour by cosine is the translation; xsim error: LASER's ratio-margin error "
      f"rate (k = {m['xsim_k']}); both averaged over the {len(langs) - 1} other languages, both "
      f"directions. Pool: every unit against all {len(langs)} languages' units (itself "
      f"excluded), its translations relevant; own share@{m['pool_top_k']}: uniform = "
      f"{_fmt(m['pool_uniform_share'])}. Alignment gap: mean cosine of translations "
      f"({_fmt(gap['translation_cosine'])}) minus that of non-translations "
      f"({_fmt(gap['other_cosine'])}). Language-ID acc.: {probe['folds']}-fold "
      f"cross-validated logistic regression (chance {_fmt(probe['chance'])}; lower = more "
      "language-agnostic). Lower is better for xsim error, max−min rank, own share and "
      "language-ID accuracy.", ""
  ]
  lines += _table(header, [row(f"all ({len(langs)})", m["mean"])]) + [""]
  if m["groups"]:
    whose = ("the run's"
             if results.get("config") else "the default run's (this model was not fine-tuned here)")
    lines += [
        f"Groups: macro averages over their languages. trained: {whose} fine-tuning languages; "
        "zero-shot: evaluated in that run but not trained on; unseen: neither. Families: "
        "Glottolog; scripts: ISO 15924; resource classes: Joshi et al. 2020 (docs/languages.md).",
        ""
    ]
    columns = [(key, title) for key, title, _ in ALIGNMENT_COLUMNS]
    lines += _group_tables(m["groups"], columns, row("", m["mean"])[1:], len(langs))
  lines += ["", "Per language:", ""]
  per = m["per_language"]
  lines += _table(["language", *header[1:]],
                  [row(x, {key: per[key][x] for key in per}) for x in langs])
  return "\n".join(lines) + "\n"


def bitext_markdown(results: Mapping) -> str:
  """English-centric bitext (Tatoeba): a row per language, both directions with the pivot."""
  m = results["metrics"]
  pivot, per = m["pivot"], m["per_language"]
  lines = [
      f"### {_title(results)}", "",
      f"Bitext retrieval of each language X with {pivot} (LASER's Tatoeba protocol): P@1 = the "
      f"nearest unit by cosine is the translation; xsim error: LASER's ratio-margin error rate "
      f"(k = {m['xsim_k']}). Means of both directions; lower is better for xsim error.", ""
  ]
  header = [
      "language", "units", f"P@1 X→{pivot}", f"P@1 {pivot}→X", "P@1", f"xsim X→{pivot}",
      f"xsim {pivot}→X", "xsim error"
  ]
  rows = [[
      x,
      str(v["units"]), *(_fmt(v[key])
                         for key in ("p_at_1_to_pivot", "p_at_1_from_pivot", "p_at_1",
                                     "xsim_error_to_pivot", "xsim_error_from_pivot", "xsim_error"))
  ] for x, v in per.items()]
  rows.append([
      f"mean ({len(per)})", "", "", "",
      _fmt(m["mean"]["p_at_1"]), "", "",
      _fmt(m["mean"]["xsim_error"])
  ])
  lines += _table(header, rows)
  if m["groups"]:
    lines += [""] + _group_tables(m["groups"], [
        ("p_at_1", "P@1"), ("xsim_error", "xsim error")
    ], [_fmt(m["mean"]["p_at_1"]), _fmt(m["mean"]["xsim_error"])], len(per))
  return "\n".join(lines) + "\n"


def nli_probe_markdown(results: Mapping) -> str:
  """The XNLI probe: accuracy per language of a classifier trained on the training language."""
  m = results["metrics"]
  lines = [
      f"### {_title(results)}", "",
      f"A logistic regression on [u, v, |u-v|, u*v] of premise / hypothesis embeddings, trained "
      f"on the {m['num_train']} {m['train_language']} pairs of XNLI's dev set and tested, "
      f"unchanged, on its {m['num_test']} test pairs in each language (chance "
      f"{_fmt(m['chance'])}). Mean of the other languages {_fmt(m['mean_other'])}; transfer gap "
      f"({m['train_language']} minus that mean) {_fmt(m['transfer_gap'])}: lower = better "
      "aligned with the training language.", ""
  ]
  lines += _table(["language", "accuracy"], [[x, _fmt(a)] for x, a in m["accuracy"].items()])
  return "\n".join(lines) + "\n"


def _cluster_order(similarity: np.ndarray) -> np.ndarray:
  """Leaf order of average-linkage clustering on 1 - similarity (symmetrised), so that languages
  retrieved well from each other sit together."""
  from scipy.cluster import hierarchy
  from scipy.spatial.distance import squareform

  sim = np.nan_to_num((similarity + similarity.T) / 2, nan=1.0)
  distance = np.clip(1.0 - sim, 0.0, None)
  np.fill_diagonal(distance, 0.0)
  return hierarchy.leaves_list(hierarchy.linkage(squareform(distance, checks=False), "average"))


def plot_alignment_heatmap(results: Mapping, path: str) -> str:
  """PNG of the L x L bitext P@1 matrix, languages in clustered order (readable at 87: no cell
  values past 20 languages), with per-language strips of P@1, pool mAP and language-ID accuracy.

  Args:
    results: alignment results (JSON form).
    path: output .png path.
  """
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  m, langs = results["metrics"], list(results["languages"])
  num_langs = len(langs)
  matrix = _pair_matrix(m["p_at_1"], langs)
  order = _cluster_order(matrix) if num_langs > 2 else np.arange(num_langs)
  names = [langs[i] for i in order]
  strips = [("P@1", "p_at_1"), ("pool mAP", "pool_map"), ("lang-ID acc.", "probe_accuracy")]
  side = np.array([[m["per_language"][key][x] for _, key in strips] for x in names], np.float64)
  cell = 0.62 if num_langs <= 20 else max(0.13, 11.0 / num_langs)
  fig, (ax, ax_side, ax_bar) = plt.subplots(
      1, 3, figsize=(cell * (num_langs + len(strips)) + 2.6, cell * num_langs + 1.8),
      gridspec_kw={"width_ratios": [num_langs, 0.9 * len(strips), 0.6], "wspace": 0.08})
  cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
  font = max(5, min(10, int(110 / max(num_langs, 1))))
  image = ax.imshow(
      np.ma.masked_invalid(matrix[np.ix_(order, order)]), cmap=cmap, vmin=0.0, vmax=1.0,
      aspect="auto", interpolation="nearest")
  ax_side.imshow(side, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
  ax.set_xticks(range(num_langs), names, fontsize=font, rotation=90)
  ax.set_yticks(range(num_langs), names, fontsize=font)
  ax.set_xlabel("target language Y")
  ax.set_ylabel("source language X")
  ax.xaxis.set_label_position("top")
  ax.xaxis.tick_top()
  ax_side.set_xticks(range(len(strips)), [title for title, _ in strips], rotation=90, fontsize=8)
  ax_side.xaxis.tick_top()
  ax_side.set_yticks([])
  for axis in (ax, ax_side):
    axis.tick_params(length=0)
  if num_langs <= 20:
    for (i, j), value in np.ndenumerate(matrix[np.ix_(order, order)]):
      if not np.isnan(value):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=font,
                color="black" if value > 0.6 else "white")
  fig.colorbar(image, cax=ax_bar, label="P@1 / mAP / accuracy")
  fig.suptitle(
      f"Bitext P@1 X→Y (clustered order) — {_title(results)}\nP@1 {_fmt(m['mean']['p_at_1'])} | "
      f"xsim error {_fmt(m['mean']['xsim_error'])} | pool mAP {_fmt(m['mean']['pool_map'])} | "
      f"language-ID accuracy {_fmt(m['mean']['probe_accuracy'])} (chance "
      f"{_fmt(m['probe']['chance'])})", fontsize=10, y=0.01, va="bottom")
  fig.subplots_adjust(bottom=0.08)
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)
  return path


def write_report(results: Mapping, output_dir: str) -> dict[str, str]:
  """Writes results.json, results.md and (LAReQA, alignment) heatmap.png into `output_dir`.

  Returns:
    {"json": path, "markdown": path, "heatmap": path (LAReQA and alignment)}.
  """
  files = {"json": JSON_NAME, "markdown": MARKDOWN_NAME}
  if results["task"] in ("lareqa", "alignment"):
    files["heatmap"] = HEATMAP_NAME
  # The JSON form is what every reader sees (NaN -> None), so format from it.
  readable = to_jsonable(results)
  with paths.local_output(output_dir) as local_dir:  # uploaded at the end when remote
    write_json(results, os.path.join(local_dir, JSON_NAME))
    with open(os.path.join(local_dir, MARKDOWN_NAME), "w") as f:
      f.write(markdown(readable))
    if "heatmap" in files:
      plot = plot_alignment_heatmap if results["task"] == "alignment" else plot_heatmap
      plot(readable, os.path.join(local_dir, HEATMAP_NAME))
  return {kind: paths.join(output_dir, name) for kind, name in files.items()}
