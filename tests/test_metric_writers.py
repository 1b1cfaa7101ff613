"""Tests of hybrid_jax.metric_writers against TensorBoard's own readers and protobuf classes."""

import glob
import json
import logging
import math
import os
import struct

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
from tensorboard.util import tensor_util

from hybrid_jax import metric_writers


def _load_events(workdir) -> EventAccumulator:
  accumulator = EventAccumulator(os.path.join(workdir, "tensorboard"))
  accumulator.Reload()
  return accumulator


def _read_records(path) -> list[bytes]:
  """Reads TFRecord framing independently of the writer, checking both CRCs with TensorBoard's."""
  records = []
  with open(path, "rb") as f:
    data = f.read()
  offset = 0
  while offset < len(data):
    header = data[offset:offset + 8]
    (length,) = struct.unpack("<Q", header)
    (header_crc,) = struct.unpack("<I", data[offset + 8:offset + 12])
    assert header_crc == pywrap_tensorflow.masked_crc32c(header)
    payload = data[offset + 12:offset + 12 + length]
    (payload_crc,) = struct.unpack("<I", data[offset + 12 + length:offset + 16 + length])
    assert payload_crc == pywrap_tensorflow.masked_crc32c(payload)
    records.append(payload)
    offset += 16 + length
  assert offset == len(data)
  return records


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", 0x00000000),
        (b"123456789", 0xE3069283),
        (bytes(32), 0x8A9136AA),  # RFC 3720, B.4.
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (bytes(range(31, -1, -1)), 0x113FDB5C),
    ])
def test_crc32c_known_vectors(data, expected):
  assert metric_writers.crc32c(data) == expected


def test_crc32c_matches_tensorboard():
  rng = np.random.default_rng(0)
  for size in (1, 7, 64, 1000):
    data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    assert metric_writers.crc32c(data) == pywrap_tensorflow.crc32c(data)
    assert metric_writers.masked_crc32c(data) == pywrap_tensorflow.masked_crc32c(data)


def test_events_decode_with_protobuf(tmp_path):
  with metric_writers.MetricWriter(tmp_path) as writer:
    writer.write_scalars(7, {"loss": 0.25, "nan": float("nan"), "big": 1e39, "neg": -3.0})
    writer.write_scalars(2**40, {"x": 1.0})
  records = _read_records(writer.event_path)
  events = [event_pb2.Event.FromString(r) for r in records]
  assert events[0].file_version == "brain.Event:2"
  assert [e.step for e in events[1:]] == [7, 2**40]
  values = {v.tag: v.simple_value for v in events[1].summary.value}
  assert values["loss"] == 0.25 and values["neg"] == -3.0
  assert math.isnan(values["nan"]) and values["big"] == math.inf  # Past float32 range.
  # Encoding the decoded protos again gives the writer's bytes: no unknown or misplaced field.
  assert [e.SerializeToString() for e in events] == records


def test_tensorboard_reads_scalars_and_text(tmp_path):
  rng = np.random.default_rng(1)
  losses = rng.normal(size=5)
  with metric_writers.MetricWriter(tmp_path) as writer:
    for step, loss in enumerate(losses):
      writer.write_scalars(10 * step, {"train/loss": loss, "train/lr": 1e-3 * step})
    writer.write_text(3, "config", "lr: 1e-3 — 日本語")
  accumulator = _load_events(tmp_path)
  assert set(accumulator.Tags()["scalars"]) == {"train/loss", "train/lr"}
  loss_events = accumulator.Scalars("train/loss")
  assert [e.step for e in loss_events] == [0, 10, 20, 30, 40]
  np.testing.assert_allclose([e.value for e in loss_events], losses, rtol=1e-6)
  np.testing.assert_allclose([e.value for e in accumulator.Scalars("train/lr")],
                             1e-3 * np.arange(5), rtol=1e-6)
  (text_event,) = accumulator.Tensors("config")
  assert text_event.step == 3
  assert tensor_util.make_ndarray(text_event.tensor_proto).item().decode() == "lr: 1e-3 — 日本語"
  assert accumulator.SummaryMetadata("config").plugin_data.plugin_name == "text"


def test_metrics_jsonl_round_trip(tmp_path):
  scalars = [{"loss": np.float32(0.5), "count": np.int64(3), "acc": jnp.asarray(0.75)},
             {"loss": float("nan"), "count": 4, "acc": float("inf")}]
  with metric_writers.MetricWriter(tmp_path) as writer:
    for step, values in zip([np.int64(1), 2], scalars):
      writer.write_scalars(step, values)
  with open(tmp_path / "metrics.jsonl") as f:
    lines = f.read().splitlines()
  assert len(lines) == 2
  records = [json.loads(line) for line in lines]
  assert [r["step"] for r in records] == [1, 2]
  assert records[0]["loss"] == 0.5 and records[0]["count"] == 3 and records[0]["acc"] == 0.75
  assert math.isnan(records[1]["loss"]) and records[1]["acc"] == math.inf
  assert records[0]["wall_time"] <= records[1]["wall_time"]
  assert [r["step"] for r in metric_writers.read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]


def test_each_write_is_flushed(tmp_path):
  writer = metric_writers.MetricWriter(tmp_path)
  writer.write_scalars(5, {"a": 1.0})
  assert [r["step"] for r in metric_writers.read_metrics(tmp_path / "metrics.jsonl")] == [5]
  assert [e.step for e in _load_events(tmp_path).Scalars("a")] == [5]
  writer.close()
  writer.close()  # Closing twice is harmless.


def test_resume_drops_steps_from_the_resume_step_on(tmp_path):
  with metric_writers.MetricWriter(tmp_path) as writer:
    for step in range(10):
      writer.write_scalars(step, {"loss": float(step)})
  with metric_writers.MetricWriter(tmp_path, resume_step=5) as writer:
    for step in range(5, 8):
      writer.write_scalars(step, {"loss": 100.0 + step})
  expected = [float(s) for s in range(5)] + [100.0 + s for s in range(5, 8)]
  records = metric_writers.read_metrics(tmp_path / "metrics.jsonl")
  assert [r["step"] for r in records] == list(range(8))
  assert [r["loss"] for r in records] == expected
  event_files = sorted(glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*")))
  assert len(event_files) == 2 and event_files[1] == writer.event_path  # Names sort by time.
  restart = event_pb2.Event.FromString(_read_records(writer.event_path)[1])
  assert restart.step == 5 and restart.session_log.status == event_pb2.SessionLog.START
  loss_events = _load_events(tmp_path).Scalars("loss")  # The SessionLog START purges steps >= 5.
  assert [e.step for e in loss_events] == list(range(8))
  assert [e.value for e in loss_events] == expected


def test_append_without_resume_step_keeps_old_records(tmp_path):
  for step in (1, 2):
    with metric_writers.MetricWriter(tmp_path) as writer:
      writer.write_scalars(step, {"a": 1.0})
  assert [r["step"] for r in metric_writers.read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]


def test_resume_skips_a_cut_last_line_and_sets_other_damage_aside(tmp_path, caplog):
  """A damaged line in the middle (a resume raised a 64-line traceback): the good records stay,
  the damaged bytes go, unchanged, to a named file, and one warning line says so."""
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "a": 1}\n{"step": 2, "a": 2}\n{"step": 3, "a"')
  with metric_writers.MetricWriter(tmp_path, resume_step=3):
    pass
  assert path.read_text() == '{"step": 1, "a": 1}\n{"step": 2, "a": 2}\n'
  assert not list(tmp_path.glob("metrics.jsonl.damaged-*"))  # a cut last line is not damage
  path.write_bytes(b'{"step": 1, "a": 1}\n{"step": 2, "a\n\xff\xfe\n[3]\n{"step": 2, "a": 2}\n'
                   b'{"step": 4, "a": 4}\n')
  with caplog.at_level(logging.WARNING), metric_writers.MetricWriter(tmp_path, resume_step=3):
    pass
  assert path.read_text() == '{"step": 1, "a": 1}\n{"step": 2, "a": 2}\n'
  [aside] = tmp_path.glob("metrics.jsonl.damaged-*")
  assert aside.read_bytes() == b'{"step": 2, "a\n\xff\xfe\n[3]\n'
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert warnings == [
      f"{path}: line(s) 2, 3, 4 are not JSON records with an integer step "
      f"(damaged); moved them to {aside} and kept the other records."
  ]


def test_resume_keeps_earlier_lines_byte_for_byte_and_the_file_itself(tmp_path):
  """Records before the resume step are never rewritten, and a resume that drops nothing leaves
  the file in place (same inode): metrics.jsonl is not replaced."""
  path = tmp_path / "metrics.jsonl"
  kept = '{"step": 1, "loss": 0.10000000149011612, "extra":   1e-05}\n{"step":2,"loss":NaN}\n'
  path.write_text(kept + '{"step": 3, "loss": 3.0}\n')
  inode = os.stat(path).st_ino
  with metric_writers.MetricWriter(tmp_path, resume_step=4):
    pass
  assert os.stat(path).st_ino == inode
  with metric_writers.MetricWriter(tmp_path, resume_step=3):
    pass
  assert path.read_text() == kept


def test_disabled_writer_creates_nothing(tmp_path):
  workdir = tmp_path / "run"
  with metric_writers.MetricWriter(workdir, enabled=False, resume_step=3) as writer:
    writer.write_scalars(1, {"a": 1.0})
    writer.write_text(1, "t", "x")
    writer.flush()
  assert not workdir.exists()


def test_bad_input_is_rejected(tmp_path):
  with metric_writers.MetricWriter(tmp_path) as writer:
    with pytest.raises(TypeError, match="metric 'a' at step 1 is 'high'"):
      writer.write_scalars(1, {"a": "high"})
    with pytest.raises(ValueError, match="'step'"):
      writer.write_scalars(1, {"step": 1.0})
    with pytest.raises(TypeError, match="step must be an integer"):
      writer.write_scalars(1.5, {"a": 1.0})
    with pytest.raises(TypeError, match="not a str"):
      writer.write_text(1, "t", 3)
  assert metric_writers.read_metrics(tmp_path / "metrics.jsonl") == []
