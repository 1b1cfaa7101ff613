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


@pytest.fixture(scope="session")
def gcs_env():
  """A local GCS emulator for the session (tests/gcs_emulator.py): the environment variables a
  subprocess needs to reach it (its bucket is `gcs_emulator.BUCKET`; give each test its own
  prefix). Skips when the emulator or gcsfs is not installed."""
  import gcs_emulator

  if not gcs_emulator.available():
    pytest.skip("gcp-storage-emulator / gcsfs not installed (pip install -e '.[test]')")
  process, emulator_env = gcs_emulator.start()
  yield {k: v for k, v in emulator_env.items() if k not in os.environ or os.environ[k] != v}
  gcs_emulator.stop(process, emulator_env)
