"""The one module that speaks HTTP (urllib3, which python-tuf brings): the
device API client and the TUF fetcher.  Nothing else in ``agent/`` imports
an HTTP library (tests/unit/agent/test_http_layer.py checks), so timeouts,
size caps and what reaches a log are decided here once.  Tokens travel only
in the Authorization header and are never logged.

TLS: the appliance's certificate is pinned, not checked against a CA: the
connections compare the SHA-256 of the DER certificate the server presents
with the pin (learned from the appliance's mDNS TXT ``tls``, or configured)
and refuse the connection on any difference, before a byte of the request
is sent.  An API client that has a pin, or an https URL, never sends its
token over plain http.

``ResumingFetcher`` is the python-tuf ``FetcherInterface`` the agent gives
ngclient: it adds one thing to plain urllib3: bytes of a target already
received are kept in a ``.part`` file and the download continues with an
HTTP ``Range`` request.  ngclient still gets the *whole* file (the kept
bytes, then the new ones) and verifies its length and every hash before it
writes anything the agent will use.  A ``.part`` that fails verification
must be deleted by the caller, so a bad prefix is never resumed.

A kept-alive connection the appliance closes (its keep-alive timeout, 5 s)
just as a request goes out on it fails with no answer: the request crossed
the close.  No client can rule that race out, so ``Connections.request``
sends such a request again, on another connection, when it failed on a
connection that had already carried a request and the appliance closed or
reset it before any byte of an answer (never after a timeout, and never on
a new connection: that is an appliance that does not answer).  The server
that closes a kept-alive connection has not handled what crossed the close.
Were it a crash after handling, a resend is still harmless: GETs, a
check-in (which a device repeats by design) and a report (stored once per
``report_id``) may be sent twice, and an enrollment's nonce is taken once,
so its resend is answered 409 and the device enrolls again at its next
cycle, with a fresh nonce."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.ngclient.fetcher import FetcherInterface

from agent.exceptions import ApiError, PlainHttpRefusedError, TlsPinError, UnreachableError

logger = logging.getLogger(__name__)
MAX_ANSWER = 1 << 20  # bytes
CHUNK = 64 * 1024  # bytes
USER_AGENT = "airlock-agent"
MAX_RETRY_AFTER = 600  # seconds: a longer Retry-After is taken as this
BUSY_WAIT_LIMIT = 1800.0  # seconds waited in all for one file before giving up until the next check-in
_attempt = threading.local()  # .reused: the connection this thread's request went out on had carried one before


class _KeptAliveKnown:
    """A connection pool that notes, per thread, whether the connection it
    hands out had carried a request before (a new one has no socket yet)."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        _attempt.reused = conn.sock is not None
        return conn


class _HTTPPool(_KeptAliveKnown, urllib3.HTTPConnectionPool):
    pass


class _HTTPSPool(_KeptAliveKnown, urllib3.HTTPSConnectionPool):
    pass


def _closed_unanswered(exc: urllib3.exceptions.ProtocolError) -> bool:
    """The server closed or reset the connection before any byte of an
    answer (not a timeout, not a broken answer)."""
    cause = exc.args[1] if len(exc.args) > 1 else exc.__context__
    return isinstance(cause, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError))


class Connections:
    """A pool of keep-alive connections, shared by an agent's API client and
    its fetcher (the simulator shares one among all its devices); with a
    ``pin``, https connections accept only the certificate whose SHA-256 it is."""

    def __init__(self, maxsize: int = 4, pin: str | None = None):
        self.maxsize = maxsize
        self.pin: str | None = None
        self.pool = self._pool(pin)

    def _pool(self, pin: str | None) -> urllib3.PoolManager:
        self.pin = pin
        if pin is None:
            manager = urllib3.PoolManager(maxsize=self.maxsize, retries=False)
        else:
            # The pin replaces CA validation and host name checks: a device knows
            # its appliance by the certificate, not by a name a CA vouched for.
            manager = urllib3.PoolManager(maxsize=self.maxsize, retries=False, cert_reqs="CERT_NONE",
                                          assert_fingerprint=pin)
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return manager

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        """``PoolManager.request``, sending the request again when a
        kept-alive connection was closed under it (see the module's
        docstring), for as long as the failed connection was a kept-alive
        one: at most ``maxsize`` times (a failed connection goes back to
        the pool as none, so the next try opens a new one unless another
        thread returned a kept-alive one meanwhile), then once more."""
        for _ in range(self.maxsize):
            _attempt.reused = False
            try:
                return self.pool.request(method, url, **kwargs)
            except urllib3.exceptions.ProtocolError as exc:
                if not (_attempt.reused and _closed_unanswered(exc)):
                    raise
                logger.debug("%s %s: the appliance closed a kept-alive connection as the request went out; "
                             "sending it again", method, url)
        return self.pool.request(method, url, **kwargs)

    def set_pin(self, pin: str | None) -> None:
        """Pin another certificate (a rediscovered appliance): new connections only."""
        if pin != self.pin:
            old, self.pool = self.pool, self._pool(pin)
            old.clear()

    def close(self) -> None:
        self.pool.clear()


def _tls_refusal(url: str, exc: urllib3.exceptions.SSLError, pin: str | None) -> TlsPinError:
    reason = str(exc.args[0] if exc.args else exc)[:300]
    if pin and "ingerprint" in reason:
        return TlsPinError(f"{url} presented a TLS certificate that is not the pinned one (sha256 {pin}): refusing "
                           f"to talk to it ({reason}); if the appliance's certificate was replaced, set "
                           "tls_fingerprint to what `airlock tls show` prints there")
    return TlsPinError(f"{url}: TLS failed ({reason})")


class Latencies:
    """Seconds per request, by endpoint (for the simulator's summary)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.samples: dict[str, list[float]] = defaultdict(list)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.samples[name].append(seconds)


class ApiClient:
    def __init__(self, base_url: str, timeout: float = 30.0, connections: Connections | None = None,
                 latencies: Latencies | None = None, require_tls: bool = False):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout  # seconds: connect, and between bytes
        self.connections = connections or Connections()
        self.latencies = latencies
        # a device that knows a pin (or was given https) never sends its token in clear
        self.require_tls = require_tls or self.base_url.startswith("https://") or self.connections.pin is not None

    @property
    def pool(self) -> urllib3.PoolManager:
        return self.connections.pool

    def post(self, path: str, body: dict, token: str | None = None, secret: bool = False) -> tuple[int, dict]:
        """POST JSON; returns (status, JSON answer).  Raises UnreachableError
        when there is no answer, ApiError when the answer is not JSON.
        ``secret``: the body holds a secret (an enrollment token)."""
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
        if (token or secret) and self.require_tls and not self.base_url.startswith("https://"):
            raise PlainHttpRefusedError(
                f"refusing to send a device token to {self.base_url} over plain http: this device talks to "
                "its appliance over TLS (a pinned certificate or an https URL); use the appliance's https URL")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        started = time.monotonic()
        try:
            r = self.connections.request("POST", self.base_url + path, body=json.dumps(body).encode(),
                                         headers=headers, timeout=urllib3.Timeout(self.timeout), retries=False,
                                         preload_content=False)
            data = r.read(MAX_ANSWER + 1, decode_content=True)
            if len(data) > MAX_ANSWER:
                r.close()  # unread bytes must not go back to the pool
            r.release_conn()
        except urllib3.exceptions.SSLError as exc:
            raise _tls_refusal(self.base_url, exc, self.connections.pin) from None
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


class ResumingFetcher(FetcherInterface):
    def __init__(self, timeout: float = 30.0, connections: Connections | None = None):
        self.timeout = timeout  # seconds: connect, and between bytes
        self.connections = connections or Connections()
        self._local = threading.local()
        self.range_requests = 0
        self.resumed_bytes = 0  # bytes taken from .part files instead of the network
        self.received_bytes = 0  # bytes received over the network
        self.busy_wait_limit = BUSY_WAIT_LIMIT  # seconds waited in all for one file on Retry-After
        self.busy_waits = 0
        self.sleep = time.sleep

    @property
    def pool(self) -> urllib3.PoolManager:
        return self.connections.pool

    def resume_into(self, url_prefix: str, part: Path | None) -> None:
        """Keep what arrives from URLs under ``url_prefix`` in ``part`` (None: stop)."""
        self._local.part = (url_prefix, part) if part is not None else None

    def _part_for(self, url: str) -> Path | None:
        spec = getattr(self._local, "part", None)
        return spec[1] if spec and url.startswith(spec[0]) else None

    def _get(self, url: str, offset: int) -> urllib3.BaseHTTPResponse:
        headers = {"User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            return self.connections.request("GET", url, headers=headers, preload_content=False, retries=False,
                                            timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout))
        except urllib3.exceptions.TimeoutError as exc:
            raise tuf_errors.SlowRetrievalError(f"{url}: timed out") from exc
        except urllib3.exceptions.SSLError as exc:
            raise tuf_errors.DownloadError(str(_tls_refusal(url, exc, self.connections.pin))) from None

    def _get_when_admitted(self, url: str, offset: int) -> urllib3.BaseHTTPResponse:
        """``_get``, waiting as told while the appliance answers a busy
        ``503``/``429`` with ``Retry-After`` (its download caps): each wait
        at most ``MAX_RETRY_AFTER``, all of them at most ``busy_wait_limit``;
        then the busy answer stands (the caller tries again later)."""
        waited = 0.0
        while True:
            response = self._get(url, offset)
            delay = retry_after(response)
            if delay is None or waited + delay > self.busy_wait_limit:
                return response
            _done_with(response, complete=False)
            self.busy_waits += 1
            logger.info("the appliance is busy serving downloads: trying %s again in %.0f s",
                        url.rsplit("/", 1)[-1], delay)
            self.sleep(delay)
            waited += delay

    def _fetch(self, url: str) -> Iterator[bytes]:
        part = self._part_for(url)
        offset = part.stat().st_size if part is not None and part.exists() else 0
        response = self._get_when_admitted(url, offset)
        if response.status == 416 and part is not None and offset:
            # the kept part is not a prefix of what is served now: start over
            _done_with(response, complete=False)
            part.unlink(missing_ok=True)
            offset = 0
            response = self._get(url, 0)
        if response.status in (429, 503) and retry_after(response) is not None:
            _done_with(response, complete=False)
            # busy, not broken: the agent tries again later (not a failed update)
            raise tuf_errors.DownloadError(f"{url}: the appliance is busy serving downloads (HTTP {response.status})")
        if response.status >= 400:
            _done_with(response, complete=False)
            raise tuf_errors.DownloadHTTPError(f"{url}: HTTP {response.status}", response.status)
        if offset:
            content_range = response.headers.get("Content-Range", "")
            if response.status == 206 and content_range.startswith(f"bytes {offset}-"):
                self.range_requests += 1
                logger.info("resuming %s from byte %d with a Range request", url.rsplit("/", 1)[-1], offset)
            else:
                logger.info("the server ignored the Range request: downloading %s again", url.rsplit("/", 1)[-1])
                offset = 0
        return self._chunks(response, part, offset)

    def _chunks(self, response: urllib3.BaseHTTPResponse, part: Path | None, offset: int) -> Iterator[bytes]:
        sink = None
        complete = False
        try:
            if part is not None:
                if offset:
                    with open(part, "rb") as kept:
                        left = offset
                        while left:
                            chunk = kept.read(min(CHUNK, left))
                            if not chunk:
                                break
                            left -= len(chunk)
                            self.resumed_bytes += len(chunk)
                            yield chunk
                sink = open(part, "ab" if offset else "wb")  # noqa: SIM115 - closed in finally
            for chunk in response.stream(CHUNK):
                self.received_bytes += len(chunk)
                if sink is not None:
                    sink.write(chunk)
                yield chunk
            complete = True
        except urllib3.exceptions.TimeoutError as exc:
            raise tuf_errors.SlowRetrievalError("timed out between bytes") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise tuf_errors.DownloadError(f"download interrupted: {type(exc).__name__}") from exc
        finally:
            if sink is not None:
                sink.flush()
                sink.close()
            _done_with(response, complete)


def retry_after(response: urllib3.BaseHTTPResponse) -> float | None:
    """Seconds a busy answer (503, 429) says to wait: ``Retry-After`` in
    seconds, at most ``MAX_RETRY_AFTER``; None for any other answer, or a
    header that is missing or not a number of seconds."""
    if response.status not in (429, 503):
        return None
    value = (response.headers.get("Retry-After") or "").strip()
    if not value.isdigit() or len(value) > 6:
        return None
    return float(min(int(value), MAX_RETRY_AFTER))


def _done_with(response: urllib3.BaseHTTPResponse, complete: bool) -> None:
    """Give the connection back to the pool only when the whole body was
    read: a connection with unread bytes would poison the next request."""
    if not complete:
        response.close()
    response.release_conn()
