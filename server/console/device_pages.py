"""The console's device page: one device's state, keys, latest metrics and
update history, metrics over time, and, for admins, accept / reject /
decommission / remove, and its tags.  Thin views
over ``server.devices.services``, which audits each decision; who may post
them is the permission table's, with the session's CSRF token."""

from __future__ import annotations

import re

from flask import current_app, g, redirect, render_template, request

from server.console import charts
from server.console.views import bp
from server.devices import services
from server.devices.exceptions import InvalidRequestError, NotFoundError

ACTIONS = ("accept", "reject", "decommission", "remove", "tag", "untag")
METRIC_SAMPLES = 48  # raw samples the device page charts
MAX_SERIES = 6  # metrics charted
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def _checked(device_id: str) -> str:
    if not _DEVICE_ID.fullmatch(device_id):
        raise NotFoundError("no such device: a device id is letters, digits and . _ : -, at most 64")
    return device_id


@bp.get("/devices/<device_id>")
def device(device_id: str):
    detail = services.show_device(current_app.config["AIRLOCK"], _checked(device_id))
    chart = charts.lines(metric_series(services.metric_history(device_id, 0, METRIC_SAMPLES)),
                         f"Metrics of {device_id}, the latest {METRIC_SAMPLES} samples")
    return render_template("console/device.html", title=f"Device {device_id}", d=detail, metrics_chart=chart,
                           user=g.airlock_session)


def metric_series(samples: list[dict]) -> dict[str, list[float]]:
    """Each numeric metric's values, oldest first (samples come newest first);
    at most :data:`MAX_SERIES` metrics, by name."""
    series: dict[str, list[float]] = {}
    for sample in reversed(samples):
        for name, value in sorted(sample["values"].items()):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if number and (name in series or len(series) < MAX_SERIES):
                series.setdefault(name, []).append(float(value))
    return series


@bp.post("/devices/<device_id>/<action>")
def device_action(device_id: str, action: str):
    if action not in ACTIONS:
        raise NotFoundError(f"no device action {action[:40]!r}: use {', '.join(ACTIONS)}")
    _checked(device_id)
    who = f"{g.airlock_session.username} (console)"
    if action == "remove":
        if request.form.get("confirm") != "1":
            raise InvalidRequestError("tick the box to confirm: removing forgets the device, its keys, metrics and "
                                      "history (the audit log keeps what happened); nothing was removed")
        services.remove_device(current_app.config["AIRLOCK"], device_id, who)
        return redirect("/devices", code=303)
    if action in ("tag", "untag"):
        (services.tag if action == "tag" else services.untag)(device_id, request.form.get("tag", "").strip(), who)
        return redirect(f"/devices/{device_id}", code=303)
    reason = request.form.get("reason", "").strip() or None
    {"accept": services.accept, "reject": services.reject,
     "decommission": services.decommission}[action](device_id, who, reason=reason)
    return redirect(f"/devices/{device_id}", code=303)
