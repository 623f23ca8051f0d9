"""The admin API's part of the OpenAPI document at ``/api/v1/openapi.json``.

``server.devices.openapi`` merges these paths and schemas into the one
document.  The query parameters are declared once here: the document shows
them and ``server.console.api`` validates every request's query string
against the same schemas, so the two cannot drift apart.  This module
imports nothing from ``server.devices``: the shared patterns come in as
arguments.
"""

from __future__ import annotations

from collections.abc import Callable

DEVICE_SORTS = ["device_id", "hardware", "firmware", "state", "last_seen"]
PAGE_STATES = ["pending", "accepted", "rejected", "decommissioned", "online", "offline", "flagged"]
FLAG = r"^[a-z][a-z0-9_]{0,39}$"
DEVICE_PREFIX = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
ACTION = r"^[a-z][a-z0-9_.]{0,63}$"
MAX_PER_PAGE = 500
MAX_AUDIT = 1000
ROLES_OF = {"list_devices": ["admin", "operator", "auditor"], "list_audit": ["admin", "auditor"],
            "list_users": ["admin", "auditor"]}


def query_parameters(patterns: dict[str, str]) -> dict[str, dict[str, dict]]:
    """operationId -> parameter name -> schema (every parameter optional)."""
    text = {"type": "string", "maxLength": 64, "pattern": patterns["text"]}
    return {
        "list_devices": {
            "state": {"type": "string", "enum": PAGE_STATES},
            "hardware": {"type": "string", "pattern": patterns["hardware"]},
            "tag": {"type": "string", "pattern": patterns["tag"]},
            "firmware": text,
            "flag": {"type": "string", "pattern": FLAG},
            "prefix": {"type": "string", "pattern": DEVICE_PREFIX},
            "sort": {"type": "string", "enum": DEVICE_SORTS + ["-" + s for s in DEVICE_SORTS]},
            "page": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
            "per_page": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
        },
        "list_audit": {
            "action": {"type": "string", "pattern": ACTION},
            "actor": {**text, "maxLength": 1000},
            "subject": {**text, "maxLength": 1000},
            "after": {"type": "integer", "minimum": 0, "maximum": 2**53},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_AUDIT},
        },
        "list_users": {},
    }


PARAMETER_HELP = {
    "state": "A device state, or online / offline (accepted, silent) / flagged (accepted, with a health flag).",
    "hardware": "Only this hardware model.",
    "tag": "Only devices with this tag (group).",
    "firmware": "Only devices reporting this firmware version.",
    "flag": "Only devices with this health flag (hot, low_storage, low_memory, rebooting_often, errors_rising).",
    "prefix": "Only device ids starting with this.",
    "sort": "Column to sort by; '-' first for descending. Ties are broken by device_id.",
    "page": "Page number, from 1 (default 1).",
    "per_page": f"Devices per page, 1 to {MAX_PER_PAGE} (default 100).",
    "action": "Only this action, or with a trailing '.' every action it starts (user.).",
    "actor": "Only records by this actor.",
    "subject": "Only records about this subject.",
    "after": "Only records with a larger id (the previous page's next_after).",
    "limit": f"Records per page, 1 to {MAX_AUDIT} (default 100).",
}


def admin_schemas() -> dict:
    entry = {
        "type": "object", "additionalProperties": False,
        "required": ["id", "at", "actor", "action", "subject", "details", "prev_hash", "hash"],
        "properties": {"id": {"type": "integer"}, "at": {"type": "string"}, "actor": {"type": "string"},
                       "action": {"type": "string"}, "subject": {"type": "string"}, "details": {"type": "object"},
                       "prev_hash": {"type": "string"}, "hash": {"type": "string"}},
    }
    return {
        "DevicePage": {
            "type": "object", "additionalProperties": False, "required": ["total", "page", "per_page", "devices"],
            "properties": {"total": {"type": "integer", "minimum": 0}, "page": {"type": "integer", "minimum": 1},
                           "per_page": {"type": "integer", "minimum": 1},
                           "devices": {"type": "array", "items": {"$ref": "#/components/schemas/Device"}}},
        },
        "AuditEntry": entry,
        "AuditPage": {
            "type": "object", "additionalProperties": False, "required": ["entries", "next_after"],
            "properties": {"entries": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}},
                           "next_after": {"type": ["integer", "null"],
                                          "description": "Pass as after for the next page; null at the end."}},
        },
        "UserList": {
            "type": "object", "additionalProperties": False, "required": ["users"],
            "properties": {"users": {"type": "array", "items": {
                "type": "object", "additionalProperties": False,
                "required": ["username", "role", "created_at", "disabled"],
                "properties": {"username": {"type": "string"},
                               "role": {"type": "string", "enum": ["admin", "operator", "auditor"]},
                               "created_at": {"type": "string"}, "disabled": {"type": "boolean"}}}}},
        },
    }


def admin_paths(patterns: dict[str, str], answer: Callable[[str, str], dict],
                errors: Callable[..., dict]) -> dict:
    params = query_parameters(patterns)

    def get(operation: str, schema: str, summary: str) -> dict:
        roles = ROLES_OF[operation]
        return {"get": {
            "summary": f"{summary} Roles: {', '.join(roles)}.", "operationId": operation, "tags": ["admin"],
            "security": [{"admin": []}], "x-roles": roles,
            "parameters": [{"name": name, "in": "query", "required": False, "schema": schema,
                            "description": PARAMETER_HELP[name]} for name, schema in params[operation].items()],
            "responses": {"200": answer(schema, "One page."), **errors(400, 401, 403, 429, 500)},
        }}

    return {
        "/admin/devices": get("list_devices", "DevicePage", "The device list, filtered, sorted and paged."),
        "/admin/audit": get("list_audit", "AuditPage", "The audit log, oldest first, filtered and paged."),
        "/admin/users": get("list_users", "UserList", "Every user, with role and whether it is disabled."),
    }
