"""The report endpoints' part of the device API's OpenAPI document.

``server.devices.openapi`` merges these into the one document served at
``/api/v1/openapi.json`` (and used to validate request bodies).  This module
imports nothing from ``server.devices``: the shared patterns come in as
arguments, so the two modules cannot import each other in a circle.
"""

from __future__ import annotations

from server.reports.records import KINDS, SEVERITIES
from server.text import MULTILINE_PATTERN

ATTACHMENT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
BASE64 = r"^[A-Za-z0-9+/]*={0,2}$"
# A log message may hold line breaks and tabs, never other control or formatting characters.
MULTILINE_TEXT = MULTILINE_PATTERN
MAX_MESSAGE = 4000  # characters
MAX_ATTACHMENT_B64 = 12 * 1024 * 1024  # characters; the real cap is the setting, checked after decoding


def report_schemas(uuid: str, version: str, any_time: str) -> dict:
    return {
        "ReportAttachment": {
            "type": "object",
            "required": ["name", "content"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": ATTACHMENT_NAME,
                         "description": "File name, e.g. dmesg.txt or core.gz; unique within the report."},
                "content": {"type": "string", "pattern": BASE64, "maxLength": MAX_ATTACHMENT_B64,
                            "description": "The bytes, standard base64. All attachments of a report together "
                                           "may hold at most the appliance's report_max_attachment_bytes "
                                           "(256 KiB by default) once decoded; at most 4 per report."},
            },
        },
        "ReportRequest": {
            "type": "object",
            "required": ["report_id", "kind", "severity", "message", "firmware"],
            "additionalProperties": False,
            "properties": {
                "report_id": {"type": "string", "pattern": uuid,
                              "description": "A uuid per report, kept while it waits in the device's spool; "
                                             "a resend with the same id is stored once."},
                "kind": {"type": "string", "enum": KINDS},
                "severity": {"type": "string", "enum": SEVERITIES},
                "message": {"type": "string", "pattern": MULTILINE_TEXT, "format": "multiline-text",
                            "minLength": 1, "maxLength": MAX_MESSAGE,
                            "description": "What happened; line breaks and tabs allowed, no other control "
                                           "characters and no formatting characters (bidi overrides...)."},
                "firmware": {"type": "string", "pattern": version, "description": "Version it ran, X.Y.Z."},
                "occurred_at": {"type": "string", "pattern": any_time, "format": "date-time",
                                "description": "When it happened, by the device's clock."},
                "attachments": {"type": "array", "items": {"$ref": "#/components/schemas/ReportAttachment"},
                                "description": "At most 4."},
            },
        },
        "ReportResponse": {
            "type": "object",
            "required": ["status", "id", "duplicate"],
            "additionalProperties": False,
            "properties": {
                "status": {"type": "string", "enum": ["recorded"]},
                "id": {"type": "integer", "minimum": 1, "description": "The appliance's number for the report."},
                "duplicate": {"type": "boolean", "description": "True when this report_id was already stored: "
                                                                "nothing new was stored."},
            },
        },
    }


def report_paths(error_answer) -> dict:
    """The ``paths`` entries; ``error_answer(description)`` makes an Error answer."""
    def answer(name: str, description: str) -> dict:
        return {"description": description, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{name}"}}}}

    errors = {
        "400": error_answer("Malformed report (see the message), or more than 4 attachments; nothing was stored."),
        "401": error_answer("Missing, unknown or revoked token."),
        "413": error_answer("The body, or the attachments once decoded, are larger than allowed; nothing was "
                            "stored. Do not resend as is."),
        "415": error_answer("The body must be application/json."),
        "429": error_answer("This device sent report_rate_per_hour reports within the last hour; nothing was "
                            "stored. Resend after Retry-After (also retry_after) seconds."),
        "500": error_answer("Unexpected error; nothing was stored."),
        "507": error_answer("The device's share of attachment storage is used up; nothing was stored. Resend "
                            "without attachments."),
    }
    return {"/reports": {"post": {
        "summary": "Send an error report (crash, error, watchdog reset, log) with optional attachments.",
        "operationId": "report_error", "tags": ["device"], "security": [{"deviceToken": []}],
        "requestBody": {"required": True, "description": "At most about 4/3 of report_max_attachment_bytes "
                        "plus 16 KiB.", "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/ReportRequest"}}}},
        "responses": {"201": answer("ReportResponse", "Stored."),
                      "200": answer("ReportResponse", "A resend of a report already stored (duplicate: true)."),
                      **errors},
    }}}
