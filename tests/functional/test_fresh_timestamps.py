"""Fresh timestamps between deliveries, end to end: a vendor's root that
authorizes the appliance's timestamp key, a vendor timestamp that has
expired, `airlock timestamp refresh` re-signing it, and real TUF clients
(python-tuf's ngclient and tuf-js) against a real `airlock serve` before
and after; then a later vendor bundle whose timestamp version is below the
appliance's, imported and re-signed so that devices never see the version
go back; and what happens when the root does not authorize the key."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api.exceptions import ExpiredMetadataError
from tuf.api.metadata import Metadata, Timestamp
from tuf.ngclient import Updater

from server import create_app
from server.settings import load_settings
from signing.keys import load_public_key
from tests.conftest import pin, tree_state
from tests.support.server import airlock_server
from tests.support.simulator import RepoSim
from tests.support.tufjs import fetch_with_tufjs


def _import_at(home: Path, media: Path, now: datetime):
    """An import as it ran in the past (when the vendor's timestamp was still valid)."""
    from appliance.importer import import_bundle
    from server import bind_database

    settings = load_settings(home)
    bind_database(settings)
    return import_bundle(settings, media, "tester", now=now)


def authorize(sim: RepoSim, home: Path) -> str:
    """The vendor adds the appliance's timestamp key to its root (a new root version)."""
    key = load_public_key(home / "timestamp-key.json")
    sim.root.signed.add_key(key, "timestamp")
    sim.root.signed.version += 1
    sim.sign_and_store("root")
    return key.keyid


def served_timestamp(home: Path, name: str = "acme") -> Metadata:
    return Metadata[Timestamp].from_bytes((home / f"public/repos/{name}/metadata/timestamp.json").read_bytes())


class Device:
    """A device with python-tuf's ngclient, its metadata kept between runs."""

    def __init__(self, base: str, folder: Path, root: bytes):
        self.base, self.folder, self.root = base, folder, root
        (folder / "meta").mkdir(parents=True)
        (folder / "dl").mkdir()

    def fetch(self, target: str) -> bytes:
        updater = Updater(metadata_dir=str(self.folder / "meta"), metadata_base_url=f"{self.base}/repos/acme/metadata/",
                          target_base_url=f"{self.base}/repos/acme/targets/", target_dir=str(self.folder / "dl"),
                          bootstrap=None if (self.folder / "meta/root.json").exists() else self.root)
        updater.refresh()
        info = updater.get_targetinfo(target)
        assert info is not None, target
        return Path(updater.download_target(info)).read_bytes()


def tufjs(base: str, folder: Path, root: bytes, target: str) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "1.root.json").write_bytes(root)
    return fetch_with_tufjs(folder / "1.root.json", folder / "js-meta", f"{base}/repos/acme", target, folder / "js-dl")


def test_devices_keep_updating_after_the_vendor_timestamp_expired(airlock, sim, home, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    keyid = authorize(sim, home)
    now = datetime.now(UTC).replace(microsecond=0)
    sim.timestamp.signed.expires = now - timedelta(hours=1)  # short-lived, and it has lapsed since the delivery
    sim.add_target("fw/a.bin", b"A" * 300)
    sim.publish()
    first = sim.write_bundle(tmp_path / "usb1")
    result = _import_at(home, first, now - timedelta(days=1))
    assert result.status == "accepted"
    vendor = Metadata[Timestamp].from_bytes(sim.metadata["timestamp.json"]).signed
    v = vendor.version
    assert served_timestamp(home).signed.version == v, result.message  # the vendor's, as it signed it

    with airlock_server(home) as base:
        device = Device(base, tmp_path / "ng", sim.first_root())
        with pytest.raises(ExpiredMetadataError):  # the problem: nothing is wrong, yet devices stop
            device.fetch("fw/a.bin")
        assert not tufjs(base, tmp_path / "js-before", sim.first_root(), "fw/a.bin")["ok"]

        status = airlock("status").out
        assert "signed by the vendor; the appliance re-signs it before it expires" in status, status
        r = airlock("timestamp", "refresh")
        assert r.code == 0, r.err
        served = served_timestamp(home)
        assert r.out.strip() == (f"acme: re-signed timestamp.json v{v + 1}, naming the vendor's snapshot "
                                 f"v{vendor.snapshot_meta.version}, valid until {served.signed.expires.isoformat()}")
        assert list(served.signatures) == [keyid] and served.signed.snapshot_meta == vendor.snapshot_meta
        assert device.fetch("fw/a.bin") == b"A" * 300
        js = tufjs(base, tmp_path / "js", sim.first_root(), "fw/a.bin")
        assert js["ok"], js
        assert "is fresh until" in airlock("timestamp", "refresh").out  # nothing to do an hour later
        for _ in range(2):
            assert airlock("timestamp", "refresh", "--force").code == 0
        assert served_timestamp(home).signed.version == v + 3
        assert device.fetch("fw/a.bin") and tufjs(base, tmp_path / "js", sim.first_root(), "fw/a.bin")["ok"]

        # the vendor's next delivery: its timestamp is below the one devices now hold
        sim.timestamp.signed.expires = now + timedelta(days=1)
        sim.add_target("fw/b.bin", b"B" * 300)
        sim.publish()
        assert Metadata[Timestamp].from_bytes(sim.metadata["timestamp.json"]).signed.version == v + 1
        r = airlock("import", sim.write_bundle(tmp_path / "usb2"))
        assert r.code == 0, r.err
        assert (f"timestamp.json: the vendor's version {v + 1} is not above version {v + 3} devices hold; re-signed "
                f"by the appliance as version {v + 4}, naming the vendor's snapshot") in r.out, r.out
        served = served_timestamp(home)
        assert served.signed.version == v + 4
        assert served.signed.snapshot_meta.version == sim.snapshot.signed.version
        assert device.fetch("fw/b.bin") == b"B" * 300  # a device that held v+3 takes v+4
        js = tufjs(base, tmp_path / "js", sim.first_root(), "fw/b.bin")
        assert js["ok"], js

        # the vendor's rollback protection still holds: its older bundle is refused, nothing changes
        before = tree_state(home)
        r = airlock("import", first)
        assert r.code == 1 and "timestamp" in r.err and f"version {v}" in r.err, r.err
        assert tree_state(home) == before
    refreshes = [rec for rec in map(json.loads, airlock("audit", "list", "--json").out.splitlines())
                 if rec["action"] == "timestamp.refresh"]
    assert [(r["subject"], r["details"]["version"]) for r in refreshes] == [("acme", v + 1), ("acme", v + 2),
                                                                          ("acme", v + 3)]


def test_without_authorization_nothing_is_signed_and_expiry_is_warned_about(airlock, sim, home, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.timestamp.signed.expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb")).code == 0
    before = tree_state(home)
    r = airlock("timestamp", "refresh", "--force")
    assert r.code == 0, r.err
    assert r.out.startswith("acme: nothing signed: root version 1 does not list the appliance's timestamp key"), r.out
    assert "airlock-sign authorize-appliance" in r.out
    assert tree_state(home) == before
    status = airlock("status").out
    warning = next(line for line in status.splitlines() if "WARNING" in line)
    assert f"repository acme: timestamp.json v{sim.timestamp.signed.version} expires in" in warning
    assert "days and the appliance may not re-sign it" in warning
    assert "then devices refuse every update from acme" in warning
    client = create_app(load_settings(home)).test_client()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json["warnings"] and "expires in" in health.json["warnings"][0]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'airlock_repository_timestamp_key_authorized{repository="acme"} 0' in metrics
    # a delivery whose timestamp expired on the way stays refused: the appliance may not re-sign it
    sim.timestamp.signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    sim.publish()
    r = airlock("import", sim.write_bundle(tmp_path / "usb2"))
    assert r.code == 1 and "timestamp.json" in r.err and "expired" in r.err, r.err
    assert tree_state(home) == before


def test_when_the_root_takes_the_right_back_devices_drop_the_appliances_timestamp(airlock, sim, home, tmp_path):
    """A root without the appliance's key: devices no longer verify the
    appliance's timestamp, so (as TUF clients do after a timestamp key
    rotation) they keep no rollback baseline from it and take the vendor's,
    whatever its version; the appliance serves the vendor's as it is."""
    assert pin(airlock, sim, tmp_path).code == 0
    keyid = authorize(sim, home)
    sim.add_target("fw/a.bin", b"A" * 100)
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb1")).code == 0
    v = sim.timestamp.signed.version
    for _ in range(3):
        assert airlock("timestamp", "refresh", "--force").code == 0  # the appliance serves v + 3
    sim.root.signed.revoke_key(keyid, "timestamp")  # the vendor takes the right back
    sim.root.signed.version += 1
    sim.sign_and_store("root")
    before = tree_state(home)
    r = airlock("import", sim.write_bundle(tmp_path / "usb-root-only"))  # the new root with its old timestamp
    assert r.code == 1, r.out
    assert (f"the served timestamp version {v + 3} is the appliance's, and the bundle's new root no longer lets the "
            "appliance sign it") in r.err, r.err
    assert "the vendor must ship that root with a new timestamp" in r.err
    assert tree_state(home) == before
    with airlock_server(home) as base:
        device = Device(base, tmp_path / "ng", sim.first_root())
        assert device.fetch("fw/a.bin") == b"A" * 100  # it holds the appliance's v + 3
        sim.add_target("fw/b.bin", b"B" * 100)
        sim.publish()  # the vendor's timestamp v + 1
        r = airlock("import", sim.write_bundle(tmp_path / "usb2"))
        assert r.code == 0, r.err
        assert (home / "public/repos/acme/metadata/timestamp.json").read_bytes() == sim.metadata["timestamp.json"]
        assert device.fetch("fw/b.bin") == b"B" * 100
        assert tufjs(base, tmp_path / "js", sim.first_root(), "fw/b.bin")["ok"]
    assert f"nothing signed: root version {sim.root.signed.version} does not list" in airlock(
        "timestamp", "refresh").out


def test_a_refresh_says_when_the_vendors_snapshot_itself_has_lapsed(airlock, sim, home, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    authorize(sim, home)
    now = datetime.now(UTC).replace(microsecond=0)
    sim.snapshot.signed.expires = now - timedelta(hours=1)
    sim.publish()
    assert _import_at(home, sim.write_bundle(tmp_path / "usb"), now - timedelta(days=1)).status == "accepted"
    r = airlock("timestamp", "refresh", "--force")
    assert r.code == 0, r.err
    assert f"but the vendor's {sim.snapshot.signed.version}.snapshot.json expired on" in r.out, r.out
    assert "devices refuse acme's updates until a bundle with newer metadata is imported" in r.out


def test_a_delivery_whose_vendor_timestamp_expired_on_the_way_imports_when_authorized(airlock, sim, home, tmp_path):
    import sqlite3

    from signing.bundle import BundleLimits, scan_bundle

    assert pin(airlock, sim, tmp_path).code == 0
    keyid = authorize(sim, home)
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb1")).code == 0
    v = sim.timestamp.signed.version
    sim.add_target("fw/c.bin", b"C" * 300)
    sim.timestamp.signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    sim.publish()  # the stick took longer than the vendor's timestamp lives
    media = sim.write_bundle(tmp_path / "usb2")
    r = airlock("import", media)
    assert r.code == 0, r.err
    assert (f"timestamp.json: the vendor's timestamp expired on the way; re-signed by the appliance as version "
            f"{v + 2}, naming the vendor's snapshot") in r.out, r.out
    served = served_timestamp(home)
    assert served.signed.version == v + 2 and list(served.signatures) == [keyid]
    assert served.signed.snapshot_meta == sim.timestamp.signed.snapshot_meta
    # the record names the bundle the media delivered, not the appliance's stand-in
    con = sqlite3.connect(home / "airlock.db")
    recorded = con.execute("SELECT bundle_digest FROM import_record ORDER BY id DESC LIMIT 1").fetchone()[0]
    con.close()
    assert recorded == scan_bundle(media, tmp_path / "scan", limits=BundleLimits()).digest
    with airlock_server(home) as base:
        assert Device(base, tmp_path / "ng", sim.first_root()).fetch("fw/c.bin") == b"C" * 300
