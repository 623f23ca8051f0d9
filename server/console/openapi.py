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
            "list_users": ["admin", "auditor"], "list_repositories": ["admin", "auditor"],
            "list_imports": ["admin", "auditor"], "upload_import": ["admin"], "show_import_job": ["admin", "auditor"],
            "show_trust": ["admin", "auditor"], "list_releases": ["admin", "operator", "auditor"],
            "approve_release": ["admin"], "withdraw_release": ["admin"], "add_user": ["admin"],
            "change_user": ["admin"], "list_exports": ["admin", "auditor"], "make_export": ["admin"],
            "download_export": ["admin"], "show_device": ["admin", "operator", "auditor"],
            "list_reports": ["admin", "operator", "auditor"], "show_report": ["admin", "operator", "auditor"],
            "triage_report": ["admin", "operator"]}
MAX_IMPORTS = 200
JOB_ID = r"^[0-9a-f]{16}$"
REPOSITORY = r"^[a-z0-9][a-z0-9-]{0,62}$"
EXPORT_FILE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.tar(\.enc)?$"
UPLOAD_NAME = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,119}$"


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
        "list_repositories": {},
        "list_imports": {"limit": {"type": "integer", "minimum": 1, "maximum": MAX_IMPORTS}},
        "upload_import": {"filename": {"type": "string", "pattern": UPLOAD_NAME}},
        "show_import_job": {},
        "show_trust": {},
        "list_releases": {"all": {"type": "string", "enum": ["0", "1"]}},
        "approve_release": {},
        "withdraw_release": {},
        "add_user": {},
        "change_user": {},
        "list_exports": {"limit": {"type": "integer", "minimum": 1, "maximum": MAX_IMPORTS}},
        "make_export": {"encrypt_for": {"type": "string", "pattern": REPOSITORY}},
        "download_export": {},
        "show_device": {},
        "list_reports": {"status": {"type": "string", "enum": ["new", "acknowledged", "resolved"]},
                         "device": {"type": "string", "pattern": DEVICE_PREFIX},
                         "limit": {"type": "integer", "minimum": 1, "maximum": MAX_IMPORTS}},
        "show_report": {},
        "triage_report": {},
    }


PARAMETER_HELP = {
    "state": "A device state, or online / offline (accepted, silent) / flagged (accepted, with a health flag).",
    "hardware": "Only this hardware model.",
    "tag": "Only devices with this tag (group).",
    "firmware": "Only devices reporting this firmware version.",
    "flag": "Only devices with this health flag (hot, low_storage, low_memory, rebooting_often, errors_rising, "
            "unverified_firmware).",
    "prefix": "Only device ids starting with this.",
    "sort": "Column to sort by; '-' first for descending. Ties are broken by device_id.",
    "page": "Page number, from 1 (default 1).",
    "per_page": f"Devices per page, 1 to {MAX_PER_PAGE} (default 100).",
    "action": "Only this action, or with a trailing '.' every action it starts (user.).",
    "actor": "Only records by this actor.",
    "subject": "Only records about this subject.",
    "after": "Only records with a larger id (the previous page's next_after).",
    "limit": f"Records per page, 1 to {MAX_AUDIT} (default 100); imports: newest first, 1 to {MAX_IMPORTS} "
             "(default 50).",
    "status": "Only reports in this status.",
    "device": "Only this device's reports.",
    "encrypt_for": "Encrypt to the export key this repository's vendor ships (default: signed only).",
    "all": "1: withdrawn releases too (default 0: the active ones).",
    "filename": "The bundle's file name, shown in the console (default bundle).",
}


def admin_schemas() -> dict:
    entry = {
        "type": "object", "additionalProperties": False,
        "required": ["id", "at", "actor", "action", "subject", "details", "prev_hash", "hash"],
        "properties": {"id": {"type": "integer"}, "at": {"type": "string"}, "actor": {"type": "string"},
                       "action": {"type": "string"}, "subject": {"type": "string"}, "details": {"type": "object"},
                       "prev_hash": {"type": "string"}, "hash": {"type": "string"}},
    }
    string_or_null = {"type": ["string", "null"]}
    job = {
        "type": "object", "additionalProperties": False,
        "required": ["id", "operator", "filename", "size", "created_at", "state", "phase", "done", "total", "files",
                     "status", "message", "import_id", "finished_at"],
        "properties": {
            "id": {"type": "string", "pattern": JOB_ID}, "operator": {"type": "string"},
            "filename": {"type": "string"}, "size": {"type": "integer", "minimum": 0},
            "created_at": {"type": "string"},
            "state": {"type": "string", "enum": ["uploaded", "running", "finished", "failed"],
                      "description": "finished: the import ran to its verdict (status); failed: it could not."},
            "phase": {**string_or_null, "description": "The importer's phase: copying metadata, verifying, "
                                                        "copying targets, publishing."},
            "done": {"type": "integer", "minimum": 0}, "total": {"type": ["integer", "null"]},
            "files": {"type": "integer", "minimum": 0},
            "status": {"type": ["string", "null"], "enum": ["accepted", "unchanged", "refused", None]},
            "message": {**string_or_null, "description": "The verification report, or the exact reason for refusal."},
            "import_id": {"type": ["integer", "null"], "description": "The import history's record."},
            "finished_at": string_or_null,
        },
    }
    imported = {
        "type": "object", "additionalProperties": False,
        "required": ["id", "started_at", "finished_at", "operator", "source", "bundle_digest", "status", "reason",
                     "repository"],
        "properties": {"id": {"type": "integer"}, "started_at": {"type": "string"}, "finished_at": string_or_null,
                       "operator": {"type": "string"}, "source": {"type": "string"},
                       "bundle_digest": string_or_null,
                       "status": {"type": "string", "enum": ["accepted", "unchanged", "refused"]},
                       "reason": string_or_null,
                       "repository": {"type": ["object", "null"],
                                      "description": "What changed, per repository: versions before and after, "
                                                     "targets added and removed."}},
    }
    target = {
        "type": "object", "additionalProperties": False,
        "required": ["path", "hardware", "version", "length", "sha256", "role", "added_at"],
        "properties": {"path": {"type": "string"}, "hardware": {"type": "array", "items": {"type": "string"}},
                       "version": string_or_null, "length": {"type": "integer", "minimum": 0},
                       "sha256": string_or_null, "role": {"type": "string"},
                       "added_at": {**string_or_null, "description": "When the import that added it started."}},
    }
    repository = {
        "type": "object", "additionalProperties": False,
        "required": ["name", "root_fingerprint", "pinned_at", "pinned_by", "error", "targets"],
        "properties": {"name": {"type": "string"}, "root_fingerprint": {"type": "string"},
                       "pinned_at": {"type": "string"}, "pinned_by": {"type": "string"},
                       "error": {**string_or_null, "description": "Why its published state cannot be read."},
                       "targets": {"type": "array", "items": target}},
    }
    role_state = {
        "type": "object", "additionalProperties": False,
        "required": ["name", "version", "expires", "days_left", "keyids", "keytypes", "threshold", "signed_by",
                     "delegator", "paths"],
        "properties": {"name": {"type": "string"}, "version": {"type": "integer"}, "expires": {"type": "string"},
                       "days_left": {"type": "integer"}, "keyids": {"type": "array", "items": {"type": "string"}},
                       "keytypes": {"type": "object", "additionalProperties": {"type": "string"}},
                       "threshold": {"type": "integer"},
                       "signed_by": {"type": "array", "items": {"type": "string"},
                                     "description": "Key ids whose signature on the current file verifies."},
                       "delegator": string_or_null,
                       "paths": {"type": ["array", "null"], "items": {"type": "string"}}},
    }
    trust = {
        "type": "object", "additionalProperties": False,
        "required": ["name", "root_fingerprint", "pinned_root_version", "roles", "tree", "root_history", "files",
                     "refresh_problem", "unavailable_roles"],
        "properties": {
            "name": {"type": "string"}, "root_fingerprint": {"type": "string"},
            "pinned_root_version": {"type": "integer"}, "roles": {"type": "array", "items": role_state},
            "tree": {"type": "array", "description": "The delegation tree, depth first from root.", "items": {
                "type": "object", "additionalProperties": False, "required": ["role", "delegator", "depth", "paths"],
                "properties": {"role": {"type": "string"}, "delegator": string_or_null,
                               "depth": {"type": "integer", "minimum": 0},
                               "paths": {"type": ["array", "null"], "items": {"type": "string"}}}}},
            "root_history": {"type": "array", "description": "Oldest first.", "items": {
                "type": "object", "additionalProperties": False,
                "required": ["version", "expires", "roles", "signed_by", "changes"],
                "properties": {"version": {"type": "integer"}, "expires": {"type": "string"},
                               "roles": {"type": "object"},
                               "signed_by": {"type": "array", "items": {"type": "string"}},
                               "changes": {"type": "array", "items": {"type": "string"},
                                           "description": "Keys added or removed, thresholds changed."}}}},
            "files": {"type": "array", "items": {"type": "string"},
                      "description": "Metadata files served; each at /repos/{name}/metadata/{file}."},
            "refresh_problem": string_or_null,
            "unavailable_roles": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    release = {
        "type": "object", "additionalProperties": False,
        "required": ["id", "repository", "target_path", "version", "target_hardware", "length", "sha256", "hardware",
                     "group", "allow_downgrade", "approved_at", "approved_by", "withdrawn_at", "withdrawn_by",
                     "shadowed_by", "shadows"],
        "properties": {
            "id": {"type": "integer"}, "repository": {"type": "string"}, "target_path": {"type": "string"},
            "version": {"type": "string"}, "target_hardware": {"type": "array", "items": {"type": "string"}},
            "length": {"type": "integer"}, "sha256": string_or_null,
            "hardware": {**string_or_null, "description": "The model it is for (or null: a group's)."},
            "group": {**string_or_null, "description": "The group (tag) it is for (or null: a model's)."},
            "allow_downgrade": {"type": "boolean"}, "approved_at": {"type": "string"},
            "approved_by": {"type": "string"}, "withdrawn_at": string_or_null, "withdrawn_by": string_or_null,
            "shadowed_by": {"type": ["integer", "null"],
                            "description": "A newer active release of the same scope that check-ins offer instead."},
            "shadows": {"type": "array", "items": {"type": "integer"},
                        "description": "On approval: the active releases this one now shadows."},
        },
    }
    name = {"type": "string", "minLength": 1, "maxLength": 64}
    password = {"type": "string", "minLength": 1, "maxLength": 1024,
                "description": "At least 12 characters (a shorter one is refused with the reason)."}
    role = {"type": "string", "enum": ["admin", "operator", "auditor"]}
    user = {"type": "object", "additionalProperties": False, "required": ["username", "role", "created_at", "disabled"],
            "properties": {"username": {"type": "string"}, "role": role, "created_at": {"type": "string"},
                           "disabled": {"type": "boolean"}}}
    export = {
        "type": "object", "additionalProperties": False,
        "required": ["sequence", "re_export_since", "created_at", "operator", "file_name", "bytes", "file_sha256",
                     "manifest_sha256", "encrypted_for", "ranges"],
        "properties": {"sequence": {"type": "integer"}, "re_export_since": {"type": ["integer", "null"]},
                       "created_at": {"type": "string"}, "operator": {"type": "string"},
                       "file_name": {"type": "string"}, "bytes": {"type": "integer"},
                       "file_sha256": {"type": "string"}, "manifest_sha256": {"type": "string"},
                       "encrypted_for": string_or_null,
                       "ranges": {"type": "string", "description": "JSON: what it covers, per data set."}},
    }
    summary = {
        "type": "object", "additionalProperties": False,
        "required": ["id", "device_id", "source", "kind", "severity", "status", "message", "created_at"],
        "properties": {"id": {"type": "integer"}, "device_id": {"type": "string"},
                       "source": {"type": "string", "enum": ["device", "operator"]}, "kind": {"type": "string"},
                       "severity": {"type": "string"},
                       "status": {"type": "string", "enum": ["new", "acknowledged", "resolved"]},
                       "message": {"type": "string"}, "created_at": {"type": "string"}},
    }
    return {
        "ReportSummary": summary,
        "ReportList": {"type": "object", "additionalProperties": False, "required": ["reports"],
                       "properties": {"reports": {"type": "array",
                                                  "items": {"$ref": "#/components/schemas/ReportSummary"}}}},
        "ReportDetail": {
            "type": "object", "required": ["summary", "snapshot", "attachments", "notes"],
            "description": "The report with the device's snapshot when filed, its attachments and triage notes.",
            "properties": {"summary": {"$ref": "#/components/schemas/ReportSummary"},
                           "snapshot": {"type": "object"}, "attachments": {"type": "array"},
                           "notes": {"type": "array"}}},
        "TriageRequest": {"type": "object", "additionalProperties": False,
                          "properties": {"text": {"type": "string", "maxLength": 2000,
                                                  "description": "The note (required for note)."}}},
        "DeviceDetail": {
            "type": "object",
            "required": ["summary", "enrolled_at", "state_changed_at", "metrics", "keys", "updates", "history"],
            "description": "One device: its summary (as the device list's), keys, latest metrics, update "
                           "history, and how many metric samples are kept.",
            "properties": {"summary": {"$ref": "#/components/schemas/Device"}, "enrolled_at": {"type": "string"},
                           "state_changed_at": {"type": "string"}, "metrics": {"type": "object"},
                           "keys": {"type": "array"}, "updates": {"type": "array"},
                           "history": {"type": "object"}}},
        "Export": export,
        "ExportList": {"type": "object", "additionalProperties": False, "required": ["exports"],
                       "properties": {"exports": {"type": "array", "items": {"$ref": "#/components/schemas/Export"}}}},
        "ExportMade": {"type": "object", "additionalProperties": False, "required": ["export", "download", "message"],
                       "properties": {"export": {"$ref": "#/components/schemas/Export"},
                                      "download": {"type": "string",
                                                   "description": "Where to GET the file (admin)."},
                                      "message": {"type": "string"}}},
        "User": user,
        "NewUser": {"type": "object", "additionalProperties": False, "required": ["username", "role", "password"],
                    "properties": {"username": name, "role": role, "password": password}},
        "UserChange": {
            "type": "object", "additionalProperties": False, "required": ["username"],
            "description": "role: the new role (set-role); password: the new password (password); disable: neither.",
            "properties": {"username": name, "role": role, "password": password}},
        "Release": release,
        "ReleaseList": {
            "type": "object", "additionalProperties": False, "required": ["releases", "running"],
            "properties": {"releases": {"type": "array", "items": {"$ref": "#/components/schemas/Release"}},
                           "running": {"type": "array", "description": "Who runs which version (accepted devices).",
                                       "items": {"type": "object", "additionalProperties": False,
                                                 "required": ["hardware", "firmware", "devices"],
                                                 "properties": {"hardware": {"type": "string"},
                                                                "firmware": {"type": "string"},
                                                                "devices": {"type": "integer", "minimum": 1}}}}},
        },
        "ReleaseRequest": {
            "type": "object", "additionalProperties": False, "required": ["repository", "target"],
            "description": "Give exactly one of hardware and group.",
            "properties": {"repository": {"type": "string", "pattern": REPOSITORY},
                           "target": {"type": "string", "minLength": 1, "maxLength": 1024},
                           "hardware": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
                           "group": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
                           "allow_downgrade": {"type": "boolean"}},
        },
        "Trust": trust,
        "ImportJob": job,
        "ImportList": {"type": "object", "additionalProperties": False, "required": ["imports"],
                       "properties": {"imports": {"type": "array", "items": imported}}},
        "RepositoryList": {"type": "object", "additionalProperties": False, "required": ["repositories"],
                           "properties": {"repositories": {"type": "array", "items": repository}}},
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
"$ref": "#/components/schemas/User"}}},
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

    upload = {
        "summary": "Upload a bundle (.tar or .tar.gz) as the request body and start its import; poll the job. "
                   "Roles: admin.",
        "operationId": "upload_import", "tags": ["admin"], "security": [{"admin": []}],
        "x-roles": ROLES_OF["upload_import"],
        "parameters": [{"name": name, "in": "query", "required": False, "schema": schema,
                        "description": PARAMETER_HELP[name]} for name, schema in params["upload_import"].items()],
        "requestBody": {"required": True, "content": {"application/octet-stream": {
            "schema": {"type": "string", "format": "binary"}}}},
        "responses": {"202": answer("ImportJob", "The job, started: poll /admin/imports/jobs/{job_id}."),
                      **errors(400, 401, 403, 413, 429, 500)},
    }
    job = {"get": {
        "summary": "An upload's import job: its phase and progress, then its verdict. Roles: admin, auditor.",
        "operationId": "show_import_job", "tags": ["admin"], "security": [{"admin": []}],
        "x-roles": ROLES_OF["show_import_job"],
        "parameters": [{"name": "job_id", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": JOB_ID}}],
        "responses": {"200": answer("ImportJob", "The job."), **errors(400, 401, 403, 404, 429, 500)},
    }}
    return {
        "/admin/repositories": get("list_repositories", "RepositoryList",
                                   "Every pinned repository with the targets a device finds now."),
        "/admin/imports": {**get("list_imports", "ImportList", "The import history, newest first."),
                           "post": upload},
        "/admin/imports/jobs/{job_id}": job,
        "/admin/users": {**get("list_users", "UserList", "Every user, with role and whether it is disabled."),
                         "post": {
            "summary": "Add a user. Roles: admin.", "operationId": "add_user", "tags": ["admin"],
            "security": [{"admin": []}], "x-roles": ROLES_OF["add_user"],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/NewUser"}}}},
            "responses": {"201": answer("User", "The user, added."), **errors(400, 401, 403, 413, 415, 429, 500)},
        }},
        **{f"/admin/users/{action}": {"post": {
            "summary": f"{what} Its console sessions end. Roles: admin.", "operationId": f"user_{action}",
            "tags": ["admin"], "security": [{"admin": []}], "x-roles": ROLES_OF["change_user"],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/UserChange"}}}},
            "responses": {"200": answer("User", "The user, changed."),
                          **errors(400, 401, 403, 409, 413, 415, 429, 500)},
        }} for action, what in (("role", "Give a user another role (body: username, role)."),
                                ("disable", "Disable a user (body: username)."),
                                ("password", "Set a user's password (body: username, password)."))},
        "/admin/devices/{device_id}": {"get": {
            "summary": "One device in detail. Roles: admin, operator, auditor.", "operationId": "show_device",
            "tags": ["admin"], "security": [{"admin": []}], "x-roles": ROLES_OF["show_device"],
            "parameters": [{"name": "device_id", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": DEVICE_PREFIX}}],
            "responses": {"200": answer("DeviceDetail", "The device."), **errors(400, 401, 403, 404, 429, 500)},
        }},
        "/admin/reports": get("list_reports", "ReportList", "Problem reports, newest first, filtered."),
        "/admin/reports/{number}": {"get": {
            "summary": "One problem report with its snapshot, attachments and notes. Roles: admin, operator, "
                       "auditor.", "operationId": "show_report", "tags": ["admin"], "security": [{"admin": []}],
            "x-roles": ROLES_OF["show_report"],
            "parameters": [{"name": "number", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 1}}],
            "responses": {"200": answer("ReportDetail", "The report."), **errors(400, 401, 403, 404, 429, 500)},
        }},
        **{f"/admin/reports/{{number}}/{action}": {"post": {
            "summary": f"{what} Roles: admin, operator.", "operationId": f"report_{action}", "tags": ["admin"],
            "security": [{"admin": []}], "x-roles": ROLES_OF["triage_report"],
            "parameters": [{"name": "number", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 1}}],
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/TriageRequest"}}}},
            "responses": {"200": answer("ReportDetail", "The report after the action."),
                          **errors(400, 401, 403, 404, 409, 413, 415, 429, 500)},
        }} for action, what in (("acknowledge", "new -> acknowledged."), ("resolve", "-> resolved."),
                                ("reopen", "resolved -> new."), ("note", "Add a triage note (text)."))},
        "/admin/exports": {**get("list_exports", "ExportList", "The export history, newest first."),
                           "post": {
            "summary": "Make an export, kept on the appliance for download. Roles: admin.",
            "operationId": "make_export", "tags": ["admin"], "security": [{"admin": []}],
            "x-roles": ROLES_OF["make_export"],
            "parameters": [{"name": "encrypt_for", "in": "query", "required": False,
                            "schema": params["make_export"]["encrypt_for"],
                            "description": PARAMETER_HELP["encrypt_for"]}],
            "responses": {"201": answer("ExportMade", "The export, written."),
                          **errors(400, 401, 403, 409, 429, 500)},
        }},
        "/admin/exports/files/{name}": {"get": {
            "summary": "Download one of the newest exports kept on the appliance. Roles: admin.",
            "operationId": "download_export", "tags": ["admin"], "security": [{"admin": []}],
            "x-roles": ROLES_OF["download_export"],
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": EXPORT_FILE}}],
            "responses": {"200": {"description": "The export file.", "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                **errors(400, 401, 403, 404, 429, 500)},
        }},
        "/admin/releases": {**get("list_releases", "ReleaseList",
                                  "The releases, newest first, and who runs which version."),
                            "post": {
            "summary": "Approve a repository's target for a model or a group. Roles: admin.",
            "operationId": "approve_release", "tags": ["admin"], "security": [{"admin": []}],
            "x-roles": ROLES_OF["approve_release"],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ReleaseRequest"}}}},
            "responses": {"201": answer("Release", "The release, approved."),
                          **errors(400, 401, 403, 404, 413, 415, 422, 429, 500)},
        }},
        "/admin/releases/{release_id}/withdraw": {"post": {
            "summary": "Withdraw a release: check-ins stop offering it. Roles: admin.",
            "operationId": "withdraw_release", "tags": ["admin"], "security": [{"admin": []}],
            "x-roles": ROLES_OF["withdraw_release"],
            "parameters": [{"name": "release_id", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 1}}],
            "responses": {"200": answer("Release", "The release, withdrawn."),
                          **errors(400, 401, 403, 404, 422, 429, 500)},
        }},
        "/admin/repositories/{name}/trust": {"get": {
            "summary": "One repository's roles, keys, thresholds, expiries, signers, delegation tree and root "
                       "history. Roles: admin, auditor.",
            "operationId": "show_trust", "tags": ["admin"], "security": [{"admin": []}],
            "x-roles": ROLES_OF["show_trust"],
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": REPOSITORY}}],
            "responses": {"200": answer("Trust", "The repository's trust."), **errors(400, 401, 403, 404, 429, 500)},
        }},
        "/admin/devices": get("list_devices", "DevicePage", "The device list, filtered, sorted and paged."),
        "/admin/audit": get("list_audit", "AuditPage", "The audit log, oldest first, filtered and paged."),
    }
