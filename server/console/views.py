"""The console's pages: thin views over the users service and the Overview.

Who may reach each view is decided before it runs, by
``server.console.permissions`` (one table for the whole app); the views
only parse, call a service and render."""

from __future__ import annotations

import secrets

from flask import Blueprint, current_app, g, make_response, redirect, render_template, request

from server.auth import MAX_PASSWORD, MAX_USERNAME, AuthError
from server.console import overview as overview_service
from server.console.pages import add_headers
from server.console.permissions import SESSION_COOKIE, check_form, current_session
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
    return render_template("console/overview.html", title="Overview", data=data, user=g.airlock_session)


@bp.after_request
def _headers(response):
    return add_headers(response)
