"""One path layer for the files a run reads and writes: local paths and `gs://` (any scheme etils
`epath` serves through fsspec) alike.

`path(p)` is the `epath.Path` of a string; a remote path whose filesystem library is missing is a
`UserError` telling what to install (`pip install -e ".[gcs]"` for `gs://`). A local path stays
local: `gs://b/x` is never turned into a local directory `gs:/b/x`.

Object stores differ from a disk in ways the helpers below hide:
  * no append: `append_line` rewrites the whole object (logs of a few hundred lines);
  * nothing is visible before `close()`, and an upload replaces an object whole: `write_text` is
    atomic on both (a temporary file renamed on a disk, a single upload on a store);
  * no exclusive create (`open(p, "x")`): `create_exclusive` uploads with the store's create-only
    precondition (GCS: `ifGenerationMatch=0`), which the store refuses when the object exists;
  * libraries that need a local directory (transformers `from_pretrained`, safetensors,
    matplotlib) work on one: `local_copy(p)` downloads a remote directory once per process,
    `local_output(p)` gives a local directory that is uploaded to `p` when the block ends.

Environment for the `gs://` emulator in the tests (read when gcsfs / tensorstore are imported):
`STORAGE_EMULATOR_HOST`, `TENSORSTORE_GCS_HTTP_URL`, `GOOGLE_AUTH_TOKEN_FOR_TESTING`,
`GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`, `EPATH_USE_TF=false` (see tests/gcs_emulator.py).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import socket
import tempfile
import urllib.parse
from typing import Iterator

import fsspec
from etils import epath

from hybrid_jax.errors import UserError

# scheme -> (module that serves it, the install that brings it)
_BACKENDS = {"gs": ("gcsfs", 'pip install -e ".[gcs]"')}
_downloads: dict[str, str] = {}  # remote directory -> its local copy (this process)


def is_remote(p: str | os.PathLike) -> bool:
  """True for a URL path (`scheme://...`), False for a local one."""
  return "://" in os.fspath(p)


def unreachable(url: str, timeout_s: float = 5.0) -> str | None:
  """Why the server of `url` (`scheme://host[:port]/...`) cannot be reached, or None when a TCP
  connection to it opens within `timeout_s`: a probe of a second at most when the network is
  there, where the libraries' own retries take a minute to give up when it is not."""
  parts = urllib.parse.urlsplit(url)
  port = parts.port or (80 if parts.scheme == "http" else 443)
  try:
    socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
  except OSError as e:  # gaierror (no DNS), refused, timed out, no route
    return f"{parts.hostname}:{port}: {e.strerror or e}"
  return None


def gcs_endpoint() -> str:
  """The Cloud Storage server gcsfs talks to: $STORAGE_EMULATOR_HOST (tests; http:// when it
  names no scheme, as gcsfs reads it), else Google's."""
  host = os.environ.get("STORAGE_EMULATOR_HOST")
  if not host:
    return "https://storage.googleapis.com"
  return host if "://" in host else "http://" + host


def check_reachable(p: str | os.PathLike, what: str) -> None:
  """For a `gs://` `p`: fails at once when Cloud Storage cannot be reached (`unreachable`),
  rather than after gcsfs's retries (52 s, then a traceback). Local paths are not checked.

  Raises:
    UserError: one line naming `what`, the server and why.
  """
  if os.fspath(p).startswith("gs://"):
    reason = unreachable(gcs_endpoint())
    if reason:
      raise UserError(f"{what}: cannot reach Cloud Storage ({reason}); check the network (or "
                      "use a local path)")


def path(p: str | os.PathLike) -> epath.Path:
  """The `epath.Path` of `p`.

  Raises:
    UserError: `p` is a URL whose filesystem library is not installed (one line naming the fix).
  """
  p = os.fspath(p)
  if is_remote(p):
    scheme = p.split("://", 1)[0]
    module, install = _BACKENDS.get(scheme, (None, None))
    if module and importlib.util.find_spec(module) is None:
      raise UserError(f"{p}: {scheme}:// paths need the {module} package: {install}")
  return epath.Path(p)


def check_output_dir(p: str | os.PathLike, what: str) -> None:
  """Checks, before any work, that the directory `p` can be written where it is asked for: that
  neither `p` nor its nearest existing parent is a file (a remote `p` is not checked: an object
  store has no directories to be in the way).

  Args:
    p: the directory some output will go to (need not exist).
    what: how the user named it, for the message (e.g. '--output_dir=out').

  Raises:
    UserError: `p`, or the parent it would be created in, is a file.
  """
  if is_remote(p):
    return
  existing = os.path.abspath(p)
  while not os.path.lexists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    where = "is a file" if existing == os.path.abspath(p) else f"is inside {existing}, a file"
    raise UserError(f"{what} {where}, not a directory: move the file away or pick another path")


def umask() -> int:
  """This process's umask (read from /proc on Linux; elsewhere set and restored at once)."""
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError):
    pass
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def default_permissions(p: str | os.PathLike) -> None:
  """Gives the local file `p`, or every directory and file of the tree `p`, the mode a plain
  `open` / `mkdir` gives: 0o666 / 0o777 less the umask (0644 / 0755 under the usual 022).

  Libraries that write through a private temporary file or directory (safetensors' `save_file`,
  `tempfile.mkdtemp`) leave 0600 / 0700, which another user of a shared machine cannot read. The
  execute bits of a file are kept as they were."""
  mask = umask()
  p = os.fspath(p)
  entries = [p]
  for root, dirs, files in os.walk(p):
    entries += [os.path.join(root, name) for name in dirs + files]
  for entry in entries:
    if os.path.islink(entry):
      continue
    mode = os.stat(entry).st_mode
    wanted = 0o777 if os.path.isdir(entry) else 0o666 | (mode & 0o111)
    os.chmod(entry, wanted & ~mask)


def join(p: str | os.PathLike, *parts: str) -> str:
  """`p/part/...` as a string (a URL keeps its `scheme://`)."""
  return os.fspath(path(p).joinpath(*parts))


def write_text(p: str | os.PathLike, text: str) -> None:
  """Writes `text` to `p` atomically: readers see the old content or the new one, never a part."""
  if is_remote(p):
    path(p).write_text(text)  # One upload: the object appears whole at close.
    return
  tmp = os.fspath(p) + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, p)


def create_exclusive(p: str | os.PathLike, data: bytes) -> bool:
  """Creates the file `p` holding `data` unless it exists: True when this call created it, False
  when `p` already existed (then nothing is written). Of concurrent callers exactly one wins:
  `O_EXCL` on a disk; on an object store one create-only upload (fsspec `mode="create"`, a
  generation precondition `ifGenerationMatch=0` on GCS) that the store refuses (HTTP 412) when the
  object exists."""
  if is_remote(p):
    path(p)  # a missing filesystem library: UserError
    fs, key = fsspec.core.url_to_fs(os.fspath(p))
    try:
      fs.pipe_file(key, data, mode="create")
    except FileExistsError:
      return False
    return True
  try:
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, "wb") as f:
    f.write(data)
  return True


def append_line(p: str | os.PathLike, line: str) -> None:
  """Appends `line` (and a newline) to the text file `p`, first ending a last line cut short by a
  kill. On an object store (no append) the object is rewritten with the line added."""
  data = line.encode("utf-8") + b"\n"
  if is_remote(p):
    target = path(p)
    old = target.read_bytes() if target.exists() else b""
    target.write_bytes(old + (b"\n" if old and not old.endswith(b"\n") else b"") + data)
    return
  with open(p, "ab+") as f:
    end = f.seek(0, os.SEEK_END)
    if end:
      f.seek(end - 1)
      if f.read(1) != b"\n":
        f.write(b"\n")
    f.write(data)


def copy_tree(src: str | os.PathLike, dst: str | os.PathLike) -> None:
  """Copies the files under directory `src` to `dst` (either may be remote), overwriting."""
  dst_path = path(dst)
  dst_path.mkdir(parents=True, exist_ok=True)  # a no-op on an object store
  for entry in path(src).iterdir():  # (epath has no recursive glob on object stores)
    if entry.is_dir():
      copy_tree(entry, dst_path / entry.name)
    else:
      entry.copy(dst_path / entry.name, overwrite=True)


def local_copy(p: str | os.PathLike) -> str:
  """A local directory with the content of directory `p`: `p` itself when local; for a remote
  `p`, a copy downloaded on the first call of this process (removed at exit).

  Raises:
    FileNotFoundError: remote `p` is not a directory.
  """
  p = os.fspath(p)
  if not is_remote(p):
    return p
  if p not in _downloads:
    if not path(p).is_dir():
      raise FileNotFoundError(f"{p}: not a directory")
    local = tempfile.mkdtemp(prefix="hybrid_jax-download-")
    atexit.register(shutil.rmtree, local, True)
    copy_tree(p, local)
    _downloads[p] = local
  return _downloads[p]


@contextlib.contextmanager
def replaced_directory(p: str | os.PathLike) -> Iterator[str]:
  """A directory to write the whole new content of directory `p` into; it replaces `p` when the
  block ends without error, and nothing of it reaches `p` otherwise.

  Local `p`: the block writes into `<parent>/.<name>.tmp`, which is then renamed to `p` (a
  previous `p` is first renamed to `.<name>.old`, then removed). On an error the staging
  directory is removed and `p` is as it was. A staging or old directory that a killed process
  left behind is removed when the next call starts (one writer at a time: a run's lock). A remote
  `p` is `local_output(p)` (uploaded, file by file, when the block ends).
  """
  if is_remote(p):
    with local_output(p) as local:
      yield local
    return
  p = os.path.abspath(p)
  parent, name = os.path.split(p)
  staging, old = os.path.join(parent, f".{name}.tmp"), os.path.join(parent, f".{name}.old")
  for stale in (staging, old):
    if os.path.lexists(stale):
      shutil.rmtree(stale)
  os.makedirs(staging)
  try:
    yield staging
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  if os.path.lexists(p):
    os.rename(p, old)
  os.rename(staging, p)
  shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def local_output(p: str | os.PathLike) -> Iterator[str]:
  """A local directory to write the files of directory `p` into: `p` itself (created) when local;
  for a remote `p`, a temporary directory uploaded to `p` when the block ends without error."""
  p = os.fspath(p)
  if not is_remote(p):
    os.makedirs(p, exist_ok=True)
    yield p
    return
  with tempfile.TemporaryDirectory(prefix="hybrid_jax-upload-") as local:
    yield local
    copy_tree(local, p)
