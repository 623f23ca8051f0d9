"""``airlock users passwd``: the admin password can be changed; the old one
stops working at once, the new one works, and the audit log says who changed
whose password, never the password or its hash."""

from __future__ import annotations

import base64
import json
import sqlite3

import pytest

from server import bind_database
from server.auth import AuthError, authenticate_admin
from server.settings import load_settings
from server.users.throttle import LoginThrottle
from tests.conftest import run_airlock

OLD, NEW = "the first admin password", "a brand new admin password"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def admin_home(tmp_path):
    home = tmp_path / "home"
    (tmp_path / "old").write_text(OLD + "\n")
    assert run_airlock(home, "init", "--admin", "alice", "--password-file", tmp_path / "old").code == 0
    return home


def users_table(home):
    con = sqlite3.connect(home / "airlock.db")
    try:
        return con.execute("SELECT username, password_hash, role FROM user ORDER BY id").fetchall()
    finally:
        con.close()


def test_passwd_changes_the_password_and_audits_no_secret(admin_home, tmp_path):
    (tmp_path / "new").write_text(NEW + "\n")
    before = users_table(admin_home)
    r = run_airlock(admin_home, "users", "passwd", "alice", "--password-file", tmp_path / "new")
    assert r.code == 0, r.err
    assert "changed the password of alice (admin)" in r.out
    bind_database(load_settings(admin_home, environ={}))
    limiter = LoginThrottle()
    assert authenticate_admin(basic("alice", NEW), limiter).username == "alice"
    with pytest.raises(AuthError) as info:
        authenticate_admin(basic("alice", OLD), limiter)
    assert info.value.status == 401
    after = users_table(admin_home)
    assert after[0][1] != before[0][1] and after[0][2] == "admin"

    audit = run_airlock(admin_home, "audit", "list", "--json")
    last = [json.loads(line) for line in audit.out.splitlines()][-2]  # then the failed login with the old one
    assert (last["action"], last["subject"], last["details"]) == ("user.password", "alice", {"sessions_ended": 0})
    for secret in (OLD, NEW, after[0][1], before[0][1]):
        assert secret not in audit.out
    assert run_airlock(admin_home, "audit", "verify").code == 0


@pytest.mark.parametrize("name, password, expected", [
    ("mallory", NEW, "no user named 'mallory'"),
    ("alice", "too short", "at least 12 characters"),
    ("alice", "", "at least 12 characters"),
])
def test_bad_input_is_refused_and_changes_nothing(admin_home, tmp_path, name, password, expected):
    (tmp_path / "new").write_text(password + "\n")
    before = users_table(admin_home)
    audit_before = run_airlock(admin_home, "audit", "list", "--json").out
    r = run_airlock(admin_home, "users", "passwd", name, "--password-file", tmp_path / "new")
    assert r.code == 1 and expected in r.err
    line = r.err.strip()
    assert line.startswith("airlock: error: ") and "\n" not in line
    assert users_table(admin_home) == before
    assert run_airlock(admin_home, "audit", "list", "--json").out == audit_before


def test_passwd_never_prompts_without_a_terminal(admin_home):
    # pytest's standard input is not a terminal, as under cron or a script
    before = users_table(admin_home)
    r = run_airlock(admin_home, "users", "passwd", "alice")
    assert r.code == 1 and "--password-file" in r.err and "not a terminal" in r.err
    assert users_table(admin_home) == before


def test_a_missing_password_file_is_named(admin_home, tmp_path):
    r = run_airlock(admin_home, "users", "passwd", "alice", "--password-file", tmp_path / "nope")
    assert r.code == 1 and str(tmp_path / "nope") in r.err


@pytest.mark.parametrize("name, expected", [
    ("ali:ce", "without ':'"),  # HTTP Basic could never carry it
    ("x" * 65, "1 to 64 printable characters"),
    ("bell\x07", "1 to 64 printable characters"),
])
def test_init_refuses_an_admin_name_that_could_never_log_in(tmp_path, name, expected):
    (tmp_path / "pw").write_text(OLD + "\n")
    r = run_airlock(tmp_path / "home", "init", "--admin", name, "--password-file", tmp_path / "pw")
    assert r.code == 1 and expected in r.err
    assert "\x07" not in r.err
    assert users_table(tmp_path / "home") == []


def test_init_refuses_an_existing_admin_and_a_short_password(admin_home, tmp_path):
    (tmp_path / "pw").write_text(NEW + "\n")
    before = users_table(admin_home)
    r = run_airlock(admin_home, "init", "--admin", "alice", "--password-file", tmp_path / "pw")
    assert r.code == 1 and "user 'alice' already exists; nothing changed" in r.err
    (tmp_path / "short").write_text("short\n")
    r = run_airlock(admin_home, "init", "--admin", "bob", "--password-file", tmp_path / "short")
    assert r.code == 1 and "the admin password must be at least 12 characters" in r.err
    assert users_table(admin_home) == before
