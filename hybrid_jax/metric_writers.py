"""Metric writers with no TensorFlow: a JSON-lines file and a TensorBoard event file.

`MetricWriter(workdir)` writes every call of `write_scalars(step, scalars)` twice:
- `<workdir>/metrics.jsonl`: one JSON object per call, `{"step": .., "wall_time": .., **scalars}`.
  Non-finite values are written as the JavaScript literals `NaN`, `Infinity`, `-Infinity`
  (`json.dumps(allow_nan=True)`): Python's `json.loads` and pandas read them back; a strict JSON
  parser does not.
- `<workdir>/tensorboard/events.out.tfevents.<unix seconds>.<host>.<nanoseconds>.<pid>`: a new
  file per writer (names sort in creation order, as TensorBoard reads them), of TFRecord-framed
  `Event` protos hand-encoded here (the fields used are listed in `_encode_event`), which
  TensorBoard reads as scalars (`write_scalars`) and text (`write_text`).

Resuming: `MetricWriter(workdir, resume_step=s)` first drops the records with step >= s from
metrics.jsonl (the other lines are kept byte for byte; the file is left alone when none has such a
step; a damaged line is moved to `metrics.jsonl.damaged-<unix time>` with a warning, never lost
nor fatal), so a run restarted from the checkpoint of step s has no duplicated steps, and it starts
the new event file with a `SessionLog(START)` event at step s, which tells TensorBoard to drop the
old file's events at steps >= s. Without `resume_step` an existing metrics.jsonl is
appended to as it is.

Only one process should write: pass `enabled=jax.process_index() == 0`; a disabled writer creates
no file and ignores every call.

An object-store workdir (`gs://...`, no append, nothing visible before close): both files are
written in a local temporary directory (metrics.jsonl first downloaded from the workdir) and
uploaded whole at every `flush()` (each `write_*` call flushes), so the bucket always holds
complete files, at most one record behind. `metrics_path` / `event_path` are the workdir's paths.
"""

from __future__ import annotations

import json
import math
import operator
import os
import shutil
import socket
import struct
import tempfile
import time
from typing import Any, Mapping

from absl import logging

from hybrid_jax import paths

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
_FILE_VERSION = "brain.Event:2"


def _make_crc32c_table() -> tuple[int, ...]:
  """Byte table of CRC-32C (Castagnoli; reflected polynomial 0x82F63B78)."""
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    table.append(crc)
  return tuple(table)


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C of `data` (the checksum TFRecord framing uses)."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """TFRecord's masked CRC-32C: rotated right by 15 bits plus a constant, modulo 2**32."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
  """One TFRecord: uint64 length, masked CRC of the length, data, masked CRC of the data."""
  length = struct.pack("<Q", len(data))
  return (length + struct.pack("<I", masked_crc32c(length)) + data
          + struct.pack("<I", masked_crc32c(data)))


# Protocol-buffer wire format: a field is a varint key (field_number << 3 | wire_type), then its
# value: wire type 0 a varint, 1 eight little-endian bytes, 2 a varint length and the bytes,
# 5 four little-endian bytes.


def _varint(value: int) -> bytes:
  value &= 0xFFFFFFFFFFFFFFFF  # Negative int64 values are encoded as their two's complement.
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _field_varint(number: int, value: int) -> bytes:
  return _varint(number << 3) + _varint(value)


def _field_double(number: int, value: float) -> bytes:
  return _varint(number << 3 | 1) + struct.pack("<d", value)


def _field_float(number: int, value: float) -> bytes:
  try:
    packed = struct.pack("<f", value)
  except OverflowError:  # Finite but past the float32 range: stored as an infinity.
    packed = struct.pack("<f", math.copysign(math.inf, value))
  return _varint(number << 3 | 5) + packed


def _field_bytes(number: int, value: bytes) -> bytes:
  return _varint(number << 3 | 2) + _varint(len(value)) + value


def _encode_event(wall_time: float, step: int, *, file_version: str | None = None,
                  summary_values: list[bytes] | None = None, session_start: bool = False) -> bytes:
  """tensorflow.Event{wall_time=1 double, step=2 int64, file_version=3 string,
  summary=5 Summary{value=1 repeated Value}, session_log=7 SessionLog{status=1 enum, START=1}}.

  Fields are written in number order and a zero step is left out, as protobuf's own serializer
  does, so the bytes are the canonical encoding."""
  event = _field_double(1, wall_time) + (_field_varint(2, step) if step else b"")
  if file_version is not None:
    event += _field_bytes(3, file_version.encode())
  if summary_values is not None:
    event += _field_bytes(5, b"".join(_field_bytes(1, value) for value in summary_values))
  if session_start:
    event += _field_bytes(7, _field_varint(1, 1))
  return event


def _scalar_value(tag: str, value: float) -> bytes:
  """Summary.Value{tag=1 string, simple_value=2 float}."""
  return _field_bytes(1, tag.encode()) + _field_float(2, value)


def _text_value(tag: str, text: str) -> bytes:
  """Summary.Value{tag=1, metadata=9 SummaryMetadata{plugin_data=1 PluginData{plugin_name=1
  "text"}}, tensor=8 TensorProto{dtype=1 DT_STRING (7), string_val=8}}: a scalar string tensor
  (no tensor_shape field = shape [])."""
  metadata = _field_bytes(1, _field_bytes(1, b"text"))
  tensor = _field_varint(1, 7) + _field_bytes(8, text.encode())
  return _field_bytes(1, tag.encode()) + _field_bytes(9, metadata) + _field_bytes(8, tensor)


class MetricWriter:
  """Writes scalars to `<workdir>/metrics.jsonl` and a TensorBoard event file (see module doc).

  Use as a context manager, or call `close()`.
  """

  def __init__(self, workdir: str | os.PathLike, *, enabled: bool = True,
               resume_step: int | None = None):
    """Opens (creates) the files.

    Args:
      workdir: the run's directory; created if missing.
      enabled: False on every process but one: then nothing is created or written.
      resume_step: the step a restarted run resumes from, or None: records of metrics.jsonl with
        step >= resume_step are dropped, and TensorBoard is told to drop them too.
    """
    self._enabled = enabled
    if not enabled:
      return
    workdir = os.fspath(workdir)
    # The files are written in `local_dir`: the workdir, or a local copy uploaded at each flush.
    self._staging = tempfile.mkdtemp(
        prefix="hybrid_jax-metrics-") if paths.is_remote(workdir) else None
    local_dir = self._staging or workdir
    self.metrics_path = paths.join(workdir, METRICS_FILE)
    if self._staging and paths.path(self.metrics_path).exists():
      paths.path(self.metrics_path).copy(os.path.join(local_dir, METRICS_FILE))
    os.makedirs(os.path.join(local_dir, TENSORBOARD_DIR), exist_ok=True)
    if resume_step is not None:
      resume_step = _check_step(resume_step)
      _truncate_metrics(os.path.join(local_dir, METRICS_FILE), resume_step, workdir)
    self._jsonl = open(os.path.join(local_dir, METRICS_FILE), "a", encoding="utf-8")
    wall_time_ns = time.time_ns()
    wall_time = wall_time_ns / 1e9
    seconds, nanoseconds = divmod(wall_time_ns, 10**9)
    event_file = os.path.join(
        TENSORBOARD_DIR,
        (f"events.out.tfevents.{seconds:010d}.{socket.gethostname()}.{nanoseconds:09d}."
         f"{os.getpid()}"))
    self.event_path = paths.join(workdir, event_file)
    self._events = open(os.path.join(local_dir, event_file), "xb")
    self._events.write(tfrecord(_encode_event(wall_time, 0, file_version=_FILE_VERSION)))
    if resume_step is not None:
      self._events.write(tfrecord(_encode_event(wall_time, resume_step, session_start=True)))
    self.flush()

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Writes one record of scalars at `step` to both files, then flushes.

    Args:
      step: the training step (an integer).
      scalars: name -> number (Python, numpy or 0-d jax values); NaN and infinities allowed.
    """
    if not self._enabled:
      return
    step = _check_step(step)
    values = {}
    for name, value in scalars.items():
      if not isinstance(name, str) or name in ("step", "wall_time"):
        raise ValueError(f"write_scalars: metric name {name!r} must be a str other than 'step' "
                         "and 'wall_time'")
      try:
        values[name] = float(value)
      except (TypeError, ValueError) as e:
        raise TypeError(f"write_scalars: metric {name!r} at step {step} is {value!r}, not a "
                        "scalar number") from e
    wall_time = time.time()
    record = {"step": step, "wall_time": wall_time, **values}
    self._jsonl.write(json.dumps(record, allow_nan=True) + "\n")
    self._events.write(
        tfrecord(
            _encode_event(wall_time, step,
                          summary_values=[_scalar_value(k, v) for k, v in values.items()])))
    self.flush()

  def write_text(self, step: int, tag: str, text: str) -> None:
    """Writes `text` (markdown, shown by TensorBoard's Text tab) to the event file only."""
    if not self._enabled:
      return
    step = _check_step(step)
    if not isinstance(text, str):
      raise TypeError(f"write_text: {tag!r} at step {step} is a {type(text).__name__}, not a str")
    self._events.write(
        tfrecord(_encode_event(time.time(), step, summary_values=[_text_value(tag, text)])))
    self.flush()

  def flush(self) -> None:
    if self._enabled:
      self._jsonl.flush()
      self._events.flush()
      if self._staging:  # Upload both files whole (an object store has no append).
        for local, remote in ((self._jsonl.name, self.metrics_path), (self._events.name,
                                                                      self.event_path)):
          paths.path(local).copy(paths.path(remote), overwrite=True)

  def close(self) -> None:
    if self._enabled and not self._jsonl.closed:
      self.flush()
      self._jsonl.close()
      self._events.close()
      if self._staging:
        shutil.rmtree(self._staging)

  def __enter__(self) -> "MetricWriter":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
  """The records of a metrics.jsonl file, in order. A last line cut short (a crash while
  writing) is skipped; any other unreadable line is an error naming the file and line."""
  lines = paths.path(path).read_text(encoding="utf-8").split("\n")
  records = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      if number == len(lines):  # The last line has no newline: it was being written.
        continue
      raise ValueError(f"{path}:{number}: not a JSON object: {e}") from e
    if not isinstance(record, dict) or not isinstance(record.get("step"), int):
      raise ValueError(f"{path}:{number}: a record needs an integer 'step', got {line[:80]!r}")
    records.append(record)
  return records


def set_aside(workdir: str | os.PathLike, label: str) -> str | None:
  """Renames `<workdir>/metrics.jsonl` to `metrics.jsonl.<label>-<unix time>` (kept, never
  deleted: e.g. the records of a run that starts over); returns the new path, None when there is
  no metrics.jsonl."""
  source = paths.path(paths.join(workdir, METRICS_FILE))
  if not source.exists():
    return None
  target = paths.join(workdir, f"{METRICS_FILE}.{label}-{int(time.time())}")
  source.rename(target)
  return target


def _step_of(line: bytes) -> int | None:
  """The integer 'step' of a metrics.jsonl line; None when the line is not such a record."""
  try:
    record = json.loads(line)
  except ValueError:  # not JSON, or not UTF-8
    return None
  step = record.get("step") if isinstance(record, dict) else None
  return step if isinstance(step, int) else None


def _truncate_metrics(path: str, resume_step: int, workdir: str) -> None:
  """Drops the records with step >= resume_step (and a last line cut short) from `path`, keeping
  the other lines byte for byte; the file is rewritten (atomically) only when one is dropped.

  A damaged line before the last one (not a JSON record with an integer step: a disk or an edit
  went wrong) costs neither the run nor the good records: its bytes are moved, unchanged, to
  `<workdir>/metrics.jsonl.damaged-<unix time>`, and one warning names its line numbers and that
  file."""
  if not os.path.exists(path):
    return
  with open(path, "rb") as f:
    lines = f.read().splitlines(keepends=True)
  kept, damaged = [], []
  for number, line in enumerate(lines, start=1):
    step = _step_of(line)
    if step is None and line.strip() and not (number == len(lines) and not line.endswith(b"\n")):
      damaged.append((number, line))
    elif step is not None and step < resume_step:
      kept.append(line if line.endswith(b"\n") else line + b"\n")
  if damaged:
    aside = paths.join(workdir, f"{METRICS_FILE}.damaged-{int(time.time())}")
    paths.path(aside).write_bytes(b"".join(line for _, line in damaged))
    logging.warning(
        "%s: line(s) %s are not JSON records with an integer step (damaged); moved "
        "them to %s and kept the other records.", paths.join(workdir, METRICS_FILE),
        ", ".join(str(number) for number, _ in damaged), aside)
  if kept == lines:
    return
  tmp_path = path + ".tmp"
  with open(tmp_path, "wb") as f:
    f.writelines(kept)
  os.replace(tmp_path, path)


def _check_step(step) -> int:
  try:
    return operator.index(step)
  except TypeError as e:
    raise TypeError(f"step must be an integer, got {step!r} ({type(step).__name__})") from e
