"""A grid of hybrid-jax runs: language sets × mono_prob, one workdir per run.

  python launch/sweep.py --root=workdirs/sweep                      # the full grid, locally
  python launch/sweep.py --root=... --lang_sets=en+de,xquad_r --mono_probs=0,0.5,1 --dry_run
  python launch/sweep.py --root=gs://BUCKET/sweep --launcher=tpu \\
      --tpu_args="--name=hj --zone=us-central2-b --accelerator=v4-32"
  python launch/sweep.py --root=... -- --config.train.num_steps=100   # extra main flags
  python launch/sweep.py --root=... --lang_sets=ar+de+en --mono_probs=0,0.5,1 --seeds=0,1,2

Runs are sequential with `--launcher=local` (a failed run stops the sweep unless
--keep_going); a run whose workdir already holds a finished evaluation is skipped, and an
interrupted one resumes from its checkpoint, so re-running the sweep completes it. Then
`python launch/summarize.py --root=...` collects the results.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 2, 4, 8 and 11 languages of XQuAD-R, mixing scripts (Latin, Arabic, CJK, Devanagari, Thai...).
DEFAULT_LANG_SETS = ("en+de", "en+de+ar+zh", "en+de+ar+zh+es+ru+hi+th", "xquad_r")
DEFAULT_MONO_PROBS = (0.0, 0.25, 0.5, 0.75, 1.0)


def run_name(langs: str, mono_prob: float, seed: int | None = None) -> str:
  num = 11 if langs == "xquad_r" else len(langs.split("+"))
  name = f"L{num}-{langs.replace('+', '_')}-mono{mono_prob:g}"
  return name if seed is None else f"{name}-seed{seed}"


def grid(lang_sets, mono_probs, seeds=(None,)):
  """(name, langs, mono_prob, seed) for every run; mono_prob<1 needs two languages; seed None =
  the config's own seed (and no `-seed` suffix in the name)."""
  for langs, p, seed in itertools.product(lang_sets, mono_probs, seeds):
    if langs != "xquad_r" and len(langs.split("+")) == 1 and p != 1.0:
      continue
    yield run_name(langs, p, seed), langs, p, seed


def main_command(config: str, langs: str, mono_prob: float, workdir: str, extra,
                 seed: int | None = None) -> list[str]:
  """`config` is a config file, optionally with its own arguments ('configs/default.py:model=tiny');
  langs and mono_prob join them; `seed` becomes `--config.seed`."""
  separator = "," if ":" in config else ":"
  return [
      sys.executable, "-m", "hybrid_jax.main",
      f"--config={config}{separator}langs={langs},mono_prob={mono_prob:g}", f"--workdir={workdir}",
      *([f"--config.seed={seed}"] if seed is not None else []), *extra
  ]


def is_finished(workdir: str) -> bool:
  """A local run whose final evaluation was written (results.json under eval/)."""
  for root, _, files in os.walk(os.path.join(workdir, "eval")):
    if "results.json" in files:
      return True
  return False


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--root", required=True, help="parent directory of the run workdirs")
  parser.add_argument(
      "--config", default="configs/default.py", help="config file, optionally with arguments, e.g. "
      "configs/default.py:model=tiny")
  parser.add_argument("--lang_sets", default=",".join(DEFAULT_LANG_SETS),
                      help="comma-separated language sets, each '+'-joined (or 'xquad_r')")
  parser.add_argument("--mono_probs", default=",".join(f"{p:g}" for p in DEFAULT_MONO_PROBS))
  parser.add_argument(
      "--seeds", default="",
      help="comma-separated config seeds, one run each (names end in -seed<N>); "
      "default: the config's seed")
  parser.add_argument("--launcher", choices=("local", "tpu"), default="local")
  parser.add_argument("--tpu_args", default="", help="arguments for launch/tpu_vm.sh")
  parser.add_argument("--dry_run", action="store_true", help="print the commands only")
  parser.add_argument("--keep_going", action="store_true", help="continue after a failed run")
  args, extra = parser.parse_known_args(argv)
  if extra and extra[0] == "--":
    extra = extra[1:]
  unknown = [e for e in extra if not e.startswith("--config.")]
  if unknown:
    parser.error(f"unrecognised arguments {unknown} (extra main flags go after --, and only "
                 "--config.* overrides are passed on)")
  args.extra = extra
  args.lang_sets = [s for s in args.lang_sets.split(",") if s]
  try:
    args.mono_probs = [float(p) for p in args.mono_probs.split(",") if p]
  except ValueError:
    parser.error(f"--mono_probs={args.mono_probs!r}: expected comma-separated numbers")
  bad = [p for p in args.mono_probs if not 0.0 <= p <= 1.0]
  if bad:
    parser.error(f"--mono_probs: {bad} not in [0, 1]")
  try:
    args.seeds = [int(s) for s in args.seeds.split(",") if s] or [None]
  except ValueError:
    parser.error(f"--seeds={args.seeds!r}: expected comma-separated integers")
  return args


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  failures = []
  runs = list(grid(args.lang_sets, args.mono_probs, args.seeds))
  for i, (name, langs, p, seed) in enumerate(runs, 1):
    workdir = f"{args.root.rstrip('/')}/{name}"
    command = main_command(args.config, langs, p, workdir, args.extra, seed)
    if args.launcher == "tpu":
      command = [
          "bash",
          os.path.join(REPO, "launch",
                       "tpu_vm.sh"), *shlex.split(args.tpu_args), f"--workdir={workdir}",
          *(["--dry-run"] if args.dry_run else []), "--", command[3], *command[5:]
      ]
    print(f"[{i}/{len(runs)}] {name}: {shlex.join(command)}", flush=True)
    if args.dry_run and args.launcher == "local":
      continue
    if args.launcher == "local" and is_finished(workdir):
      print(f"  {name}: already evaluated, skipped", flush=True)
      continue
    result = subprocess.run(command, cwd=REPO)
    if result.returncode:
      failures.append(name)
      print(f"  {name}: FAILED (exit {result.returncode})", flush=True)
      if not args.keep_going:
        break
  if failures:
    print(f"failed runs: {failures}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
