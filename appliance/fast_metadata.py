"""Answers for ``/repos/<name>/metadata/<file>`` without a thread, a parser
or Flask's request machinery: the poll path.

Every device asks for ``timestamp.json`` (and for the next ``N.root.json``,
a 404) on every poll.  :class:`MetadataFastPath` answers such a request in
the worker's main loop (``appliance/serve_worker.py``) from a cache of the
responses the Flask view itself produced, byte for byte, so the headers,
status and error pages stay exactly what the view answers.

Never stale, across workers and processes: a cached answer is used only
while one ``stat`` of the file's path through the published ``metadata``
link gives the same (device, inode, size, mtime) as when it was filled; the
view's ETag is made of the same fields.  Published files are written once
and never modified (``server/repositories/store.py``), and an import swaps
the link with one ``rename``, so a poll right after an import stats the new
file and fills again.  A path that does not exist is answered from its
cached 404 only while ``stat`` still finds nothing there.

Only plain requests take this path: ``GET`` or ``HEAD``, HTTP/1.1 kept
alive, a literal path (no ``%``, no query), and only the headers in
:data:`PLAIN_HEADERS`, with ``If-None-Match`` at most the file's own ETag.
Everything else (``Range``, ``If-Modified-Since``, cookies, forwarded
headers, a body, ``Connection: close``, anything malformed) goes to gunicorn
and Flask as before, which decide as they always did.

Each answer carries a fresh ``X-Request-Id`` of its own (the one in the
view's cached answer belonged to the request that filled it); polls
answered here write no request log line (the app logs ``/repos/`` requests
at DEBUG only).
"""

from __future__ import annotations

import io
import logging
import os
import re
import secrets
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

from gunicorn import SERVER

from server.repositories.store import is_metadata_name
from server.repositories.views import stored_name

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 256 * 1024  # larger files (a big targets.json) are served by the view every time
MAX_CACHE_BYTES = 8 * 1024 * 1024  # per worker; the oldest entries go first
MAX_ENTRIES = 4096  # per worker, including 404s
MAX_MISSING = 256  # 404s per worker: names nobody published go to the view beyond that (a scan cannot evict the rest)
MAX_HEAD_BYTES = 4000  # a longer header block goes to gunicorn, which applies its own limits

_REQUEST_LINE = re.compile(rb"(GET|HEAD) (/repos/[a-z0-9][a-z0-9-]{0,62}/metadata/([A-Za-z0-9._~-]{1,240})) HTTP/1\.1")
_ROOT_NAME = re.compile(r"[1-9][0-9]{0,8}\.root\.json")
_REPO_PART = re.compile(r"/repos/([^/]+)/metadata/")
_HEADER_LINE = re.compile(rb"([A-Za-z0-9-]{1,64}):[ \t]*([\x21-\x7e](?:[\x20-\x7e]{0,1000}[\x21-\x7e])?)[ \t]*")
# request headers that cannot change the view's answer; any other header sends the request the slow way
PLAIN_HEADERS = frozenset({b"host", b"user-agent", b"accept", b"accept-encoding", b"accept-language", b"connection",
                           b"if-none-match", b"cache-control", b"pragma"})
_BLANKS = " \t"
# gunicorn drops these from an application's response (hop-by-hop)
_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
                  "transfer-encoding", "upgrade"})


@dataclass(frozen=True)
class PlainRequest:
    """A request the fast path may answer."""

    method: bytes  # b"GET" or b"HEAD"
    path: str  # /repos/NAME/metadata/FILE, as sent (no decoding needed)
    filename: str  # the file in the published metadata folder
    host: str | None
    if_none_match: str | None


@dataclass(frozen=True)
class Cached:
    """The view's answer for one path while the file is ``identity``."""

    identity: tuple[int, int, int, int] | None  # (dev, ino, size, mtime_ns); None: no such file
    status: bytes  # b"200 OK"
    headers: bytes  # the view's headers, as gunicorn writes them ("Name: value\r\n" each)
    body: bytes
    etag: str | None  # the quoted ETag, for If-None-Match
    not_modified: bytes | None  # the view's headers of its 304, for that ETag


def parse_plain(head: bytes) -> PlainRequest | None:
    """The request in ``head`` (one whole header block ending in a blank line)
    when it is plain enough for the fast path, else None."""
    if len(head) > MAX_HEAD_BYTES or not head.endswith(b"\r\n\r\n"):
        return None
    lines = head[:-4].split(b"\r\n")
    m = _REQUEST_LINE.fullmatch(lines[0])
    if m is None:
        return None
    values = plain_headers(lines[1:], PLAIN_HEADERS)
    if values is None:
        return None
    filename = stored_name(m.group(3).decode("ascii"))
    if not is_metadata_name(filename):
        return None
    return PlainRequest(m.group(1), m.group(2).decode("ascii"), filename, values.get(b"host"),
                        values.get(b"if-none-match"))


def plain_headers(lines: list[bytes], allowed: frozenset[bytes]) -> dict[bytes, str] | None:
    """The header lines of a request a fast path may answer, as lower-case
    name -> value: only names in ``allowed``, each once, printable ASCII
    values, and ``Connection`` (if sent) ``keep-alive``; else None, and
    gunicorn and Flask answer (``close``, or anything else: gunicorn's own
    closing handshake)."""
    values: dict[bytes, str] = {}
    for line in lines:
        h = _HEADER_LINE.fullmatch(line)
        if h is None:
            return None
        name = h.group(1).lower()
        if name not in allowed or name in values:
            return None
        values[name] = h.group(2).decode("ascii")
    if values.get(b"connection", "keep-alive").lower() != "keep-alive":
        return None
    return values


class HttpDate:
    """gunicorn's ``Date`` header value, formatted once a second."""

    def __init__(self) -> None:
        self.current = (-1, b"")  # (second, its value): one attribute, read once, so threads never mix two

    def now(self) -> bytes:
        t = int(time.time())
        second, value = self.current
        if t != second:
            value = formatdate(t, localtime=False, usegmt=True).encode("ascii")
            self.current = (t, value)
        return value


class MetadataFastPath:
    """The cache of one worker (used from its main thread only)."""

    def __init__(self, public_dir: Path, app: Callable[..., Any], server: tuple[str, int] | None = None):
        self.repos = str(public_dir / "repos")
        self.app = app
        self.server = server or ("127.0.0.1", 0)
        self.cache: dict[str, Cached] = {}
        self.cached_bytes = 0
        self.missing = 0  # entries that are 404s
        self.date = HttpDate()
        self.hits = 0
        self.fills = 0

    def answer(self, req: PlainRequest, client: Any = None) -> bytes | None:
        """The whole HTTP response for ``req``, or None: send it the slow way."""
        repo = _REPO_PART.match(req.path)
        if repo is None:
            return None
        try:
            st = os.stat(f"{self.repos}/{repo.group(1)}/metadata/{req.filename}")
        except (FileNotFoundError, NotADirectoryError):
            identity = None
        except OSError:
            return None  # permissions, a link loop...: the view says what
        else:
            if not stat.S_ISREG(st.st_mode):
                return None
            identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        entry = self.cache.get(req.path)
        if entry is None or entry.identity != identity:
            entry = self._fill(req, identity, client)
            if entry is None:
                return None
        else:
            self.hits += 1
        if req.if_none_match is not None:
            if entry.etag is None or req.if_none_match != entry.etag or entry.not_modified is None:
                return None  # lists, weak tags, other tags: the view compares them
            return self._response(b"304 NOT MODIFIED", entry.not_modified, b"")
        return self._response(entry.status, entry.headers, b"" if req.method == b"HEAD" else entry.body)

    def _response(self, status: bytes, headers: bytes, body: bytes) -> bytes:
        return b"".join((b"HTTP/1.1 ", status, b"\r\nServer: ", SERVER.encode(), b"\r\nDate: ", self.date.now(),
                         b"\r\nConnection: keep-alive\r\n", headers, b"X-Request-Id: ",
                         secrets.token_hex(16).encode(), b"\r\n\r\n", body))

    def warm_up(self) -> int:
        """Fill the cache with what every device asks first (each
        repository's ``timestamp.json``, ``root.json`` and the next root
        version, a 404), so the first polls after a start (a power cut: the
        whole fleet at once) find it ready; returns the answers filled."""
        filled = 0
        try:
            repos = sorted(os.listdir(self.repos))
        except OSError:
            return 0
        for repo in repos[:64]:
            try:
                names = os.listdir(f"{self.repos}/{repo}/metadata")
            except OSError:
                continue
            roots = [int(n.split(".", 1)[0]) for n in names if _ROOT_NAME.fullmatch(n)]
            for name in ("timestamp.json", "root.json", f"{max(roots, default=0) + 1}.root.json"):
                req = parse_plain(f"GET /repos/{repo}/metadata/{name} HTTP/1.1\r\n\r\n".encode())
                if req is not None and self.answer(req) is not None:
                    filled += 1
        return filled

    # filling ----------------------------------------------------------------
    def _fill(self, req: PlainRequest, identity: tuple[int, int, int, int] | None, client: Any) -> Cached | None:
        """Ask the view (a GET, and a conditional GET for the 304) and keep
        its answer if it is for the file ``identity`` names."""
        if identity is None and self.missing >= MAX_MISSING and req.path not in self.cache:
            return None
        status, headers, body = self._call(req, client, None)
        fields = {name.lower(): value for name, value in headers}
        length = fields.get("content-length")
        if length is None or not length.isdigit() or int(length) != len(body) or len(body) > MAX_FILE_BYTES:
            return None
        etag = fields.get("etag")
        if identity is None:
            if not status.startswith("404 "):
                return None
            not_modified = None
        else:
            dev, ino, size, mtime_ns = identity
            if not status.startswith("200 ") or etag != f'"{ino:x}-{size:x}-{mtime_ns:x}"':
                return None  # published again since the stat: answer the slow way this once
            nm_status, nm_headers, _ = self._call(req, client, etag)
            not_modified = _header_block(nm_headers) if nm_status.startswith("304 ") else None
        entry = Cached(identity, status.encode("latin-1"), _header_block(headers), body, etag, not_modified)
        self._store(req.path, entry)
        self.fills += 1
        return entry

    def _call(self, req: PlainRequest, client: Any, if_none_match: str | None) -> tuple[str, list, bytes]:
        environ = {
            "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": req.path, "QUERY_STRING": "",
            "RAW_URI": req.path, "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": str(self.server[0]),
            "SERVER_PORT": str(self.server[1]), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr, "wsgi.version": (1, 0), "wsgi.multithread": True,
            "wsgi.multiprocess": True, "wsgi.run_once": False,
        }
        if isinstance(client, tuple) and len(client) >= 2:
            environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = str(client[0]), str(client[1])
        if req.host is not None:
            environ["HTTP_HOST"] = req.host
        if if_none_match is not None:
            environ["HTTP_IF_NONE_MATCH"] = if_none_match
        answer: list = []

        def start_response(status, headers, exc_info=None):
            answer[:] = [status, headers]

        body_iter = self.app(environ, start_response)
        try:
            body = b"".join(body_iter)
        finally:
            close = getattr(body_iter, "close", None)
            if close is not None:
                close()
        return answer[0], answer[1], body

    def _store(self, path: str, entry: Cached) -> None:
        old = self.cache.pop(path, None)
        if old is not None:
            self._forget(old)
        while self.cache and (self.cached_bytes + len(entry.body) > MAX_CACHE_BYTES or len(self.cache) >= MAX_ENTRIES):
            self._forget(_pop_oldest(self.cache)[1])
        self.cache[path] = entry
        self.cached_bytes += len(entry.body)
        self.missing += entry.identity is None

    def _forget(self, entry: Cached) -> None:
        self.cached_bytes -= len(entry.body)
        self.missing -= entry.identity is None


def _pop_oldest(cache: dict[str, Cached]) -> tuple[str, Cached]:
    key = next(iter(cache))
    return key, cache.pop(key)


def _header_block(headers: list) -> bytes:
    """The application's headers as gunicorn writes them: hop-by-hop ones
    dropped, values stripped of spaces and tabs."""
    return "".join(f"{name}: {value.strip(_BLANKS)}\r\n" for name, value in headers
                   if name.lower() not in _HOP and name.lower() != "x-request-id").encode("latin-1")

