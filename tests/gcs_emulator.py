"""A local GCS emulator (PyPI `gcp-storage-emulator`) for tests of `gs://` paths.

`start()` serves an in-memory GCS on a free localhost port with one bucket, `bucket`, and returns
`(process, env)`: the environment a subprocess needs for gcsfs, tensorstore (orbax) and etils
`epath` to talk to it. These variables are read when those libraries are imported, hence
subprocesses. Nothing leaves the machine; no credentials are used.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

BUCKET = "bucket"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def available() -> bool:
  return shutil.which("gcp-storage-emulator") is not None and _has("gcsfs")


def _has(module: str) -> bool:
  import importlib.util  # pylint: disable=g-import-not-at-top
  return importlib.util.find_spec(module) is not None


def start(timeout_s: float = 30.0):
  port = _free_port()
  url = f"http://127.0.0.1:{port}"
  process = subprocess.Popen(
      ["gcp-storage-emulator", "start", "-H", "127.0.0.1", f"--port={port}", "-M",
       f"--default-bucket={BUCKET}", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      urllib.request.urlopen(f"{url}/storage/v1/b/{BUCKET}", timeout=1).read()
      break
    except OSError:
      if process.poll() is not None or time.monotonic() > deadline:
        process.kill()
        raise RuntimeError(f"gcp-storage-emulator did not start on {url}")
      time.sleep(0.1)
  env = {**os.environ, "STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
         "GOOGLE_AUTH_TOKEN_FOR_TESTING": "dummy", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
         "EPATH_USE_TF": "false"}
  return process, env


def stop(process) -> None:
  process.terminate()
  try:
    process.wait(timeout=10)
  except subprocess.TimeoutExpired:
    process.kill()
    process.wait()


def list_bucket(env, prefix: str = "") -> list[str]:
  """The object names under `gs://bucket/<prefix>`, listed with gcsfs in a subprocess."""
  code = ("import gcsfs, json; fs = gcsfs.GCSFileSystem(); "
          f"print(json.dumps(sorted(fs.find('{BUCKET}/{prefix}'))))")
  out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                       text=True).stdout
  import json  # pylint: disable=g-import-not-at-top
  return [name[len(BUCKET) + 1:] for name in json.loads(out.strip().splitlines()[-1])]
