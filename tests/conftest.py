"""Test set-up: 8 virtual CPU devices for every test (sub-meshes take 1, 2 or 4 of them).

XLA reads the flag when the backend starts, so it is set here, before any test imports jax.
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


import pytest  # noqa: E402  (after the environment above)


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
  """A real 2-run sweep (mono-only vs hybrid, en+de, tiny model, 4 steps, evaluated on
  xquad_r:eval) made with launch/sweep.py; shared by the launch and notebook tests.

  Returns (root, {run name: workdir}).
  """
  import subprocess
  import sys

  from tiny_run import REPO, TINY_MODEL, env

  root = str(tmp_path_factory.mktemp("sweep"))
  command = [sys.executable, "launch/sweep.py", f"--root={root}", "--lang_sets=en+de",
             "--config=configs/default.py:model=tiny",
             "--mono_probs=1,0.5", "--", "--config.train.num_steps=4", *TINY_MODEL]
  proc = subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True,
                        timeout=900)
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
  runs = {name: os.path.join(root, name) for name in sorted(os.listdir(root))}
  return root, runs
