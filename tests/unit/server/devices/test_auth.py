"""Administrator credentials: scrypt hashes, HTTP Basic, failed-login limits
(the limiter itself: tests/functional/test_user_roles.py)."""

from __future__ import annotations

import base64

import pytest

from server import bind_database
from server.auth import AuthError, authenticate_admin, check_password, hash_password, needs_rehash, parse_basic
from server.settings import load_settings
from server.users.throttle import LoginThrottle
from tests.conftest import run_airlock

PASSWORD = "correct horse battery"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_hash_and_check():
    stored = hash_password(PASSWORD)
    assert stored.startswith("scrypt$131072$8$1$")
    assert check_password(PASSWORD, stored) and not check_password("wrong", stored)
    assert not check_password(PASSWORD, "scrypt$99999999999$8$1$AA==$AA==")  # absurd cost refused
    assert not check_password(PASSWORD, "garbage")
    assert not needs_rehash(stored)
    assert needs_rehash("scrypt$32768$8$1$AA==$AA==") and needs_rehash("pbkdf2:sha256:600000$x$y")


@pytest.mark.parametrize("header", [None, "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()])
def test_malformed_basic_is_401(header):
    with pytest.raises(AuthError) as info:
        parse_basic(header)
    assert info.value.status == 401


def test_authenticate_admin_against_the_users_table(tmp_path):
    home = tmp_path / "home"
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    assert run_airlock(home, "init", "--admin", "alice", "--password-file", pw).code == 0
    bind_database(load_settings(home, environ={}))
    limiter = LoginThrottle(max_failures=2)
    assert authenticate_admin(basic("alice", PASSWORD), limiter).username == "alice"
    for _ in range(2):
        with pytest.raises(AuthError) as info:
            authenticate_admin(basic("alice", "nope"), limiter)
        assert info.value.status == 401
    with pytest.raises(AuthError) as info:
        authenticate_admin(basic("alice", PASSWORD), limiter)  # locked even with the right password
    assert info.value.status == 429 and info.value.retry_after > 0
    with pytest.raises(AuthError):
        authenticate_admin(basic("mallory", PASSWORD), limiter)
