"""The one module that speaks HTTP to the device API (urllib3, which
python-tuf brings).  Tokens travel only in the Authorization header and are
never logged."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict

import urllib3

from agent.exceptions import ApiError, UnreachableError

logger = logging.getLogger(__name__)
MAX_ANSWER = 1 << 20  # bytes


class Latencies:
    """Seconds per request, by endpoint (for the simulator's summary)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.samples: dict[str, list[float]] = defaultdict(list)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.samples[name].append(seconds)


class ApiClient:
    def __init__(self, base_url: str, timeout: float = 30.0, pool: urllib3.PoolManager | None = None,
                 latencies: Latencies | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.pool = pool or urllib3.PoolManager(maxsize=4, retries=False)
        self.latencies = latencies

    def post(self, path: str, body: dict, token: str | None = None) -> tuple[int, dict]:
        """POST JSON; returns (status, JSON answer).  Raises UnreachableError
        when there is no answer, ApiError when the answer is not JSON."""
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": "airlock-agent"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        started = time.monotonic()
        try:
            r = self.pool.request("POST", self.base_url + path, body=json.dumps(body).encode(), headers=headers,
                                  timeout=urllib3.Timeout(self.timeout), retries=False, preload_content=False)
            data = r.read(MAX_ANSWER + 1, decode_content=True)
            if len(data) > MAX_ANSWER:
                r.close()  # unread bytes must not go back to the pool
            r.release_conn()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise UnreachableError(f"{self.base_url} did not answer POST {path}: {type(exc).__name__}") from None
        if self.latencies is not None:
            self.latencies.add(path.rsplit("/", 1)[-1], time.monotonic() - started)
        if r.status >= 500 and r.status != 500:
            # 502/503/504 from a proxy or a restarting appliance: try again later
            raise UnreachableError(f"{self.base_url} answered {r.status} to POST {path}")
        try:
            answer = json.loads(data) if len(data) <= MAX_ANSWER else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ApiError(r.status, "not_json", f"POST {path} answered {r.status} without a JSON object")
        logger.debug("POST %s -> %s", path, r.status)
        return r.status, answer
