"""The admin API's read endpoints, ``/api/v1/admin/...``: thin views over the
devices, audit and users services, for scripts with a role's HTTP Basic
credentials.  Who may call each one is the permission table's
(``server.console.permissions``, from ``openapi.ROLES_OF``); the query
string is validated against the parameters the OpenAPI document shows, and
an unknown parameter is refused rather than ignored."""

from __future__ import annotations

import dataclasses
import re

from flask import Blueprint, current_app, jsonify, request, send_file

from server import audit
from server.console import repositories as repository_view
from server.console import trust as trust_view
from server.console.permissions import api_user
from server.console.query import parse
from server.console.uploads import job_from_body
from server.devices import services as devices
from server.devices.exceptions import InvalidRequestError, NotFoundError, TooLargeError, UnsupportedMediaTypeError
from server.devices.records import DeviceQuery
from server.devices.schema import loads_strict
from server.devices.services import page_devices
from server.devices.views import VALIDATOR
from server.exports import downloads
from server.exports.services import export_history
from server.imports import uploads
from server.imports.services import import_history
from server.reports import services as reports
from server.users import services as users
from server.users.services import list_users

DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
bp = Blueprint("admin_api", __name__, url_prefix="/api/v1/admin")
JSON_LIMIT = 8 * 1024  # bytes of an admin request's JSON body


def _query(operation: str) -> dict:
    return parse(operation, request.args)


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
    return jsonify(users=[_user_dict(u) for u in list_users()])


@bp.get("/repositories")
def list_repositories():
    _query("list_repositories")
    found = repository_view.repositories(current_app.config["AIRLOCK"])
    return jsonify(repositories=[r.to_dict() for r in found])


@bp.get("/imports")
def list_imports():
    q = _query("list_imports")
    return jsonify(imports=[e.to_dict() for e in import_history(limit=q.get("limit", 50))])


@bp.post("/imports")
def upload_import():
    q = _query("upload_import")
    user = api_user()
    job = job_from_body(request, f"{user.username} (api)", q.get("filename", "bundle"))
    return jsonify(job.to_dict()), 202


@bp.get("/imports/jobs/<job_id>")
def show_import_job(job_id: str):
    _query("show_import_job")
    return jsonify(uploads.read_job(current_app.config["AIRLOCK"], job_id).to_dict())


@bp.get("/repositories/<name>/trust")
def show_trust(name: str):
    _query("show_trust")
    return jsonify(trust_view.trust(current_app.config["AIRLOCK"], name).to_dict())


@bp.get("/releases")
def list_all_releases():
    q = _query("list_releases")
    found = devices.list_releases(include_withdrawn=q.get("all") == "1")
    return jsonify(releases=[r.to_dict() for r in found],
                   running=[{"hardware": h, "firmware": f, "devices": n} for h, f, n in devices.firmware_versions()])


@bp.post("/releases")
def approve_release():
    _query("approve_release")
    body = json_body("ReleaseRequest")
    user = api_user()
    release = devices.approve(current_app.config["AIRLOCK"], body["repository"], body["target"],
                              f"{user.username} (api)", hardware=body.get("hardware"), group=body.get("group"),
                              allow_downgrade=body.get("allow_downgrade", False))
    return jsonify(release.to_dict()), 201


@bp.post("/releases/<int:release_id>/withdraw")
def withdraw_release(release_id: int):
    _query("withdraw_release")
    return jsonify(devices.withdraw(release_id, f"{api_user().username} (api)").to_dict())


def json_body(schema: str, limit: int = JSON_LIMIT) -> dict:
    """The request's JSON body, at most ``limit`` bytes, valid against ``schema``."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaTypeError("send the body as Content-Type: application/json")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise TooLargeError(f"the body is larger than this endpoint's {limit} bytes")
    return VALIDATOR.validate(loads_strict(data), {"$ref": f"#/components/schemas/{schema}"})


def _user_dict(u) -> dict:
    return {"username": u.username, "role": u.role, "created_at": u.created_at, "disabled": u.disabled}


@bp.post("/users")
def add_user():
    _query("add_user")
    body = json_body("NewUser")
    made = users.create_user(body["username"], body["password"], body["role"], f"{api_user().username} (api)")
    return jsonify(_user_dict(made)), 201


@bp.post("/users/<action>")
def change_user(action: str):
    if action not in ("role", "disable", "password"):
        raise NotFoundError(f"no user action {action[:40]!r}: use role, disable or password")
    _query("change_user")
    body = json_body("UserChange")
    who = f"{api_user().username} (api)"
    extra = {"role": "role", "password": "password"}.get(action)
    unexpected = set(body) - {"username", *([extra] if extra else [])}
    if unexpected or (extra and extra not in body):
        raise InvalidRequestError(f"{action} takes username" + (f" and {extra}" if extra else "") + "; nothing changed")
    if action == "role":
        changed = users.set_role(body["username"], body["role"], who)
    elif action == "disable":
        changed = users.disable_user(body["username"], who)
    else:
        changed = users.change_password(body["username"], users.check_new_password(body["password"]), who)
    return jsonify(_user_dict(changed))


def _export_dict(record) -> dict:
    return dataclasses.asdict(record)


@bp.get("/exports")
def list_exports():
    q = _query("list_exports")
    return jsonify(exports=[_export_dict(e) for e in export_history(q.get("limit", 50))])


@bp.post("/exports")
def make_export():
    q = _query("make_export")
    made = downloads.make(current_app.config["AIRLOCK"], current_app.config["AIRLOCK_EXPORT_RUNNER"],
                          f"{api_user().username} (api)", q.get("encrypt_for"))
    record = export_history(1)[0]
    return jsonify(export=_export_dict(record), download=f"/api/v1/admin/exports/files/{record.file_name}",
                   message=made.message), 201


@bp.get("/exports/files/<name>")
def download_export(name: str):
    _query("download_export")
    return send_file(downloads.path_of(current_app.config["AIRLOCK"], name), mimetype="application/octet-stream",
                     as_attachment=True, download_name=name, max_age=0)


@bp.get("/devices/<device_id>")
def show_device(device_id: str):
    _query("show_device")
    if not DEVICE_ID.fullmatch(device_id):
        raise NotFoundError("no such device: a device id is letters, digits and . _ : -, at most 64")
    return jsonify(devices.show_device(current_app.config["AIRLOCK"], device_id).to_dict())


@bp.get("/reports")
def list_all_reports():
    q = _query("list_reports")
    found = reports.list_reports(status=q.get("status"), device_id=q.get("device"), limit=q.get("limit", 200))
    return jsonify(reports=[r.to_dict() for r in found])


@bp.get("/reports/<int:number>")
def show_report(number: int):
    _query("show_report")
    return jsonify(_report_dict(number))


@bp.post("/reports/<int:number>/<action>")
def triage_report(number: int, action: str):
    if action not in ("acknowledge", "resolve", "reopen", "note"):
        raise NotFoundError(f"no report action {action[:40]!r}: use acknowledge, resolve, reopen or note")
    _query("triage_report")
    body = {} if not request.content_length else json_body("TriageRequest")
    who = f"{api_user().username} (api)"
    text = body.get("text")
    if action == "note":
        reports.add_note(number, who, text or "")
    else:
        {"acknowledge": reports.acknowledge, "resolve": reports.resolve,
         "reopen": reports.reopen}[action](number, who, text or None)
    return jsonify(_report_dict(number))


def _report_dict(number: int) -> dict:
    detail = reports.show_report(current_app.config["AIRLOCK"], number).to_dict()
    for attachment in detail.get("attachments", []):
        attachment.pop("path", None)  # where the appliance keeps it is no script's business
    return detail
