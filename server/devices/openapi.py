"""The device API's OpenAPI 3.1 document, served at ``/api/v1/openapi.json``.

Its request schemas are also what the API validates bodies with
(``server.devices.schema``), so the document and the rules cannot drift
apart.  Patterns are anchored and written in the common subset of ECMA-262
and Python regular expressions.
"""

from __future__ import annotations

import copy

from server.errors import CODES
from server.text import TEXT_PATTERN

DEVICE_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
HARDWARE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TAG = HARDWARE
VERSION = r"^[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}(-[0-9A-Za-z.-]{1,32})?(\+[0-9A-Za-z.-]{1,32})?$"
PUBLIC_KEY = r"^[A-Za-z0-9+/]{43}=$"  # base64 of 32 bytes
SIGNATURE = r"^[A-Za-z0-9+/]{86}==$"  # base64 of 64 bytes
NONCE = r"^([0-9a-fA-F]{2}){16,64}$"  # 16 to 64 bytes, hex
UTC_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|\+00:00)$"
ANY_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"
ENROLLMENT_TOKEN = r"^[!-~]{8,128}$"  # printable ASCII, no spaces
METRIC_NAME = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
RESET_REASON = r"^[A-Za-z0-9][A-Za-z0-9 _.:/-]{0,63}$"
UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
FREE_TEXT = TEXT_PATTERN  # one line, no control or formatting characters: server.text
KEY_FINGERPRINT = r"^[0-9a-f]{64}$"
MAX_COUNT = 2**53  # largest integer every JSON parser keeps exact
MAX_NAMED_VALUES = 64  # gauges, error counters

REPORT_STEPS = ["downloading", "installing", "rebooted", "success", "failure"]
DEVICE_STATES = ["pending", "accepted", "rejected", "decommissioned"]


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _int(minimum: int = 0, maximum: int = MAX_COUNT, description: str = "") -> dict:
    out = {"type": "integer", "minimum": minimum, "maximum": maximum}
    if description:
        out["description"] = description
    return out


def _str(pattern: str, description: str = "", **more) -> dict:
    out = {"type": "string", "pattern": pattern, **more}
    if description:
        out["description"] = description
    return out


SCHEMAS: dict = {
    "Error": {
        "type": "object",
        "description": "Every 4xx and 5xx answer under /api/.",
        "required": ["error", "message"],
        "additionalProperties": False,
        "properties": {
            "error": {"type": "string", "enum": sorted(CODES),
                      "description": "A short, stable code: " + "; ".join(f"{c}: {m}" for c, m in CODES.items())},
            "message": {"type": "string", "description": "What is wrong and what to do."},
            "state": {"type": "string", "enum": DEVICE_STATES + ["key_rejected", "key_retired"]},
            "server_time": _str(UTC_TIME, "The appliance's clock, when a timestamp was refused for skew."),
            "retry_after": _int(1, 86400, "Seconds to wait before trying again."),
        },
    },
    "EnrollRequest": {
        "type": "object",
        "description": "Signed with the device's Ed25519 key over the canonical JSON of every other field: "
                       "json.dumps(fields, sort_keys=True, separators=(',', ':')), ASCII.",
        "required": ["device_id", "hardware", "firmware", "public_key", "nonce", "timestamp", "signature"],
        "additionalProperties": False,
        "properties": {
            "device_id": _str(DEVICE_ID, "The device's own id, stable for its life."),
            "hardware": _str(HARDWARE, "Hardware model, as in targets' custom metadata."),
            "firmware": _str(VERSION, "Version it runs now, X.Y.Z."),
            "public_key": _str(PUBLIC_KEY, "Base64 of the raw 32-byte Ed25519 public key."),
            "nonce": _str(NONCE, "Fresh random bytes, hex (16 to 64 bytes); never reused with this key."),
            "timestamp": _str(UTC_TIME, "Now, UTC.", format="date-time"),
            "enrollment_token": _str(ENROLLMENT_TOKEN, "Pre-shared token for auto-acceptance rules."),
            "signature": _str(SIGNATURE, "Base64 Ed25519 signature of the canonical JSON of the other fields."),
        },
    },
    "EnrollResponse": {
        "type": "object",
        "required": ["state", "checkin_interval", "jitter"],
        "additionalProperties": False,
        "properties": {
            "state": {"type": "string", "enum": ["pending", "accepted"]},
            "token": {"type": "string", "minLength": 43, "maxLength": 43,
                      "description": "Bearer token for check-ins and reports; only when accepted. Each "
                                     "enrollment issues a new one and revokes the previous."},
            "reason": {"type": "string", "description": "Why the device is pending."},
            "checkin_interval": _int(1, 86400 * 7, "Seconds between check-ins (or enrollment polls "
                                                   "while pending)."),
            "jitter": _int(0, 86400, "Add a random 0..jitter seconds to every wait."),
        },
    },
    "Metrics": {
        "type": "object",
        "description": "Health metrics that are not process data; every one is optional.",
        "additionalProperties": False,
        "properties": {
            "uptime_s": _int(description="Seconds since boot."),
            "boot_count": _int(description="Boots since manufacture."),
            "last_reset_reason": _str(RESET_REASON, "e.g. power-on, watchdog, brownout, software."),
            "cpu_temp_c": {"type": "number", "minimum": -100, "maximum": 250},
            "mem_free_bytes": _int(),
            "storage_free_bytes": _int(),
            "error_counters": {
                "type": "object", "maxProperties": MAX_NAMED_VALUES,
                "propertyNames": {"pattern": METRIC_NAME, "maxLength": 64},
                "additionalProperties": _int(),
                "description": "Monotonic counters by name; a rise is flagged errors_rising.",
            },
            "gauges": {
                "type": "object", "maxProperties": MAX_NAMED_VALUES,
                "propertyNames": {"pattern": METRIC_NAME, "maxLength": 64},
                "additionalProperties": {"type": "number", "minimum": -1e15, "maximum": 1e15},
                "description": "Free-form numeric values the vendor adds.",
            },
        },
    },
    "CheckinRequest": {
        "type": "object",
        "required": ["firmware"],
        "additionalProperties": False,
        "properties": {"firmware": _str(VERSION, "Version it runs now."), "metrics": _ref("Metrics")},
    },
    "Update": {
        "type": "object",
        "description": "What to install: fetch target_path with a TUF client from these URLs, verify it, "
                       "install it, report each step to /api/v1/updates.",
        "required": ["release_id", "repository", "target_path", "version", "metadata_url", "targets_url"],
        "additionalProperties": False,
        "properties": {
            "release_id": _int(1),
            "repository": {"type": "string"},
            "target_path": {"type": "string"},
            "version": _str(VERSION),
            "metadata_url": {"type": "string", "description": "metadata_base_url for the TUF client."},
            "targets_url": {"type": "string", "description": "target_base_url for the TUF client."},
        },
    },
    "CheckinResponse": {
        "type": "object",
        "required": ["checkin_interval", "jitter", "update"],
        "additionalProperties": False,
        "properties": {
            "checkin_interval": _int(1, 86400 * 7),
            "jitter": _int(0, 86400),
            "update": {"anyOf": [{"type": "null"}, _ref("Update")]},
        },
    },
    "UpdateReportRequest": {
        "type": "object",
        "required": ["report_id", "release_id", "step", "at"],
        "additionalProperties": False,
        "properties": {
            "report_id": _str(UUID, "A uuid per report; a resend with the same id is stored once."),
            "release_id": _int(1, 2**62),
            "step": {"type": "string", "enum": REPORT_STEPS},
            "reason": _str(FREE_TEXT, "Why, for a failure: one line, no control or formatting characters.",
                           maxLength=1000, format="text"),
            "at": _str(ANY_TIME, "When it happened, by the device's clock.", format="date-time"),
        },
    },
    "UpdateReportResponse": {
        "type": "object",
        "required": ["status", "duplicate"],
        "additionalProperties": False,
        "properties": {
            "status": {"type": "string", "enum": ["recorded"]},
            "duplicate": {"type": "boolean", "description": "True when this report_id was already stored."},
        },
    },
    "AdminDecisionRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "reason": _str(FREE_TEXT, "Shown to IT and, for a refusal, to the device.", maxLength=500,
                           format="text"),
            "new_key": {"type": "boolean", "description": "accept/reject: decide the pending key change "
                                                          "instead of the device."},
            "key_fingerprint": _str(KEY_FINGERPRINT, "accept --new-key: the SHA-256 of the raw key the "
                                                     "device shows; refused if the pending key differs."),
        },
    },
    "Device": {
        "type": "object",
        "required": ["device_id", "hardware", "firmware", "state", "last_seen", "health", "tags"],
        "additionalProperties": False,
        "properties": {
            "device_id": {"type": "string"},
            "hardware": {"type": "string"},
            "firmware": {"type": "string"},
            "state": {"type": "string", "enum": DEVICE_STATES},
            "state_reason": {"type": ["string", "null"]},
            "last_seen": {"type": ["string", "null"], "description": "ISO 8601 UTC of the latest check-in."},
            "online": {"type": "boolean", "description": "Checked in within 3 intervals."},
            "health": {"type": "array", "items": {"type": "string"}},
            "tags": {"type": "array", "items": {"type": "string"}},
            "key_change_pending": {"type": "boolean"},
        },
    },
}


# The error reports' endpoint (server/reports/) is part of the same document.
from server.reports.openapi import report_paths, report_schemas  # noqa: E402

SCHEMAS.update(report_schemas(UUID, VERSION, ANY_TIME))

# The admin API's read endpoints (server/console/api.py) too.
from server.console.openapi import admin_paths, admin_schemas  # noqa: E402

SCHEMAS.update(admin_schemas())

# The rollouts' admin endpoints (server/rollouts/views.py) too.
from server.rollouts.openapi import rollout_paths, rollout_schemas  # noqa: E402

SCHEMAS.update(rollout_schemas())
ADMIN_PATTERNS = {"hardware": HARDWARE, "tag": TAG, "text": FREE_TEXT}


def _json_body(name: str, limit: int | None = None) -> dict:
    body = {"required": True, "content": {"application/json": {"schema": _ref(name)}}}
    if limit:
        body["description"] = f"At most {limit} bytes."
    return body


def _answer(name: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*codes: int) -> dict:
    text = {400: "Malformed request: see the message; nothing was stored.",
            401: "Missing, unknown or revoked credential.",
            403: "Refused: the device or key was rejected or decommissioned, or the user's role may not do this.",
            404: "No such device.",
            409: "Conflict: a replayed enrollment, or the device is not in a state this applies to.",
            413: "Request body too large.",
            415: "The body must be application/json.",
            422: "Refers to a release that does not exist (unknown_release) or is not for this device "
                 "(release_not_offered); nothing was stored.",
            429: "Too many failed logins for this user; wait retry_after seconds.",
            500: "Unexpected error; nothing was stored.",
            503: "Overloaded (the check-in was not stored in time, or no database connection came free in time), "
                 "or the appliance's clock cannot be trusted (clock_untrusted, enrollment): nothing was stored; "
                 "try again after retry_after seconds, or later."}
    return {str(c): _answer("Error", text[c]) for c in codes}


def _admin_path(action: str, summary: str) -> dict:
    return {"post": {
        "summary": summary, "operationId": f"admin_{action}", "tags": ["admin"],
        "security": [{"admin": []}], "x-roles": ["admin"],
        "parameters": [{"name": "device_id", "in": "path", "required": True, "schema": _str(DEVICE_ID)}],
        "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("AdminDecisionRequest")}}},
        "responses": {"200": _answer("Device", "The device after the decision."),
                      **_errors(400, 401, 403, 404, 409, 413, 415, 429, 500)},
    }}


def build_spec(limits: dict[str, int]) -> dict:
    """The whole document; ``limits`` gives each endpoint's body cap in bytes."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Airlock device API",
            "version": "1.0.0",
            "description": "Enrollment, check-ins, update reports and admission. JSON only; every error is "
                           "{error, message}. Tokens go in Authorization headers, never in URLs.",
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {
                "deviceToken": {"type": "http", "scheme": "bearer",
                                "description": "The token from an accepted enrollment."},
                "admin": {"type": "http", "scheme": "basic",
                          "description": "A user made by `airlock init --admin` or `airlock users add`, whose role "
                                         "the operation lists (x-roles); failed logins are limited."},
            },
            "schemas": copy.deepcopy(SCHEMAS),
        },
        "paths": {
            "/enroll": {"post": {
                "summary": "Enroll, or poll an enrollment; an accepted device gets a fresh token.",
                "operationId": "enroll", "tags": ["device"], "security": [],
                "requestBody": _json_body("EnrollRequest", limits["enroll"]),
                "responses": {
                    "200": _answer("EnrollResponse", "Accepted: carries a new token (the previous one is revoked)."),
                    "202": _answer("EnrollResponse", "Pending: IT has not decided yet; poll again later."),
                    **_errors(400, 401, 403, 409, 413, 415, 500, 503),
                },
            }},
            "/checkin": {"post": {
                "summary": "Report firmware and health; learn the interval and any update to install.",
                "operationId": "checkin", "tags": ["device"], "security": [{"deviceToken": []}],
                "requestBody": _json_body("CheckinRequest", limits["checkin"]),
                "responses": {"200": _answer("CheckinResponse", "Recorded."),
                              **_errors(400, 401, 413, 415, 500, 503)},
            }},
            "/updates": {"post": {
                "summary": "Report a step of an update; resends with the same report_id are stored once.",
                "operationId": "report_update", "tags": ["device"], "security": [{"deviceToken": []}],
                "requestBody": _json_body("UpdateReportRequest", limits["updates"]),
                "responses": {"200": _answer("UpdateReportResponse", "Recorded, or a duplicate."),
                              **_errors(400, 401, 413, 415, 422, 500, 503)},
            }},
            **report_paths(lambda description: _answer("Error", description)),
            "/openapi.json": {"get": {
                "summary": "This document.", "operationId": "openapi", "tags": ["meta"], "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {
                    "schema": {"type": "object"}}}}},
            }},
            **admin_paths(ADMIN_PATTERNS, _answer, _errors),
            **rollout_paths(_answer, _errors),
            "/admin/devices/{device_id}/accept": _admin_path(
                "accept", "Accept a device (or, with new_key, its pending key change)."),
            "/admin/devices/{device_id}/reject": _admin_path(
                "reject", "Reject a device (its token stops working at once), or its pending key change."),
            "/admin/devices/{device_id}/decommission": _admin_path(
                "decommission", "Retire a device: its token stops working at once."),
        },
    }
