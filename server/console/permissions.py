"""The one permission table: who may reach each endpoint of the app.

Every Flask endpoint (``app.url_map``) has one row here, and
:func:`enforce`, installed as the app's ``before_request``, is the only
place that reads it.  An endpoint with no row is refused (403) and fails
the route-walk test (tests/functional/console/test_permissions.py), so a new
route cannot be reachable by accident.

Three kinds of access:

- ``public``: no user; the view checks its own credential or needs none
  (TUF files and health are public by design, devices carry their bearer
  token, the QR form its label key, the login form its CSRF cookie).
- ``session``: a console page; a live console session whose role is listed.
  Anything but GET or HEAD must also carry the session's CSRF token and come
  from this site.  Without a session a GET is sent to the login form.
- ``basic``: the admin API; HTTP Basic credentials of a user whose role is
  listed (throttled and audited like console logins).
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import g, redirect, request

from server.auth import Admin, AuthError, authenticate_basic
from server.console.openapi import ROLES_OF
from server.rollouts.openapi import READ_ROLES as ROLLOUT_READ
from server.rollouts.openapi import WRITE_ROLES as ROLLOUT_WRITE
from server.users import sessions
from server.users.records import ROLES
from server.users.throttle import LoginThrottle
from signing.exceptions import AirlockError

logger = logging.getLogger(__name__)

SESSION_COOKIE = "airlock_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
EVERYONE = frozenset(ROLES)


@dataclass(frozen=True)
class Access:
    kind: str  # "public" | "session" | "basic"
    roles: frozenset[str] = frozenset()
    why: str = ""  # for public entries: why no user is needed


def public(why: str) -> Access:
    return Access("public", frozenset(), why)


def session(*roles: str) -> Access:
    return Access("session", frozenset(roles) if roles else EVERYONE)


def basic(*roles: str) -> Access:
    return Access("basic", frozenset(roles))


TABLE: dict[str, Access] = {
    # TUF clients and monitoring
    "repositories.metadata": public("TUF metadata: signed by the vendor, fetched by any TUF client"),
    "repositories.targets": public("TUF targets: verified by the client against signed metadata"),
    "health.healthz": public("liveness for load balancers and systemd"),
    "metrics.metrics": public("Prometheus text, scraped on the plant LAN; counts only"),
    # the device API: each view checks the device's bearer token or signature
    "devices.enroll": public("a device's signed enrollment request"),
    "devices.checkin": public("device bearer token"),
    "devices.updates": public("device bearer token"),
    "reports_api.file_report": public("device bearer token"),
    "devices.openapi": public("the API's description"),
    # the QR label form: the label key and the form's own token
    "report_form.show_form": public("the label key in the URL"),
    "report_form.submit": public("the label key and the form token"),
    # the console
    "console.static": public("the console's style sheet"),
    "console.index": public("the login form (or, logged in, on to the Overview)"),
    "console.login": public("checks the credentials and the login form's CSRF cookie"),
    "console.logout": session(),
    "console.overview": session(),
    "console.devices": session(),
    "console.device": session(),
    "console.device_action": session("admin"),
    "console.audit_log": session("admin", "auditor"),
    "console.reports": session(),
    "console.report": session(),
    "console.report_action": session("admin", "operator"),
    "console.repositories": session("admin", "auditor"),
    "console.imports": session("admin", "auditor"),
    "console.import_upload": session("admin"),
    "console.import_job": session("admin", "auditor"),
    "console.import_job_progress": session("admin", "auditor"),
    "console.trust_index": session("admin", "auditor"),
    "console.trust": session("admin", "auditor"),
    "console.trust_raw": session("admin", "auditor"),
    "console.releases": session(),
    "console.release_approve": session("admin"),
    "console.release_withdraw": session("admin"),
    "console.users_page": session("admin", "auditor"),
    "console.exports": session("admin", "auditor"),
    "console.export_make": session("admin"),
    "console.export_file": session("admin"),
    "console.user_add": session("admin"),
    "console.user_action": session("admin"),
    "console.rollouts": session(*ROLLOUT_READ),
    "console.rollout": session(*ROLLOUT_READ),
    "console.rollout_step": session(*ROLLOUT_WRITE),
    "console.alerts": session(),
    # the admin API
    "devices.admin_decision": basic("admin"),
    "admin_api.list_devices": basic(*ROLES_OF["list_devices"]),
    "admin_api.list_audit": basic(*ROLES_OF["list_audit"]),
    "admin_api.list_all_users": basic(*ROLES_OF["list_users"]),
    # rollouts: everyone reads them, admins run them (server/rollouts/openapi.py)
    "rollouts_api.list_rollouts": basic(*ROLLOUT_READ),
    "rollouts_api.show_rollout": basic(*ROLLOUT_READ),
    "rollouts_api.create_rollout": basic(*ROLLOUT_WRITE),
    "rollouts_api.rollout_step": basic(*ROLLOUT_WRITE),
    "devices.admin_device_history": basic(*ROLLOUT_READ),
    # maintenance windows and download caps (server/delivery/views.py): everyone reads, admins change
    "delivery_api.list_windows": basic(*EVERYONE),
    "delivery_api.add_window": basic("admin"),
    "delivery_api.remove_window": basic("admin"),
    "delivery_api.list_caps": basic(*EVERYONE),
    "delivery_api.set_cap": basic("admin"),
    "delivery_api.clear_cap": basic("admin"),
    "alerts_api.alerts": basic(*EVERYONE),
    "admin_api.list_repositories": basic(*ROLES_OF["list_repositories"]),
    "admin_api.list_imports": basic(*ROLES_OF["list_imports"]),
    "admin_api.upload_import": basic(*ROLES_OF["upload_import"]),
    "admin_api.show_import_job": basic(*ROLES_OF["show_import_job"]),
    "admin_api.show_trust": basic(*ROLES_OF["show_trust"]),
    "admin_api.list_all_releases": basic(*ROLES_OF["list_releases"]),
    "admin_api.approve_release": basic(*ROLES_OF["approve_release"]),
    "admin_api.withdraw_release": basic(*ROLES_OF["withdraw_release"]),
    "admin_api.add_user": basic(*ROLES_OF["add_user"]),
    "admin_api.list_exports": basic(*ROLES_OF["list_exports"]),
    "admin_api.show_device": basic(*ROLES_OF["show_device"]),
    "admin_api.list_all_reports": basic(*ROLES_OF["list_reports"]),
    "admin_api.show_report": basic(*ROLES_OF["show_report"]),
    "admin_api.triage_report": basic(*ROLES_OF["triage_report"]),
    "admin_api.make_export": basic(*ROLES_OF["make_export"]),
    "admin_api.download_export": basic(*ROLES_OF["download_export"]),
    "admin_api.change_user": basic(*ROLES_OF["change_user"]),
}


class ForbiddenError(AirlockError):
    """The user's role may not do this, or a form came from elsewhere."""

    status = 403
    code = "forbidden"


class LoginRequiredError(AirlockError):
    """A console page needs a logged-in user (the session ended or never was)."""

    status = 401
    code = "unauthorized"


def _same_site() -> bool:
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def check_form(expected: str | None, sent: str | None) -> None:
    """Refuse a state change whose CSRF token is missing or wrong, or that
    came from another site."""
    if not _same_site():
        raise ForbiddenError("this form was sent from another site: open the console and try again")
    if not expected or not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise ForbiddenError("this form has expired or did not come from the console: reload the page and try again")


def current_session() -> sessions.Session | None:
    if "airlock_session" not in g:
        g.airlock_session = sessions.resolve(request.cookies.get(SESSION_COOKIE))
    return g.airlock_session


def api_user() -> Admin:
    """The admin-API user :func:`enforce` authenticated for this request."""
    user = g.get("airlock_api_user")
    if user is None:
        raise AuthError("this endpoint needs HTTP Basic credentials")
    return user


def enforce():
    """``before_request``: apply the endpoint's row of :data:`TABLE`."""
    endpoint = request.endpoint
    if endpoint is None:
        return None  # no such route: the 404 or 405 follows
    access = TABLE.get(endpoint)
    if access is None:
        logger.error("endpoint %s has no row in the permission table: refused", endpoint)
        raise ForbiddenError("this endpoint is not open to anyone yet")
    if access.kind == "public":
        return None
    if access.kind == "basic":
        if request.method not in SAFE_METHODS and not _same_site():
            # a browser that cached Basic credentials would send them with another site's form
            raise ForbiddenError("this request came from another site: the admin API takes scripts' requests "
                                 "(without Origin) or the console's own")
        g.airlock_api_user = authenticate_basic(request.headers.get("Authorization"), LoginThrottle(),
                                                tuple(sorted(access.roles)))
        return None
    found = current_session()
    if found is None:
        if request.method in SAFE_METHODS:
            return redirect("/", code=303)
        raise LoginRequiredError("your console session has ended: log in again")
    if found.role not in access.roles:
        raise ForbiddenError(f"an {found.role} may not do this: ask an admin")
    if request.method not in SAFE_METHODS:
        check_form(found.csrf, request.form.get("csrf"))
    return None
