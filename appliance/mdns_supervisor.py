"""Keeping the mDNS process running beside ``airlock serve``.

``airlock serve`` starts one supervisor process (``python -m appliance.mdns
--supervise``) before gunicorn forks anything; the supervisor runs the mDNS
process (:mod:`appliance.mdns`) as its child and restarts it when it dies,
waiting 1, 2, 4 ... up to 60 seconds between attempts.  The supervisor
stops its child and exits on SIGTERM/SIGINT or when ``airlock serve`` is
gone, however it went.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from server.settings import Settings

logger = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0  # seconds
BACKOFF_MAX = 60.0  # seconds
HEALTHY_AFTER = 60.0  # seconds a child must run before the backoff starts over
STOP_TIMEOUT = 10.0  # seconds a child gets to say goodbye before it is killed


def _command(settings: Settings, *extra: str) -> list[str]:
    return [sys.executable, "-m", "appliance.mdns", "--home", str(settings.home), "--bind", settings.bind, *extra]


@dataclass
class Supervisor:
    proc: subprocess.Popen
    owner: int  # pid that started it: gunicorn's forked workers unwind through serve() too

    def stop(self) -> None:
        if os.getpid() == self.owner:
            stop_process(self.proc)


def start_supervised(settings: Settings) -> Supervisor | None:
    """Start the supervisor for ``airlock serve``, or nothing when mDNS is off."""
    if not settings.mdns_enabled:
        return None
    return Supervisor(subprocess.Popen(_command(settings, "--supervise"), stdin=subprocess.DEVNULL), os.getpid())


def stop_process(proc: subprocess.Popen | None, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def supervise(settings: Settings) -> int:
    """Run the mDNS process and restart it whenever it dies."""
    parent = os.getppid()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    backoff = BACKOFF_FIRST
    while not stop.is_set():
        started = time.monotonic()
        child = subprocess.Popen(_command(settings), stdin=subprocess.DEVNULL)
        logger.info("mDNS process %d started", child.pid)
        while child.poll() is None and not stop.is_set():
            if os.getppid() != parent:  # airlock serve died without stopping us
                stop.set()
            stop.wait(0.5)
        if stop.is_set():
            stop_process(child)
            break
        if time.monotonic() - started > HEALTHY_AFTER:
            backoff = BACKOFF_FIRST
        logger.warning("mDNS process %d exited with status %s; restarting in %.0f s",
                       child.pid, child.returncode, backoff)
        stop.wait(backoff)
        backoff = min(backoff * 2, BACKOFF_MAX)
    return 0
