"""A job that one worker of several runs now and then, off the request path.

Check-ins ``poke()`` it; at most every ``every`` seconds a worker looks
whether the job is due, and if this worker wins ``claim()`` (a row in the
database, so one worker of all the app servers' does), it runs ``run()`` in
a daemon thread, never in the request.  Device maintenance and the
rollouts' gates are such jobs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from server.models import database

logger = logging.getLogger(__name__)


class ClaimedJob:
    def __init__(self, every: float, name: str, what: str, claim: Callable[[], bool], run: Callable[[], object]):
        self.every = every  # seconds between this worker's looks
        self.name = name  # the thread's name
        self.what = what  # for the log line when it fails
        self._claim, self._work = claim, run
        self._next_look = 0.0
        self._lock = threading.Lock()
        self._running: threading.Thread | None = None

    def poke(self) -> None:
        now = time.monotonic()
        if now < self._next_look:
            return
        with self._lock:
            if now < self._next_look or (self._running and self._running.is_alive()):
                return
            self._next_look = now + self.every
            self._running = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._running.start()

    def _run(self) -> None:
        try:
            if self._claim():
                self._work()
        except Exception:  # noqa: BLE001 - a background job must log, never kill the worker
            logger.exception("%s failed; it will be tried again", self.what)
        finally:
            if not database.is_closed():
                database.close()
