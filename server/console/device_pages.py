"""The console's device page: one device's state, keys, latest metrics and
update history, and, for admins, accept / reject / decommission.  Thin views
over ``server.devices.services``, which audits each decision; who may post
them is the permission table's, with the session's CSRF token."""

from __future__ import annotations

import re

from flask import current_app, g, redirect, render_template, request

from server.console.views import bp
from server.devices import services
from server.devices.exceptions import NotFoundError

ACTIONS = ("accept", "reject", "decommission")
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def _checked(device_id: str) -> str:
    if not _DEVICE_ID.fullmatch(device_id):
        raise NotFoundError("no such device: a device id is letters, digits and . _ : -, at most 64")
    return device_id


@bp.get("/devices/<device_id>")
def device(device_id: str):
    detail = services.show_device(current_app.config["AIRLOCK"], _checked(device_id))
    return render_template("console/device.html", title=f"Device {device_id}", d=detail, user=g.airlock_session)


@bp.post("/devices/<device_id>/<action>")
def device_action(device_id: str, action: str):
    if action not in ACTIONS:
        raise NotFoundError(f"no device action {action[:40]!r}: use {', '.join(ACTIONS)}")
    _checked(device_id)
    who = f"{g.airlock_session.username} (console)"
    reason = request.form.get("reason", "").strip() or None
    {"accept": services.accept, "reject": services.reject,
     "decommission": services.decommission}[action](device_id, who, reason=reason)
    return redirect(f"/devices/{device_id}", code=303)
