"""Import refusals an operator can act on: the wrong folder given, a bundle
made before the vendor's last root change, an expired file with its expiry."""

from __future__ import annotations

import tarfile
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import pin, refused


def test_a_repository_folder_given_instead_of_the_stick(airlock, sim, home, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("fw/a.bin", b"A" * 100)
    sim.publish()
    media = sim.write_bundle(tmp_path / "usb1")
    line = refused(airlock, home, media / "airlock" / "acme", "acme", "one repository's folder",
                   "give the stick (or its `airlock/` folder)")
    assert "metadata/" in line
    # the stick and its airlock/ folder are both right
    assert airlock("import", media / "airlock").code == 0


def test_an_archive_of_one_repository_folder_says_what_to_pack(airlock, sim, home, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.publish()
    media = sim.write_bundle(tmp_path / "usb1")
    archive = tmp_path / "acme.tar"
    with tarfile.open(archive, "w") as tar:
        for sub in ("metadata", "targets"):
            tar.add(media / "airlock" / "acme" / sub, arcname=sub)
    refused(airlock, home, archive, "at the top of the archive", "pack the stick's `airlock/` folder")


def test_a_bundle_older_than_the_pinned_root_says_so(airlock, sim, home, tmp_path):
    sim.add_target("fw/a.bin", b"A" * 100)
    sim.publish()
    old = sim.write_bundle(tmp_path / "old")  # made while root was version 1
    sim.rotate("timestamp")  # root v2
    sim.rotate("timestamp")  # root v3
    sim.publish()
    assert pin(airlock, sim, tmp_path, root=sim.published_root_bytes).code == 0
    line = refused(airlock, home, old, "timestamp.json",
                   "the bundle's newest root is version 1, older than the trusted root version 3",
                   "with every root version up to 3 or later")
    assert "signed by 0/1 keys" in line  # python-tuf's own detail stays, after the reason


def test_a_current_bundle_with_a_bad_signature_is_not_blamed_on_old_roots(airlock, sim, home, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.publish(signers={"timestamp": [sim.new_signer()]})
    line = refused(airlock, home, sim.write_bundle(tmp_path / "bad"), "timestamp.json", "signature check failed")
    assert "newest root" not in line


def _expired_at() -> datetime:
    return (datetime.now(UTC) - timedelta(days=2, hours=3)).replace(microsecond=0)


@pytest.mark.parametrize("role", ["timestamp", "snapshot", "targets", "plc-x"])
def test_an_expired_file_gives_its_expiry(airlock, sim, home, tmp_path, role):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.delegate("plc-x", ["plc-x/*"])
    sim.add_target("plc-x/fw.bin", b"X" * 10, role="plc-x")
    expires = _expired_at()
    md = {"timestamp": sim.timestamp, "snapshot": sim.snapshot, "targets": sim.targets}.get(role)
    (md or sim.delegated[role]).signed.expires = expires
    sim.publish(("targets", "plc-x"))
    filename = "timestamp.json" if role == "timestamp" else (
        f"{(md or sim.delegated[role]).signed.version}.{role}.json")
    if md is None:
        # a delegated role: a client's refresh works and only lookups through it fail (issue 14), so the
        # import goes through and names the role with its expiry
        r = airlock("import", sim.write_bundle(tmp_path / "bad"))
        assert r.code == 0, r.err
        assert f"role '{role}' is unavailable: it expired on {expires:%Y-%m-%d %H:%M:%S} UTC" in r.out
        return
    refused(airlock, home, sim.write_bundle(tmp_path / "bad"), filename,
            f"expired on {expires:%Y-%m-%d %H:%M:%S} UTC", "re-sign it with a later expiry")

