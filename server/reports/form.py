"""``/report/<device_id>?k=<label key>``: the short form an operator reaches
by scanning a device's QR label.  Thin views over ``server.reports.services``.

GET shows the form with an anti-forgery token; POST checks the label key,
the token and (when the browser sends them) ``Origin`` and
``Sec-Fetch-Site``, then files the report with a snapshot of the device's
state and shows a confirmation.  Every page carries a strict
Content-Security-Policy and ``Referrer-Policy: no-referrer`` (the URL holds
the label key).
"""

from __future__ import annotations

import logging
from urllib.parse import quote, urlsplit

from flask import Blueprint, current_app, render_template_string, request

from server.devices.models import Device
from server.reports import labels, pages, services
from server.reports.exceptions import FormExpiredError, InvalidRequestError
from server.reports.records import OperatorReportIn
from signing.exceptions import AirlockError

logger = logging.getLogger(__name__)

bp = Blueprint("report_form", __name__)

FORM_BODY_LIMIT = 16 * 1024  # bytes of a posted form
_URGENCY_TEXT = dict(pages.URGENCIES)


def _settings():
    return current_app.config["AIRLOCK"]


def _page(template: str, status: int = 200, **values):
    html = render_template_string(template, style=pages.style(), **values)
    return html, status, {"Content-Type": "text/html; charset=utf-8"}


def _form(device_id: str, key: str, key_hash: str, *, status: int = 200, error: str | None = None,
          problem: str = "", urgency: str = "warning", reporter: str = ""):
    row = Device.get_or_none(Device.device_id == device_id)
    csrf = labels.form_token(labels.form_secret(_settings().state_dir), device_id, key_hash)
    return _page(pages.FORM, status, title=f"Report a problem: {device_id}", device_id=device_id,
                 hardware=row.hardware if row else "", action=f"/report/{quote(device_id, safe=':')}", key=key,
                 csrf=csrf, error=error, problem=problem, urgency=urgency, reporter=reporter,
                 urgencies=pages.URGENCIES, max_problem=services.MAX_PROBLEM, max_reporter=services.MAX_REPORTER)


def _same_origin() -> bool:
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    # With Referrer-Policy no-referrer a browser sends "Origin: null" even
    # from this very page; Sec-Fetch-Site and the token still decide then.
    origin = request.headers.get("Origin")
    return origin in (None, "null") or urlsplit(origin).netloc == request.host


@bp.get("/report/<device_id>")
def show_form(device_id: str):
    key = request.args.get("k", "")
    _, key_hash = services.label_device(device_id, key)
    return _form(device_id, key, key_hash)


@bp.post("/report/<device_id>")
def submit(device_id: str):
    request.max_content_length = FORM_BODY_LIMIT
    key = request.form.get("k", "")
    _, key_hash = services.label_device(device_id, key)
    if not _same_origin():
        raise FormExpiredError("this form was sent from another site: scan the label again")
    labels.check_form_token(labels.form_secret(_settings().state_dir), device_id, key_hash, request.form.get("csrf"))
    entered = OperatorReportIn(problem=request.form.get("problem", ""), urgency=request.form.get("urgency", ""),
                               reporter=request.form.get("reporter", ""))
    try:
        filed = services.file_operator_report(_settings(), device_id, key, entered)
    except InvalidRequestError as exc:
        return _form(device_id, key, key_hash, status=400, error=f"Please check the form: {exc}.",
                     problem=entered.problem[:services.MAX_PROBLEM], reporter=entered.reporter[:services.MAX_REPORTER],
                     urgency=entered.urgency if entered.urgency in _URGENCY_TEXT else "warning")
    detail = services.show_report(_settings(), filed.id)
    return _page(pages.DONE, 200, title="Report filed", number=filed.id, device_id=device_id,
                 urgency_text=_URGENCY_TEXT[detail.summary.severity], reporter=detail.reporter,
                 problem=detail.summary.message)


@bp.errorhandler(AirlockError)
def _refused(exc: AirlockError):
    """A refusal on the form is a page, not the API's JSON (``server.errors``)."""
    titles = {404: "Unknown label", 403: "Please scan the label again", 429: "Too many reports",
              413: "Too long", 400: "Please check the form"}
    response = current_app.make_response(_page(pages.REFUSED, exc.status, title=titles.get(exc.status, "Refused"),
                                               message=str(exc)))
    if exc.extra.get("retry_after"):
        response.headers["Retry-After"] = str(exc.extra["retry_after"])
    return response


@bp.after_request
def _headers(response):
    for name, value in pages.SECURITY_HEADERS.items():
        response.headers[name] = value
    return response
