"""Every route of the app, for every role and for an anonymous visitor,
against the one permission table (server/console/permissions.py).

A route with no row in the table fails here (and is refused at run time);
a row for a route that no longer exists fails too.  Each route is then
requested with each identity: where the table denies, the answer must be
the enforcement's refusal; where it allows, it must not be.  Every state
change through a console session needs the session's CSRF token, and no
GET changes anything in the database."""

from __future__ import annotations

import base64

import pytest

from server import bind_database, create_app
from server.console import permissions
from server.console.permissions import TABLE
from server.settings import load_settings
from server.users import services
from server.users.throttle import LoginThrottle
from tests.functional.console.conftest import PASSWORDS, USER_OF
from tests.support import homedb

IDENTITIES = ["anonymous", "admin", "operator", "auditor"]
SAMPLE = {"name": "acme", "filename": "1.root.json", "relpath": "plc-x/fw.bin", "device_id": "d-1", "release_id": 1,
          "action": "accept", "number": 1}
PER_ENDPOINT = {"console.static": {"filename": "console.css"}}
# Tables a request may touch without changing the appliance's state.
BOOKKEEPING = {"console_session", "login_failure"}


def routes(app):
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            values = {arg: PER_ENDPOINT.get(rule.endpoint, {}).get(arg, SAMPLE.get(arg, "x"))
                      for arg in rule.arguments}
            path = app.url_map.bind("localhost").build(rule.endpoint, values, method=method)
            yield rule.endpoint, method, path


def missing_rows(app) -> list[str]:
    return sorted({rule.endpoint for rule in app.url_map.iter_rules()} - set(TABLE))


@pytest.fixture
def app(console_home):
    return create_app(load_settings(console_home, environ={}))


class Identity:
    def __init__(self, role: str | None):
        self.role = role
        self.username = USER_OF.get(role or "")
        self.cookie = self.csrf = None
        if role:
            self.log_in()

    def log_in(self):
        session, self.cookie = services.login(self.username, PASSWORDS[self.username], LoginThrottle(), "test")
        self.csrf = session.csrf

    def request(self, client, method: str, path: str, access: permissions.Access, *, with_csrf: bool = True):
        client.delete_cookie(permissions.SESSION_COOKIE)
        headers = {}
        if self.role and access.kind == "basic":
            raw = f"{self.username}:{PASSWORDS[self.username]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        if self.cookie:
            client.set_cookie(permissions.SESSION_COOKIE, self.cookie)
        data = {"csrf": self.csrf} if with_csrf and self.csrf and method != "GET" else None
        return client.open(path, method=method, headers=headers, data=data)


def denied_by_the_table(access: permissions.Access, response) -> bool:
    """Whether ``response`` is the enforcement's own refusal."""
    text = response.get_data(as_text=True)
    if access.kind == "session":
        return (response.request.method == "GET" and response.status_code == 303
                and response.headers["Location"] == "/") or \
            (response.status_code == 401 and "your console session has ended" in text) or \
            (response.status_code == 403 and "may not do this" in text)
    if access.kind == "basic":
        return (response.status_code == 401 and response.is_json and response.json["error"] == "unauthorized") or \
            (response.status_code == 403 and response.is_json and "and this needs" in response.json["message"])
    return False


def database_state(home) -> dict:
    listing = ("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
               if homedb.is_postgresql(home) else "SELECT name FROM sqlite_master WHERE type = 'table'")
    con = homedb.connect(home)
    try:
        tables = [r[0] for r in con.execute(listing).fetchall()]
        # sorted: PostgreSQL returns rows in no set order without ORDER BY
        return {t: sorted(map(repr, con.execute(f"SELECT * FROM \"{t}\"").fetchall()))  # noqa: S608 - its own names
                for t in tables if t not in BOOKKEEPING}
    finally:
        con.close()


def test_every_route_has_exactly_one_row_in_the_table(app):
    assert not missing_rows(app), f"add these endpoints to server/console/permissions.py TABLE: {missing_rows(app)}"
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert not set(TABLE) - endpoints, f"rows for endpoints that do not exist: {set(TABLE) - endpoints}"
    for endpoint, access in TABLE.items():
        assert access.kind in ("public", "session", "basic"), endpoint
        assert access.kind != "public" or access.why, f"{endpoint}: say why it is public"
        assert access.kind == "public" or access.roles, f"{endpoint}: no role may use it"


def test_a_new_route_without_a_row_fails_the_walk_and_is_refused(app):
    @app.get("/console-extra")
    def extra():
        return "should never be served"

    assert missing_rows(app) == ["extra"]
    r = app.test_client().get("/console-extra")
    assert r.status_code == 403 and "should never be served" not in r.get_data(as_text=True)


def test_walk_every_route_for_every_role_and_anonymous(app, console_home):
    bind_database(load_settings(console_home, environ={}))
    identities = {name: Identity(None if name == "anonymous" else name) for name in IDENTITIES}
    client = app.test_client()
    before = database_state(console_home)
    walked = []
    gets = [r for r in routes(app) if r[1] == "GET"]
    others = [r for r in routes(app) if r[1] != "GET"]
    for endpoint, method, path in gets + others:  # every GET first: none of them may change anything
        access = TABLE[endpoint]
        for name, identity in identities.items():
            allowed = access.kind == "public" or name in access.roles
            response = identity.request(client, method, path, access)
            refused = denied_by_the_table(access, response)
            assert refused != allowed, (f"{method} {path} ({endpoint}) as {name}: the table says "
                                        f"{'allow' if allowed else 'deny'}, got {response.status_code} "
                                        f"{response.get_data(as_text=True)[:200]}")
            assert "Traceback" not in response.get_data(as_text=True)
            if endpoint == "console.logout" and identity.role:
                identity.log_in()  # the walk goes on with a live session
            walked.append((endpoint, method, name))
        if method == "GET" and (endpoint, method, path) == gets[-1]:
            assert database_state(console_home) == before, "a GET changed the appliance's state"
    assert {e for e, _, _ in walked} == set(TABLE)
    assert len(walked) == len(IDENTITIES) * (len(gets) + len(others))


def test_every_state_change_through_a_session_needs_its_csrf_token(app, console_home):
    bind_database(load_settings(console_home, environ={}))
    client = app.test_client()
    changes = [(e, m, p) for e, m, p in routes(app) if m != "GET" and TABLE[e].kind == "session"]
    assert changes, "the console has state changes to check"
    for endpoint, method, path in changes:
        for role in sorted(TABLE[endpoint].roles):
            identity = Identity(role)
            response = identity.request(client, method, path, TABLE[endpoint], with_csrf=False)
            assert response.status_code == 403 and "did not come from the console" in response.get_data(as_text=True)
            assert identity.request(client, "GET", "/overview", TABLE["console.overview"]).status_code == 200


# The roles' promises (docs/console.md), checked on the table itself.
SIGN_OUT_ONLY = {"console.logout"}  # the one state change every role may make


def test_the_table_keeps_the_roles_promises(app):
    for endpoint, method, _ in routes(app):
        access = TABLE[endpoint]
        if method == "GET" or access.kind == "public" or endpoint in SIGN_OUT_ONLY:
            continue
        assert "auditor" not in access.roles, f"{method} {endpoint}: an auditor changes nothing"
        if endpoint.startswith(("devices.admin", "console.user", "admin_api.add_user", "admin_api.change_user",
                                "console.device_action")):
            assert access.roles == {"admin"}, f"{endpoint}: admission and users are the admin's alone"
    for endpoint, access in TABLE.items():
        if access.kind == "session":
            assert "admin" in access.roles, f"{endpoint}: an admin may do everything"
