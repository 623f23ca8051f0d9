"""The appliance's timestamp key: made by `airlock init` (for existing homes
too), owner-only; its public half printed by `airlock keys show --timestamp`
in the TUF key form; and the vendor's `airlock-sign authorize-appliance`
adding it to a real workspace's root, whose bundle the appliance imports."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Root

from signing.keys import load_public_key
from tests.conftest import sign_cli

PASS = "vendor passphrase for the timestamp key tests"


@pytest.fixture(scope="module")
def vendor_template(tmp_path_factory) -> Path:
    """One vendor workspace per module (making its keys is slow: scrypt), copied for each test."""
    ws = tmp_path_factory.mktemp("vendor") / "ws"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRLOCK_SIGN_PASSPHRASE", PASS)
        code, _, err = sign_cli("init", ws, "--name", "acme")
    assert code == 0, err
    return ws


@pytest.fixture
def vendor(vendor_template, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AIRLOCK_SIGN_PASSPHRASE", PASS)
    return Path(shutil.copytree(vendor_template, tmp_path / "ws"))


def test_init_makes_an_owner_only_key_and_keys_show_prints_its_tuf_form(airlock, home, tmp_path):
    path = home / "timestamp-key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    r = airlock("keys", "show", "--timestamp")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert set(doc) == {"keyid", "keytype", "scheme", "keyval"} and doc["keytype"] == doc["scheme"] == "ed25519"
    saved = tmp_path / "timestamp-key.json"
    saved.write_text(r.out)
    assert load_public_key(saved).keyid == doc["keyid"]  # the vendor's tool takes it as printed
    assert json.loads(airlock("keys", "show", "--json").out)["timestamp_key"] == doc
    assert "BEGIN PUBLIC KEY" in airlock("keys", "show").out  # the identity key, as before
    # init again keeps it; an existing home without one (from before) gets one
    assert airlock("init").code == 0 and json.loads(airlock("keys", "show", "--timestamp").out) == doc
    path.unlink()
    (home / "timestamp-key.json").unlink()
    assert "no timestamp key" in airlock("keys", "show", "--timestamp").err
    assert airlock("init").code == 0
    assert json.loads(airlock("keys", "show", "--timestamp").out)["keyid"] != doc["keyid"]


def test_the_vendor_authorizes_the_key_and_the_appliance_imports_the_new_root(airlock, home, vendor, tmp_path):
    key_file = tmp_path / "timestamp-key.json"
    key_file.write_text(airlock("keys", "show", "--timestamp").out)
    keyid = json.loads(key_file.read_text())["keyid"]
    first_root = (vendor / "published/metadata/1.root.json").read_bytes()
    (tmp_path / "root.json").write_bytes(first_root)
    assert airlock("repo", "add", "acme", "--root", tmp_path / "root.json", "--fingerprint",
                   hashlib.sha256(first_root).hexdigest()).code == 0

    code, out, err = sign_cli("authorize-appliance", vendor, key_file, "--key", vendor / "keys/root-1.key")
    assert code == 0, err
    assert f"timestamp: added the appliance's key {keyid[:16]}" in out and "threshold 1" in out
    assert "signed root with key" in out and "root v2" in out and "ready" in out
    code, out, err = sign_cli("authorize-appliance", vendor, key_file)
    assert code != 0 and "already a timestamp key of this repository" in err, (out, err)

    code, out, err = sign_cli("publish", vendor, "--keys-dir", vendor / "keys")
    assert code == 0 and "root v2" in out, err
    root: Root = Metadata[Root].from_bytes((vendor / "published/metadata/2.root.json").read_bytes()).signed
    role = root.roles["timestamp"]
    assert keyid in role.keyids and len(role.keyids) == 2 and role.threshold == 1
    assert sign_cli("bundle", vendor, tmp_path / "usb")[0] == 0
    r = airlock("import", tmp_path / "usb")
    assert r.code == 0, r.err
    assert "root 1->2" in r.out


def test_a_threshold_the_appliance_cannot_meet_alone_is_said(airlock, vendor, tmp_path):
    key_file = tmp_path / "timestamp-key.json"
    key_file.write_text(airlock("keys", "show", "--timestamp").out)
    code, out, err = sign_cli("authorize-appliance", vendor, key_file, "--threshold", "2")
    assert code == 0, err
    assert "threshold 2: the appliance's key alone cannot sign a valid timestamp" in out
    code, out, err = sign_cli("authorize-appliance", vendor, vendor / "keys/root-1.pub", "--threshold", "4")
    assert code != 0 and "threshold" in err, (out, err)


def test_an_unknown_key_file_is_refused_in_one_line(vendor, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"keyid": "00", "keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "zz"}}')
    code, out, err = sign_cli("authorize-appliance", vendor, bad)
    assert code != 0 and out == "" and len(err.strip().splitlines()) == 1 and "bad.json" in err, err
