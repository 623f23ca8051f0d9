"""The console's pages: thin views over the users service and the Overview.

Who may reach each view is decided before it runs, by
``server.console.permissions`` (one table for the whole app); the views
only parse, call a service and render."""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, make_response, redirect, render_template, request

from server import audit
from server.auth import MAX_PASSWORD, MAX_USERNAME, AuthError
from server.console import charts
from server.console import overview as overview_service
from server.console.openapi import DEVICE_SORTS, PAGE_STATES
from server.console.pages import add_headers
from server.console.permissions import SESSION_COOKIE, TABLE, check_form, current_session
from server.console.query import parse
from server.devices.records import DeviceQuery
from server.devices.services import firmware_versions, page_devices
from server.devices.stats import update_outcomes
from server.text import escape_text
from server.users import services as users
from server.users.throttle import LoginThrottle

bp = Blueprint("console", __name__, template_folder="templates", static_folder="static",
               static_url_path="/console/static")

LOGIN_CSRF_COOKIE = "airlock_login_csrf"
FORM_BODY_LIMIT = 8 * 1024  # bytes of a posted console form


def _cookie(response, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="Strict", secure=request.is_secure, path="/")


def _login_page(status: int = 200, error: str | None = None, username: str = "", retry_after: int | None = None):
    token = secrets.token_urlsafe(32)
    response = make_response(render_template("console/login.html", title="Log in", csrf=token, error=error,
                                             username=username[:MAX_USERNAME], max_username=MAX_USERNAME), status)
    _cookie(response, LOGIN_CSRF_COOKIE, token)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


@bp.get("/")
def index():
    if current_session() is not None:
        return redirect("/overview", code=303)
    return _login_page()


@bp.post("/login")
def login():
    request.max_content_length = FORM_BODY_LIMIT
    check_form(request.cookies.get(LOGIN_CSRF_COOKIE), request.form.get("csrf"))
    username, password = request.form.get("username", ""), request.form.get("password", "")
    if not username or not password or len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
        return _login_page(400, "Enter your user name and password.", username)
    try:
        _, token = users.login(username, password, LoginThrottle(), request.remote_addr or "")
    except AuthError as exc:
        if exc.status == 429:
            return _login_page(429, "Too many failed logins for this user name: wait a few minutes and try again.",
                               username, exc.extra.get("retry_after"))  # type: ignore[arg-type]
        return _login_page(401, "Wrong user name or password.", username)
    response = redirect("/overview", code=303)
    _cookie(response, SESSION_COOKIE, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@bp.post("/logout")
def logout():
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        users.logout(token)
    response = redirect("/", code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict", secure=request.is_secure)
    return response


@bp.get("/overview")
def overview():
    data = overview_service.overview(current_app.config["AIRLOCK"])
    firmware = charts.bars([(f"{model} {version or '(not reported)'}", n)
                            for model, version, n in firmware_versions()],
                           "Accepted devices by model and firmware version", empty="no accepted device yet")
    updates = charts.stacked_days(update_outcomes(14), "Update reports per day, the last 14 days (UTC)",
                                  ("successes", "failures"))
    return render_template("console/overview.html", title="Overview", data=data, firmware_chart=firmware,
                           updates_chart=updates, user=g.airlock_session)


@bp.get("/devices")
def devices():
    q = parse("list_devices", request.args, ignore_empty=True)
    page = page_devices(current_app.config["AIRLOCK"], DeviceQuery(**q))
    pages = max(1, -(-page.total // page.per_page))
    return render_template("console/devices.html", title="Devices", page=page, pages=pages, filters=q,
                           states=PAGE_STATES, sorts=DEVICE_SORTS, user=g.airlock_session,
                           link=lambda number: _page_link("/devices", q, number))


@bp.get("/audit")
def audit_log():
    q = parse("list_audit", request.args, ignore_empty=True, also=("verify",))
    limit = q.pop("limit", 100)
    entries = audit.search(**q, limit=limit)
    next_after = entries[-1].id if len(entries) == limit else None
    chain = None
    if request.args.get("verify") == "1":
        try:
            chain = (True, audit.verify().message)
        except audit.AuditError as exc:
            chain = (False, str(exc))
    return render_template("console/audit.html", title="Audit log", entries=entries, filters=q, chain=chain,
                           user=g.airlock_session,
                           next_link=_page_link("/audit", {**q, "after": next_after, "limit": limit}, None)
                           if next_after else None)


def _page_link(path: str, query: dict, page: int | None) -> str:
    values = {k: v for k, v in query.items() if v not in (None, "")}
    if page is not None:
        values["page"] = page
    return path + ("?" + urlencode(values) if values else "")


@bp.app_context_processor
def _may():
    """``may(endpoint)`` in templates: whether the logged-in role may reach it
    (the navigation shows only what the permission table allows)."""
    def may(endpoint: str) -> bool:
        found = g.get("airlock_session")
        access = TABLE.get(endpoint)
        return found is not None and access is not None and found.role in access.roles
    return {"may": may}


@bp.app_template_filter("shown")
def _shown(text: object) -> str:
    """Text that came from a device or the LAN, bounded and with every control
    and bidi character made visible (``server.text``); Jinja escapes the HTML."""
    return escape_text(str(text), 1000)


@bp.after_request
def _headers(response):
    return add_headers(response)


# The other pages (device, Reports, Releases, Rollouts, Alerts, Repositories, Imports, Exports, Trust,
# Users) add their routes to this blueprint.
from server.console import (  # noqa: E402,F401
    alert_pages,
    device_pages,
    export_pages,
    import_pages,
    release_pages,
    report_pages,
    rollout_pages,
    trust_pages,
    user_pages,
)
