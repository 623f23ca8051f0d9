"""The Users page and its admin API: an admin adds a user, changes its
role, resets its password and disables it; each change is audited and ends
the user's console sessions at once; the last admin cannot be demoted; an
auditor sees the list and changes nothing."""

from __future__ import annotations

import base64
import html

from jsonschema import Draft202012Validator

from server import create_app
from server.settings import load_settings
from server.users import services, sessions
from server.users.throttle import LoginThrottle
from tests.functional.console.conftest import PASSWORDS
from tests.support import homedb


def logged_in(app, name: str, password: str):
    client = app.test_client()
    page = client.get("/")
    csrf = page.get_data(as_text=True).split('name="csrf" value="', 1)[1].split('"', 1)[0]
    answer = client.post("/login", data={"username": name, "password": password, "csrf": csrf})
    return client, answer.status_code == 303


def csrf_of(client) -> str:
    text = client.get("/overview").get_data(as_text=True)
    return text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def user_audit(home) -> list[tuple[str, str, str]]:
    return homedb.rows(home, "SELECT actor, action, subject FROM audit_log WHERE action IN ('user.create', "
                             "'user.role', 'user.password', 'user.disable') ORDER BY id")


def test_admin_manages_a_user_and_each_change_ends_its_sessions(console_home):
    before = user_audit(console_home)
    app = create_app(load_settings(console_home, environ={}))
    ada, ok = logged_in(app, "ada", PASSWORDS["ada"])
    assert ok
    csrf = csrf_of(ada)
    short = ada.post("/users", data={"csrf": csrf, "username": "nina", "role": "operator", "password": "short"})
    assert short.status_code == 400 and "at least 12 characters" in short.get_data(as_text=True)
    assert ada.post("/users", data={"csrf": csrf, "username": "nina", "role": "operator",
                                    "password": "nina's first password"}).status_code == 303
    page = ada.get("/users").get_data(as_text=True)
    assert '<tr data-user="nina"><td>nina</td><td>operator</td>' in page

    nina, ok = logged_in(app, "nina", "nina's first password")
    assert ok and nina.get("/overview").status_code == 200
    assert ada.post("/users/role", data={"csrf": csrf, "username": "nina", "role": "auditor"}).status_code == 303
    assert nina.get("/overview").status_code == 303  # the session ended: back to the login form

    nina, ok = logged_in(app, "nina", "nina's first password")
    assert ok and "auditor" in nina.get("/overview").get_data(as_text=True)
    assert ada.post("/users/password", data={"csrf": csrf, "username": "nina",
                                             "password": "nina's second password"}).status_code == 303
    assert nina.get("/overview").status_code == 303
    assert not logged_in(app, "nina", "nina's first password")[1]
    nina, ok = logged_in(app, "nina", "nina's second password")
    assert ok

    assert ada.post("/users/disable", data={"csrf": csrf, "username": "nina"}).status_code == 303
    assert nina.get("/overview").status_code == 303
    assert not logged_in(app, "nina", "nina's second password")[1]
    assert '<td>nina</td><td>auditor</td>' in ada.get("/users").get_data(as_text=True)

    last = ada.post("/users/role", data={"csrf": csrf, "username": "ada", "role": "operator"})
    assert last.status_code == 409 and "last enabled admin" in html.unescape(last.get_data(as_text=True))
    assert ada.get("/overview").status_code == 200  # refused: nothing changed, the session lives on
    assert user_audit(console_home)[len(before):] == [
        ("ada (console)", "user.create", "nina"), ("ada (console)", "user.role", "nina"),
        ("ada (console)", "user.password", "nina"), ("ada (console)", "user.disable", "nina")]


def test_an_auditor_sees_users_and_changes_nothing(console_home):
    app = create_app(load_settings(console_home, environ={}))
    aude, ok = logged_in(app, "aude", PASSWORDS["aude"])
    page = aude.get("/users").get_data(as_text=True)
    assert ok and "<td>otto</td><td>operator</td>" in page and 'id="add-user"' not in page and "Set role" not in page
    refused = aude.post("/users/role", data={"csrf": csrf_of(aude), "username": "aude", "role": "admin"})
    assert refused.status_code == 403 and "an auditor may not do this" in refused.get_data(as_text=True)
    otto, _ = logged_in(app, "otto", PASSWORDS["otto"])
    assert otto.get("/users").status_code == 403


def test_the_users_api(console_home):
    app = create_app(load_settings(console_home, environ={}))
    client = app.test_client()
    spec = client.get("/api/v1/openapi.json").json

    def auth(name: str, password: str | None = None) -> dict:
        raw = f"{name}:{password or PASSWORDS[name]}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    def check(path: str, answer) -> None:
        schema = spec["paths"][path]["post"]["responses"][str(answer.status_code)]["content"]["application/json"][
            "schema"]
        Draft202012Validator({**schema, "components": spec["components"]}).validate(answer.json)

    made = client.post("/api/v1/admin/users", headers=auth("ada"),
                       json={"username": "script", "role": "operator", "password": "a script's password"})
    assert made.status_code == 201 and made.json == {**made.json, "username": "script", "disabled": False}
    check("/admin/users", made)
    _, cookie = services.login("script", "a script's password", LoginThrottle(), "test")
    changed = client.post("/api/v1/admin/users/role", headers=auth("ada"), json={"username": "script",
                                                                               "role": "auditor"})
    assert changed.status_code == 200 and changed.json["role"] == "auditor"
    check("/admin/users/role", changed)
    assert sessions.resolve(cookie) is None  # the role change ended its session
    missing = client.post("/api/v1/admin/users/role", headers=auth("ada"), json={"username": "script"})
    assert missing.status_code == 400 and "role" in missing.json["message"]
    check("/admin/users/role", missing)
    assert client.post("/api/v1/admin/users/disable", headers=auth("aude"),
                       json={"username": "script"}).status_code == 403
    gone = client.post("/api/v1/admin/users/disable", headers=auth("ada"), json={"username": "script"})
    assert gone.status_code == 200 and gone.json["disabled"] is True
    last = client.post("/api/v1/admin/users/disable", headers=auth("ada"), json={"username": "ada"})
    assert last.status_code == 409
    check("/admin/users/disable", last)
