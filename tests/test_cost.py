"""hybrid_jax.cost: phase timing, the FLOP model against XLA's count and a count by hand (full,
LoRA, language adapters), its Linear layers against the model's, the per-device scaling of XLA's
count, merging a resumed run's sessions, process start and peak RSS against independent readings.
(A real run's record: tests/test_launch.py::test_cost_record_of_a_tiny_run; the FLOP model
against XLA's count of the tiny model's full and LoRA train steps: benchmarks/lora_step_flops.py
--smoke, checked in tests/test_benchmarks.py.)"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import psutil
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from hybrid_jax import config_lib
from hybrid_jax import cost
from hybrid_jax import train
from hybrid_jax.models.config import LORA_DEFAULT_TARGETS


def test_phases_charge_the_innermost_phase(monkeypatch):
  clock = [100.0]
  monkeypatch.setattr(cost.time, "perf_counter", lambda: clock[0])
  meter = cost.CostMeter(start_time=time.time())
  with meter.phase("train"):
    clock[0] += 5
    with meter.phase("compile"):
      clock[0] += 2
    clock[0] += 1
    with meter.phase("eval"):
      clock[0] += 3
    with meter.phase("eval"):
      clock[0] += 4
  with meter.phase("export"):
    clock[0] += 0.5
  assert meter.seconds == {"startup": 0.0, "compile": 2, "train": 6, "eval": 7, "export": 0.5}
  with pytest.raises(ValueError, match="unknown phase"):
    with meter.phase("lunch"):
      pass


def _one_layer_matmuls(x, w):
  """Exactly the matmuls `encoder_forward_flops` counts for one layer: Q, K, V, O, scores,
  weighted sum, feed-forward in and out."""
  q, k, v = x @ w["q"], x @ w["k"], x @ w["v"]
  scores = q @ k.T
  h = (scores @ v) @ w["o"]
  return (h @ w["ff_in"]) @ w["ff_out"]


def test_flop_model_equals_xla_count_of_the_same_matmuls():
  s, h, i = 24, 32, 64
  rng = np.random.default_rng(0)
  w = {
      name: jnp.asarray(rng.normal(size=shape), jnp.float32)
      for name, shape in (("q", (h, h)), ("k", (h, h)), ("v", (h, h)), ("o", (h, h)),
                          ("ff_in", (h, i)), ("ff_out", (i, h)))
  }
  x = jnp.ones((s, h), jnp.float32)
  compiled = jax.jit(_one_layer_matmuls).lower(x, w).compile()
  assert cost.compiled_flops(compiled) == cost.encoder_forward_flops(h, i, 1, s)
  # The step: queries and passages, 3 (4 with the gradient cache) passes when everything trains,
  # and the B x B logits.
  model = dict(hidden_size=h, intermediate_size=i, num_hidden_layers=2)
  parts = cost.step_flops(model, 8, 16, 4)
  assert parts["queries"] == 3 * 4 * cost.encoder_forward_flops(h, i, 2, 8)
  assert parts["loss"] == 3 * 2 * 4 * 4 * h
  assert cost.step_flops(
      model, 8, 16, 4,
      grad_cache=True)["passages"] == 4 * 4 * cost.encoder_forward_flops(h, i, 2, 16)


@pytest.mark.parametrize("fields", [
    dict(),
    dict(shared_tower=False, projection_dim=24),
    dict(pooling="pooler", projection_dim=16)
])
def test_the_flop_models_linear_layers_are_the_models(fields):
  """`cost.linear_layers` (from the config alone) lists the Linear layers of the model built from
  the same config, with their shapes: the FLOP model counts what the model computes."""
  from hybrid_jax.models import create_model
  from hybrid_jax.models import lora
  from hybrid_jax.models.config import model_config

  config = model_config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=48, vocab_size=100, **fields)
  built = {
      path: (layer.in_features, layer.out_features)
      for path, layer in lora.linear_paths(create_model(config, seed=0)).items()
  }
  assert cost.linear_layers(config) == built


def test_frozen_kernels_cost_no_weight_gradient_and_adapters_add_theirs():
  """The FLOP model of a LoRA step against a count by hand: a 1-layer model whose base is frozen
  (as `train.frozen_pattern` freezes it) and whose 6 kernels carry rank-r adapters (the default
  targets)."""
  h, i, r, s, b = 32, 64, 4, 8, 2
  model = dict(hidden_size=h, intermediate_size=i, num_hidden_layers=1,
               lora=dict(rank=r, targets=LORA_DEFAULT_TARGETS, per_language=False))
  config = config_lib.default_config("model=tiny")
  config.model.lora.rank = r
  frozen = train.frozen_pattern(config)  # every base parameter
  t = b * s
  kernels = [(h, h)] * 4 + [(h, i), (i, h)]
  base = sum(2 * t * n_in * n_out for n_in, n_out in kernels)
  adapters = sum(2 * t * r * (n_in + n_out) for n_in, n_out in kernels)
  attention = 2 * 2 * b * s * s * h
  # Kernels (the shared adapters merged into them): forward, plus the input gradient except for
  # Q, K, V of the first layer (nothing below them trains). Merged adapters: x A, dy B^T and the
  # A, B gradients. Attention: 3 x forward (its inputs' adapters train).
  no_input_gradient = sum(2 * t * h * h for _ in range(3))
  no_input_gradient_a = sum(2 * t * h * r for _ in range(3))
  expected = 2 * base - no_input_gradient + 2 * adapters + 3 * attention
  parts = cost.step_flops(model, s, s, b, frozen=frozen)
  assert parts["queries"] == expected
  # Separate adapter products (LoRA dropout; a row's language adapter): forward, their A, B
  # gradients, and the input gradient through A where needed.
  separate = 3 * adapters - no_input_gradient_a
  with_dropout = dict(model, lora=dict(model["lora"], dropout=0.1))
  assert cost.step_flops(with_dropout, s, s, b, frozen=frozen)["queries"] == (
      expected - 2 * adapters + separate)
  per_language = dict(model, lora=dict(model["lora"], per_language=True))
  assert cost.step_flops(per_language, s, s, b, frozen=frozen)["queries"] == expected + separate
  # Full fine-tuning of the same model, embeddings included: 3 x forward.
  assert cost.step_flops(dict(model, lora={}), s, s, b)["queries"] == 3 * (base + attention)


def test_step_flops_are_per_device_count_times_devices():
  """XLA's cost analysis counts one device's share of a sharded program: the record multiplies
  by the devices and so gives the whole batch's matmul, 2 M K N."""
  mesh = jax.make_mesh((8,), ("data",))
  x = jax.device_put(jnp.ones((64, 128)), NamedSharding(mesh, P("data")))
  w = jnp.ones((128, 256))
  compiled = jax.jit(lambda x, w: x @ w).lower(x, w).compile()
  assert cost.compiled_flops(compiled) == 2 * 8 * 128 * 256  # one device's 8 rows
  meter = cost.CostMeter()
  meter.record_train_step(compiled, num_devices=8, analytic_flops=1.0, loops_over_batch=False,
                          parameters={})
  assert meter._facts["train_step_flops"] == 2 * 64 * 128 * 256
  assert meter._facts["train_step_flops_source"] == "xla"
  meter.record_train_step(compiled, num_devices=8, analytic_flops=7.0, loops_over_batch=True,
                          parameters={})
  assert meter._facts["train_step_flops"] == 7.0
  assert meter._facts["train_step_flops_source"] == "model"
  assert meter._facts["train_step_flops_xla"] == 2 * 64 * 128 * 256


def _session(total, train, steps, rss, step_flops=None):
  return {
      "wall_seconds": {"startup": 1.0, "train": train,
                       "total": total}, "steps_trained": steps, "examples_trained": 4 * steps,
      "num_steps": 10, "peak_rss_bytes": rss, "train_step_flops": step_flops
  }


def test_a_resumed_run_sums_its_sessions(tmp_path):
  first = cost.merge(None, _session(10.0, 6.0, 6, 500, step_flops=3.0))
  assert first["train_flops"] == 30.0 and first["examples_per_second"] == 24 / 6.0
  # The second session (3 steps left... here 4) and a third that trained nothing (re-run).
  second = cost.merge(first, _session(8.0, 2.0, 4, 700, step_flops=3.0))
  third = cost.merge(second, _session(3.0, 0.0, 0, 600))
  assert third["wall_seconds"] == {"startup": 3.0, "train": 8.0, "total": 21.0}
  assert third["steps_trained"] == 10 and third["examples_trained"] == 40
  assert third["examples_per_second"] == 40 / 8.0
  assert third["peak_rss_bytes"] == 700
  assert third["train_step_flops"] == 3.0 and third["train_flops"] == 30.0
  assert len(third["sessions"]) == 3
  assert "sessions" not in third["sessions"][0]
  assert cost.headline(third)["total_seconds"] == 21.0


def test_process_start_and_peak_rss_agree_with_independent_readings():
  assert cost.process_start_time() == pytest.approx(psutil.Process().create_time(), abs=0.05)
  with open("/proc/self/status") as f:
    hwm_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
  assert cost.peak_rss_bytes() == pytest.approx(hwm_kib * 1024, abs=2**20)


def test_the_record_has_the_last_checkpoints_size_beside_all_kept(tmp_path):
  """checkpoint_bytes counts every kept checkpoint; last_checkpoint_bytes the newest step's alone
  (not one set aside, nor orbax's temporary directory of a save in progress)."""
  sizes = {"2": 300, "10": 500, "4": 700, "12.orbax-checkpoint-tmp-1": 900, "8.corrupt-17": 1100}
  for name, size in sizes.items():
    (tmp_path / "checkpoints" / name / "state").mkdir(parents=True)
    (tmp_path / "checkpoints" / name / "state" / "data").write_bytes(b"x" * size)
  (tmp_path / "checkpoints" / "10" / "manifest.json").write_bytes(b"y" * 20)
  record = cost.CostMeter().finish(
      str(tmp_path), steps_trained=10, num_steps=10, global_batch_size=4)
  assert record["checkpoint_bytes"] == sum(sizes.values()) + 20
  assert record["last_checkpoint_bytes"] == 520
  assert cost.headline(record)["last_checkpoint_bytes"] == 520.0
  assert cost.last_checkpoint_bytes(str(tmp_path / "nowhere")) == 0
