"""Run a real `airlock serve` (gunicorn) on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def wait_until_answers(proc: subprocess.Popen, url: str, *, what: str, timeout: float, interval: float = 0.1,
                       log=lambda: "") -> None:
    """Poll ``url`` until it answers 200, at most ``timeout`` seconds; raise,
    with ``log()``, if ``proc`` exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer on {url}: {log()}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def airlock_serve_process(home: Path, *, workers: int | None = 1, threads: int | None = 8, timeout: float = 30.0,
                          log_name: str = "serve.log"):
    """``airlock serve`` on a free loopback port, answering: yields its
    process (the arbiter) and its base URL; ``None`` keeps the setting's
    default.  ``log_name``: its log in the home (two servers on one home
    need two)."""
    port = free_port()
    # no mDNS: this serve runs in the machine's own network (tests/support/netns.py runs mDNS)
    env = dict(os.environ, AIRLOCK_HOME=str(home), AIRLOCK_MDNS_ENABLED="0")
    log = open(home / log_name, "wb")  # noqa: SIM115
    sizing = [arg for flag, value in (("--workers", workers), ("--threads", threads)) if value is not None
              for arg in (flag, str(value))]
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "serve", "--bind", f"127.0.0.1:{port}", *sizing],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(proc, f"{base}/healthz", what="airlock serve", timeout=timeout,
                           log=lambda: (home / log_name).read_text())
        yield proc, base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextmanager
def airlock_server(home: Path, *, workers: int | None = 1, threads: int | None = 8, timeout: float = 30.0,
                   log_name: str = "serve.log"):
    """``airlock_serve_process``, yielding only the base URL."""
    with airlock_serve_process(home, workers=workers, threads=threads, timeout=timeout,
                               log_name=log_name) as (_proc, base):
        yield base
