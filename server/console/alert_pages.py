"""The console's Alerts page: the open alerts first, then the most recent
closed ones, optionally of one kind.  Subjects and details may carry a
device's text: they are shown through the ``shown`` filter (bounded,
controls made visible) and escaped by Jinja.  A thin view over
``server.alerts.services``; every role reads it."""

from __future__ import annotations

from flask import g, render_template, request

from server.alerts.services import KINDS, list_alerts
from server.console.views import bp
from server.devices.exceptions import InvalidRequestError

RECENT_CLOSED = 100  # closed alerts shown below the open ones


@bp.get("/alerts")
def alerts():
    unknown = set(request.args) - {"kind"}
    if unknown:
        raise InvalidRequestError(f"unknown query parameter {sorted(unknown)[0][:40]!r}: this page takes kind")
    kind = request.args.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise InvalidRequestError(f"unknown alert kind {kind[:40]!r}: choose one of {', '.join(sorted(KINDS))}")
    still_open = list_alerts(kind=kind)
    # newest first over all of them: the open ones plus RECENT_CLOSED rows hold the latest closed ones
    closed = [a for a in list_alerts(include_closed=True, kind=kind, limit=len(still_open) + RECENT_CLOSED)
              if not a.open][:RECENT_CLOSED]
    return render_template("console/alerts.html", title="Alerts", still_open=still_open, closed=closed, kind=kind,
                           kinds=KINDS, user=g.airlock_session)
