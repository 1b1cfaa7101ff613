"""benchmarks/input_pipeline.py --smoke: every phase (make, prepare, tokenize, measure,
throughput) runs on tiny shapes and reports its figures, the stored ids and the texts with 0 and
1 worker processes."""

import importlib.util
import os

from tiny_run import REPO


def _load_script():
  path = os.path.join(REPO, "benchmarks", "input_pipeline.py")
  spec = importlib.util.spec_from_file_location("input_pipeline_benchmark", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_smoke_run():
  figures = _load_script().main(["--smoke"])
  assert figures["make"]["records"] == 60 * 9
  assert figures["prepare"]["examples"] == 60
  assert figures["tokenize"]["records"] == 60 * 9
  assert 0 < figures["tokenize"]["token_ids_bytes_on_disk"]
  assert figures["measure"]["builder_examples_per_second"] > 0
  rows = figures["throughput"]["throughput"]
  assert [(r["mode"], r["workers"]) for r in rows] == [("texts", 0), ("texts", 1), ("stored", 0),
                                                       ("stored", 1)]
  assert all(r["examples_per_second"] > 0 and r["examples_per_cpu_second"] > 0 for r in rows)
  assert "cores" in figures["throughput"]["machine"]
