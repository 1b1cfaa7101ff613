"""launch/: the sweep grid (dry run and a real 2-run grid), summarize, and the shell launchers'
dry runs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tiny_run import REPO

sys.path.insert(0, os.path.join(REPO, "launch"))
import summarize  # noqa: E402
import sweep  # noqa: E402


def _sh(*args):
  return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_full_grid_dry_run_prints_every_run():
  proc = _sh(sys.executable, "launch/sweep.py", "--root=/tmp/never-written", "--dry_run")
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.strip().splitlines()
  assert len(lines) == 4 * 5  # language sets of 2, 4, 8, 11 × mono_prob 0 .. 1
  names = [line.split(":")[0].split("] ")[1] for line in lines]
  assert len(set(names)) == 20 and "L11-xquad_r-mono0.25" in names
  assert all("hybrid_jax.main" in line for line in lines)
  assert "langs=en+de+ar+zh,mono_prob=0.75" in proc.stdout
  assert not os.path.exists("/tmp/never-written")


def test_grid_skips_impossible_runs_and_checks_arguments():
  assert [n for n, *_ in sweep.grid(["en", "en+de"], [0.0, 1.0])
         ] == ["L1-en-mono1", "L2-en_de-mono0", "L2-en_de-mono1"]
  # Seeds: one run each, named and passed on as --config.seed.
  runs = list(sweep.grid(["en+de"], [0.5], [0, 3]))
  assert [(n, s) for n, _, _, s in runs] == [("L2-en_de-mono0.5-seed0", 0),
                                             ("L2-en_de-mono0.5-seed3", 3)]
  assert "--config.seed=3" in sweep.main_command("configs/default.py", "en+de", 0.5, "/w", [], 3)
  proc = _sh(sys.executable, "launch/sweep.py", "--root=/tmp/x", "--seeds=0,a")
  assert proc.returncode != 0 and "--seeds" in proc.stderr
  proc = _sh(sys.executable, "launch/sweep.py", "--root=/tmp/x", "--mono_probs=0,2")
  assert proc.returncode != 0 and "not in [0, 1]" in proc.stderr
  # A config file with its own arguments: the run's langs / mono_prob join them.
  assert sweep.main_command(
      "configs/default.py:model=tiny", "en+de", 0.5, "/w",
      [])[3] == ("--config=configs/default.py:model=tiny,langs=en+de,mono_prob=0.5")
  assert sweep.main_command("configs/default.py", "en", 1.0, "/w",
                            [])[3] == ("--config=configs/default.py:langs=en,mono_prob=1")
  proc = _sh(sys.executable, "launch/sweep.py", "--root=/tmp/x", "--", "--typo=1")
  assert proc.returncode != 0 and "--typo=1" in proc.stderr


def test_tpu_sweep_dry_run_prints_gcloud_commands():
  proc = _sh(sys.executable, "launch/sweep.py", "--root=gs://bucket/sweep", "--launcher=tpu",
             "--tpu_args=--name=hj --zone=us-central2-b --accelerator=v4-32", "--lang_sets=en+de",
             "--mono_probs=0.5", "--seeds=7", "--dry_run")
  assert proc.returncode == 0, proc.stderr
  out = proc.stdout
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


@pytest.mark.xdist_group("tiny_sweep")  # one worker makes the shared sweep
def test_real_two_run_grid_and_summary(tiny_sweep, tmp_path):
  root, runs = tiny_sweep
  assert sorted(runs) == ["L2-en_de-mono0.5", "L2-en_de-mono1"]
  for workdir in runs.values():
    assert sweep.is_finished(workdir)
    with open(os.path.join(workdir, "config.json")) as f:
      assert json.load(f)["data"]["languages"] == "en+de"
  assert summarize.main([f"--root={root}", f"--out={tmp_path}"]) == 0
  rows = json.load(open(tmp_path / "summary.json"))["runs"]
  assert {r["mono_prob"] for r in rows} == {0.5, 1.0}
  for r in rows:
    assert r["num_languages"] == 2 and r["step"] == 4
    assert 0.0 <= r["map_cross"] <= 1.0 and 0.0 <= r["map_multi_mean"] <= 1.0
  table = (tmp_path / "summary.md").read_text()
  assert table.count("\n") == 2 + 2 and "L2-en_de-mono0.5" in table
  assert (tmp_path / "tradeoff.png").stat().st_size > 10_000
  # Re-running the sweep skips finished runs.
  proc = _sh(sys.executable, "launch/sweep.py", f"--root={root}", "--lang_sets=en+de",
             "--mono_probs=1,0.5", "--config=configs/default.py:model=tiny")
  assert proc.stdout.count("already evaluated, skipped") == 2


def _fake_run(root, name, seed, mono_prob, metrics):
  """A run directory as summarize reads it: config.json and one results.json."""
  leaf = root / name / "eval" / "xquad_r_eval" / "step_80"
  leaf.mkdir(parents=True)
  (root / name / "config.json").write_text(
      json.dumps({
          "seed": seed, "data": {"languages": "ar+de+en"}, "sampler": {"mono_prob": mono_prob}
      }))
  (leaf / "results.json").write_text(json.dumps({"dataset": "xquad_r:eval", "metrics": metrics}))


def test_summary_over_seeds_is_mean_and_sample_std(tmp_path):
  rng = np.random.default_rng(0)
  values = rng.uniform(size=(3, 4))  # seeds x (mono, cross, zero-shot multi, max-min rank)
  for seed, (mono, cross, zs_multi, rank_range) in enumerate(values):
    _fake_run(
        tmp_path, f"hybrid-seed{seed}", seed, 0.5, {
            "map_mono": mono, "map_cross": cross, "map_multi_mean": 0.3,
            "rank_range_mean": rank_range, "groups": {
                "trained": {"zero-shot": {"languages": ["de"], "map_multi_mean": zs_multi}},
                "resource_class": {"5": {"languages": ["ar", "de", "en"], "map_mono": mono}}
            }
        })
  _fake_run(tmp_path, "mono-seed0", 0, 1.0,
            {"map_mono": 0.9, "map_cross": 0.1, "map_multi_mean": 0.2})
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
  assert "Mean ± sample std over seeds" in table
  assert f"{values[:, 0].mean():.3f} ± {values[:, 0].std(ddof=1):.3f}" in table
  assert "zero-shot multi" in table and "R@1" not in table  # columns no run has are left out
  assert "class 5 mono" not in table  # only --groups' groupings (default: trained)
  assert summarize.main([f"--root={tmp_path}", f"--out={out}", "--groups=resource_class"]) == 0
  table = (out / "summary.md").read_text()
  assert "class 5 mono" in table and "zero-shot multi" not in table
  hybrid = min(json.load(open(out / "summary.json"))["settings"], key=lambda r: r["mono_prob"])
  np.testing.assert_allclose(hybrid["resource_class/5/map_mono"], values[:, 0].mean(), rtol=1e-12)


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
        json.dumps({"seed": seed, "data": {"languages": "en+de"}, "sampler": {"mono_prob": 0.5}}))
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
