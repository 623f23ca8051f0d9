"""Plain check-ins answered without gunicorn's parser, Werkzeug or Flask.

A check-in is the device API's request that every device sends every
interval, and after a power cut the whole fleet sends one in the same
minute.  Through gunicorn's parser, a WSGI environ, Werkzeug's request and
response objects and Flask's dispatch and hooks, about half of its CPU went
to the framework (docs/benchmarks.md).  Here the worker's request thread
(``appliance/serve_worker.py``, which has already read the header block and
the small body without a thread) answers a *plain* check-in itself: it
calls the same service code as the view (``server.devices.views``:
``plain_checkin`` runs ``checkin_answer``, the view's own body, and maps
errors as the app's handlers do), and writes the answer as gunicorn and
Flask would: the same status line, headers and JSON, and the request's log
line at the request log's level (with ``via=fast``).

Only plain requests take this path: ``POST /api/v1/checkin HTTP/1.1``, kept
alive, a ``Content-Length`` body that has fully arrived, and only the
headers in :data:`PLAIN_HEADERS` (each once; behind a proxy also
``X-Forwarded-For`` and ``X-Forwarded-Proto``, as the site's nginx sends
them).  Anything else goes to gunicorn and Flask as before, which decide as
they always did, before anything is stored.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from gunicorn import SERVER
from werkzeug.http import HTTP_STATUS_CODES

from appliance.fast_metadata import HttpDate, plain_headers
from server.devices.views import bearer_token, plain_checkin
from server.requestlog import CHECKIN_PATH, HEADER, log_request, new_request_id

MAX_HEAD_BYTES = 8000  # a longer header block goes to gunicorn, which applies its own limits

_REQUEST_LINE = b"POST " + CHECKIN_PATH.encode() + b" HTTP/1.1"
# request headers a check-in may carry and still take this path
PLAIN_HEADERS = frozenset({b"host", b"user-agent", b"accept", b"accept-encoding", b"accept-language",
                           b"connection", b"content-type", b"content-length", b"authorization", b"x-request-id"})
# what the site's nginx adds (docs/nginx-airlock-site.conf), read when `behind_proxy` is set
PROXY_HEADERS = frozenset({b"x-forwarded-for", b"x-forwarded-proto"})
_ADDRESS = re.compile(r"[0-9A-Fa-f.:]{2,45}")


@dataclass(frozen=True)
class PlainCheckin:
    """A check-in this path may answer."""

    token: str | None
    mimetype: str  # the media type, lower case, without parameters
    body: bytes
    request_id: str | None  # the X-Request-Id sent, if any
    forwarded_for: str | None  # the device's address as the proxy gives it


def parse_checkin(head: bytes, body: bytes, *, behind_proxy: bool = False) -> PlainCheckin | None:
    """The check-in in ``head`` (one whole header block ending in a blank
    line) and ``body`` when it is plain enough for this path, else None."""
    if len(head) > MAX_HEAD_BYTES or not head.endswith(b"\r\n\r\n"):
        return None
    lines = head[:-4].split(b"\r\n")
    if lines[0] != _REQUEST_LINE:
        return None
    values = plain_headers(lines[1:], PLAIN_HEADERS | PROXY_HEADERS if behind_proxy else PLAIN_HEADERS)
    if values is None:
        return None
    length = values.get(b"content-length", "")
    if not length.isdigit() or int(length) != len(body) or not body:
        return None
    mimetype, _, params = values.get(b"content-type", "").partition(";")
    if params.strip() and params.strip().lower() != "charset=utf-8":
        return None  # Werkzeug decides what other parameters mean
    forwarded = values.get(b"x-forwarded-for")
    if forwarded is not None and not _ADDRESS.fullmatch(forwarded):
        return None  # a list or anything unusual: Werkzeug's ProxyFix picks from it
    authorization = values.get(b"authorization")
    return PlainCheckin(bearer_token(authorization) if authorization is not None else None,
                        mimetype.strip().lower(), body, values.get(b"x-request-id"), forwarded)


class CheckinFastPath:
    """Answers plain check-ins for one worker (from its request threads)."""

    def __init__(self, app: Any, *, behind_proxy: bool = False):
        self.app = app
        self.behind_proxy = behind_proxy
        self.dumps = app.json.dumps  # Flask's own JSON provider: sorted keys, ASCII
        self.date = HttpDate()

    def parse(self, head: bytes, body: bytes) -> PlainCheckin | None:
        return parse_checkin(head, body, behind_proxy=self.behind_proxy)

    def answer(self, req: PlainCheckin, peer: str | None) -> bytes:
        """Store the check-in and return the whole HTTP response (kept alive)."""
        started = time.monotonic()
        rid = new_request_id(req.request_id or "")
        address = req.forwarded_for if req.forwarded_for is not None else peer
        status, data, extra = plain_checkin(self.app, req.token, req.mimetype, req.body, address)
        body = (self.dumps(data, separators=(",", ":")) + "\n").encode("ascii")
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra,
                   ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store"), (HEADER, rid)]
        log_request(rid, "POST", CHECKIN_PATH, status, len(body), (time.monotonic() - started) * 1000, address,
                    via="fast")
        reason = HTTP_STATUS_CODES.get(status, "UNKNOWN").upper()
        return b"".join((f"HTTP/1.1 {status} {reason}\r\nServer: {SERVER}\r\nDate: ".encode("ascii"),
                         self.date.now(), b"\r\nConnection: keep-alive\r\n",
                         "".join(f"{name}: {value}\r\n" for name, value in headers).encode("latin-1"),
                         b"\r\n", body))
