"""A grid of hybrid-jax runs, one workdir per run: language sets (or counts) x mono_prob x any
config field x seeds.

  python launch/sweep.py --root=workdirs/sweep                      # the default grid, locally
  python launch/sweep.py --root=... --lang_sets=en+de,xquad_r --mono_probs=0,0.5,1 --dry_run
  python launch/sweep.py --root=... --axis=train.global_batch_size=16,32 \\
      --axis=optim.learning_rate=1e-5,3e-5                         # 2 x 2 runs
  python launch/sweep.py --root=... --zip --axis=train.global_batch_size=16,32 \\
      --axis=train.num_steps=80,40                                 # pairs: (16, 80), (32, 40)
  python launch/sweep.py --root=... --lang_counts=1,2,3,5,7,9 \\
      --lang_pool=ar+de+en+es+hi+ru+th+tr+zh --lang_draws=3 --seed=0  # random language subsets
  python launch/sweep.py --study=language_count --root=...         # launch/studies/<name>.py
  python launch/sweep.py --root=gs://BUCKET/sweep --launcher=tpu \\
      --tpu_args="--name=hj --zone=us-central2-b --accelerator=v4-32"
  python launch/sweep.py --root=... -- --config.train.num_steps=100   # extra main flags
  python launch/sweep.py --root=... --lang_sets=ar+de+en --mono_probs=0,0.5,1 --seeds=0,1,2

The grid is the product of the language sets (`--lang_sets`, or `--lang_draws` seeded random
subsets of `--lang_pool` for each count of `--lang_counts`, reproducible from `--seed` and
distinct within a count), `--mono_probs`, the `--axis` values (product, or one axis of tuples with
`--zip`) and `--seeds`. A one-language set trains mono-only: drawn ones run with mono_prob 1, and
a given set with other mono_probs is dropped (said on stderr; a grid left empty is an error).
Each run is named after its settings (`L3-de_en_zh-mono0.5-draw1-global_batch_size16-seed0`) and
listed in `<root>/sweep.json` with its languages, draw, overrides, config file and flags; a named
study (`launch/studies/<name>.py`, `--study=<name>`) gives the flags of one grid ("sweep") or of
several ("sweeps": their union, run in order into one root) and its summarize settings. No run is
lost or flag ignored silently: two runs of one name (grids giving the same run, or --axis values
such as 'x/y' and 'x_y') or of one config ('1e-4' and '0.0001'), an empty --axis value, a study
that is not a file name of launch/studies, --lang_sets beside --lang_counts, and a --cost_from
that does not exist are one-line errors (exit status 2).

Runs are sequential with `--launcher=local` (a failed run stops the sweep unless --keep_going).
A run is finished when its final step (train.num_steps) was trained and evaluated (the
results.json of that step, or without `data.eval` the step's checkpoint and the exported model);
a finished run is skipped, and any other one resumes from its checkpoint, so re-running the
sweep completes it. `--dry_run` lists the runs with their estimated cost: measured from the cost
records (`<run>/cost.json`) of finished runs under `--root` (or `--cost_from`) where there are
any, else from the FLOP model of `hybrid_jax.cost` at an assumed rate. Then
`python launch/summarize.py --root=...` collects the results.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import itertools
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # this checkout's hybrid_jax, as the runs (cwd=REPO) import it

from hybrid_jax import cli  # noqa: E402
from hybrid_jax import cost as cost_lib  # noqa: E402
from hybrid_jax import paths  # noqa: E402
from hybrid_jax.errors import UserError  # noqa: E402

STUDIES_DIR = os.path.join(REPO, "launch", "studies")
SWEEP_FILE = "sweep.json"
# 2, 4, 8 and 11 languages of XQuAD-R, mixing scripts (Latin, Arabic, CJK, Devanagari, Thai...).
DEFAULT_LANG_SETS = ("en+de", "en+de+ar+zh", "en+de+ar+zh+es+ru+hi+th", "xquad_r")
DEFAULT_MONO_PROBS = (0.0, 0.25, 0.5, 0.75, 1.0)
# Fields with their own flags (--lang_sets / --lang_counts, --mono_probs, --seeds), not --axis.
OWN_FLAGS = {
    "data.languages": "--lang_sets", "sampler.mono_prob": "--mono_probs", "seed": "--seeds"
}
# The flags a grid sets (a study's "sweep", or each of its "sweeps"); "extra": the flags after --.
GRID_FLAGS = ("config", "lang_sets", "lang_counts", "lang_pool", "lang_draws", "seed", "mono_probs",
              "seeds", "axis", "zip", "extra")
# Without cost records: the training rate the dry run assumes, from the e5-small default run on
# a 2-core AMD EPYC (AVX2): 80 steps x 367 GFLOP in about 7 minutes (issue 26), and the
# per-run start-up + compilation. XQuAD-R eval counts (xquad_r:eval, per language): questions
# and candidate sentences, for the evaluation's FLOPs.
ASSUMED_FLOPS_PER_SECOND = 70e9
ASSUMED_STARTUP_SECONDS = 60.0
XQUAD_R_EVAL_PER_LANGUAGE = (2915 / 11, 3293 / 11)


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of the grid: its name, its config file and what it sets on top of it."""
  name: str
  languages: str  # '+'-joined codes, or 'xquad_r'
  mono_prob: float
  seed: int | None = None  # None: the config's own seed
  overrides: tuple[tuple[str, str], ...] = ()  # (config field, value) of the --axis flags
  draw: int | None = None  # the draw index of a --lang_counts subset
  config: str = "configs/default.py"  # --config: a config file, optionally with arguments
  extra: tuple[str, ...] = ()  # --config.* flags after --, the same for every run of its grid

  @property
  def num_languages(self) -> int:
    return 11 if self.languages == "xquad_r" else len(self.languages.split("+"))

  def record(self) -> dict:
    """The run as `sweep.json` lists it."""
    return {
        "name": self.name, "languages": self.languages, "num_languages": self.num_languages,
        "mono_prob": self.mono_prob, "seed": self.seed, "draw": self.draw,
        "overrides": dict(self.overrides), "config": self.config, "extra": list(self.extra)
    }


def _name_part(field: str, value: str, fields: list[str]) -> str:
  """'global_batch_size16': the field's last component (the whole field when two axes share it)
  and the value, with characters a path should not hold replaced by '_'."""
  last = field.rsplit(".", 1)[-1]
  key = field if sum(f.rsplit(".", 1)[-1] == last for f in fields) > 1 else last
  return re.sub(r"[^A-Za-z0-9._+-]", "_", f"{key}{value}")


def run_name(langs: str, mono_prob: float, seed: int | None = None, overrides=(),
             draw: int | None = None) -> str:
  """`L<n>-<langs>-mono<p>[-draw<d>][-<field><value>...][-seed<s>]`."""
  num = 11 if langs == "xquad_r" else len(langs.split("+"))
  name = f"L{num}-{langs.replace('+', '_')}-mono{mono_prob:g}"
  if draw is not None:
    name += f"-draw{draw}"
  fields = [f for f, _ in overrides]
  for field, value in overrides:
    name += "-" + _name_part(field, value, fields)
  return name if seed is None else f"{name}-seed{seed}"


def parse_axis(spec: str) -> tuple[str, list[str]]:
  """'train.global_batch_size=8,16' -> ('train.global_batch_size', ['8', '16']); a leading
  'config.' is dropped.

  Raises:
    UserError: no '=', no field, no value or an empty one, or a field with its own flag
      (OWN_FLAGS).
  """
  field, eq, values = spec.partition("=")
  field = field.strip().removeprefix("config.")
  values = [v.strip() for v in values.split(",")]
  if not eq or not field or values == [""]:
    raise UserError(f"--axis={spec!r}: expected FIELD=V1,V2,... (e.g. "
                    "train.global_batch_size=16,32)")
  if "" in values:
    raise UserError(f"--axis={spec!r}: an empty value (two commas, or one at an end); give each "
                    "value once, separated by single commas")
  if field in OWN_FLAGS:
    raise UserError(f"--axis={spec!r}: {field} has its own flag, {OWN_FLAGS[field]}")
  return field, values


def axis_points(axes: list[tuple[str, list[str]]], zip_axes: bool = False):
  """The override tuples of the axes: their product (the first axis varies slowest), or with
  `zip_axes` the i-th values of every axis together (all axes must have as many values).

  Raises:
    UserError: two axes on one field, a value repeated in an axis (a point repeated when
      zipped), or zipped axes of different lengths.
  """
  fields = [f for f, _ in axes]
  repeated = sorted({f for f in fields if fields.count(f) > 1})
  if repeated:
    raise UserError(f"--axis: {repeated} given twice; give one --axis per field")
  if not axes:
    return [()]
  if zip_axes:
    lengths = {f: len(v) for f, v in axes}
    if len(set(lengths.values())) > 1:
      raise UserError(f"--zip: the axes have different numbers of values {lengths}")
    points = [tuple(zip(fields, values)) for values in zip(*(v for _, v in axes))]
    if len(set(points)) != len(points):
      raise UserError("--zip: a point (i-th values of every axis) is repeated")
    return points
  for field, values in axes:
    if len(set(values)) != len(values):
      raise UserError(f"--axis={field}=...: a value is repeated")
  return [tuple(zip(fields, values)) for values in itertools.product(*(v for _, v in axes))]


def draw_language_sets(pool: list[str], counts: list[int], draws: int,
                       seed: int) -> list[tuple[str, int]]:
  """For each count k, `draws` distinct random k-subsets of `pool` (all of them when there are
  fewer), as ('+'-joined codes in pool order, draw index); the draws of k depend only on
  (`seed`, k), so adding a count leaves the others' draws as they were.

  Raises:
    UserError: a count outside 1..len(pool), a repeated code, or draws < 1.
  """
  import numpy as np  # pylint: disable=import-outside-toplevel

  if len(set(pool)) != len(pool):
    raise UserError(f"--lang_pool={'+'.join(pool)}: a language is repeated")
  bad = [k for k in counts if not 1 <= k <= len(pool)]
  if bad:
    raise UserError(f"--lang_counts: {bad} not in 1..{len(pool)} (the size of --lang_pool)")
  if draws < 1:
    raise UserError(f"--lang_draws={draws}: must be >= 1")
  out = []
  for k in counts:
    rng = np.random.default_rng([seed, k])
    wanted = min(draws, math.comb(len(pool), k))
    subsets: list[tuple[int, ...]] = []
    while len(subsets) < wanted:
      subset = tuple(sorted(int(i) for i in rng.choice(len(pool), size=k, replace=False)))
      if subset not in subsets:
        subsets.append(subset)
    out += [("+".join(pool[i] for i in subset), d) for d, subset in enumerate(subsets)]
  return out


def grid(lang_sets, mono_probs, seeds=(None,), points=((),), drawn=False):
  """(runs, dropped): a `Run` for every language set x mono_prob x axis point x seed, and the
  names of the runs left out. `lang_sets` holds codes ('+'-joined, or 'xquad_r'), or with
  `drawn` (langs, draw index) pairs (`draw_language_sets`). A one-language set trains mono-only:
  a drawn one runs once with mono_prob 1, a given one drops its other mono_probs.

  Raises:
    UserError: two runs of other settings that get one name (`--axis` values such as 'x/y' and
      'x_y').
  """
  runs, dropped, names = [], [], {}
  for entry, p, point, seed in itertools.product(lang_sets, mono_probs, points, seeds):
    langs, draw = entry if drawn else (entry, None)
    single = langs != "xquad_r" and len(langs.split("+")) == 1
    if single and p != 1.0:
      if not drawn:
        dropped.append(run_name(langs, p, seed, point, draw))
        continue
      p = 1.0
    run = Run(run_name(langs, p, seed, point, draw), langs, p, seed, tuple(point), draw)
    if run.name not in names:
      names[run.name] = run
      runs.append(run)
    elif names[run.name] != run:
      raise UserError(_same_name(names[run.name], run))
  return runs, dropped


def _same_name(first: Run, second: Run) -> str:
  """The message for two runs of other settings that `run_name` names alike: the values that
  differ (e.g. --axis values 'x/y' and 'x_y': a name writes both 'x_y')."""
  differ = [(f"--axis={field}", a, b)
            for (field, a), (_, b) in zip(first.overrides, second.overrides) if a != b]
  if first.languages != second.languages:
    differ.append(("--lang_sets", first.languages, second.languages))
  if first.mono_prob != second.mono_prob:
    differ.append(("--mono_probs", first.mono_prob, second.mono_prob))
  values = "; ".join(f"{flag}: {a!r} and {b!r}" for flag, a, b in differ)
  return (f"{values} give one run name, {first.name} (a name keeps letters, digits and ._+-, "
          "any other character becomes '_'); give values that a name tells apart")


def main_command(run: Run, workdir: str) -> list[str]:
  """The training command of `run`: its config file, optionally with its own arguments
  ('configs/default.py:model=tiny'), which the run's langs and mono_prob join; its seed becomes
  `--config.seed`, its overrides `--config.FIELD=VALUE` after its `extra` flags."""
  separator = "," if ":" in run.config else ":"
  return [
      sys.executable, "-m", "hybrid_jax.main",
      f"--config={run.config}{separator}langs={run.languages},mono_prob={run.mono_prob:g}",
      f"--workdir={workdir}", *([f"--config.seed={run.seed}"] if run.seed is not None else []),
      *run.extra, *(f"--config.{field}={value}" for field, value in run.overrides)
  ]


def resolve_config(command: list[str]):
  """The validated ConfigDict `hybrid_jax.main` builds from `command`'s flags (a config file and
  its --config.* overrides).

  Raises:
    UserError: a flag or value the run would reject (one line, as `hybrid_jax.main` prints it).
  """
  from absl import flags  # pylint: disable=import-outside-toplevel
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel

  from hybrid_jax import config_lib  # pylint: disable=import-outside-toplevel

  argv = ["sweep"] + [a for a in command if a.startswith("--config")]
  values = flags.FlagValues()
  try:
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True,
                                    sys_argv=argv)
    values(argv)
  except Exception as e:  # pylint: disable=broad-except  (absl / ml_collections parse errors)
    raise UserError(cli.parse_error_message(e, argv)) from None
  return config_lib.validate(values.config)


def final_results_path(workdir: str, config) -> str | None:
  """Where the final evaluation's results.json goes (None without `data.eval`)."""
  from hybrid_jax import evaluators  # pylint: disable=import-outside-toplevel
  if not config.data.eval:
    return None
  return os.path.join(
      evaluators.output_dir_for(workdir, config.data.eval, config.train.num_steps), "results.json")


def is_finished(workdir: str, config) -> bool:
  """The final step (`config.train.num_steps`) was trained and evaluated: its results.json, or
  without `data.eval` its checkpoint and the exported model. A run stopped after a periodic
  evaluation is not finished."""
  results = final_results_path(workdir, config)
  if results is not None:
    return paths.path(results).exists()
  return (paths.path(paths.join(workdir, "checkpoints", str(config.train.num_steps))).exists()
          and paths.path(paths.join(workdir, "model", "config.json")).exists())


def check_distinct(runs: list[Run], configs: list) -> None:
  """Every run trains its own config: two runs whose flags resolve to one config (`--axis`
  values that parse to one value, '1e-4' and '0.0001') would be one training under two names.

  Raises:
    UserError: naming the two runs and the values that differ.
  """
  seen = {}
  for run, config in zip(runs, configs):
    key = config.to_json_best_effort(sort_keys=True)
    if key in seen:
      first = seen[key]
      differ = [
          f"--axis={field}: {a!r} and {b!r}"
          for (field, a), (_, b) in zip(first.overrides, run.overrides) if a != b
      ]
      values = f" ({'; '.join(differ)} give one config value)" if differ else ""
      raise UserError(f"runs {first.name} and {run.name} train the same config{values}; give "
                      "each setting once")
    seen[key] = run


# ----------------------------------------------------------------------------- cost estimate


def _eval_flops(config) -> float:
  """The final evaluation's encoder FLOPs on xquad_r:eval (0 for other data: not modelled)."""
  from hybrid_jax import config_lib, evaluators  # pylint: disable=import-outside-toplevel
  if not config.data.eval.startswith("xquad_r:eval"):
    return 0.0
  spec = evaluators.eval_languages(config)
  num = 11 if spec == "xquad_r" else len(config_lib.parse_languages(spec, where="eval"))
  forward = lambda n: cost_lib.encoder_forward_flops(
      config.model.hidden_size, config.model.intermediate_size, config.model.num_hidden_layers, n)
  queries, candidates = XQUAD_R_EVAL_PER_LANGUAGE
  return num * (
      queries * forward(config.data.query_max_len)
      + candidates * forward(config.data.passage_max_len))


def cost_model(directories: list[str]) -> dict:
  """The estimate's rates: from the cost records (`cost.json`) of the runs under `directories`
  where there are any (training FLOP/s, median start-up + compile + export + other seconds per
  run, evaluation FLOP/s from the records whose evaluation is modelled), else the assumed ones."""
  records = []
  for directory in directories:
    if os.path.isdir(directory):
      for name in sorted(os.listdir(directory)):
        record = cost_lib.read(os.path.join(directory, name))
        if record and record.get("train_step_flops") and record["wall_seconds"]["train"] > 0:
          records.append(record)
  if not records:
    return {
        "source":
            (f"FLOP model (hybrid_jax.cost) at an assumed {ASSUMED_FLOPS_PER_SECOND / 1e9:.0f} "
             f"GFLOP/s + {ASSUMED_STARTUP_SECONDS:.0f} s start-up per run (no cost records)"),
        "train_flops_per_second": ASSUMED_FLOPS_PER_SECOND,
        "eval_flops_per_second": ASSUMED_FLOPS_PER_SECOND, "fixed_seconds": ASSUMED_STARTUP_SECONDS
    }
  flops = sum(r["train_step_flops"] * r["steps_trained"] for r in records)
  seconds = sum(r["wall_seconds"]["train"] for r in records)
  fixed = statistics.median(
      sum(r["wall_seconds"][k] for k in ("startup", "compile", "export", "other")) for r in records)
  rate = flops / seconds
  return {
      "source": (f"{len(records)} cost record(s) under {', '.join(directories)}: "
                 f"{rate / 1e9:.0f} GFLOP/s training, {fixed:.0f} s start-up per run"),
      "train_flops_per_second": rate, "eval_flops_per_second": rate, "fixed_seconds": fixed
  }


def estimate_seconds(config, model: dict) -> float:
  """Start-up + training FLOPs / rate + evaluation FLOPs / rate of one run (`cost_model`)."""
  from hybrid_jax import train as train_lib  # pylint: disable=import-outside-toplevel
  flops = cost_lib.config_step_flops(config, train_lib.frozen_pattern(config))
  train = flops * config.train.num_steps
  return (model["fixed_seconds"] + train / model["train_flops_per_second"]
          + _eval_flops(config) / model["eval_flops_per_second"])


def _fmt_seconds(seconds: float) -> str:
  minutes = round(seconds / 60)
  return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{seconds / 60:.1f} min"


# ----------------------------------------------------------------------------- studies


def load_study(name: str) -> dict:
  """`launch/studies/<name>.py:get_study()`: {"sweep": {flag: value}, or "sweeps": [{flag:
  value}, ...] (several grids, run in order into one root), "summarize": {flag: value}}; a grid's
  flags are GRID_FLAGS.

  Raises:
    UserError: a name that is not a plain file name, no such study (the message lists those
      there are), one with neither or both of "sweep" and "sweeps", or a grid with a flag that is
      not one of GRID_FLAGS.
  """
  path = os.path.join(STUDIES_DIR, f"{name}.py")
  if not re.fullmatch(r"[A-Za-z0-9_]+", name) or not os.path.isfile(path):
    names = sorted(f[:-3] for f in os.listdir(STUDIES_DIR) if f.endswith(".py"))
    raise UserError(f"--study={name!r}: not a study; a study is the name of a file of "
                    f"{STUDIES_DIR} without .py, one of {names}")
  spec = importlib.util.spec_from_file_location(f"hybrid_jax_study_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  study = module.get_study()
  if ("sweep" in study) == ("sweeps" in study):
    raise UserError(f"--study={name}: {path} must give either \"sweep\" (one grid) or \"sweeps\" "
                    "(a list of grids)")
  for index, grid_flags in enumerate(study_grids(study), 1):
    unknown = sorted(set(grid_flags) - set(GRID_FLAGS))
    if unknown:
      raise UserError(f"--study={name}: grid {index} sets {unknown}, not grid flags; "
                      f"a grid sets {', '.join(GRID_FLAGS)}")
  return study


def study_grids(study: dict) -> list[dict]:
  """The grids of a study (`load_study`): its "sweeps", or its one "sweep" as a list of one."""
  return list(study["sweeps"]) if "sweeps" in study else [study["sweep"]]


def write_record(root: str, runs: list[Run], args) -> None:
  """`<root>/sweep.json`: the sweep's settings (its study, each grid's flags, the summarize
  settings) and every run it has listed with its config file and flags (runs of earlier
  invocations with other grids are kept; a run listed again is updated)."""
  path = paths.join(root, SWEEP_FILE)
  previous = {}
  if paths.path(path).exists():
    previous = {r["name"]: r for r in json.loads(paths.path(path).read_text()).get("runs", [])}
  previous.update({run.name: run.record() for run in runs})
  record = {
      "study": args.study,
      "grids": [{flag: getattr(grid_args, flag) for flag in GRID_FLAGS} for grid_args in args.grids],
      "summarize": args.summarize, "runs": list(previous.values())
  }
  paths.path(root).mkdir(parents=True, exist_ok=True)
  paths.write_text(path, json.dumps(record, indent=2) + "\n")


# ----------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--root", required=True, help="parent directory of the run workdirs")
  parser.add_argument("--study", default=None,
                      help="a study of launch/studies/ (its flags; given flags override them)")
  parser.add_argument(
      "--config", default="configs/default.py", help="config file, optionally with arguments, e.g. "
      "configs/default.py:model=tiny")
  parser.add_argument(
      "--lang_sets", default=None, help="comma-separated language sets, each '+'-joined (or "
      f"'xquad_r'; default {','.join(DEFAULT_LANG_SETS)}); not with --lang_counts")
  parser.add_argument(
      "--lang_counts", default="",
      help="comma-separated counts k: random k-subsets of --lang_pool instead of "
      "--lang_sets")
  parser.add_argument("--lang_pool", default="ar+de+en+es+hi+ru+th+tr+zh",
                      help="'+'-joined languages --lang_counts draws from")
  parser.add_argument("--lang_draws", type=int, default=3, help="subsets drawn per count")
  parser.add_argument("--seed", type=int, default=0, help="seed of the language draws")
  parser.add_argument("--mono_probs", default=",".join(f"{p:g}" for p in DEFAULT_MONO_PROBS))
  parser.add_argument(
      "--seeds", default="",
      help="comma-separated config seeds, one run each (names end in -seed<N>); "
      "default: the config's seed")
  parser.add_argument("--axis", action="append", default=[], metavar="FIELD=V1,V2,...",
                      help="a config field and its values (repeatable; product of the axes)")
  parser.add_argument("--zip", action="store_true",
                      help="pair the --axis values (i-th with i-th) instead of their product")
  parser.add_argument("--launcher", choices=("local", "tpu"), default="local")
  parser.add_argument("--tpu_args", default="", help="arguments for launch/tpu_vm.sh")
  parser.add_argument("--dry_run", action="store_true",
                      help="print the runs, their commands and estimated cost only")
  parser.add_argument(
      "--cost_from", default="",
      help="comma-separated sweep roots whose cost records calibrate the "
      "estimate (default: --root)")
  parser.add_argument("--keep_going", action="store_true", help="continue after a failed run")
  return parser


def parse_args(argv):
  """The sweep's flags, with `grids`: one namespace of GRID_FLAGS per grid (a study's grids, or
  the command line's one), the command line's flags overriding the study's in each (its
  `--axis` flags and the flags after `--` added to every grid's), and `summarize`: the study's
  summarize settings ({} without a study).

  Raises:
    UserError: a study that `load_study` rejects, a --cost_from directory that does not exist,
      or a bad grid flag (`_parse_grid`).
  """
  parser = _parser()
  args, _ = parser.parse_known_args(argv)
  grids, args.summarize = [{}], {}
  if args.study is not None:
    study = load_study(args.study)
    grids, args.summarize = study_grids(study), dict(study.get("summarize", {}))
  if args.cost_from:
    missing = [d for d in args.cost_from.split(",") if not os.path.isdir(d)]
    if missing:
      raise UserError(f"--cost_from: no directory {', '.join(missing)} (sweep roots whose runs' "
                      "cost.json calibrate the estimate)")
  args.grids = [_parse_grid(argv, settings) for settings in grids]
  return args


def _parse_grid(argv, settings: dict):
  """The flags of one grid: `settings` (a study's grid flags) as defaults under `argv`.

  Raises:
    UserError: --lang_sets with --lang_counts (a study's or given), or a list that does not parse.
  """
  parser = _parser()
  settings = dict(settings)
  study_extra = list(settings.pop("extra", []))
  parser.set_defaults(**settings)
  args, extra = parser.parse_known_args(argv)
  if extra and extra[0] == "--":
    extra = extra[1:]
  unknown = [e for e in extra if not e.startswith("--config.")]
  if unknown:
    raise UserError(f"unrecognised arguments {unknown} (extra main flags go after --, and only "
                    "--config.* overrides are passed on)")
  args.extra = study_extra + extra
  if args.lang_sets is not None and str(args.lang_counts):
    flags = [
        f"--{flag} ({'the study' if flag in settings and not _given(argv, flag) else 'given'})"
        for flag in ("lang_sets", "lang_counts")
    ]
    raise UserError(f"{' and '.join(flags)} exclude each other: the language sets are either "
                    "listed or drawn from --lang_pool")
  args.lang_sets = [s for s in (args.lang_sets or ",".join(DEFAULT_LANG_SETS)).split(",") if s]
  try:
    args.mono_probs = [float(p) for p in args.mono_probs.split(",") if p]
  except ValueError:
    raise UserError(f"--mono_probs={args.mono_probs!r}: expected comma-separated numbers") from None
  bad = [p for p in args.mono_probs if not 0.0 <= p <= 1.0]
  if bad:
    raise UserError(f"--mono_probs: {bad} not in [0, 1]")
  try:
    args.seeds = [int(s) for s in args.seeds.split(",") if s] or [None]
    args.lang_counts = [int(k) for k in str(args.lang_counts).split(",") if k]
  except ValueError:
    raise UserError(f"--seeds={args.seeds!r} / --lang_counts={args.lang_counts!r}: expected "
                    "comma-separated integers") from None
  args.lang_pool = [x for x in args.lang_pool.split("+") if x]
  return args


def _given(argv, flag: str) -> bool:
  """Whether `argv` (before its --) sets --`flag`."""
  own = argv[:argv.index("--")] if "--" in argv else argv
  return any(a == f"--{flag}" or a.startswith(f"--{flag}=") for a in own)


def plan(args) -> tuple[list[Run], list[str]]:
  """The sweep's runs, its grids' in order, and the names of those left out (`grid`).

  Raises:
    UserError: a bad axis or language count, an empty grid (with the reason), or a run name
      that two grids give.
  """
  runs, dropped, grid_of = [], [], {}
  for index, grid_args in enumerate(args.grids, 1):
    where = "the sweep" if len(args.grids) == 1 else f"grid {index} of the sweep"
    grid_runs, grid_dropped = _plan_grid(grid_args, where)
    for run in grid_runs:
      if run.name in grid_of:
        raise UserError(f"run {run.name}: given by grids {grid_of[run.name]} and {index}; a name "
                        "says a run's settings (not the flags after --): give each run once")
      grid_of[run.name] = index
    runs += grid_runs
    dropped += grid_dropped
  return runs, dropped


def _plan_grid(args, where: str) -> tuple[list[Run], list[str]]:
  """One grid's runs (with its config file and extra flags) and the names of those left out."""
  axes = [parse_axis(spec) for spec in args.axis]
  overridden = {e.split("=", 1)[0].removeprefix("--config.") for e in args.extra}
  clash = sorted(overridden & {f for f, _ in axes})
  if clash:
    raise UserError(f"--axis {clash}: also set by an extra --config.* flag; give it once")
  points = axis_points(axes, args.zip)
  if args.lang_counts:
    lang_sets = draw_language_sets(args.lang_pool, args.lang_counts, args.lang_draws, args.seed)
  else:
    lang_sets = args.lang_sets
  runs, dropped = grid(lang_sets, args.mono_probs, args.seeds, points, drawn=bool(args.lang_counts))
  if not runs:
    reason = (f" (one-language sets train mono-only: add 1 to --mono_probs; dropped "
              f"{', '.join(dropped)})" if dropped else "")
    raise UserError(f"{where} has no runs{reason}")
  stamped = [dataclasses.replace(r, config=args.config, extra=tuple(args.extra)) for r in runs]
  return stamped, dropped


def main(argv=None) -> int:
  try:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    runs, dropped = plan(args)
    if dropped:
      print(
          f"note: {len(dropped)} run(s) dropped, one-language sets train mono-only "
          f"(mono_prob 1): {', '.join(dropped)}", file=sys.stderr)
    root = args.root.rstrip("/")
    commands, configs = [], []
    for run in runs:
      command = main_command(run, f"{root}/{run.name}")
      try:
        configs.append(resolve_config(command))
      except UserError as e:
        raise UserError(f"run {run.name}: {e}") from None
      commands.append(command)
    check_distinct(runs, configs)
    if args.dry_run:
      return _dry_run(args, runs, commands, configs)
    if args.launcher == "local":
      write_record(root, runs, args)
  except UserError as e:
    cli.fail(str(e))
  failures = []
  for i, (run, command, config) in enumerate(zip(runs, commands, configs), 1):
    workdir = f"{root}/{run.name}"
    if args.launcher == "tpu":
      command = [
          "bash",
          os.path.join(REPO, "launch",
                       "tpu_vm.sh"), *shlex.split(args.tpu_args), f"--workdir={workdir}",
          *(["--dry-run"] if args.dry_run else []), "--", command[3], *command[5:]
      ]
    print(f"[{i}/{len(runs)}] {run.name}: {shlex.join(command)}", flush=True)
    if args.launcher == "local" and is_finished(workdir, config):
      print(
          f"  {run.name}: already trained and evaluated to step {config.train.num_steps}, "
          "skipped", flush=True)
      continue
    result = subprocess.run(command, cwd=REPO)
    if result.returncode:
      failures.append(run.name)
      print(f"  {run.name}: FAILED (exit {result.returncode})", flush=True)
      if not args.keep_going:
        break
  if failures:
    print(f"failed runs: {failures}", file=sys.stderr)
    return 1
  return 0


def _dry_run(args, runs, commands, configs) -> int:
  """Lists every run (command, state, estimated cost) and the total."""
  root = args.root.rstrip("/")
  model = cost_model([d for d in args.cost_from.split(",") if d] or [root])
  total = 0.0
  for i, (run, command, config) in enumerate(zip(runs, commands, configs), 1):
    workdir = f"{root}/{run.name}"
    if args.launcher == "tpu":
      command = [
          "bash",
          os.path.join(REPO, "launch", "tpu_vm.sh"), *shlex.split(args.tpu_args),
          f"--workdir={workdir}", "--dry-run", "--", command[3], *command[5:]
      ]
      print(f"[{i}/{len(runs)}] {run.name}: {shlex.join(command)}", flush=True)
      subprocess.run(command, cwd=REPO)
      continue
    record = cost_lib.read(workdir) if is_finished(workdir, config) else None
    if record is not None:
      seconds, state = record["wall_seconds"]["total"], "finished, measured"
    else:
      seconds, state = estimate_seconds(config, model), "estimated"
    total += seconds
    print(
        f"[{i}/{len(runs)}] {run.name}: {shlex.join(command)}  # {_fmt_seconds(seconds)} "
        f"{state}", flush=True)
  if args.launcher == "local":
    print(f"{len(runs)} runs, {_fmt_seconds(total)} in all; estimates from the {model['source']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
