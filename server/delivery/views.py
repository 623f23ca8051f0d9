"""The admin API for maintenance windows and download caps,
``/api/v1/admin/windows`` and ``/api/v1/admin/download-caps``: thin views
over ``server.delivery``.  Who may call each one is the permission table's
(``server.console.permissions``): everyone with a role reads, admins change;
every change is audited by the service, naming the user with "(api)"."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from server.console.permissions import api_user
from server.delivery import caps, windows
from server.devices.exceptions import InvalidRequestError, TooLargeError, UnsupportedMediaTypeError
from server.devices.schema import loads_strict

bp = Blueprint("delivery_api", __name__, url_prefix="/api/v1/admin")

MAX_BODY = 2048  # bytes
_WINDOW_FIELDS = {"group", "days", "start", "end", "timezone"}
_CAP_FIELDS = {"max_downloads", "max_bytes_per_second"}


def _operator() -> str:
    return f"{api_user().username} (api)"


def _json_object(fields: set[str], required: set[str]) -> dict:
    if request.mimetype != "application/json":
        raise UnsupportedMediaTypeError("send the body as Content-Type: application/json")
    data = request.stream.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise TooLargeError(f"the body is larger than this endpoint's {MAX_BODY} bytes")
    body = loads_strict(data)
    if not isinstance(body, dict):
        raise InvalidRequestError("send one JSON object")
    unknown, missing = set(body) - fields, required - set(body)
    if unknown:
        raise InvalidRequestError(f"unknown field {sorted(unknown)[0]!r}: this endpoint takes "
                                  f"{', '.join(sorted(fields))}")
    if missing:
        raise InvalidRequestError(f"missing field {sorted(missing)[0]!r}")
    return body


def _string(body: dict, name: str) -> str:
    value = body[name]
    if not isinstance(value, str) or len(value) > 100:
        raise InvalidRequestError(f"{name} must be a string of at most 100 characters")
    return value


def _count(body: dict, name: str, default: int | None = None) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"{name} must be a whole number")
    return value


@bp.get("/windows")
def list_windows():
    group = request.args.get("group")
    if set(request.args) - {"group"}:
        raise InvalidRequestError("this endpoint takes only the query parameter group")
    return jsonify(windows=[{**w.to_dict(), "open_now": windows.window_open(w)} for w in windows.list_windows(group)])


@bp.post("/windows")
def add_window():
    body = _json_object(_WINDOW_FIELDS, _WINDOW_FIELDS)
    group, days, start, end, timezone = (_string(body, f) for f in ("group", "days", "start", "end", "timezone"))
    w = windows.add_window(group, days, start, end, timezone, _operator())
    return jsonify(w.to_dict()), 201


@bp.delete("/windows/<int:number>")
def remove_window(number: int):
    return jsonify(windows.remove_window(number, _operator()).to_dict())


@bp.get("/download-caps")
def list_caps():
    if request.args:
        raise InvalidRequestError("this endpoint takes no query parameters")
    return jsonify(caps.describe_caps(current_app.config["AIRLOCK"]))


@bp.put("/download-caps/<group>")
def set_cap(group: str):
    body = _json_object(_CAP_FIELDS, {"max_downloads"})
    cap = caps.set_cap(group, _count(body, "max_downloads"), _count(body, "max_bytes_per_second", 0), _operator())
    return jsonify(cap.to_dict())


@bp.delete("/download-caps/<group>")
def clear_cap(group: str):
    return jsonify(caps.clear_cap(group, _operator()).to_dict())
