"""Every script in benchmarks/ runs in its `--smoke` mode (tiny shapes, one round, seconds), so an
API change breaks this test instead of a benchmark, and the scripts that time something name the
machine (`hybrid_jax.machine.one_line`) with their results.

The scripts are found by listing benchmarks/*.py: each one runs in this process (its compiled
programs and imports shared with the suite) through its `main(argv)` with `--smoke`; a new script
without a `main(argv)` or a `--smoke` flag (argparse: "unrecognized arguments") fails here.
"""

import glob
import importlib.util
import json
import os

import pytest

from hybrid_jax import machine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "benchmarks", "*.py")))
# Scripts whose figures do not depend on the machine they run on: they need not name it.
NOT_TIMED = {
    "flops.py": "on-paper FLOPs and roofline estimates for accelerators",
    "fsdp_param_bytes.py": "bytes of abstract shapes",
}
# A memory limit between the compiled sizes of accelerator_check's smoke step at batch 8 and 16:
# its batch search takes the bisection path.
ACCELERATOR_MEMORY_LIMIT = 5900000


def load_script(name: str):
  """benchmarks/`name` as a module (its `__main__` block not run)."""
  path = os.path.join(REPO, "benchmarks", name)
  spec = importlib.util.spec_from_file_location(f"benchmark_{name[:-3]}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def smoke_flags(name: str, tmp_path) -> list[str]:
  """The command line of `name`'s smoke run: --smoke, and what a script also needs."""
  extra = {
      "accelerator_check.py": [
          f"--out={tmp_path / 'check.json'}", f"--memory_limit_bytes={ACCELERATOR_MEMORY_LIMIT}"
      ],
      "input_pipeline.py": ["all", f"--out={tmp_path / 'input.json'}"],
      "lora_step_flops.py": [f"--out={tmp_path / 'lora_flops.json'}"],
  }
  return [*extra.get(name, []), "--smoke"]


def check_accelerator_check(module, tmp_path, argv):
  """The figures of accelerator_check's smoke run: the FLOP count, the bisection, the gradient-cache
  search, evaluation throughput."""
  args = module.parse_args(argv)
  figures = json.loads((tmp_path / "check.json").read_text())
  assert figures["machine"] == machine.one_line()
  assert figures["device"]["platform"] == "cpu" and figures["device"]["peak_bf16_tflops"] is None
  assert figures["model"]["dtype"] == "float32"
  (row,) = figures["train_step"]
  assert row["seq_len"] == 16 and row["step_seconds"] > 0 and row["mfu"] is None
  flops = module.flops.step_flops(
      module.flops.Shape("smoke", vocab_size=1000, hidden_size=64, num_layers=2,
                         intermediate_size=128), args.query_len, 16, args.batch_size)["total"]
  assert row["flops_per_step"] == flops
  assert row["achieved_tflops"] == pytest.approx(flops / row["step_seconds"] / 1e12)
  plain = figures["max_global_batch"]["plain"]
  assert plain["bytes_at_fits"] <= ACCELERATOR_MEMORY_LIMIT
  failed = [p for p in plain["probes"] if not p["fits"]]
  assert failed and all(p["bytes"] > ACCELERATOR_MEMORY_LIMIT for p in failed)
  assert plain["fails"] - plain["fits"] <= args.batch_granularity and plain["confirmed"]
  cache = figures["max_global_batch"]["grad_cache"]
  assert cache["chunk_size"] == 8 and cache["fits"] % 8 == 0 and cache["confirmed"]
  (evaluation,) = figures["eval"]
  assert evaluation["sequences_per_second"] > 0


def check_input_pipeline(module, tmp_path, argv):
  """The figures of input_pipeline's smoke run: every phase, the stored token ids on disk, and
  examples/s for texts and stored ids."""
  del module, argv
  figures = json.loads((tmp_path / "input.json").read_text())
  assert figures["make"]["records"] == figures["tokenize"]["records"] == 60 * 9
  assert figures["prepare"]["examples"] == 60
  assert figures["tokenize"]["token_ids_bytes_on_disk"] > 0
  assert figures["measure"]["builder_examples_per_second"] > 0
  rows = figures["throughput"]["throughput"]
  assert [(r["mode"], r["workers"]) for r in rows] == [("texts", 0), ("stored", 0)]
  assert all(r["examples_per_second"] > 0 and r["examples_per_cpu_second"] > 0 for r in rows)


def check_lora_step_flops(module, tmp_path, argv):
  """The FLOP model of the cost records (`hybrid_jax.cost.config_step_flops`, the run's trainable
  set) is within 10 % of XLA's count of the tiny model's compiled train step, full fine-tuning and
  LoRA (the kernels' weight gradients left out, the adapters' matmuls added)."""
  del module, argv
  figures = json.loads((tmp_path / "lora_flops.json").read_text())
  steps = figures["steps"]
  assert [s["rank"] for s in steps] == [0, 4, 8]
  for step in steps:
    assert step["analytic_flops"] == pytest.approx(step["xla_flops"], rel=0.1), step
  # Without the trainable set the model would give the LoRA step the full step's count (1.8x).
  assert steps[0]["analytic_flops"] > 1.5 * steps[1]["xla_flops"]


CHECKS = {
    "accelerator_check.py": check_accelerator_check, "input_pipeline.py": check_input_pipeline,
    "lora_step_flops.py": check_lora_step_flops
}


def test_benchmarks_are_found():
  assert len(SCRIPTS) >= 10 and "train_step_vs_sentence_transformers.py" in SCRIPTS
  assert set(NOT_TIMED) <= set(SCRIPTS) and set(CHECKS) <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_smoke_run(name, tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)  # nothing a script writes lands in the checkout
  module = load_script(name)
  assert callable(getattr(module, "main", None)), f"benchmarks/{name} has no main(argv)"
  argv = smoke_flags(name, tmp_path)
  status = module.main(argv)
  captured = capsys.readouterr()
  # A script that checks its own figures (lora_step_flops.py: the LoRA step computes no weight
  # gradient of a frozen kernel) says so with an int exit status (others return None or results).
  if isinstance(status, int):
    assert status == 0, f"benchmarks/{name} --smoke returned {status}:\n{captured.out}"
  output = captured.out + captured.err
  if name not in NOT_TIMED:
    assert machine.one_line() in output, f"benchmarks/{name} does not name the machine"
  if name in CHECKS:
    CHECKS[name](module, tmp_path, argv)
