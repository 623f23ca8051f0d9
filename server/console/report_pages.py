"""The console's Reports pages: the triage queue, one report with its device
snapshot, attachments and notes, and the triage actions (acknowledge,
resolve, reopen, note) for admins and operators.  Thin views over
``server.reports.services``, which audits each action; who may post them
is the permission table's, with the session's CSRF token."""

from __future__ import annotations

import re

from flask import current_app, g, redirect, render_template, request

from server.console.views import bp
from server.devices.exceptions import InvalidRequestError, NotFoundError
from server.reports import services
from server.reports.records import STATUSES

ACTIONS = ("acknowledge", "resolve", "reopen", "note")
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
LIST_SIZE = 200  # newest reports a page shows


@bp.get("/reports")
def reports():
    unknown = set(request.args) - {"status", "device"}
    if unknown:
        raise InvalidRequestError(f"unknown query parameter {sorted(unknown)[0][:40]!r}: this takes status, device")
    status = request.args.get("status") or None
    device = request.args.get("device") or None
    if status is not None and status not in STATUSES:
        raise InvalidRequestError(f"status must be one of {', '.join(STATUSES)}")
    if device is not None and not _DEVICE_ID.fullmatch(device):
        raise InvalidRequestError("device must be a device id (letters, digits and . _ : -, at most 64)")
    found = services.list_reports(status=status, device_id=device, limit=LIST_SIZE)
    return render_template("console/reports.html", title="Reports", reports=found, status=status,
                           device=device or "", statuses=STATUSES, limit=LIST_SIZE, user=g.airlock_session)


@bp.get("/reports/<int:number>")
def report(number: int):
    detail = services.show_report(current_app.config["AIRLOCK"], number)
    return render_template("console/report.html", title=f"Report {number}", r=detail, user=g.airlock_session)


@bp.post("/reports/<int:number>/<action>")
def report_action(number: int, action: str):
    if action not in ACTIONS:
        raise NotFoundError(f"no report action {action[:40]!r}: use {', '.join(ACTIONS)}")
    who = f"{g.airlock_session.username} (console)"
    text = request.form.get("text", "")
    if action == "note":
        services.add_note(number, who, text)
    else:
        {"acknowledge": services.acknowledge, "resolve": services.resolve,
         "reopen": services.reopen}[action](number, who, text or None)
    return redirect(f"/reports/{number}", code=303)
