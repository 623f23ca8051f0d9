"""The rollouts' part of the OpenAPI document at ``/api/v1/openapi.json``
(merged by ``server.devices.openapi``), and the request schema the admin
API's views validate against."""

from __future__ import annotations

from collections.abc import Callable

READ_ROLES = ["admin", "operator", "auditor"]
WRITE_ROLES = ["admin"]
STEPS = ["pause", "resume", "advance", "abort"]
STATES = ["running", "paused", "halted", "aborted", "completed"]


def rollout_schemas() -> dict[str, dict]:
    wave = {"type": "object", "additionalProperties": False, "properties": {
        "number": {"type": "integer"}, "target": {"type": "string"},
        "size": {"type": ["integer", "null"]}, "started_at": {"type": ["string", "null"]},
        "finished_at": {"type": ["string", "null"]}, "offered": {"type": "integer"},
        "succeeded": {"type": "integer"}, "failed": {"type": "integer"}, "unhealthy": {"type": "integer"}}}
    return {
        "RolloutCreateRequest": {
            "type": "object", "additionalProperties": False, "required": ["release_id", "waves"],
            "properties": {
                "release_id": {"type": "integer", "minimum": 1, "maximum": 2**53},
                "waves": {"type": "array", "items": {"type": "string", "maxLength": 80},
                          "description": "In order, 1 to 20 of them: a cumulative percentage (\"10%\") or "
                                         "\"group:TAG\"."},
                "soak": {"type": "integer", "minimum": 0, "maximum": 90 * 86400,
                         "description": "Seconds each wave runs before the next may start (default 3600)."},
                "min_success": {"type": "integer", "minimum": 1, "maximum": 100,
                                "description": "Percent of a wave's devices that must succeed and stay healthy."},
                "min_sample": {"type": "integer", "minimum": 1, "maximum": 100000,
                               "description": "Finished devices before a failure rate can halt a wave."},
            }},
        "RolloutStepRequest": {
            "type": "object", "additionalProperties": False,
            "properties": {"reason": {"type": "string", "maxLength": 500, "description": "For abort: why."}}},
        "RolloutWave": wave,
        "Rollout": {"type": "object", "properties": {
            "id": {"type": "integer"}, "release_id": {"type": "integer"}, "repository": {"type": "string"},
            "target_path": {"type": "string"}, "version": {"type": "string"},
            "state": {"type": "string", "enum": STATES}, "current_wave": {"type": "integer"},
            "soak": {"type": "integer"}, "min_success": {"type": "integer"}, "min_sample": {"type": "integer"},
            "halt_reason": {"type": ["string", "null"]}, "halted_at": {"type": ["string", "null"]},
            "created_at": {"type": "string"}, "created_by": {"type": "string"}, "updated_at": {"type": "string"},
            "waves": {"type": "array", "items": {"$ref": "#/components/schemas/RolloutWave"}}}},
        "UpdateHistory": {"type": "object", "properties": {
            "device_id": {"type": "string"},
            "history": {"type": "array", "items": {"type": "object", "properties": {
                "at": {"type": "string"}, "event": {"type": "string"}, "version": {"type": ["string", "null"]},
                "release_id": {"type": ["integer", "null"]}, "rollout_id": {"type": ["integer", "null"]},
                "wave": {"type": ["integer", "null"]}, "detail": {"type": ["string", "null"]}}}}}},
        "RolloutList": {"type": "object", "properties": {
            "rollouts": {"type": "array", "items": {"$ref": "#/components/schemas/Rollout"}}}},
    }


def rollout_paths(answer: Callable[[str, str], dict], errors: Callable[..., dict]) -> dict[str, dict]:
    def body(name: str, required: bool) -> dict:
        return {"required": required,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}

    number = {"name": "number", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
    return {
        "/admin/rollouts": {
            "get": {"summary": "List rollouts, newest first.", "operationId": "list_rollouts", "tags": ["admin"],
                    "security": [{"admin": []}], "x-roles": READ_ROLES,
                    "parameters": [{"name": "state", "in": "query", "required": False,
                                    "schema": {"type": "string", "enum": STATES}}],
                    "responses": {"200": answer("RolloutList", "The rollouts."), **errors(400, 401, 403, 429)}},
            "post": {"summary": "Put an approved release under a staged rollout; wave 1 starts now.",
                     "operationId": "create_rollout", "tags": ["admin"], "security": [{"admin": []}],
                     "x-roles": WRITE_ROLES, "requestBody": body("RolloutCreateRequest", True),
                     "responses": {"201": answer("Rollout", "Created."),
                                   **errors(400, 401, 403, 404, 409, 413, 415, 429)}},
        },
        "/admin/devices/{device_id}/history": {"get": {
            "summary": "A device's update history across releases and rollouts, oldest first (the latest 200).",
            "operationId": "device_update_history", "tags": ["admin"], "security": [{"admin": []}],
            "x-roles": READ_ROLES,
            "parameters": [{"name": "device_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": answer("UpdateHistory", "The history."), **errors(400, 401, 403, 404, 429)}}},
        "/admin/rollouts/{number}": {"get": {
            "summary": "One rollout: state, gates, each wave's counts.", "operationId": "show_rollout",
            "tags": ["admin"], "security": [{"admin": []}], "x-roles": READ_ROLES, "parameters": [number],
            "responses": {"200": answer("Rollout", "The rollout."), **errors(401, 403, 404, 429)}}},
        "/admin/rollouts/{number}/{action}": {"post": {
            "summary": "pause, resume, advance or abort a rollout (every step is audited).",
            "operationId": "rollout_step", "tags": ["admin"], "security": [{"admin": []}], "x-roles": WRITE_ROLES,
            "parameters": [number, {"name": "action", "in": "path", "required": True,
                                    "schema": {"type": "string", "enum": STEPS}}],
            "requestBody": body("RolloutStepRequest", False),
            "responses": {"200": answer("Rollout", "The rollout after the step."),
                          **errors(400, 401, 403, 404, 409, 413, 415, 429)}}},
    }
