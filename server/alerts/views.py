"""``GET /api/v1/admin/alerts``: the alerts, for scripts with a role's HTTP
Basic credentials (everyone with a role reads them)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from server.alerts.services import list_alerts
from server.devices.exceptions import InvalidRequestError

bp = Blueprint("alerts_api", __name__, url_prefix="/api/v1/admin")


@bp.get("/alerts")
def alerts():
    unknown = set(request.args) - {"all", "kind"}
    if unknown:
        raise InvalidRequestError(f"unknown query parameter {sorted(unknown)[0][:40]!r}: this endpoint takes all and "
                                  "kind")
    include_closed = request.args.get("all", "0")
    if include_closed not in ("0", "1"):
        raise InvalidRequestError("all must be 0 or 1")
    found = list_alerts(include_closed=include_closed == "1", kind=request.args.get("kind"))
    return jsonify(alerts=[a.to_dict() for a in found])
