"""One error vocabulary for the web side.

Every ``AirlockError`` carries its HTTP ``status`` and stable ``code``
(``signing.exceptions``); ``register(app)`` installs the one handler that
turns any of them, and any HTTP error under ``/api/``, into the one JSON
shape the device API documents::

    {"error": CODE, "message": "what is wrong and what to do", ...extra}

``CODES`` is the list of every code the API can answer with: the OpenAPI
document enumerates it, ``docs/device-api.md`` must list each one, and a
test checks that every error class's code is in it.  Outside ``/api/``
the same errors are an HTML page (``server.console.pages.error_page``) with
the one-line message and never a stack trace; the report form registers its
own handler on its blueprint, which Flask prefers for errors raised there.
"""

from __future__ import annotations

import logging
import re

from flask import Flask, Response, jsonify, request
from playhouse.pool import MaxConnectionsExceeded  # type: ignore[import-untyped]
from werkzeug.exceptions import HTTPException

from server.devices.exceptions import UnavailableError
from signing.exceptions import AirlockError

logger = logging.getLogger(__name__)
BUSY_RETRY_AFTER = 30  # seconds a request refused for want of a database connection is told to wait

# code -> what it means; the API answers with no other code
CODES: dict[str, str] = {
    "bad_request": "The request was refused; the message says why.",
    "invalid_request": "A field or argument is malformed (the message names it); nothing was stored.",
    "malformed_json": "The body is not one strict UTF-8 JSON object.",
    "clock_skew": "The enrollment's timestamp is too far from the appliance's clock (see server_time).",
    "bad_signature": "The enrollment's signature does not verify with its public_key.",
    "replayed_request": "This enrollment nonce was used before with this key.",
    "invalid_token": "The bearer token is missing, unknown or revoked: enroll again.",
    "device_refused": "IT rejected or decommissioned the device, or this key (see state).",
    "not_found": "No such endpoint, device or release.",
    "method_not_allowed": "This method is not allowed on this path.",
    "conflict": "The request does not fit the current state.",
    "release_refused": "The release cannot be approved as asked.",
    "unknown_release": "An update report names a release that does not exist.",
    "release_not_offered": "An update report names a release that is not for this device.",
    "too_large": "The body, or what it carries, is larger than allowed.",
    "unsupported_media_type": "The body must be application/json.",
    "rate_limited": "Too many reports in the last hour; wait retry_after seconds.",
    "storage_full": "The device's share of attachment storage is used up.",
    "unauthorized": "User credentials (or a console session) are missing or wrong.",
    "forbidden": "Not allowed: the user's role may not do this, or a form came from another site.",
    "too_many_attempts": "Too many failed logins for this user; wait retry_after seconds.",
    "repository_error": "A published repository cannot be read; IT must look at the appliance's log.",
    "internal_error": "An unexpected error; nothing was stored. Try again later.",
    "clock_untrusted": "The appliance's own clock cannot be trusted (set back, or far ahead); IT must set it.",
    "unavailable": "The appliance is too busy to store this in time; retry after retry_after seconds.",
}

# HTTP errors raised by Flask and Werkzeug themselves (unknown paths, methods...)
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
              415: "unsupported_media_type", 500: "internal_error"}
_HTTP_MESSAGES = {
    404: "no such endpoint: see /api/v1/openapi.json",
    413: "the body is too large for this endpoint",
    500: "an unexpected error stopped this request, which was not applied; try again later (the appliance's "
         "log has the details)",
}


def _html_error(status: int, message: str) -> Response:
    from server.console.pages import error_page

    return error_page(status, message)


def error_response(exc: AirlockError) -> Response:
    """The API's JSON answer for ``exc``: its status, code, message and extra
    fields; ``WWW-Authenticate`` on a 401 and ``Retry-After`` when it says when.
    Outside ``/api/``: the console's error page."""
    if not request.path.startswith("/api/"):
        response = _html_error(exc.status, str(exc))
        if exc.extra.get("retry_after"):
            response.headers["Retry-After"] = str(exc.extra["retry_after"])
        return response
    body, headers = api_error(exc)
    response = jsonify(body)
    response.status_code = exc.status
    for name, value in headers:
        response.headers[name] = value
    return response


def api_error(exc: AirlockError) -> tuple[dict, list[tuple[str, str]]]:
    """The JSON body and the extra headers of the API's answer for ``exc``
    (also for answers made outside Flask: appliance/fast_checkin.py)."""
    headers = []
    challenge = getattr(exc, "challenge", None)
    if exc.status == 401 and challenge:
        headers.append(("WWW-Authenticate", challenge))
    if exc.extra.get("retry_after"):
        headers.append(("Retry-After", str(exc.extra["retry_after"])))
    return {"error": exc.code, "message": str(exc), **exc.extra}, headers


_PAGE_MESSAGES = {
    404: "There is no such page here.",
    405: "This page cannot be used that way.",
    413: "What was sent is too large.",
    500: "An unexpected error stopped this request, which was not applied. Try again later; the appliance's log "
         "has the details.",
}


def _http_error(exc: HTTPException) -> Response:
    """JSON for every HTTP error under /api/ (unknown paths, wrong methods,
    bodies over the app's limit, unexpected errors); a page elsewhere."""
    status = exc.code or 500
    if not request.path.startswith("/api/"):
        response = _html_error(status, _PAGE_MESSAGES.get(status) or exc.description or exc.name)
        allow = exc.get_response().headers.get("Allow")
        if allow:
            response.headers["Allow"] = allow
        return response
    message = _HTTP_MESSAGES.get(status) or (
        f"{request.method} is not allowed here: see /api/v1/openapi.json" if status == 405
        else exc.description or exc.name)
    response = jsonify(error=HTTP_CODES.get(status, re.sub(r"\W+", "_", exc.name.lower())), message=message)
    response.status_code = status
    for header in ("Allow", "Retry-After"):
        value = exc.get_response().headers.get(header)
        if value:
            response.headers[header] = value
    return response


def overloaded(exc: BaseException) -> AirlockError | None:
    """``exc`` as the 503 ``unavailable`` it means, when it says the
    appliance is overloaded: no pooled database connection came free in
    time (PostgreSQL; every thread of a worker waiting on the database).
    None for anything else.  Nothing was applied: the connection was never
    had."""
    if isinstance(exc, MaxConnectionsExceeded):
        logger.warning("no database connection came free in time: answered 503 (the appliance is overloaded)")
        return UnavailableError("the appliance is too busy to answer in time; nothing was applied. "
                                f"Try again in {BUSY_RETRY_AFTER} s", retry_after=BUSY_RETRY_AFTER)
    return None


def _overloaded(exc: MaxConnectionsExceeded) -> Response:
    busy = overloaded(exc)
    assert busy is not None
    return error_response(busy)


def internal_error() -> dict:
    """The JSON body of a 500 under /api/ (also for answers made outside
    Flask: appliance/fast_checkin.py)."""
    return {"error": HTTP_CODES[500], "message": _HTTP_MESSAGES[500]}


def register(app: Flask) -> None:
    """Install the app's error handlers, once."""
    app.register_error_handler(AirlockError, error_response)
    app.register_error_handler(MaxConnectionsExceeded, _overloaded)
    app.register_error_handler(HTTPException, _http_error)
