"""A progress bar on stderr for long imports and exports (terminals only)."""

import sys
import time


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n} B"


class ProgressBar:
    """Callable as ``progress(done_bytes, total_bytes, files)``."""

    def __init__(self, label: str, stream=None, min_interval: float = 0.2):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.min_interval = min_interval
        self.last = 0.0
        self.started = time.monotonic()
        self.drawn = False

    def __call__(self, done: int, total: int | None, files: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < self.min_interval and not (total and done >= total):
            return
        self.last = now
        rate = done / max(now - self.started, 1e-6)
        if total:
            frac = min(done / total, 1.0) if total else 0
            bar = "#" * int(frac * 30)
            text = f"\r{self.label} [{bar:<30}] {_size(done)} / {_size(total)}  {files} files  {_size(rate)}/s"
        else:
            text = f"\r{self.label} {_size(done)}  {files} files  {_size(rate)}/s"
        self.stream.write(text)
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
