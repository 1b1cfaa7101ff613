"""benchmarks/accelerator_check.py: its batch search against brute force, its peak table and the
compute dtype it picks. Its --smoke run on CPU (the same code paths a GPU/TPU lease runs, on tiny
shapes) and the figures of that run are checked in tests/test_benchmarks.py."""

import importlib.util
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


def test_auto_dtype_is_bfloat16_on_accelerators_only():
  assert model_config_lib.default_compute_dtype("cpu") == "float32"
  assert model_config_lib.default_compute_dtype("gpu") == "bfloat16"
  assert model_config_lib.default_compute_dtype("tpu") == "bfloat16"
  config = model_config_lib.EncoderConfig.from_model_config(model_config_lib.model_config())
  assert config.dtype == "float32"  # the tests run on CPU
  assert model_config_lib.model_config().dtype == "auto"
