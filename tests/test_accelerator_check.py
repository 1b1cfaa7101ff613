"""benchmarks/accelerator_check.py: its batch search against brute force, and its --smoke run on
CPU (the same code paths a GPU/TPU lease runs, on tiny shapes), so the script cannot rot."""

import importlib.util
import json
import os
import time

import pytest

from hybrid_jax.models import config as model_config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_script():
  path = os.path.join(REPO, "benchmarks", "accelerator_check.py")
  spec = importlib.util.spec_from_file_location("accelerator_check", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("threshold,start,granularity,max_batch", [(1000, 64, 64, 16384),
                                                                   (63, 64, 8, 4096),
                                                                   (64, 64, 64, 4096),
                                                                   (5000, 256, 64, 4096),
                                                                   (0, 64, 64, 4096),
                                                                   (777, 16, 16, 100000),
                                                                   (130, 256, 1, 4096)])
def test_search_largest_finds_the_largest_fitting_multiple(threshold, start, granularity,
                                                           max_batch):
  script = _load_script()
  fits = lambda size: (size <= threshold, 10 * size)
  found = script.search_largest(fits, start, granularity, max_batch, time.perf_counter() + 60)
  # Brute force over the sizes the search may answer with: multiples of granularity, powers of
  # two times start, start halved.
  candidates = {start * 2**k for k in range(20) if start * 2**k <= max_batch}
  candidates |= {start // 2**k for k in range(1, 20) if start // 2**k >= granularity}
  fitting = [c for c in candidates if c <= threshold]
  if not fitting:
    assert found["fits"] is None
    return
  assert found["fits"] is not None and found["fits"] <= threshold
  assert found["bytes_at_fits"] == 10 * found["fits"]
  if found["fails"] is None:  # everything probed fitted: the search reached max_batch
    assert found["fits"] * 2 > max_batch
  else:
    assert found["fails"] > threshold
    assert found["fails"] - found["fits"] <= granularity  # bisected down to the granularity
  assert not found["stopped_early"]
  assert all(p["fits"] == (p["global_batch_size"] <= threshold) for p in found["probes"])


def test_search_stops_at_the_deadline():
  script = _load_script()
  found = script.search_largest(lambda size: (True, None), 64, 64, 10**9, time.perf_counter())
  assert found["stopped_early"] and found["fits"] is None and found["probes"] == []


def test_peak_table():
  script = _load_script()
  assert script.peak_tflops("NVIDIA H200") == 989.0
  assert script.peak_tflops("TPU v4") == 275.0
  assert script.peak_tflops("cpu") is None


def test_smoke_run_on_cpu(tmp_path):
  script = _load_script()
  out = tmp_path / "check.json"
  # A memory limit between the compiled sizes of batch 8 and 16 forces the bisection path.
  args = script.parse_args(["--smoke", f"--out={out}", "--memory_limit_bytes=5900000"])
  script.main(["--smoke", f"--out={out}", "--memory_limit_bytes=5900000"])
  figures = json.loads(out.read_text())
  assert figures["device"]["platform"] == "cpu" and figures["device"]["peak_bf16_tflops"] is None
  assert figures["model"]["dtype"] == "float32"
  (row,) = figures["train_step"]
  assert row["seq_len"] == 16 and row["step_seconds"] > 0 and row["mfu"] is None
  flops = script.flops.step_flops(
      script.flops.Shape("smoke", vocab_size=1000, hidden_size=64, num_layers=2,
                         intermediate_size=128), args.query_len, 16, args.batch_size)["total"]
  assert row["flops_per_step"] == flops
  assert row["achieved_tflops"] == pytest.approx(flops / row["step_seconds"] / 1e12)
  plain = figures["max_global_batch"]["plain"]
  assert plain["bytes_at_fits"] <= 5900000
  failed = [p for p in plain["probes"] if not p["fits"]]
  assert failed and all(p["bytes"] > 5900000 for p in failed)
  assert plain["fails"] - plain["fits"] <= args.batch_granularity and plain["confirmed"]
  cache = figures["max_global_batch"]["grad_cache"]
  assert cache["chunk_size"] == 4 and cache["fits"] % 4 == 0 and cache["confirmed"]
  (evaluation,) = figures["eval"]
  assert evaluation["sequences_per_second"] > 0


def test_auto_dtype_is_bfloat16_on_accelerators_only():
  assert model_config_lib.default_compute_dtype("cpu") == "float32"
  assert model_config_lib.default_compute_dtype("gpu") == "bfloat16"
  assert model_config_lib.default_compute_dtype("tpu") == "bfloat16"
  config = model_config_lib.EncoderConfig.from_model_config(model_config_lib.model_config())
  assert config.dtype == "float32"  # the tests run on CPU
  assert model_config_lib.model_config().dtype == "auto"
