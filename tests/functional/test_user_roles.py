"""``airlock users add|list|set-role|disable``: roles, refusals that change
nothing, the last enabled admin kept, every change audited, sessions ended
by role changes, disabling and password changes, failed logins counted in
the database, and old password hashes stored again with today's cost."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sqlite3

import pytest

from server import bind_database
from server.auth import AuthError, authenticate_basic
from server.settings import load_settings
from server.users import services, sessions
from server.users.throttle import LoginThrottle
from tests.conftest import run_airlock

PASSWORD = "the first admin password"
OTHER = "an operator's long password"


@pytest.fixture
def admin_home(tmp_path):
    home = tmp_path / "home"
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "other").write_text(OTHER + "\n")
    assert run_airlock(home, "init", "--admin", "alice", "--password-file", tmp_path / "pw").code == 0
    return home


def rows(home, sql):
    con = sqlite3.connect(home / "airlock.db")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def users_table(home):
    return rows(home, "SELECT username, password_hash, role, disabled FROM user ORDER BY id")


def audit_actions(home):
    return rows(home, "SELECT action, subject, details FROM audit_log ORDER BY id")


def bind(home):
    bind_database(load_settings(home, environ={}))


def test_add_list_set_role_disable_are_audited(admin_home, tmp_path):
    r = run_airlock(admin_home, "users", "add", "olga", "--role", "operator", "--password-file", tmp_path / "other")
    assert r.code == 0 and "added operator olga" in r.out, r.err
    assert run_airlock(admin_home, "users", "add", "sam", "--role", "auditor", "--password-file",
                       tmp_path / "other").code == 0
    listed = run_airlock(admin_home, "users", "list")
    assert listed.code == 0
    assert [line.split()[:3] for line in listed.out.splitlines()] == [
        ["alice", "admin", "enabled"], ["olga", "operator", "enabled"], ["sam", "auditor", "enabled"]]
    r = run_airlock(admin_home, "users", "set-role", "olga", "admin")
    assert r.code == 0 and "olga is now admin" in r.out
    r = run_airlock(admin_home, "users", "disable", "sam")
    assert r.code == 0 and "disabled sam (auditor)" in r.out
    as_json = [json.loads(line) for line in run_airlock(admin_home, "users", "list", "--json").out.splitlines()]
    assert as_json[1] == {"username": "olga", "role": "admin", "created_at": as_json[1]["created_at"],
                          "disabled": False}
    assert as_json[2]["disabled"] is True
    actions = [(a, s, json.loads(d)) for a, s, d in audit_actions(admin_home)]
    assert actions[-4:] == [("user.create", "olga", {"role": "operator"}), ("user.create", "sam", {"role": "auditor"}),
                            ("user.role", "olga", {"from": "operator", "to": "admin", "sessions_ended": 0}),
                            ("user.disable", "sam", {"sessions_ended": 0})]
    for secret in (PASSWORD, OTHER):
        assert secret not in json.dumps(actions)
    assert run_airlock(admin_home, "audit", "verify").code == 0


@pytest.mark.parametrize("args, expected", [
    (["add", "bob", "--role", "root", "--password-file", "{other}"],
     "role 'root' is not one of admin, operator, auditor"),
    (["add", "alice", "--role", "operator", "--password-file", "{other}"], "user 'alice' already exists"),
    (["add", "bob", "--role", "auditor", "--password-file", "{short}"], "at least 12 characters"),
    (["add", "bob", "--role", "auditor"], "--password-file"),  # no terminal: never a prompt
    (["set-role", "alice", "operator"], "'alice' is the last enabled admin and cannot be demoted"),
    (["set-role", "alice", "superuser"], "role 'superuser' is not one of"),
    (["set-role", "mallory", "auditor"], "no user named 'mallory'"),
    (["disable", "alice"], "'alice' is the last enabled admin and cannot be disabled"),
    (["disable", "mallory\x1b[2J"], "no user named 'mallory\\x1b[2J'"),
])
def test_refusals_are_one_line_and_change_nothing(admin_home, tmp_path, args, expected):
    (tmp_path / "short").write_text("short\n")
    args = [a.format(other=tmp_path / "other", short=tmp_path / "short") for a in args]
    before, audit_before = users_table(admin_home), audit_actions(admin_home)
    r = run_airlock(admin_home, "users", *args)
    assert r.code == 1, r.out
    line = r.err.strip()
    assert line.startswith("airlock: error: ") and "\n" not in line and "\x1b" not in line
    assert expected in line, line
    assert users_table(admin_home) == before and audit_actions(admin_home) == audit_before


def test_the_last_admin_rule_counts_only_enabled_admins(admin_home, tmp_path):
    assert run_airlock(admin_home, "users", "add", "bert", "--role", "admin", "--password-file",
                       tmp_path / "other").code == 0
    assert run_airlock(admin_home, "users", "disable", "alice").code == 0  # bert is left
    r = run_airlock(admin_home, "users", "set-role", "bert", "auditor")
    assert r.code == 1 and "'bert' is the last enabled admin" in r.err
    assert run_airlock(admin_home, "users", "set-role", "alice", "auditor").code == 0  # a disabled admin may go


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_sessions_end_on_role_change_disable_and_password_change(admin_home, tmp_path):
    assert run_airlock(admin_home, "users", "add", "olga", "--role", "operator", "--password-file",
                       tmp_path / "other").code == 0
    bind(admin_home)
    throttle = LoginThrottle()
    session, token = services.login("olga", OTHER, throttle, "127.0.0.1")
    assert (session.username, session.role) == ("olga", "operator")
    assert sessions.resolve(token) == session
    services.set_role("olga", "auditor", "alice")
    assert sessions.resolve(token) is None

    _, token = services.login("olga", OTHER, throttle, "127.0.0.1")
    (tmp_path / "new").write_text("olga's brand new password\n")
    assert run_airlock(admin_home, "users", "passwd", "olga", "--password-file", tmp_path / "new").code == 0
    bind(admin_home)
    assert sessions.resolve(token) is None

    _, token = services.login("olga", "olga's brand new password", throttle, "127.0.0.1")
    _, other_token = services.login("alice", PASSWORD, throttle, "127.0.0.1")
    assert run_airlock(admin_home, "users", "disable", "olga").code == 0
    bind(admin_home)
    assert sessions.resolve(token) is None and sessions.resolve(other_token) is not None
    with pytest.raises(AuthError) as info:  # a disabled user is refused like a wrong password
        services.login("olga", "olga's brand new password", throttle, "127.0.0.1")
    assert info.value.status == 401 and str(info.value) == "wrong user name or password"

    assert services.logout(other_token) == "alice"
    assert sessions.resolve(other_token) is None
    assert sessions.count() == 0
    actions = [a for a, _, _ in audit_actions(admin_home)]
    assert actions.count("user.login") == 4 and actions.count("user.logout") == 1
    assert actions[-2] == "user.login_failed"


def test_failed_logins_are_throttled_across_processes_and_restarts(admin_home):
    bind(admin_home)
    first_worker, second_worker = LoginThrottle(max_failures=3), LoginThrottle(max_failures=3)
    for worker in (first_worker, second_worker, first_worker):
        with pytest.raises(AuthError) as info:
            authenticate_basic(basic("alice", "wrong guess"), worker, ("admin",))
        assert info.value.status == 401
    after_restart = LoginThrottle(max_failures=3)  # a fresh object: only the database remembers
    with pytest.raises(AuthError) as info:
        authenticate_basic(basic("alice", PASSWORD), after_restart, ("admin",))  # even the right password
    assert info.value.status == 429 and info.value.extra["retry_after"] > 0
    failed = [json.loads(d) for a, _, d in audit_actions(admin_home) if a == "user.login_failed"]
    assert [f["reason"] for f in failed] == ["wrong name or password"] * 3 + ["throttled"]
    assert after_restart.retry_after("bob") == 0


def test_guesses_in_flight_together_stay_within_the_limit(admin_home):
    """Each attempt is counted before its (slow) password check, in one
    transaction with the check of the limit: with 3 guesses still being
    checked, a 4th is refused at once, before its password is looked at."""
    import threading

    bind(admin_home)
    throttle = LoginThrottle(max_failures=3)
    results: list[int] = []
    start = threading.Barrier(8)

    def guess() -> None:
        start.wait(timeout=10)
        results.append(throttle.attempt("alice"))

    threads = [threading.Thread(target=guess) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(r == 0 for r in results) == [False] * 5 + [True] * 3, results
    with pytest.raises(AuthError) as info:
        authenticate_basic(basic("alice", PASSWORD), LoginThrottle(max_failures=3), ("admin",))
    assert info.value.status == 429  # the right password waits too while the limit is reached


def test_throttle_window_slides_and_the_table_stays_small(admin_home):
    bind(admin_home)
    throttle = LoginThrottle(max_failures=3, window=60)
    for t in (1000, 1001, 1002):
        assert throttle.attempt("alice", now=t) == 0  # counted as a failure: no success clears it
    assert throttle.retry_after("alice", now=1003) == 57
    assert throttle.retry_after("alice", now=1061) == 0  # the first failure left the window
    for i in range(50):
        assert throttle.attempt(f"made-up-{i}", now=2000 + i) == 0
    assert rows(admin_home, "SELECT COUNT(*) FROM login_failure")[0][0] == 50 - 0  # all within the window
    assert throttle.attempt("late", now=5000) == 0
    assert rows(admin_home, "SELECT username FROM login_failure") == [("late",)]


def test_a_role_outside_the_allowed_ones_is_403(admin_home, tmp_path):
    assert run_airlock(admin_home, "users", "add", "sam", "--role", "auditor", "--password-file",
                       tmp_path / "other").code == 0
    bind(admin_home)
    with pytest.raises(AuthError) as info:
        authenticate_basic(basic("sam", OTHER), LoginThrottle(), ("admin",))
    assert info.value.status == 403 and "sam" in str(info.value) and "auditor" in str(info.value)
    assert authenticate_basic(basic("sam", OTHER), LoginThrottle(), ("admin", "auditor")).role == "auditor"


def old_scrypt_hash(password: str, n: int) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=8, p=1, dklen=32)
    return f"scrypt${n}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def test_an_old_hash_is_stored_again_with_todays_parameters_on_login(admin_home):
    con = sqlite3.connect(admin_home / "airlock.db")
    con.execute("UPDATE user SET password_hash = ? WHERE username = 'alice'", (old_scrypt_hash(PASSWORD, 1 << 14),))
    con.commit()
    con.close()
    assert users_table(admin_home)[0][1].startswith("scrypt$16384$8$1$")
    bind(admin_home)
    assert services.verify_password("alice", "not the password") is None
    assert users_table(admin_home)[0][1].startswith("scrypt$16384$8$1$")  # a failed login changes nothing
    assert services.verify_password("alice", PASSWORD).username == "alice"
    stored = users_table(admin_home)[0][1]
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2 ** 17, 8, 1)
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
    assert services.verify_password("alice", PASSWORD) is not None  # and the new hash works


def test_a_recently_verified_password_never_outlives_a_change(admin_home, tmp_path):
    from server.auth import VERIFIED, VerifiedCache

    assert run_airlock(admin_home, "users", "add", "bert", "--role", "admin", "--password-file",
                       tmp_path / "other").code == 0
    bind(admin_home)
    stored = users_table(admin_home)[0][1]
    assert services.verify_password("alice", PASSWORD) is not None
    assert VERIFIED.hit("alice", stored, PASSWORD)  # the next check needs no scrypt
    assert not VERIFIED.hit("alice", stored, "a wrong password")
    assert services.verify_password("alice", "a wrong password") is None

    (tmp_path / "new").write_text("alice's next password\n")
    assert run_airlock(admin_home, "users", "passwd", "alice", "--password-file", tmp_path / "new").code == 0
    bind(admin_home)
    assert services.verify_password("alice", PASSWORD) is None  # the cached old password is dead
    assert services.verify_password("alice", "alice's next password") is not None

    assert services.verify_password("bert", OTHER) is not None
    assert run_airlock(admin_home, "users", "disable", "bert").code == 0
    bind(admin_home)
    assert services.verify_password("bert", OTHER) is None  # cached, but disabled

    small = VerifiedCache(size=2)
    for name in ("a", "b", "c"):
        small.add(name, "hash", "pw")
    assert [small.hit(name, "hash", "pw") for name in ("a", "b", "c")] == [False, True, True]
    expired = VerifiedCache(ttl=-1)  # every entry already too old
    expired.add("a", "hash", "pw")
    assert not expired.hit("a", "hash", "pw")
