"""Per worker: look (at most every ``rollout_check_interval`` s, from a
check-in) whether the rollouts' gates are due for evaluation, and if this
worker claims the turn in the database, evaluate them in a thread, never
in the request itself."""

from __future__ import annotations

import logging
import threading
import time

from server.clock import now_unix
from server.models import database
from server.rollouts.services import claim, evaluate
from server.settings import Settings

logger = logging.getLogger(__name__)


class RolloutScheduler:
    def __init__(self, settings: Settings):
        self.settings = settings
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
            self._next_look = now + self.settings.rollout_check_interval
            self._running = threading.Thread(target=self._run, name="airlock-rollout-gates", daemon=True)
            self._running.start()

    def _run(self) -> None:
        try:
            if claim(self.settings, now_unix()):
                evaluate(self.settings)
        except Exception:  # noqa: BLE001 - a background job must log, never kill the worker
            logger.exception("evaluating the rollouts failed; it will be tried again")
        finally:
            if not database.is_closed():
                database.close()
