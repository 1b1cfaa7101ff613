"""Progress output for long work (training steps, encoding): one redrawn line on a terminal, plain
log lines otherwise (CI logs, `nohup`, files), never both."""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float) -> str:
  seconds = max(0, int(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
  """`update(done, text)` shows done/total, rate, ETA and `text`.

  On a TTY the line is redrawn in place at most every `min_interval_s`; elsewhere a line is printed
  every `log_every` units (and at the end), so logs stay readable.
  """

  def __init__(self, total: int, *, desc: str = "", unit: str = "it", stream=None,
               log_every: int | None = None, min_interval_s: float = 0.2, start: int = 0,
               enabled: bool = True):
    self.total = total
    self.desc = desc
    self.unit = unit
    self.stream = stream or sys.stderr
    self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.log_every = log_every or max(1, total // 10)
    self.min_interval_s = min_interval_s
    self.enabled = enabled
    self._start_done = start
    self._t0 = time.perf_counter()
    self._last_draw = 0.0
    self._last_logged = start

  def line(self, done: int, text: str = "") -> str:
    elapsed = time.perf_counter() - self._t0
    rate = (done - self._start_done) / elapsed if elapsed > 0 else 0.0
    eta = (self.total - done) / rate if rate > 0 else float("nan")
    pct = 100.0 * done / self.total if self.total else 100.0
    eta_text = format_duration(eta) if eta == eta else "--:--"
    parts = [
        f"{self.desc} {done}/{self.total} ({pct:3.0f}%)".strip(), f"{rate:.1f} {self.unit}/s",
        f"elapsed {format_duration(elapsed)}", f"ETA {eta_text}"
    ]
    if text:
      parts.append(text)
    return " | ".join(parts)

  def update(self, done: int, text: str = "", force: bool = False) -> None:
    if not self.enabled:
      return
    now = time.perf_counter()
    finished = done >= self.total
    if self.tty:
      if force or finished or now - self._last_draw >= self.min_interval_s:
        self.stream.write("\r\x1b[2K" + self.line(done, text) + ("\n" if finished else ""))
        self.stream.flush()
        self._last_draw = now
    elif force or finished or done - self._last_logged >= self.log_every:
      self.stream.write(self.line(done, text) + "\n")
      self.stream.flush()
      self._last_logged = done
