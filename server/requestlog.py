"""One log line per request, with a request id.

The id is the client's ``X-Request-Id`` when it is a plain token of 8 to
64 characters (nginx in front sends its ``$request_id``, so its error log
and ours join), else a new random one; it is returned in the answer's
``X-Request-Id`` header, so a device's log, the console and the appliance's
journal can name the same request.  The line carries the method, the path
(untrusted: bounded and escaped by the formatter), the status, the bytes
answered when known, the milliseconds spent and the client's address.

The fleet's routine traffic is logged at DEBUG: TUF file requests
(``/repos/``) and answered check-ins (``POST /api/v1/checkin`` with a 2xx).
50,000 devices checking in every minute are 833 lines a second, which
would drown everything else and overrun journald's default rate limit
(10,000 messages in 30 s per service), so that it dropped the lines that
matter, errors included; a device's check-ins show in the console and in
``airlock devices show`` instead.  A refused check-in (4xx) is logged at
INFO like every other request, server errors at ERROR.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from flask import Flask, Response, g, request

logger = logging.getLogger("server.requests")

HEADER = "X-Request-Id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
MAX_PATH = 200  # characters of a path kept in the line


def new_request_id(incoming: str) -> str:
    """The id of a request that sent ``incoming`` as its X-Request-Id: that,
    when it is a plain token, else a new random one."""
    return incoming if _VALID_ID.match(incoming) else secrets.token_hex(16)


def request_id() -> str:
    """This request's id (inside a request)."""
    rid = g.get("request_id")
    if rid is None:
        rid = g.request_id = new_request_id(request.headers.get(HEADER, ""))
    return rid


ROUTINE_PATHS = ("/repos/",)  # prefixes of paths logged at DEBUG whatever their status
CHECKIN_PATH = "/api/v1/checkin"


def _started() -> None:
    g.request_started = time.monotonic()
    request_id()


def _level(path: str, status: int) -> int:
    if status >= 500:
        return logging.ERROR
    if path.startswith(ROUTINE_PATHS) or (status < 300 and path == CHECKIN_PATH):
        return logging.DEBUG
    return logging.INFO


def _finished(response: Response) -> Response:
    rid = request_id()
    response.headers[HEADER] = rid
    started = g.get("request_started")
    elapsed = (time.monotonic() - started) * 1000 if started is not None else None
    log_request(rid, request.method, request.path, response.status_code, response.content_length, elapsed,
                request.remote_addr)
    return response


def log_request(rid: str, method: str, path: str, status: int, size: int | None, elapsed: float | None,
                remote: str | None, via: str | None = None) -> None:
    """The request's line, at its level (also for requests answered outside
    Flask, which name their path in ``via``: appliance/fast_checkin.py).
    ``elapsed`` in milliseconds."""
    level = _level(path, status)
    if logger.isEnabledFor(level):
        fields = {"request_id": rid, "method": method[:16], "path": path[:MAX_PATH], "status": status,
                  "bytes": size, "ms": f"{elapsed:.1f}" if elapsed is not None else None, "remote": remote}
        if via is not None:
            fields["via"] = via
        logger.log(level, "%s %s %d", fields["method"], fields["path"], status, extra={"kv": fields})


def register(app: Flask) -> None:
    """Log every request of ``app``; registered first, so the id exists
    before any other hook (the permission check) can answer."""
    app.before_request(_started)
    app.after_request(_finished)
