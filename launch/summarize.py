"""Collects the evaluation results of a sweep into one table and a trade-off plot.

  python launch/summarize.py --root=workdirs/sweep [--dataset=xquad_r_eval] [--out=DIR]

Reads `<root>/<run>/eval/<dataset>/step_<N>/results.json` (the newest step of each run), and
writes `summary.md`, `summary.json` and `tradeoff.png` (one panel per language set:
cross-lingual mAP vs multilingual-pool mAP, colour = rank gap, one point per setting, labelled
with its mono_prob). Runs that differ only in `seed` (`sweep.py --seeds`) form one setting:
summary.md then also has a table of mean ± sample standard deviation over seeds, and the plot
shows the mean with ±1 std bars. Columns: LAReQA mAP (mono X->X, cross X->Y, multilingual
pool), pool Recall@1/@10, the rank gap and the paper's max-min rank distance (language bias,
lower = less; `hybrid_jax.metrics.lareqa_metrics`), and the macro averages of the language
groups of `--groups` (results' "groups", eval.language_groups: by default trained / zero-shot,
i.e. evaluated, not trained on): mono / cross / pool mAP and max-min rank per group. With
`--dataset` a glob of single-language BEIR corpora ('beir_miracl-*'), a run's corpora form one
row: nDCG@10 / Recall@100 and each group's as macro averages over their languages.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import sys

COLUMNS = (("mono mAP", "map_mono"), ("cross mAP", "map_cross"), ("multi mAP", "map_multi_mean"),
           ("R@1", "recall@1_mean"), ("R@10", "recall@10_mean"), ("rank gap", "rank_gap_mean"),
           ("max-min rank", "rank_range_mean"), ("own share@k", "own_share_mean"),
           ("nDCG@10", "ndcg@10"), ("Recall@100", "recall@100"))
# Per language group (results' metrics["groups"], eval.language_groups): (title, metric key).
GROUP_COLUMNS = (("mono", "map_mono"), ("cross", "map_cross"), ("multi", "map_multi_mean"),
                 ("max-min rank", "rank_range_mean"), ("nDCG@10", "ndcg@10"))


def group_key(grouping: str, label: str, key: str) -> str:
  """The row key of a group's metric: 'trained/zero-shot/map_multi_mean'."""
  return f"{grouping}/{label}/{key}"


def _group_title(grouping: str, label: str, title: str) -> str:
  return f"{'class ' if grouping == 'resource_class' else ''}{label} {title}"


def _newest_per_dataset(run_dir: str, dataset: str | None) -> dict[str, tuple[int, str]]:
  """{dataset dir name matching `dataset` (a name or glob; None = any): (newest step, its
  results.json)}."""
  found = {}
  eval_dir = os.path.join(run_dir, "eval")
  if not os.path.isdir(eval_dir):
    return found
  for name in sorted(os.listdir(eval_dir)):
    if dataset and not fnmatch.fnmatchcase(name, dataset):
      continue
    for leaf in os.listdir(os.path.join(eval_dir, name)):
      match = re.fullmatch(r"step_(\d+)", leaf)
      path = os.path.join(eval_dir, name, leaf, "results.json")
      if match and os.path.exists(path) and int(match[1]) > found.get(name, (-1,))[0]:
        found[name] = (int(match[1]), path)
  return found


def combine_corpora(results: list[dict]) -> dict:
  """The metrics of several single-language BEIR corpora (MIRACL's, one per language) as one:
  each metric and each language group's as the macro average over the corpora's languages
  (`retrieval_metrics.macro_averages`).

  Raises:
    ValueError: results that are not BEIR on a corpus of one language, or two of one language.
  """
  from hybrid_jax import retrieval_metrics

  per_language, groups = {}, {}
  for r in results:
    if r.get("task") != "beir" or len(r.get("languages") or ()) != 1:
      raise ValueError(f"summarize: {r.get('dataset')} is not a single-language BEIR corpus; "
                       "only those are combined (pass --dataset=<one name> for the others)")
    (language,) = r["languages"]
    if language in per_language:
      raise ValueError(f"summarize: two corpora in {language}")
    per_language[language] = {
        k: v for k, v in r["metrics"].items() if isinstance(v, (int, float)) or v is None
    }
    for grouping, labels in (r["metrics"].get("groups") or {}).items():
      for label in labels:
        groups.setdefault(grouping, {}).setdefault(label, []).append(language)
  metrics = retrieval_metrics.macro_averages(per_language, list(per_language))
  metrics["groups"] = {
      grouping: {
          label: {"languages": members, **retrieval_metrics.macro_averages(per_language, members)}
          for label, members in labels.items()
      } for grouping, labels in groups.items()
  }
  return metrics


def collect(root: str, dataset: str | None = None, groupings=("trained",)) -> list[dict]:
  """One row per run directory of `root` that has results, with the group averages of
  `groupings` (`group_key`) where its results have them. Several datasets matching a `dataset`
  glob ('beir_miracl-*') are combined (`combine_corpora`); otherwise a run's row is its newest
  results."""
  rows = []
  for run in sorted(os.listdir(root)):
    found = _newest_per_dataset(os.path.join(root, run), dataset)
    if not found:
      continue
    if dataset and len(found) > 1:
      step = max(s for s, _ in found.values())
      results = [json.load(open(path)) for _, path in found.values()]
      metrics, name = combine_corpora(results), "+".join(r["dataset"] for r in results)
    else:
      step, path = max(found.values(), key=lambda found: found[0])
      with open(path) as f:
        results = json.load(f)
      metrics, name = results["metrics"], results.get("dataset")
    with open(os.path.join(root, run, "config.json")) as f:
      config = json.load(f)
    groups = metrics.get("groups") or {}
    row = {
        "run": run, "step": step, "languages": config["data"]["languages"],
        "num_languages": len(config["data"]["languages"].split("+")),
        "mono_prob": config["sampler"]["mono_prob"], "seed": config.get("seed"), "dataset": name
    }
    row.update({key: metrics.get(key) for _, key in COLUMNS})
    row.update({
        group_key(grouping, label, key): values.get(key) for grouping in groupings
        for label, values in groups.get(grouping, {}).items() for _, key in GROUP_COLUMNS
    })
    rows.append(row)
  return rows


def _setting(row: dict) -> tuple:
  return row["num_languages"], row["languages"], row["mono_prob"]


def aggregate(rows: list[dict]) -> list[dict]:
  """One row per setting (language set, mono_prob): every COLUMNS key as its mean over the
  setting's runs (seeds) and `<key>_std`, the sample standard deviation (ddof=1; 0 for one run);
  `seeds` lists the seeds."""
  groups = {}
  for r in rows:
    groups.setdefault(_setting(r), []).append(r)
  out = []
  for (num_languages, languages, mono_prob), runs in sorted(groups.items()):
    row = {
        "num_languages": num_languages, "languages": languages, "mono_prob": mono_prob,
        "seeds": sorted(r["seed"] for r in runs), "step": max(r["step"] for r in runs)
    }
    for _, key in _columns(runs, everything=True):
      values = [r[key] for r in runs if r.get(key) is not None]
      mean = sum(values) / len(values) if values else None
      std = ((sum((v - mean)**2 for v in values) /
              (len(values) - 1))**0.5 if len(values) > 1 else 0.0 if values else None)
      row[key], row[f"{key}_std"] = mean, std
    out.append(row)
  return out


def _fmt(v):
  return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _columns(rows: list[dict], everything: bool = False):
  """COLUMNS, then each language group's GROUP_COLUMNS in the order the rows name them, without
  those no row has (e.g. the zero-shot columns of runs without zero-shot languages) unless
  `everything`."""
  titles = {key: title for title, key in GROUP_COLUMNS}
  groups = {}
  for r in rows:
    for key in r:
      if key.count("/") == 2 and key not in groups and key.split("/")[2] in titles:
        grouping, label, metric = key.split("/")
        groups[key] = _group_title(grouping, label, titles[metric])
  return [(name, key) for name, key in (*COLUMNS, *((t, k) for k, t in groups.items()))
          if everything or any(r.get(key) is not None for r in rows)]


def markdown(rows: list[dict]) -> str:
  columns = _columns(rows)
  header = ["run", "langs", "mono_prob", "step"] + [name for name, _ in columns]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for r in sorted(rows, key=lambda r: (r["num_languages"], r["mono_prob"], r["run"])):
    cells = [r["run"], str(r["num_languages"]), f"{r['mono_prob']:g}", str(r["step"])]
    cells += [_fmt(r.get(key)) for _, key in columns]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def markdown_over_seeds(settings: list[dict]) -> str:
  """The aggregated table: mean ± std over seeds per setting."""
  columns = _columns(settings)
  header = ["langs", "mono_prob", "seeds"] + [name for name, _ in columns]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for r in settings:
    cells = [str(r["num_languages"]), f"{r['mono_prob']:g}", str(len(r["seeds"]))]
    cells += [
        f"{_fmt(r[key])} ± {_fmt(r[key + '_std'])}" if r.get(key) is not None else "–"
        for _, key in columns
    ]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: str) -> str:
  """One panel per language set (their multilingual pools differ in size, so panels are not
  comparable with each other): cross-lingual vs multilingual-pool mAP, one point per setting
  (`aggregate`: the mean over seeds, ±1 std bars where there are several) joined in mono_prob
  order, colour = rank gap."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import matplotlib.ticker

  sets = sorted({(r["num_languages"], r["languages"]) for r in rows})
  columns = min(len(sets), 2)
  panel_rows = -(-len(sets) // columns)
  fig, axes = plt.subplots(panel_rows, columns, figsize=(5.6 * columns, 4.4 * panel_rows), dpi=110,
                           squeeze=False)
  for ax, (num_languages, languages) in zip(axes.flat, sets):
    runs = sorted((r for r in rows if r["languages"] == languages), key=lambda r: r["mono_prob"])
    xs = [r["map_cross"] for r in runs]
    ys = [r["map_multi_mean"] for r in runs]
    ax.plot(xs, ys, color="0.6", lw=1, zorder=1)
    if any(len(r["seeds"]) > 1 for r in runs):
      ax.errorbar(xs, ys, xerr=[r["map_cross_std"] for r in runs],
                  yerr=[r["map_multi_mean_std"] for r in runs], fmt="none", ecolor="0.3",
                  elinewidth=1, capsize=3, zorder=1)
    points = ax.scatter(xs, ys, c=[r["rank_gap_mean"] for r in runs], cmap="viridis", s=70,
                        edgecolors="black", zorder=2)
    for r, x, y in zip(runs, xs, ys):
      seeds = f" (n={len(r['seeds'])})" if len(r["seeds"]) > 1 else ""
      ax.annotate(f"p={r['mono_prob']:g}{seeds}", (x, y), fontsize=8, xytext=(4, 4),
                  textcoords="offset points")
    fig.colorbar(points, ax=ax, label="rank gap (lower = less bias)")
    title = languages if len(languages) <= 40 else f"{num_languages} languages"
    ax.set_title(f"L={num_languages}: {title}", fontsize=10)
    ax.set_xlabel("cross-lingual mAP (X→Y, macro)")
    ax.set_ylabel("multilingual-pool mAP (macro)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
    ax.grid(alpha=0.3)
    ax.margins(0.2)  # room for the point labels
  for ax in list(axes.flat)[len(sets):]:
    ax.axis("off")
  fig.suptitle(
      "Hybrid batch trade-off (p = mono_prob): one point per setting, mean ± std over seeds")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return path


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--root", required=True)
  parser.add_argument(
      "--dataset", default=None, help="eval dataset dir name, e.g. xquad_r_eval, or a glob "
      "of single-language BEIR corpora to combine, e.g. 'beir_miracl-*'")
  parser.add_argument("--out", default=None, help="output directory (default: --root)")
  parser.add_argument(
      "--groups", default="trained", help="language groupings whose macro averages get "
      "columns, of the results' eval.language_groups: trained,family,script,resource_class "
      "('' = none)")
  args = parser.parse_args(argv)
  rows = collect(args.root, args.dataset, [g for g in args.groups.split(",") if g])
  if not rows:
    print(f"summarize: no results.json under {args.root}/*/eval/", file=sys.stderr)
    return 1
  out = args.out or args.root
  os.makedirs(out, exist_ok=True)
  settings = aggregate(rows)
  table = markdown(rows)
  if any(len(r["seeds"]) > 1 for r in settings):
    table += "\nMean ± sample std over seeds:\n\n" + markdown_over_seeds(settings)
  with open(os.path.join(out, "summary.md"), "w") as f:
    f.write(table)
  with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump({"runs": rows, "settings": settings}, f, indent=2)
  lareqa = [r for r in settings if r.get("map_cross") is not None]
  if lareqa:  # the trade-off plot is LAReQA's (BEIR has no cross-lingual figure)
    plot(lareqa, os.path.join(out, "tradeoff.png"))
  print(table)
  return 0


if __name__ == "__main__":
  sys.exit(main())
