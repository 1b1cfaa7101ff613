"""A local GCS emulator (PyPI `gcp-storage-emulator`) for tests of `gs://` paths.

`start()` serves an in-memory GCS on a free localhost port with one bucket, `bucket`, and returns
`(process, env)`: the environment a subprocess needs for gcsfs, tensorstore (orbax) and etils
`epath` to talk to it. These variables are read when those libraries are imported, hence
subprocesses. Nothing leaves the machine; no credentials are used.
"""

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

BUCKET = "bucket"

# `gcp-storage-emulator start ...`, with the one header real GCS sends on every object read that
# the emulator leaves out: `x-goog-generation`. tensorstore (orbax's OCDBT manifests) takes an
# object's generation from it for its next conditional write; without it a save that re-reads a
# manifest fails with "Malformed StorageGeneration".
_SERVE = """
import sys
from gcp_storage_emulator.handlers import objects

def with_generation(handler):
  def wrapped(request, response, storage, *args, **kwargs):
    handler(request, response, storage, *args, **kwargs)
    if request.query.get("alt") == ["media"] or handler is objects.download:
      try:
        obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        response["x-goog-generation"] = obj["generation"]
        response["x-goog-metageneration"] = obj.get("metageneration", "1")
      except Exception:
        pass
  return wrapped

objects.get, objects.download = with_generation(objects.get), with_generation(objects.download)
from gcp_storage_emulator.__main__ import main
main(sys.argv[1:])
"""


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def available() -> bool:
  """The emulator and gcsfs are installed (the `test` extra)."""
  return (shutil.which("gcp-storage-emulator") is not None
          and importlib.util.find_spec("gcsfs") is not None)


def start(timeout_s: float = 30.0):
  port = free_port()
  url = f"http://127.0.0.1:{port}"
  process = subprocess.Popen(
      [sys.executable, "-c", _SERVE, "start", "-H", "127.0.0.1", f"--port={port}", "-M",
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


def list_objects(env, prefix: str = "") -> list[str]:
  """The object names under `gs://bucket/<prefix>`, from the GCS JSON API (no client library)."""
  names, token = [], ""
  while True:
    query = urllib.parse.urlencode({"prefix": prefix, **({"pageToken": token} if token else {})})
    with urllib.request.urlopen(f"{env['STORAGE_EMULATOR_HOST']}/storage/v1/b/{BUCKET}/o?{query}",
                                timeout=10) as response:
      listing = json.load(response)
    names += [item["name"] for item in listing.get("items", [])]
    token = listing.get("nextPageToken")
    if not token:
      return sorted(names)


def read_object(env, name: str) -> bytes | None:
  """The bytes of `gs://bucket/<name>`, or None when there is no such object."""
  url = (f"{env['STORAGE_EMULATOR_HOST']}/download/storage/v1/b/{BUCKET}/o/"
         f"{urllib.parse.quote(name, safe='')}?alt=media")
  try:
    with urllib.request.urlopen(url, timeout=10) as response:
      return response.read()
  except urllib.error.HTTPError as e:
    if e.code == 404:
      return None
    raise
