"""Progress output: a redrawn line on a TTY, plain lines every `log_every` units otherwise."""

import io

from hybrid_jax import progress


class _Tty(io.StringIO):

  def isatty(self):
    return True


def test_plain_stream_logs_every_n_and_at_end():
  out = io.StringIO()
  p = progress.Progress(10, desc="train", unit="step", stream=out, log_every=4)
  for done in range(1, 11):
    p.update(done, f"loss {done}")
  lines = out.getvalue().splitlines()
  assert [l.split(" | ")[0] for l in lines
         ] == ["train 4/10 ( 40%)", "train 8/10 ( 80%)", "train 10/10 (100%)"]
  assert "\r" not in out.getvalue() and lines[-1].endswith("loss 10")


def test_tty_redraws_in_place():
  out = _Tty()
  p = progress.Progress(3, stream=out, min_interval_s=0.0)
  for done in range(1, 4):
    p.update(done)
  text = out.getvalue()
  assert text.count("\r\x1b[2K") == 3 and text.endswith("\n") and text.count("\n") == 1


def test_format_duration():
  assert progress.format_duration(59) == "00:59"
  assert progress.format_duration(3661) == "1:01:01"
