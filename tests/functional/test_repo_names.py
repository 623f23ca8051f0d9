"""Both tools refuse the same repository names with the same message:
``airlock-sign init`` and ``airlock repo add``."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import sign_cli


@pytest.mark.parametrize("name", ["globex_io", "Globex", "acme.io"])
def test_appliance_and_signing_tool_refuse_the_same_names_alike(airlock, home, sim, tmp_path, monkeypatch, name):
    monkeypatch.setenv("AIRLOCK_SIGN_PASSPHRASE", "pw")
    code, _, sign_err = sign_cli("init", tmp_path / "ws", "--name", name)
    assert code == 1
    root = tmp_path / "root.json"
    root.write_bytes(sim.first_root())
    r = airlock("repo", "add", name, "--root", root, "--fingerprint", hashlib.sha256(sim.first_root()).hexdigest())
    assert r.code == 1, r.out
    reason = sign_err.removeprefix("airlock-sign: error: ").strip()
    assert r.err.strip() == f"airlock: error: {reason}"
    assert "lower-case letters, digits and '-', at most 63" in reason
    assert airlock("repo", "list", "--json").out.strip() in ("[]", "")


def test_a_name_init_accepts_is_pinned_by_the_appliance(airlock, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRLOCK_SIGN_PASSPHRASE", "pw")
    monkeypatch.setattr("signing.keys.SCRYPT_N", 2**8)
    ws = tmp_path / "ws"
    code, out, err = sign_cli("init", ws, "--name", "globex-io")
    assert code == 0, err
    root = ws / "published" / "metadata" / "1.root.json"
    r = airlock("repo", "add", "globex-io", "--root", root,
                "--fingerprint", hashlib.sha256(root.read_bytes()).hexdigest())
    assert r.code == 0, r.err
