"""Run ``wrk --latency`` against one URL and parse what it prints."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


@dataclass
class WrkResult:
    requests_per_second: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors plus non-2xx/3xx responses
    output: str


def _latency_ms(text: str, percentile: str) -> float:
    m = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.MULTILINE)
    if not m:
        raise RuntimeError(f"no {percentile}% latency in wrk output:\n{text}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse(text: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", text, re.MULTILINE)
    if not rps or not total:
        raise RuntimeError(f"cannot read wrk output:\n{text}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors += int(non2xx.group(1)) if non2xx else 0
    return WrkResult(float(rps.group(1)), int(total.group(1)), _latency_ms(text, "50"), _latency_ms(text, "99"),
                     errors, text)


def run_wrk(wrk: str, url: str, *, threads: int, connections: int, seconds: int) -> WrkResult:
    """``wrk -tT -cC -dDs --latency URL``; bounded by ``seconds`` (plus a margin)
    and by wrk's per-request timeout."""
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "--latency", url]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=seconds + 30, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return parse(r.stdout)
