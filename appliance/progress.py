"""A progress bar on stderr for long imports and exports (terminals only).

An import goes through phases (copying metadata, verifying, copying targets,
publishing: :class:`signing.bundle.Progress`); the bar names the current
one, draws at once when the phase changes, and counts the files copied so
far, a number that never goes back.  Bytes and rate are per phase.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

CLEAR_TO_END = "\x1b[K"  # erase what a longer previous line left on the right


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n} B"


class ProgressBar:
    """Callable as ``progress(done_bytes, total_bytes, files, phase=None)``."""

    def __init__(self, label: str, stream: TextIO | None = None, min_interval: float = 0.2):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.min_interval = min_interval  # seconds between two redraws within a phase
        self.last = 0.0
        self.started = time.monotonic()
        self.phase: str | None = None
        self.files = 0
        self.drawn = False

    def __call__(self, done: int, total: int | None = None, files: int = 0, *, phase: str | None = None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        new_phase = phase is not None and phase != self.phase
        if new_phase:
            self.phase = phase
            self.started = now  # the rate is the phase's own
        elif now - self.last < self.min_interval and not (total and done >= total):
            return
        self.last = now
        self.files = files
        rate = done / max(now - self.started, 1e-6)
        head = f"{self.label}: {self.phase}" if self.phase else self.label
        if total:
            frac = min(done / total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"{head} [{bar:<30}] {_size(done)} / {_size(total)}  {files} files  {_size(rate)}/s"
        elif done:
            text = f"{head} {_size(done)}  {files} files  {_size(rate)}/s"
        else:
            text = f"{head}  {files} files"
        self.stream.write(f"\r{text}{CLEAR_TO_END}")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
