"""The admin API's read endpoints, ``/api/v1/admin/...``: thin views over the
devices, audit and users services, for scripts with a role's HTTP Basic
credentials.  Who may call each one is the permission table's
(``server.console.permissions``, from ``openapi.ROLES_OF``); the query
string is validated against the parameters the OpenAPI document shows, and
an unknown parameter is refused rather than ignored."""

from __future__ import annotations

import re

from flask import Blueprint, current_app, jsonify, request

from server import audit
from server.console.openapi import query_parameters
from server.devices.exceptions import InvalidRequestError
from server.devices.openapi import ADMIN_PATTERNS
from server.devices.records import DeviceQuery
from server.devices.schema import SchemaValidator
from server.devices.services import page_devices
from server.users.services import list_users

bp = Blueprint("admin_api", __name__, url_prefix="/api/v1/admin")

PARAMETERS = query_parameters(ADMIN_PATTERNS)
_VALIDATOR = SchemaValidator({})
_INTEGER = re.compile(r"[0-9]{1,16}")


def _query(operation: str) -> dict:
    """The request's query parameters for ``operation``, checked and typed."""
    declared = PARAMETERS[operation]
    out: dict = {}
    for name in request.args:
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise InvalidRequestError(f"unknown query parameter {name[:40]!r}: this endpoint takes {known}")
        values = request.args.getlist(name)
        if len(values) > 1:
            raise InvalidRequestError(f"query parameter {name!r} is given {len(values)} times; give it once")
        value: object = values[0]
        if declared[name].get("type") == "integer":
            if not _INTEGER.fullmatch(values[0]):
                raise InvalidRequestError(f"query parameter {name!r} must be a whole number")
            value = int(values[0])
        out[name] = _VALIDATOR.validate(value, declared[name], where=f"query parameter {name}")
    return out


@bp.get("/devices")
def list_devices():
    q = _query("list_devices")
    page = page_devices(current_app.config["AIRLOCK"], DeviceQuery(**q))
    return jsonify(page.to_dict())


@bp.get("/audit")
def list_audit():
    q = _query("list_audit")
    limit = q.pop("limit", 100)
    entries = audit.search(**q, limit=limit)
    next_after = entries[-1].id if len(entries) == limit else None
    return jsonify(entries=[e.to_dict() for e in entries], next_after=next_after)


@bp.get("/users")
def list_all_users():
    _query("list_users")
    return jsonify(users=[{"username": u.username, "role": u.role, "created_at": u.created_at,
                           "disabled": u.disabled} for u in list_users()])
