"""Collects the evaluation results and costs of a sweep into one table and plots.

  python launch/summarize.py --root=workdirs/sweep [--dataset=xquad_r_eval] [--out=DIR]
  python launch/summarize.py --root=... --group_by=num_languages --x=num_languages

Reads the final evaluation of each finished run, `<root>/<run>/eval/<dataset>/step_<N>/
results.json` with N = the run's train.num_steps (a run whose final step was not evaluated, e.g.
one stopped after a periodic evaluation, is listed as unfinished, never reported with an
intermediate step), and its cost record `<run>/cost.json` (`hybrid_jax.cost`), and writes
`summary.md`, `summary.json`, `pareto.png` (quality against cost, one point per setting, the
Pareto front joined), `curves.png` with `--x` (mAP and max-min rank against a setting field,
mean ± std, zero-shot languages dashed; and `curves_<grouping>.png` for each of `--groups`'
groupings other than trained, one line per group, e.g. `curves_family_by_trained.png`), and
`tradeoff.png` (one panel per language set: cross-lingual mAP vs multilingual-pool mAP, colour
= rank gap, one point per setting, labelled with its mono_prob). Runs that differ only in `seed`
(`sweep.py --seeds`) form one setting: summary.md then also has a table of mean ± sample standard deviation over seeds, and the plot
shows the mean with ±1 std bars. Columns: LAReQA mAP (mono X->X, cross X->Y, multilingual
pool), pool Recall@1/@10, the rank gap, the own-language share of the top k and the paper's
max-min rank distance (language bias, lower = less; `hybrid_jax.metrics.lareqa_metrics`), and the
macro averages of the language groups of `--groups` (results' "groups", eval.language_groups: by
default trained / zero-shot, i.e. evaluated, not trained on): mono / cross / pool mAP and max-min
rank per group, titled with the group's label as results.json and results.md give it ('zero-shot
multi'). The trained / zero-shot columns join the main table; any other grouping has tables of its
own (per run, per setting), titled with the grouping: 'resource class × trained' with columns
'5 / trained mono', ... (a crossed grouping such as 'family*trained' has a column per pair of
labels), so that many groups (the ratio_groups study's 64 columns) do not make one very wide row.
A second table (and its mean ± std over seeds) gives the efficiency of each run from its cost
record: trainable and frozen parameters, optimizer-state MB, the last checkpoint's MB and those
of all the checkpoints kept on disk, the compiled step's GFLOP (XLA's count), step seconds and
examples/s after compilation, training TFLOP, peak RSS, wall seconds in all, training and
evaluation, and the machine (CPU model and cores; `--cost` takes any of these columns, e.g.
trainable_parameters, plotted on a log axis); a count equal in every run of a setting shows
alone, without '± 0'. With `--dataset` a glob of single-language BEIR corpora ('beir_miracl-*'),
a run's corpora form one row: nDCG@10 / Recall@100 and each group's as macro averages over their
languages.

A setting is the runs equal in `--group_by` (default: language set, mono_prob and the sweep's
--axis fields; `num_languages` averages the draws of a language-count sweep; a config field such
as `model.lora.rank` is read from each run's config.json); it is named by these fields
('langs=en+de mono_prob=1', the Pareto front's line). A sweep-varied field outside --group_by
(language set, mono_prob, an --axis field) whose runs in one setting differ shows as
'mixed (0.5, 1)' (summary.json: None, and the values under "mixed"). The defaults of --group_by,
--x, --quality, --cost and --groups come from `<root>/sweep.json` (written by launch/sweep.py; a
study's summarize settings) or `--study`. A user error (a --group_by field no run has, a
--quality / --cost that names no column, an --x that is not a setting field, an unknown study or
grouping, a --root that is no directory, an --out that is a file) is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # this checkout's hybrid_jax

from hybrid_jax import cli  # noqa: E402
from hybrid_jax import cost as cost_lib  # noqa: E402
from hybrid_jax import machine  # noqa: E402
from hybrid_jax.data import languages  # noqa: E402
from hybrid_jax.errors import UserError  # noqa: E402
from hybrid_jax.evaluators import dataset_name  # noqa: E402

COLUMNS = (("mono mAP", "map_mono"), ("cross mAP", "map_cross"), ("multi mAP", "map_multi_mean"),
           ("R@1", "recall@1_mean"), ("R@10", "recall@10_mean"), ("rank gap", "rank_gap_mean"),
           ("max-min rank", "rank_range_mean"), ("own share@k", "own_share_mean"),
           ("nDCG@10", "ndcg@10"), ("Recall@100", "recall@100"))
# Per language group (results' metrics["groups"], eval.language_groups): (title, metric key).
GROUP_COLUMNS = (("mono", "map_mono"), ("cross", "map_cross"), ("multi", "map_multi_mean"),
                 ("max-min rank", "rank_range_mean"), ("nDCG@10", "ndcg@10"))


def group_key(grouping: str, label: str, key: str) -> str:
  """The row key of a group's metric: 'trained/zero-shot/map_multi_mean',
  'family*trained/Indo-European / zero-shot/map_mono' (a crossed grouping's label)."""
  return f"{grouping}/{label}/{key}"


def split_group_key(key: str) -> tuple[str, str, str] | None:
  """(grouping, label, metric) of a `group_key` (a label may hold '/': the grouping and the
  metric key never do), or None for a row key that is not one."""
  grouping, slash, rest = key.partition("/")
  label, slash2, metric = rest.rpartition("/")
  return (grouping, label, metric) if slash and slash2 and label else None


def _grouping_title(grouping: str) -> str:
  """'resource_class*trained' -> 'resource class × trained' (as results.md titles it)."""
  return grouping.replace("_", " ").replace(languages.CROSS, " × ")


# Groupings whose columns join the main quality table (their labels, trained / zero-shot, read on
# their own); every other grouping gets a table of its own, titled with the grouping.
INLINE_GROUPINGS = (languages.TRAINED,)

# The efficiency table, from the run's cost record (hybrid_jax.cost), in the units the columns
# name (MB = 1e6 bytes); the step FLOPs are XLA's count of the compiled step (the FLOP model's
# with the gradient cache), the step time and examples/s after compilation. "last checkpoint":
# the newest step's checkpoint (one checkpoint's size); "checkpoints on disk": all that the run
# kept (checkpoint.keep of them).
COST_COLUMNS = (
    ("trainable params", "trainable_parameters"),
    ("frozen params", "frozen_parameters"),
    ("optimizer MB", "optimizer_mb"),
    ("last checkpoint MB", "last_checkpoint_mb"),
    ("checkpoints on disk MB", "checkpoint_mb"),
    ("step GFLOP", "step_gflops"),
    ("step s", "step_seconds"),
    ("ex/s", "examples_per_second"),
    ("train TFLOP", "train_tflops"),
    ("peak RSS GiB", "peak_rss_gib"),
    ("wall s", "total_seconds"),
    ("train s", "train_seconds"),
    ("eval s", "eval_seconds"),
)
DEFAULT_GROUP_BY = ("num_languages", "languages", "mono_prob")


def _cost_columns(workdir: str) -> dict:
  """The run's COST_COLUMNS and `machine` (`hybrid_jax.machine.one_line`), None where its cost
  record (or a figure of it) is missing."""
  record = cost_lib.read(workdir)
  out = {key: None for _, key in COST_COLUMNS}
  out["machine"] = None
  if record is None:
    return out
  headline = cost_lib.headline(record)
  scaled = lambda key, unit: headline[key] / unit if key in headline else None
  parameters = record.get("parameters") or {}
  optimizer = parameters.get("optimizer_bytes")
  steps = record.get("steps_trained")
  out.update({
      "trainable_parameters":
          parameters.get("trainable_parameters"), "frozen_parameters":
              parameters.get("frozen_parameters"), "optimizer_mb":
                  optimizer / 1e6 if optimizer is not None else None, "last_checkpoint_mb":
                      record["last_checkpoint_bytes"]
                      / 1e6 if record.get("last_checkpoint_bytes") is not None else None,
      "checkpoint_mb":
          scaled("checkpoint_bytes", 1e6), "step_gflops":
              scaled("train_step_flops", 1e9), "step_seconds":
                  headline["train_seconds"] / steps if steps else None, "examples_per_second":
                      headline.get("examples_per_second"), "train_tflops":
                          scaled("train_flops", 1e12), "peak_rss_gib":
                              scaled("peak_rss_bytes", 2**30), "total_seconds":
                                  headline["total_seconds"], "train_seconds":
                                      headline["train_seconds"], "eval_seconds":
                                          headline["eval_seconds"],
      "machine":
          machine.one_line(record["machine"]) if record.get("machine") else None
  })
  return out


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


def _sweep_runs(root: str) -> dict:
  """name -> the run as `<root>/sweep.json` lists it ({} without one)."""
  path = os.path.join(root, "sweep.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return {r["name"]: r for r in json.load(f).get("runs", [])}


def _config_value(config: dict, field: str):
  """The value of a dotted config field ('model.lora.rank') in a run's config.json dict; None
  when it has none."""
  value = config
  for part in field.split("."):
    if not isinstance(value, dict) or part not in value:
      return None
    value = value[part]
  return value


def _value(text: str):
  """An --axis value as a number where it is one ('16' -> 16, '3e-5' -> 3e-05)."""
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def _final_per_dataset(run_dir: str, config: dict,
                       dataset: str | None) -> dict[str, tuple[int, str]]:
  """{dataset dir name matching `dataset` (a name or glob; None = the run's data.eval): (the
  final step, its results.json)} for those whose final step (train.num_steps) was evaluated."""
  found = {}
  if dataset is None and config["data"].get("eval"):
    dataset = dataset_name(config["data"]["eval"])
  step = config["train"]["num_steps"]
  eval_dir = os.path.join(run_dir, "eval")
  if not os.path.isdir(eval_dir):
    return found
  for name in sorted(os.listdir(eval_dir)):
    path = os.path.join(eval_dir, name, f"step_{step}", "results.json")
    if (not dataset or fnmatch.fnmatchcase(name, dataset)) and os.path.exists(path):
      found[name] = (step, path)
  return found


def collect(root: str, dataset: str | None = None, groupings=("trained",),
            unfinished: list | None = None, fields=()) -> list[dict]:
  """One row per finished run directory of `root` (`_final_per_dataset`), with the group
  averages of `groupings` (`group_key`) where its results have them, its draw (from sweep.json),
  the values of its --axis fields and of the config fields of `fields` ('model.lora.rank') as its
  config.json holds them (an --axis value as sweep.json lists it where config.json has none),
  and its cost (COST_COLUMNS, `machine`). Several datasets
  matching a `dataset` glob ('beir_miracl-*') are combined (`combine_corpora`). The names of
  run directories without a final evaluation are appended to `unfinished`."""
  rows = []
  listed = _sweep_runs(root)
  for run in sorted(os.listdir(root)):
    config_path = os.path.join(root, run, "config.json")
    if not os.path.isfile(config_path):
      continue
    with open(config_path) as f:
      config = json.load(f)
    found = _final_per_dataset(os.path.join(root, run), config, dataset)
    if not found:
      if unfinished is not None:
        unfinished.append(run)
      continue
    step = config["train"]["num_steps"]
    if len(found) > 1:
      results = [json.load(open(path)) for _, path in found.values()]
      metrics, name = combine_corpora(results), "+".join(r["dataset"] for r in results)
    else:
      ((_, path),) = found.values()
      with open(path) as f:
        results = json.load(f)
      metrics, name = results["metrics"], results.get("dataset")
    groups = metrics.get("groups") or {}
    row = {
        "run": run, "step": step, "languages": config["data"]["languages"],
        "num_languages": len(config["data"]["languages"].split("+")), "mono_prob": config["sampler"]
                                                                                   ["mono_prob"],
        "seed": config.get("seed"), "dataset": name, "top_k": metrics.get("top_k")
    }
    row.update({key: metrics.get(key) for _, key in COLUMNS})
    row.update({
        group_key(grouping, label, key): values.get(key) for grouping in groupings
        for label, values in groups.get(grouping, {}).items() for _, key in GROUP_COLUMNS
    })
    listed_run = listed.get(run, {})
    row["draw"] = listed_run.get("draw")
    row["axes"] = sorted(listed_run.get("overrides", {}))
    overrides = listed_run.get("overrides", {})
    for field in dict.fromkeys([*overrides, *(f for f in fields if "." in f)]):
      value = _config_value(config, field)  # as the run parsed it, e.g. True, not 'True'
      row[field] = _value(overrides[field]) if value is None and field in overrides else value
    row.update(_cost_columns(os.path.join(root, run)))
    rows.append(row)
  return rows


# Row fields a sweep varies besides its --axis fields (row["axes"]): a setting whose runs differ
# in one that is not in --group_by shows it as mixed, never as its first run's value.
VARIED_FIELDS = ("num_languages", "languages", "mono_prob")


def _value_order(value):
  """Numbers in order, then text, then None."""
  if isinstance(value, (int, float)):
    return (0, value, "")
  return (1, 0, str(value)) if value is not None else (2, 0, "")


def aggregate(rows: list[dict], group_by=None) -> list[dict]:
  """One row per setting (the runs equal in `group_by`, default DEFAULT_GROUP_BY and the --axis
  fields): every column (`_columns`) as its mean over the setting's runs (seeds, draws)
  and `<key>_std`, the sample standard deviation (ddof=1; 0 for one run), an integer column
  equal in every run as that integer; `seeds` lists the seeds, `runs` the run names. A varied
  field (VARIED_FIELDS, the --axis fields) outside `group_by` whose runs differ is None and listed
  in `mixed` ({field: its distinct values}); `languages` is then 'N sets'."""
  if group_by is None:
    group_by = list(DEFAULT_GROUP_BY) + sorted({f for r in rows for f in r.get("axes", [])})
  groups = {}
  for r in rows:
    groups.setdefault(tuple(r.get(key) for key in group_by), []).append(r)
  out = []
  for group, runs in sorted(groups.items(), key=lambda item: [_value_order(v) for v in item[0]]):
    row, mixed = {}, {}
    for field in [*VARIED_FIELDS, *sorted({f for r in runs for f in r.get("axes", [])})]:
      values = sorted({r.get(field) for r in runs}, key=_value_order)
      row[field] = values[0] if len(values) == 1 else None
      if len(values) > 1:
        mixed[field] = values
    row.update(zip(group_by, group))
    if "languages" in mixed:
      row["languages"] = f"{len(mixed['languages'])} sets"
    row["mixed"] = mixed
    row["seeds"] = sorted((r["seed"] for r in runs), key=lambda s: (s is None, s or 0))
    row["runs"] = sorted(r["run"] for r in runs)
    row["step"] = max(r["step"] for r in runs)
    top_k = {r.get("top_k") for r in runs}
    row["top_k"] = top_k.pop() if len(top_k) == 1 else None
    row["group_by"] = list(group_by)
    row["machine"] = "; ".join(sorted({r["machine"] for r in runs if r.get("machine")})) or None
    for _, key in _columns(runs, everything=True):
      values = [r[key] for r in runs if r.get(key) is not None]
      mean = sum(values) / len(values) if values else None
      std = ((sum((v - mean)**2 for v in values) /
              (len(values) - 1))**0.5 if len(values) > 1 else 0.0 if values else None)
      if values and len(set(values)) == 1 and all(
          isinstance(v, int) and not isinstance(v, bool) for v in values):
        mean = values[0]  # a count (parameters) the same in every run: shown alone
      row[key], row[f"{key}_std"] = mean, std
    out.append(row)
  return out


def _fmt(v):
  """'–' for None; a number of 1,000 or more (a parameter count) with thousands separators and no
  decimals, another float with 3 decimals."""
  if v is None:
    return "–"
  if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) >= 1000:
    return f"{v:,.0f}"
  return f"{v:.3f}" if isinstance(v, float) else str(v)


def _text(value) -> str:
  """A field value as a label shows it: 0.5 -> '0.5', 1.0 -> '1'."""
  return f"{value:g}" if isinstance(value, float) else str(value)


def _field(setting: dict, key: str) -> str:
  """A setting's value of `key`, or 'mixed (0.5, 1)' where its runs differ (`aggregate`)."""
  values = (setting.get("mixed") or {}).get(key)
  if values:
    return f"mixed ({', '.join(_text(v) for v in values)})"
  return _text(setting.get(key))


def _group_columns(rows: list[dict], grouping: str | None = None) -> list[tuple[str, str]]:
  """(title, row key) of the language-group columns some row has a value of (of `grouping`, or of
  all), in the order they name them; a title is the group's label as results.json / results.md give it
  and the metric: 'zero-shot multi', '5 / trained mono' (in the table of resource_class*trained),
  'Indo-European / zero-shot max-min rank'."""
  titles = {key: title for title, key in GROUP_COLUMNS}
  groups = {}
  for r in rows:
    for key in r:
      parts = split_group_key(key)
      if parts and key not in groups and parts[2] in titles and grouping in (None, parts[0]):
        groups[key] = f"{parts[1]} {titles[parts[2]]}"
  return [
      (title, key) for key, title in groups.items() if any(r.get(key) is not None for r in rows)
  ]


def _columns(rows: list[dict], everything: bool = False, kind: str = "all"):
  """COLUMNS, then the language-group columns (`_group_columns`) in the order the rows name them
  (`kind` 'quality': these and only those of INLINE_GROUPINGS), then COST_COLUMNS (`kind` 'cost':
  these only), without those no row has (e.g. the zero-shot columns of runs without zero-shot
  languages) unless `everything`. 'own share@k' says the rows' k where they share one."""
  groups = _group_columns(rows)
  if kind == "quality":
    groups = [(t, k) for t, k in groups if split_group_key(k)[0] in INLINE_GROUPINGS]
  top_k = {r.get("top_k") for r in rows if r.get("own_share_mean") is not None}
  columns = [(title.replace("share@k", f"share@{next(iter(top_k))}")
              if len(top_k) == 1 and None not in top_k else title, key) for title, key in COLUMNS]
  quality = (*columns, *groups)
  chosen = {"quality": quality, "cost": COST_COLUMNS, "all": (*quality, *COST_COLUMNS)}[kind]
  return [(name, key) for name, key in chosen
          if everything or any(r.get(key) is not None for r in rows)]


def markdown(rows: list[dict], kind: str = "quality", columns=None) -> str:
  """One line per run: its languages, mono_prob, final step and quality columns (`kind`
  'quality'), its cost record's columns ('cost'), or (`kind` 'group') `columns`."""
  described = kind == "quality"
  columns = columns if columns is not None else _columns(rows, kind=kind)
  header = ["run", *(["langs", "mono_prob", "step"] if described else [])]
  header += [name for name, _ in columns]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for r in sorted(rows, key=lambda r: (r["num_languages"], r["mono_prob"], r["run"])):
    cells = [r["run"]]
    if described:
      cells += [str(r["num_languages"]), f"{r['mono_prob']:g}", str(r["step"])]
    cells += [_fmt(r.get(key)) for _, key in columns]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _mean_std(setting: dict, key: str) -> str:
  """'0.412 ± 0.013'; a count equal in every run (`aggregate`) alone: '1,327,104'."""
  mean, std = setting.get(key), setting.get(key + "_std")
  if mean is None:
    return "–"
  return _fmt(mean) if isinstance(mean, int) and not std else f"{_fmt(mean)} ± {_fmt(std)}"


def markdown_over_seeds(settings: list[dict], kind: str = "quality", columns=None) -> str:
  """The aggregated table: mean ± std over the runs (seeds, draws) of each setting, of its
  quality columns (`kind` 'quality'), its cost record's ('cost') or `columns`; the fields that
  make a setting, and those its runs differ in ('mixed (8, 16)')."""
  columns = columns if columns is not None else _columns(settings, kind=kind)
  group_by = settings[0]["group_by"]
  mixed = {f for r in settings for f in r.get("mixed") or {}}
  fields = [k for k in group_by if k not in DEFAULT_GROUP_BY]
  fields += sorted(mixed - set(fields) - set(DEFAULT_GROUP_BY))
  header = ["langs", "mono_prob", *fields, "runs"] + [name for name, _ in columns]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for r in settings:
    cells = [
        _field(r, "num_languages"),
        _field(r, "mono_prob"), *(_field(r, k) for k in fields),
        str(len(r["runs"]))
    ]
    cells += [_mean_std(r, key) for _, key in columns]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _machines(rows: list[dict]) -> str:
  """Where the runs ran: 'all runs on <machine>', or each machine with its runs."""
  by_machine = {}
  for r in rows:
    by_machine.setdefault(r.get("machine") or "machine not recorded", []).append(r["run"])
  if len(by_machine) == 1:
    return f"all runs on {next(iter(by_machine))}"
  return "; ".join(f"{name}: {', '.join(runs)}" for name, runs in sorted(by_machine.items()))


def plot(rows: list[dict], path: str) -> str:
  """One panel per language set (their multilingual pools differ in size, so panels are not
  comparable with each other): cross-lingual vs multilingual-pool mAP, one point per setting
  (`aggregate`: the mean over seeds, ±1 std bars where there are several) joined in mono_prob
  order, colour = rank gap."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import matplotlib.ticker

  sets = sorted({(r["num_languages"], r["languages"]) for r in rows}, key=lambda s:
                (_value_order(s[0]), s[1]))
  columns = min(len(sets), 2)
  panel_rows = -(-len(sets) // columns)
  fig, axes = plt.subplots(panel_rows, columns, figsize=(5.6 * columns, 4.4 * panel_rows), dpi=110,
                           squeeze=False)
  for ax, (num_languages, languages) in zip(axes.flat, sets):
    runs = sorted((r for r in rows if r["languages"] == languages),
                  key=lambda r: _value_order(r["mono_prob"]))
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
      ax.annotate(f"p={_field(r, 'mono_prob')}{seeds}", (x, y), fontsize=8, xytext=(4, 4),
                  textcoords="offset points")
    fig.colorbar(points, ax=ax, label="rank gap (lower = less bias)")
    count = "mixed" if num_languages is None else num_languages
    title = languages if len(languages) <= 40 else f"{count} languages"
    ax.set_title(f"L={count}: {title}", fontsize=10)
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


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
  """Indices of the (cost, quality) points no other point dominates (cost <= and quality >=,
  one of them strictly), by increasing cost; points with a None are left out."""
  valid = [i for i, (c, q) in enumerate(points) if c is not None and q is not None]
  front = [
      i for i in valid if not any(
          points[j][0] <= points[i][0] and points[j][1] >= points[i][1] and points[j] != points[i]
          for j in valid)
  ]
  return sorted(front, key=lambda i: points[i])


def _label(setting: dict, among: list[dict] | None = None) -> str:
  """'L3 p=0.5 rank=16': the setting's language count, mono_prob and other group_by fields ('p=mixed'
  where its runs differ); with `among` (the settings plotted together) only those that differ
  among them."""
  fields = [
      ("num_languages", "L"), ("mono_prob", "p="),
      *((k, f"{k.rsplit('.', 1)[-1]}=") for k in setting["group_by"] if k not in DEFAULT_GROUP_BY)
  ]
  shown = lambda s, key: "mixed" if key in (s.get("mixed") or {}) else _text(s.get(key))
  parts = [
      f"{prefix}{shown(setting, key)}" for key, prefix in fields
      if among is None or len({shown(s, key) for s in among}) > 1
  ]
  return " ".join(parts) or "all runs"


def setting_name(setting: dict) -> str:
  """'langs=en+de mono_prob=1 global_batch_size=16': the fields that make the setting (its
  group_by; the language set for the language count where both are) with their values."""
  group_by = setting["group_by"]
  parts = [
      f"{'langs' if key == 'languages' else key.rsplit('.', 1)[-1]}={_field(setting, key)}"
      for key in group_by if not (key == "num_languages" and "languages" in group_by)
  ]
  return " ".join(parts) or "all runs"


def plot_pareto(settings: list[dict], quality: str, cost: str, path: str) -> str:
  """`quality` against `cost`, one point per setting (mean, ±1 std bars over its runs), the
  Pareto front (`pareto_front`) joined and labelled; a log cost axis for parameter counts
  ('trainable_parameters') or costs that span 10x."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  points = [(r.get(cost), r.get(quality)) for r in settings]
  front = pareto_front(points)
  fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
  shown = [i for i, (c, q) in enumerate(points) if c is not None and q is not None]
  ax.errorbar([points[i][0] for i in shown], [points[i][1] for i in shown], xerr=[
      settings[i].get(f"{cost}_std") or 0 for i in shown
  ], yerr=[settings[i].get(f"{quality}_std") or 0 for i in shown], fmt="o", color="0.5",
              ecolor="0.7", capsize=2, label="setting (mean ± std)")
  ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "-o", color="C3",
          label="Pareto front")
  costs = [points[i][0] for i in shown]
  middle = sorted(costs)[len(costs) // 2] if costs else None
  for i in shown:  # labels of the costlier half to the left of their point: inside the axes
    left = len(costs) > 1 and points[i][0] >= middle
    ax.annotate(
        _label(settings[i], settings), points[i], fontsize=7, xytext=(-4 if left else 4, 3),
        textcoords="offset points", ha="right" if left else "left")
  if costs and min(costs) > 0 and (cost.endswith("_parameters") or max(costs) / min(costs) >= 10):
    ax.set_xscale("log")
  ax.set_xlabel(cost)
  ax.set_ylabel(quality)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title(f"{quality} against {cost}")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return path


def plot_curves(settings: list[dict], x: str, path: str) -> str:
  """mono / cross / multilingual mAP and max-min rank, of all evaluated languages and of the
  trained / zero-shot groups (`group_key`; zero-shot dashed) where the results have them,
  against the setting field `x`, mean ± std over each setting's runs; one line per mono_prob
  where the settings are grouped by it, else one line (e.g. a language-count sweep, whose k = 1
  runs are mono-only)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), dpi=110)
  by_mono_prob = "mono_prob" in settings[0]["group_by"] and x != "mono_prob"
  for p in sorted({r["mono_prob"] for r in settings}) if by_mono_prob else [None]:
    runs = sorted((r for r in settings if r.get(x) is not None and p in (None, r["mono_prob"])),
                  key=lambda r: r[x])
    suffix = f" (p={p:g})" if p is not None else ""
    for ax, keys in ((left, ("map_mono", "map_cross", "map_multi_mean")), (right,
                                                                           ("rank_range_mean",))):
      for key in keys + tuple(
          group_key("trained", label, k) for label in ("trained", "zero-shot") for k in keys):
        shown = [r for r in runs if r.get(key) is not None]
        if shown:
          ax.errorbar([r[x] for r in shown], [r[key] for r in shown],
                      yerr=[r[f"{key}_std"] for r in shown], capsize=2, marker="o",
                      ls="--" if "zero-shot" in key else "-", label=key + suffix)
  left.set_ylabel("mAP (macro)")
  right.set_ylabel("max-min rank (lower = less bias)")
  for ax in (left, right):
    ax.set_xlabel(x)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a panel no run has figures of stays without legend
      ax.legend(fontsize=7)
  fig.suptitle(f"Against {x}: mean ± std over each setting's runs (dashed: zero-shot languages)")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return path


def group_curves_name(grouping: str) -> str:
  """The file name of `plot_group_curves`' figure of `grouping`: 'curves_family.png',
  'curves_resource_class_by_trained.png' for 'resource_class*trained'."""
  return f"curves_{grouping.replace('*', '_by_')}.png"


def plot_group_curves(settings: list[dict], x: str, grouping: str, path: str) -> str:
  """mono / cross / multilingual mAP of each group of the language grouping `grouping` (macro
  average over the group's languages; `group_key`), one panel per metric, one line per group
  (zero-shot groups dashed), against the setting field `x`, mean ± std over each setting's runs:
  e.g. the ratio_groups study's resource classes and families, zero-shot languages apart, against
  mono_prob."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  metrics = (("map_mono", "mono mAP"), ("map_cross", "cross mAP"), ("map_multi_mean",
                                                                    "multilingual mAP"))
  labels = list(
      dict.fromkeys(split_group_key(key)[1] for _, key in _group_columns(settings, grouping)))
  runs = sorted((r for r in settings if r.get(x) is not None), key=lambda r: r[x])
  fig, axes = plt.subplots(1, len(metrics), figsize=(15, 4.6), dpi=110)
  for ax, (key, title) in zip(axes, metrics):
    for i, label in enumerate(labels):
      column = group_key(grouping, label, key)
      shown = [r for r in runs if r.get(column) is not None]
      if shown:
        ax.errorbar([r[x] for r in shown], [r[column] for r in shown],
                    yerr=[r[f"{column}_std"] for r in shown], capsize=2, marker="o",
                    color=f"C{i % 10}", ls="--" if "zero-shot" in label else "-", label=label)
    ax.set_title(title)
    ax.set_xlabel(x)
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("mAP (macro over the group's languages)")
  handles, names = axes[0].get_legend_handles_labels()
  if handles:
    fig.legend(handles, names, loc="center right", fontsize=7)
  fig.suptitle(f"{_grouping_title(grouping)} against {x}: mean ± std over each setting's runs "
               "(dashed: zero-shot languages)")
  fig.tight_layout(rect=(0, 0, 0.87, 1))
  fig.savefig(path)
  plt.close(fig)
  return path


def _settings_defaults(root: str, study: str | None) -> dict:
  """The summarize settings of `--study`, else of `<root>/sweep.json` ({} without either).

  Raises:
    UserError: a study `sweep.load_study` rejects.
  """
  if study is not None:
    sys.path.insert(0, os.path.join(REPO, "launch"))
    import sweep  # pylint: disable=import-outside-toplevel
    return dict(sweep.load_study(study).get("summarize", {}))
  path = os.path.join(root, "sweep.json")
  if os.path.exists(path):
    with open(path) as f:
      return dict(json.load(f).get("summarize") or {})
  return {}


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--root", required=True)
  parser.add_argument(
      "--dataset", default=None, help="eval dataset dir name, e.g. xquad_r_eval, or a glob "
      "of single-language BEIR corpora to combine, e.g. 'beir_miracl-*' (default: each run's "
      "data.eval)")
  parser.add_argument("--out", default=None, help="output directory (default: --root)")
  parser.add_argument(
      "--groups", default=None, help="language groupings whose macro averages get "
      "columns, of the results' eval.language_groups: trained,family,script,resource_class "
      "and crossings such as 'family*trained' ('' = none; default: trained)")
  parser.add_argument("--study", default=None, help="take the settings of launch/studies/<name>")
  parser.add_argument(
      "--group_by", default=None,
      help="comma-separated row fields that make a setting, any config field among them "
      "(e.g. model.lora.rank; default: language set, mono_prob and the --axis fields)")
  parser.add_argument("--x", default=None, help="a setting field: plot curves.png against it")
  parser.add_argument("--quality", default=None, help="the Pareto plot's quality column "
                      "(default map_multi_mean)")
  parser.add_argument(
      "--cost", default=None, help="the Pareto plot's cost column (default "
      "total_seconds; also train_seconds, train_tflops, examples_per_second, "
      "trainable_parameters, checkpoint_mb...: the efficiency columns)")
  return parser


def check_group_by(rows: list[dict], group_by) -> None:
  """Every `group_by` field is one that some run has.

  Raises:
    UserError: a field no run has, listing where fields come from.
  """
  unknown = [f for f in group_by or () if all(r.get(f) is None for r in rows)]
  if unknown:
    axes = sorted({f for r in rows for f in r.get("axes", [])})
    raise UserError(
        f"--group_by: no run has the field(s) {', '.join(unknown)}; fields are each run's "
        "num_languages, languages, mono_prob, seed (config.json), draw (sweep.json), the "
        f"sweep's --axis fields ({', '.join(axes) or 'none in sweep.json'}) and any dotted "
        "config field of the runs' config.json (e.g. model.lora.rank)")


def check_columns(settings: list[dict], quality: str, cost: str, x: str | None) -> None:
  """`quality` and `cost` name columns (`_columns`), `x` a setting field.

  Raises:
    UserError: naming the flag and listing the valid keys.
  """
  keys = [key for _, key in _columns(settings, everything=True)]
  listed = [key for key in keys if not split_group_key(key)]
  for flag, key in (("--quality", quality), ("--cost", cost)):
    if key not in keys:
      raise UserError(f"{flag}={key}: not a column; columns: {', '.join(listed)}, or a language "
                      "group's (summary.json's 'trained/zero-shot/map_multi_mean', ...)")
  fields = list(dict.fromkeys(["num_languages", "mono_prob", *settings[0]["group_by"]]))
  if x is not None and x not in fields:
    raise UserError(f"--x={x}: not a field of the settings; one of {', '.join(fields)} (--group_by "
                    "adds others)")


def main(argv=None) -> int:
  """The command; a user error is one line and exit status 2 (`hybrid_jax.cli.fail`)."""
  try:
    return summarize(_parser().parse_args(argv))
  except UserError as e:
    cli.fail(str(e))


def summarize(args) -> int:
  """Writes summary.md, summary.json and the plots of `args` (`_parser`); 1 without a finished
  run.

  Raises:
    UserError: a bad flag (a --root that is no directory, an --out that is a file, an unknown
      study, grouping, --group_by field, --quality / --cost column or --x field).
  """
  if not os.path.isdir(args.root):
    raise UserError(f"--root={args.root}: no such directory")
  out = args.out or args.root
  if os.path.exists(out) and not os.path.isdir(out):
    raise UserError(f"--out={out}: a file, not a directory")
  defaults = _settings_defaults(args.root, args.study)
  group_by = args.group_by or defaults.get("group_by")
  if isinstance(group_by, str):
    group_by = group_by.split(",")
  x = args.x or defaults.get("x")
  quality = args.quality or defaults.get("quality", "map_multi_mean")
  cost = args.cost or defaults.get("cost", "total_seconds")
  asked = args.groups if args.groups is not None else defaults.get("groups")
  groupings = languages.parse_groupings("trained" if asked is None else asked, "--groups")
  unfinished = []
  rows = collect(args.root, args.dataset, groupings, unfinished,
                 fields=[*(group_by or ()), *([x] if x else [])])
  if unfinished:
    print(
        f"summarize: {len(unfinished)} run(s) without their final step's evaluation, left out "
        f"(re-run the sweep to complete them): {', '.join(unfinished)}", file=sys.stderr)
  if not rows:
    print(f"summarize: no finished run (final step evaluated) under {args.root}", file=sys.stderr)
    return 1
  check_group_by(rows, group_by)
  found = {(split_group_key(key) or ("",))[0] for r in rows for key in r}
  missing = [g for g in groupings if g not in found]
  if missing and asked is not None:
    print(
        f"summarize: no run's results have the language grouping(s) {', '.join(missing)} (not "
        "in their config.eval.language_groups, or no zero-shot language for 'trained')",
        file=sys.stderr)
  settings = aggregate(rows, group_by)
  check_columns(settings, quality, cost, x)
  os.makedirs(out, exist_ok=True)
  over_seeds = any(len(r["runs"]) > 1 for r in settings)
  table = markdown(rows)
  if over_seeds:
    table += "\nMean ± sample std over the runs (seeds, draws) of each setting:\n\n"
    table += markdown_over_seeds(settings)
  for grouping in groupings:
    columns = _group_columns(rows, grouping)
    if grouping in INLINE_GROUPINGS or not columns:
      continue
    table += (f"\nLanguage groups, {_grouping_title(grouping)} (macro averages over each group's "
              "languages; labels as in results.json):\n\n")
    table += markdown(rows, kind="group", columns=columns)
    if over_seeds:
      table += "\nMean ± sample std over each setting's runs:\n\n"
      table += markdown_over_seeds(settings, columns=_group_columns(settings, grouping))
  if _columns(rows, kind="cost"):
    table += f"\nEfficiency (each run's cost record, hybrid_jax/cost.py; {_machines(rows)}):\n\n"
    table += markdown(rows, kind="cost")
    if over_seeds:
      table += "\nEfficiency, mean ± sample std over each setting's runs:\n\n"
      table += markdown_over_seeds(settings, kind="cost")
  front = pareto_front([(r.get(cost), r.get(quality)) for r in settings])
  if front:
    table += (f"\nPareto front of {quality} against {cost}: "
              + "; ".join(setting_name(settings[i]) for i in front) + "\n")
  else:
    print(f"summarize: no Pareto front (pareto.png): no setting has both {quality} and {cost}",
          file=sys.stderr)
  with open(os.path.join(out, "summary.md"), "w") as f:
    f.write(table)
  with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(
        {
            "runs": rows, "settings": settings, "unfinished": unfinished, "pareto":
                {"quality": quality, "cost": cost, "front": [settings[i]["runs"] for i in front]}
        }, f, indent=2)
  lareqa = [r for r in settings if r.get("map_cross") is not None]
  if lareqa:  # the trade-off plot is LAReQA's (BEIR has no cross-lingual figure)
    plot(lareqa, os.path.join(out, "tradeoff.png"))
  if front:
    plot_pareto(settings, quality, cost, os.path.join(out, "pareto.png"))
  if x:
    plot_curves(settings, x, os.path.join(out, "curves.png"))
    for grouping in groupings:
      if grouping not in INLINE_GROUPINGS and _group_columns(settings, grouping):
        plot_group_curves(settings, x, grouping, os.path.join(out, group_curves_name(grouping)))
  print(table)
  return 0


if __name__ == "__main__":
  sys.exit(main())
