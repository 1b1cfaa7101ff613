"""HybridBatchSampler at the paper's data scale: constructor, per-call time and memory.

Each case runs in a fresh subprocess, which builds the inputs (numpy, not timed), records its
resident set size (RSS), then times

  * the constructor plus the first `batch(10**6)` call,
  * `--calls` calls in sequence (steps 10**6 + 1, 10**6 + 2, ...), amortised per call,
  * the same number of calls at steps drawn uniformly from [0, 10**9), amortised per call,

and reports the RSS growth beyond the inputs: the peak RSS (VmHWM, reset after the inputs are
built via /proc/self/clear_refs) minus the RSS with the inputs in memory, and the RSS growth that
stays after the calls.

Inputs: `available` bool [n, L], either scattered (each language on 90% of the examples, at
least one per example: up to one availability pattern per example, as mixtures of partly
translated sources give) or fully parallel (every example in every language); passage keys int64
[n, L] with 10% of the cells drawing one of n/20 shared keys (so ~86% of those share their
passage with another example), the rest unique; global batch size B, mono_prob 0.5.

  PYTHONPATH=. python benchmarks/sampler_scale.py                      # the BENCHMARKS.md table
  PYTHONPATH=. python benchmarks/sampler_scale.py --cases new:1000000:9:1024
  PYTHONPATH=. python benchmarks/sampler_scale.py --cases old:100000:11:256 --calls 10
  PYTHONPATH=. python benchmarks/sampler_scale.py --cases=MANY_LANGUAGE_CASES   # 40 / 64 languages
  PYTHONPATH=. python benchmarks/sampler_scale.py --smoke   # new:2000:3:16, 5 calls (test suite)

A case is `sampler:examples:languages:batch[:scope[:availability]]`: sampler `new` is
hybrid_jax/sampler.py, `old` the sampler as first landed (commit 3777775), any other value a git
commit whose sampler is loaded (from `git show` into a temporary file; it needs this repository's
git history); scope `batch` (default) or `example` (`language_scope`); availability `scattered`
(default) or `full`.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from hybrid_jax import machine

OLD_COMMIT = "3777775"
DEFAULT_CASES = ("new:1000000:9:1024", "old:100000:11:256", "new:100000:11:256",
                 "new:40000000:7:1024")
# Beyond 40 languages (4,032 ordered pairs at 64), batch and example scope, both availabilities;
# 824282f is the sampler before pool layouts were built on demand (16 * P * L^2 bytes).
MANY_LANGUAGE_CASES = tuple(f"new:100000:{num_langs}:1024:{scope}:{availability}"
                            for num_langs in (40, 64) for availability in ("full", "scattered")
                            for scope in ("batch", "example")) + ("824282f:20000:64:1024",)
FIRST_STEP = 10**6


def _rss_kib(field: str = "VmRSS") -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  raise RuntimeError(f"no {field} in /proc/self/status")


def _load_sampler(which: str, workdir: str):
  """The HybridBatchSampler class: `new` from this checkout, `old` from commit OLD_COMMIT, else
  from the commit `which`."""
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if which == "new":
    path = os.path.join(here, "hybrid_jax", "sampler.py")
  else:
    commit = OLD_COMMIT if which == "old" else which
    path = os.path.join(workdir, "sampler_old.py")
    source = subprocess.run(["git", "show", f"{commit}:hybrid_jax/sampler.py"], cwd=here,
                            capture_output=True, text=True, check=True).stdout
    with open(path, "w") as f:
      f.write(source)
  spec = importlib.util.spec_from_file_location(f"sampler_{which}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.HybridBatchSampler


def make_inputs(num_examples: int, num_languages: int, seed: int = 0, chunk: int = 1 << 22,
                availability: str = "scattered"):
  """(available bool [n, L], passage_keys int64 [n, L]), built in chunks to bound the peak."""
  rng = np.random.default_rng(seed)
  available = np.empty((num_examples, num_languages), bool)
  keys = np.empty((num_examples, num_languages), np.int64)
  for start in range(0, num_examples, chunk):
    rows = slice(start, min(start + chunk, num_examples))
    n = rows.stop - rows.start
    part = rng.random((n, num_languages)) < (0.9 if availability == "scattered" else 2.0)
    part[~part.any(axis=1), 0] = True
    available[rows] = part
    shared = rng.random((n, num_languages)) < 0.1
    keys[rows] = np.arange(rows.start, rows.stop)[:, None] + num_examples
    keys[rows][shared] = rng.integers(0, num_examples // 20, int(shared.sum()))
  return available, keys


def run_case(which: str, num_examples: int, num_languages: int, batch_size: int, calls: int,
             scope: str = "batch", availability: str = "scattered") -> dict:
  """Measures one case in this process (see the module docstring); returns the figures."""
  with tempfile.TemporaryDirectory() as workdir:
    sampler_class = _load_sampler(which, workdir)
  available, keys = make_inputs(num_examples, num_languages, availability=availability)
  input_mib = (available.nbytes + keys.nbytes) / 2**20
  with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS
    f.write("5")
  rss_inputs = _rss_kib()
  languages = [f"l{j}" for j in range(num_languages)]
  start = time.perf_counter()
  sampler = sampler_class(available, languages, batch_size, 0.5, 0, passage_keys=keys,
                          language_scope=scope)
  constructor_s = time.perf_counter() - start
  sampler.batch(FIRST_STEP)
  first_s = time.perf_counter() - start
  start = time.perf_counter()
  for i in range(1, calls + 1):
    sampler.batch(FIRST_STEP + i)
  sequence_s = (time.perf_counter() - start) / calls
  steps = np.random.default_rng(1).integers(0, 10**9, calls).tolist()
  start = time.perf_counter()
  for step in steps:
    sampler.batch(step)
  random_s = (time.perf_counter() - start) / calls
  return {
      "sampler": which,
      "examples": num_examples,
      "languages": num_languages,
      "batch": batch_size,
      "scope": scope,
      "availability": availability,
      "calls": calls,
      "input_mib": round(input_mib, 1),
      "constructor_s": constructor_s,
      "constructor_and_first_call_s": first_s,
      "per_call_sequence_ms": sequence_s * 1e3,
      "per_call_random_ms": random_s * 1e3,
      "rss_peak_growth_mib": (_rss_kib("VmHWM") - rss_inputs) / 1024,
      "rss_growth_after_mib": (_rss_kib() - rss_inputs) / 1024,
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
      "--cases", default=",".join(DEFAULT_CASES),
      help="comma-separated sampler:examples:languages:batch[:scope[:availability]]"
      ", or MANY_LANGUAGE_CASES")
  parser.add_argument("--calls", type=int, default=1000,
                      help="calls timed in sequence and in random order (old sampler: 10)")
  parser.add_argument("--one", help=argparse.SUPPRESS)  # a single case, in a subprocess
  parser.add_argument(
      "--smoke", action="store_true",
      help="One small case of the new sampler (new:2000:3:16), 5 calls: the test "
      "suite's quick run (`old` needs the repository's history).")
  args = parser.parse_args(argv)
  if args.smoke:
    args.cases, args.calls = "new:2000:3:16", 5
  if args.one:
    which, n, num_langs, batch, *rest = args.one.split(":")
    calls = args.calls if which == "new" else min(args.calls, 10)
    print(json.dumps(run_case(which, int(n), int(num_langs), int(batch), calls, *rest)))
    return
  cases = MANY_LANGUAGE_CASES if args.cases == "MANY_LANGUAGE_CASES" else args.cases.split(",")
  print(f"machine: {machine.one_line()}; load average before: "
        f"{open('/proc/loadavg').read().strip()}")
  header = ("sampler", "examples x langs", "batch", "scope", "availability", "inputs MiB",
            "ctor+1st s", "seq ms/call", "random ms/call", "peak RSS +MiB", "RSS after +MiB")
  print(" | ".join(header))
  failed = []
  for case in cases:
    result = subprocess.run([sys.executable, __file__, "--one", case, "--calls",
                             str(args.calls)], capture_output=True, text=True)
    if result.returncode:
      failed.append(case)
      print(f"{case}: failed: {result.stderr.strip().splitlines()[-1:]}")
      continue
    r = json.loads(result.stdout)
    print(
        " | ".join([
            r["sampler"], f"{r['examples']:,} x {r['languages']}",
            str(r["batch"]), r["scope"], r["availability"], f"{r['input_mib']:.0f}",
            f"{r['constructor_and_first_call_s']:.3f}", f"{r['per_call_sequence_ms']:.3f}",
            f"{r['per_call_random_ms']:.3f}", f"{r['rss_peak_growth_mib']:.0f}",
            f"{r['rss_growth_after_mib']:.0f}"
        ]), flush=True)
  print(f"load average after: {open('/proc/loadavg').read().strip()}")
  if failed:
    raise SystemExit(f"failed cases: {', '.join(failed)}")


if __name__ == "__main__":
  main()
