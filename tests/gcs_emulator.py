"""A local GCS emulator (PyPI `gcp-storage-emulator`) for tests of `gs://` paths.

`start()` serves an in-memory GCS on a free localhost port with one bucket, `bucket`, and returns
`(process, env)`: the environment a subprocess needs for gcsfs, tensorstore (orbax) and etils
`epath` to talk to it. These variables are read when those libraries are imported, hence
subprocesses. Nothing leaves the machine; no credentials are used. `stop(process, env)` ends it.
The tests start one per session (conftest.py `gcs_env`).

Helpers that talk the GCS JSON API directly (no client library, so the test process needs none of
those variables): `list_objects`, `read_object`, `write_object`, `upload_tree`, `delete_objects`,
and `uploads`: every upload so far, by object name (who wrote what, how often).
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from tiny_run import free_port

BUCKET = "bucket"
UPLOAD_LOG = "GCS_EMULATOR_UPLOAD_LOG"  # env: the file listing every upload (`uploads`)

# `gcp-storage-emulator start ...`, with what real GCS does that the emulator leaves out:
#  * the `x-goog-generation` header on every object read: tensorstore (orbax's OCDBT manifests)
#    takes an object's generation from it for its next conditional write; without it a save that
#    re-reads a manifest fails with "Malformed StorageGeneration";
#  * the `ifGenerationMatch` precondition of an upload (0: create only), answered 412 when not met
#    (https://cloud.google.com/storage/docs/request-preconditions); the emulator ignores it, and
#    the run lock (hybrid_jax.run_dir) relies on it.
# It also appends the object name of every upload (a resumable one once, at its start) to the
# file argv[1] (`UPLOAD_LOG`), so a test can count how often each object was written.
_SERVE = """
import sys
from http import HTTPStatus
from gcp_storage_emulator.handlers import objects

upload_log = sys.argv.pop(1)

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

def with_precondition(handler):
  def wrapped(request, response, storage, *args, **kwargs):
    if "upload_id" in request.query:  # the data of a resumable upload checked at its start
      return handler(request, response, storage, *args, **kwargs)
    name = request.query.get("name", [None])[0]
    if name is None and isinstance(request.data, dict):
      name = request.data.get("meta", {}).get("name")
    match = request.query.get("ifGenerationMatch", [None])[0]
    if name is not None and match is not None:
      try:
        generation = str(storage.get_file_obj(request.params["bucket_name"], name)["generation"])
      except Exception:
        generation = "0"
      if generation != match:
        response.status = HTTPStatus.PRECONDITION_FAILED
        response.json({"error": {"code": 412, "message": "At least one of the pre-conditions "
                                 "you specified did not hold.", "errors": [{"reason": "conditionNotMet"}]}})
        return
    handler(request, response, storage, *args, **kwargs)
    if name is not None and response.status < 300:
      with open(upload_log, "a") as f:
        f.write(name + "\\n")
  return wrapped

objects.get, objects.download = with_generation(objects.get), with_generation(objects.download)
objects.insert = with_precondition(objects.insert)
from gcp_storage_emulator.__main__ import main
main(sys.argv[1:])
"""


def available() -> bool:
  """The emulator and gcsfs are installed (the `test` extra)."""
  return (shutil.which("gcp-storage-emulator") is not None
          and importlib.util.find_spec("gcsfs") is not None)


def start(timeout_s: float = 30.0):
  port = free_port()
  url = f"http://127.0.0.1:{port}"
  upload_log = tempfile.NamedTemporaryFile(prefix="gcs-uploads-", suffix=".txt", delete=False).name
  process = subprocess.Popen([
      sys.executable, "-c", _SERVE, upload_log, "start", "-H", "127.0.0.1", f"--port={port}", "-M",
      f"--default-bucket={BUCKET}", "-q"
  ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
  env = {
      **os.environ, "STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
      "GOOGLE_AUTH_TOKEN_FOR_TESTING": "dummy", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
      "EPATH_USE_TF": "false", UPLOAD_LOG: upload_log
  }
  return process, env


def stop(process, env) -> None:
  process.terminate()
  try:
    process.wait(timeout=10)
  except subprocess.TimeoutExpired:
    process.kill()
    process.wait()
  os.remove(env[UPLOAD_LOG])


def uploads(env) -> list[str]:
  """The object names uploaded so far, one entry per upload, in order."""
  with open(env[UPLOAD_LOG]) as f:
    return f.read().splitlines()


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


def _object_url(env, name: str) -> str:
  return (f"{env['STORAGE_EMULATOR_HOST']}/storage/v1/b/{BUCKET}/o/"
          f"{urllib.parse.quote(name, safe='')}")


def write_object(env, name: str, data: bytes) -> None:
  """Uploads `data` as `gs://bucket/<name>` (overwriting)."""
  url = (f"{env['STORAGE_EMULATOR_HOST']}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&"
         f"{urllib.parse.urlencode({'name': name})}")
  urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST"), timeout=10).read()


def upload_tree(env, local_dir: str, prefix: str) -> None:
  """Uploads every file under `local_dir` to `gs://bucket/<prefix>/<relative path>`."""
  for root, _, files in os.walk(local_dir):
    for file in files:
      relative = os.path.relpath(os.path.join(root, file), local_dir).replace(os.sep, "/")
      with open(os.path.join(root, file), "rb") as f:
        write_object(env, f"{prefix}/{relative}", f.read())


def delete_objects(env, prefix: str) -> None:
  """Deletes every object under `gs://bucket/<prefix>` (a kill losing what came after)."""
  for name in list_objects(env, prefix):
    urllib.request.urlopen(
        urllib.request.Request(_object_url(env, name), method="DELETE"), timeout=10).read()
