"""``POST /api/v1/reports``: a device's error report.  A thin view over
``server.reports.services``: check the token, read at most the byte limit,
parse strictly, validate against the OpenAPI schema, decode attachments,
then call the service.  Answers are JSON, errors included."""

from __future__ import annotations

import base64
import binascii
import re

from flask import Blueprint, current_app, jsonify, request

from server.devices import services as devices
from server.devices.exceptions import InvalidRequestError, UnsupportedMediaTypeError
from server.devices.schema import loads_strict
from server.devices.views import VALIDATOR
from server.models import database
from server.reports import services
from server.reports.exceptions import ReportTooLargeError
from server.reports.records import Attachment, DeviceReportIn

bp = Blueprint("reports_api", __name__, url_prefix="/api/v1")

ENVELOPE = 16 * 1024  # bytes of JSON around the attachments
_BEARER = re.compile(r"Bearer ([A-Za-z0-9_-]{1,128})", re.IGNORECASE)


def body_limit(max_attachment_bytes: int) -> int:
    """Largest request body: the envelope plus the attachments in base64."""
    return ENVELOPE + 4 * -(-max_attachment_bytes // 3) + services.MAX_ATTACHMENTS * 256


def _json_body(schema: str, limit: int) -> dict:
    if request.mimetype != "application/json":
        raise UnsupportedMediaTypeError("send the body as Content-Type: application/json")
    if request.content_length is not None and request.content_length > limit:
        raise ReportTooLargeError(f"the body is {request.content_length} bytes; this appliance takes at most "
                                  f"{limit} (setting report_max_attachment_bytes); nothing was stored")
    request.max_content_length = limit + 1  # the app's default cap is lower than attachments need
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise ReportTooLargeError(f"the body is larger than this appliance's {limit} bytes; nothing was stored")
    return VALIDATOR.validate(loads_strict(data), {"$ref": f"#/components/schemas/{schema}"})


def _attachments(items: list[dict]) -> tuple[Attachment, ...]:
    out = []
    for item in items:
        try:
            content = base64.b64decode(item["content"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequestError(f"attachment {item['name']!r}: content is not standard base64") from None
        out.append(Attachment(item["name"], content))
    return tuple(out)


@bp.post("/reports")
def file_report():
    settings = current_app.config["AIRLOCK"]
    m = _BEARER.fullmatch(request.headers.get("Authorization", "").strip())
    device = devices.authenticate(database, m.group(1) if m else None)
    body = _json_body("ReportRequest", body_limit(settings.report_max_attachment_bytes))
    if len(body.get("attachments", [])) > services.MAX_ATTACHMENTS:
        raise InvalidRequestError(f"a report may carry at most {services.MAX_ATTACHMENTS} attachments")
    report = DeviceReportIn(report_id=body["report_id"], kind=body["kind"], severity=body["severity"],
                            message=body["message"], firmware=body["firmware"], occurred_at=body.get("occurred_at"),
                            attachments=_attachments(body.get("attachments", [])))
    filed = services.file_device_report(settings, device, report)
    return jsonify(status="recorded", id=filed.id, duplicate=filed.duplicate), (200 if filed.duplicate else 201)

