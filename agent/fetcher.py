"""A python-tuf fetcher that resumes target downloads.

ngclient fetches everything through a ``FetcherInterface``; this one adds
one thing to plain urllib3: bytes of a target already received are kept in
a ``.part`` file and the download continues with an HTTP ``Range`` request.
ngclient still gets the *whole* file (the kept bytes, then the new ones)
and verifies its length and every hash before it writes anything the
agent will use.  A ``.part`` that fails verification must be deleted by the
caller, so a bad prefix is never resumed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import urllib3
from tuf.api import exceptions
from tuf.ngclient.fetcher import FetcherInterface

logger = logging.getLogger(__name__)
CHUNK = 64 * 1024  # bytes


class ResumingFetcher(FetcherInterface):
    def __init__(self, timeout: float = 30.0, pool: urllib3.PoolManager | None = None):
        self.timeout = timeout  # seconds: connect, and between bytes
        self.pool = pool or urllib3.PoolManager(maxsize=4, retries=False)
        self._local = threading.local()
        self.range_requests = 0
        self.resumed_bytes = 0  # bytes taken from .part files instead of the network
        self.received_bytes = 0  # bytes received over the network

    def resume_into(self, url_prefix: str, part: Path | None) -> None:
        """Keep what arrives from URLs under ``url_prefix`` in ``part`` (None: stop)."""
        self._local.part = (url_prefix, part) if part is not None else None

    def _part_for(self, url: str) -> Path | None:
        spec = getattr(self._local, "part", None)
        return spec[1] if spec and url.startswith(spec[0]) else None

    def _get(self, url: str, offset: int):
        headers = {"User-Agent": "airlock-agent"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            return self.pool.request("GET", url, headers=headers, preload_content=False, retries=False,
                                     timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout))
        except urllib3.exceptions.TimeoutError as exc:
            raise exceptions.SlowRetrievalError(f"{url}: timed out") from exc

    def _fetch(self, url: str) -> Iterator[bytes]:
        part = self._part_for(url)
        offset = part.stat().st_size if part is not None and part.exists() else 0
        response = self._get(url, offset)
        if response.status == 416 and offset:
            # the kept part is not a prefix of what is served now: start over
            _done_with(response, complete=False)
            part.unlink(missing_ok=True)
            offset = 0
            response = self._get(url, 0)
        if response.status >= 400:
            _done_with(response, complete=False)
            raise exceptions.DownloadHTTPError(f"{url}: HTTP {response.status}", response.status)
        if offset:
            content_range = response.headers.get("Content-Range", "")
            if response.status == 206 and content_range.startswith(f"bytes {offset}-"):
                self.range_requests += 1
                logger.info("resuming %s from byte %d with a Range request", url.rsplit("/", 1)[-1], offset)
            else:
                logger.info("the server ignored the Range request: downloading %s again", url.rsplit("/", 1)[-1])
                offset = 0
        return self._chunks(response, part, offset)

    def _chunks(self, response, part: Path | None, offset: int) -> Iterator[bytes]:
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
            raise exceptions.SlowRetrievalError("timed out between bytes") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise exceptions.DownloadError(f"download interrupted: {type(exc).__name__}") from exc
        finally:
            if sink is not None:
                sink.flush()
                sink.close()
            _done_with(response, complete)


def _done_with(response, complete: bool) -> None:
    """Give the connection back to the pool only when the whole body was
    read: a connection with unread bytes would poison the next request."""
    if not complete:
        response.close()
    response.release_conn()
