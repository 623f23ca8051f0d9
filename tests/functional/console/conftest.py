"""An appliance with one user of each role, for the console's tests."""

from __future__ import annotations

import pytest

from tests.conftest import run_airlock

PASSWORDS = {"ada": "ada's admin password", "otto": "otto's operator password", "aude": "aude's auditor password"}
ROLE_OF = {"ada": "admin", "otto": "operator", "aude": "auditor"}
USER_OF = {role: name for name, role in ROLE_OF.items()}


@pytest.fixture
def console_home(tmp_path):
    home = tmp_path / "home"
    pw = tmp_path / "ada"
    pw.write_text(PASSWORDS["ada"] + "\n")
    assert run_airlock(home, "init", "--admin", "ada", "--password-file", pw).code == 0
    for name in ("otto", "aude"):
        pw = tmp_path / name
        pw.write_text(PASSWORDS[name] + "\n")
        r = run_airlock(home, "users", "add", name, "--role", ROLE_OF[name], "--password-file", pw)
        assert r.code == 0, r.err
    return home
