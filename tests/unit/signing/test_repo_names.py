"""One repository-name rule, defined in signing/ and applied by
``airlock-sign init``, ``airlock-sign verify`` and (tests/functional/
test_repo_names.py) ``airlock repo add``."""

from __future__ import annotations

import json

import pytest

from signing.exceptions import RepositoryNameError
from signing.paths import check_repo_name
from tests.conftest import sign_cli
from tests.support.simulator import RepoSim

RULE = "use lower-case letters, digits and '-', at most 63, starting with a letter or digit"
GOOD = ["acme", "globex-io", "a", "0day", "x" * 63, "plc-7"]
BAD = ["globex_io", "Globex", "", "-acme", "acme.io", "a" * 64, "acme\n", "acme/x", "..", "acmé", "acme ", None, 7]


@pytest.mark.parametrize("name", GOOD)
def test_allowed_names(name):
    assert check_repo_name(name) == name


@pytest.mark.parametrize("name", BAD)
def test_refused_names_say_the_rule(name):
    with pytest.raises(RepositoryNameError) as info:
        check_repo_name(name)
    assert f"repository name {ascii(name)} is not allowed: {RULE}" == str(info.value)


@pytest.mark.parametrize("name", ["globex_io", "Globex"])
def test_init_refuses_a_name_the_appliance_would_refuse(tmp_path, monkeypatch, name):
    monkeypatch.setenv("AIRLOCK_SIGN_PASSPHRASE", "pw")
    code, out, err = sign_cli("init", tmp_path / "ws", "--name", name)
    assert code == 1, out
    assert err == f"airlock-sign: error: repository name {name!r} is not allowed: {RULE}\n"
    assert "airlock repo add" not in out
    assert not (tmp_path / "ws").exists()


def test_a_workspace_with_an_old_style_name_says_where_to_change_it(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRLOCK_SIGN_PASSPHRASE", "pw")
    monkeypatch.setattr("signing.keys.SCRYPT_N", 2**8)
    ws = tmp_path / "ws"
    assert sign_cli("init", ws, "--name", "globex")[0] == 0
    config = ws / "workspace.json"
    doc = json.loads(config.read_text())
    doc["name"] = "Globex_IO"
    config.write_text(json.dumps(doc))
    code, _, err = sign_cli("status", ws)
    assert code == 1
    assert str(config) in err and "'Globex_IO' is not allowed" in err and "change the name there" in err


def test_verify_refuses_a_bundle_whose_repository_name_cannot_be_pinned(tmp_path):
    sim = RepoSim("Globex_IO")
    media = sim.write_bundle(tmp_path / "usb")
    root = tmp_path / "root.json"
    root.write_bytes(sim.first_root())
    code, out, err = sign_cli("verify", media, "--root", root)
    assert code == 1, out
    assert f"repository name 'Globex_IO' is not allowed: {RULE}" in err


def test_both_guides_state_the_rule_the_code_applies():
    from pathlib import Path

    from signing.paths import MAX_REPO_NAME

    docs = Path(__file__).resolve().parents[3] / "docs"
    rule = f"lower-case letters, digits and `-`, at most {MAX_REPO_NAME}, starting with a letter or digit"
    for guide in ("vendor-guide.md", "security-officer-guide.md"):
        text = " ".join((docs / guide).read_text().split())
        assert rule in text, f"{guide} does not state the repository-name rule"
