"""Refused imports: each case is a real bundle signed with real keys; each
is refused with one clear line, recorded, and changes nothing else."""

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from tuf.api.metadata import MetaFile

from tests.conftest import pin, refused, tree_state
from tests.support.simulator import RepoSim


@pytest.fixture
def served(airlock, sim, home, tmp_path):
    """An appliance serving acme with one target: the state to protect."""
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("fw/a.bin", b"A" * 1000)
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "good")).code == 0
    return sim


def expired():
    return (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)


def test_bad_signature(airlock, served, home, tmp_path):
    served.add_target("fw/b.bin", b"B")
    served.publish()
    name = f"{served.targets.signed.version}.targets.json"
    doc = json.loads(served.metadata[name])
    doc["signed"]["targets"]["fw/b.bin"]["length"] = 2  # content changed after signing
    served.metadata[name] = json.dumps(doc).encode()
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), name, "signature")


def test_threshold_not_met(airlock, served, home, tmp_path):
    served.root.signed.roles["targets"].threshold = 2
    served.add_key("targets")
    served.root.signed.version += 1
    served.sign_and_store("root")
    served.add_target("fw/b.bin", b"B")
    served.publish(signers={"targets": served.signers["targets"][:1]})
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "targets.json", "signature")


def test_key_not_in_root(airlock, served, home, tmp_path):
    served.add_target("fw/b.bin", b"B")
    served.publish(signers={"timestamp": [served.new_signer()]})
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "timestamp.json", "signature")


def test_new_root_signed_only_by_new_keys(airlock, served, home, tmp_path):
    served.rotate("root")
    # re-sign 2.root.json with the new root key alone
    served.metadata["2.root.json"] = served.sign(served.root, served.signers["root"])
    served.publish()
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "2.root.json", "signature")


@pytest.mark.parametrize("role", ["timestamp", "snapshot", "targets"])
def test_version_rollback(airlock, served, home, tmp_path, role):
    served.add_target("fw/b.bin", b"B")
    served.publish()
    assert airlock("import", served.write_bundle(tmp_path / "newer")).code == 0
    if role == "targets":
        served.targets.signed.version -= 2
        served.publish(signers={})
        # publish() bumped it by one: still older than the trusted version
    elif role == "snapshot":
        served.snapshot.signed.version -= 3
        served.publish(roles=())
    else:
        served.timestamp.signed.version -= 3
        served.publish(roles=())
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "rollback")


def test_root_version_repeated_is_refused(airlock, served, home, tmp_path):
    served.root.signed.version += 1
    served.sign_and_store("root")
    # a second file claiming version 3 while holding version 2
    served.metadata["3.root.json"] = served.metadata["2.root.json"]
    served.publish()
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "3.root.json")


@pytest.mark.parametrize("role", ["timestamp", "snapshot", "targets", "root"])
def test_expired_role(airlock, served, home, tmp_path, role):
    if role == "root":
        served.root.signed.expires = expired()
        served.root.signed.version += 1
        served.sign_and_store("root")
    else:
        metadata = {"timestamp": served.timestamp, "snapshot": served.snapshot, "targets": served.targets}[role]
        metadata.signed.expires = expired()
    served.add_target("fw/b.bin", b"B")
    served.publish()
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "expired")


def test_snapshot_targets_mismatch(airlock, served, home, tmp_path):
    served.add_target("fw/b.bin", b"B")
    served.publish()
    # snapshot claims targets v7, the bundle carries the real (lower) version
    served.snapshot.signed.meta["targets.json"] = MetaFile(version=7)
    served.resign("snapshot")
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "7.targets.json", "missing")


def test_snapshot_hash_mismatch(airlock, served, home, tmp_path):
    served.add_target("fw/b.bin", b"B")
    served.publish()
    name = f"{served.targets.signed.version}.targets.json"
    served.snapshot.signed.meta["targets.json"] = MetaFile(
        version=served.targets.signed.version, length=len(served.metadata[name]),
        hashes={"sha256": hashlib.sha256(b"other").hexdigest()})
    served.resign("snapshot")
    served.timestamp.signed.snapshot_meta = MetaFile(version=served.snapshot.signed.version)
    served.resign("timestamp")
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), name, "hash")


@pytest.mark.parametrize("change,expect", [
    (lambda data: data + b"!", "bytes but"),
    (lambda data: data[:-1], "bytes but"),
    (lambda data: b"Z" + data[1:], "sha256 hash does not match"),
])
def test_wrong_target_length_or_hash(airlock, served, home, tmp_path, change, expect):
    served.add_target("fw/b.bin", b"B" * 64)
    served.publish()
    media = served.write_bundle(tmp_path / "bad")
    tf = served.targets.signed.targets["fw/b.bin"]
    f = media / "airlock/acme/targets/fw" / f"{tf.hashes['sha256']}.b.bin"
    f.write_bytes(change(f.read_bytes()))
    refused(airlock, home, media, "fw/b.bin", expect)


def test_missing_target(airlock, served, home, tmp_path):
    served.add_target("fw/b.bin", b"B" * 64)
    served.publish()
    media = served.write_bundle(tmp_path / "bad", include_targets=False)
    refused(airlock, home, media, "fw/b.bin", "neither in the bundle nor already on the appliance")


@pytest.mark.parametrize("path", ["../escape.bin", "/etc/passwd", "fw\\..\\x.bin", "fw/./x.bin",
                                  "fw/\u202ex.bin", "fw/x\x00.bin", "fw/Cafe\u0301.bin"])
def test_unsafe_target_path(airlock, served, home, tmp_path, path):
    served.add_target(path, b"evil")
    served.publish()
    served.target_files = {k: v for k, v in served.target_files.items() if "\\" not in k and "\x00" not in k
                           and ".." not in k and not k.startswith("/") and "/./" not in k}
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "refused")


def test_unknown_repository(airlock, served, home, tmp_path):
    other = RepoSim("beta")
    other.publish()
    refused(airlock, home, other.write_bundle(tmp_path / "bad"), "'beta'", "not pinned", "airlock repo add beta")


def test_consistent_snapshot_disabled(airlock, served, home, tmp_path):
    served.root.signed.consistent_snapshot = False
    served.root.signed.version += 1
    served.sign_and_store("root")
    served.publish()
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "consistent snapshots")


def test_version_reused_with_different_content(airlock, served, home, tmp_path):
    name = f"{served.targets.signed.version}.targets.json"
    served.add_target("fw/b.bin", b"B")
    served.resign("targets")  # same version number, new content
    served.publish(roles=())
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), name, "reused")


def test_wrong_fingerprint(airlock, sim, home, tmp_path):
    root = tmp_path / "root.json"
    root.write_bytes(sim.first_root())
    before = tree_state(home)
    r = airlock("repo", "add", "acme", "--root", root, "--fingerprint", "ab" * 32)
    assert r.code == 1
    assert "fingerprint mismatch" in r.err and hashlib.sha256(sim.first_root()).hexdigest() in r.err
    assert tree_state(home) == before


def test_import_of_missing_path(airlock, served, home, tmp_path):
    refused(airlock, home, tmp_path / "no-such-stick", "does not exist")


def test_symlink_in_bundle(airlock, served, home, tmp_path):
    served.publish()
    media = served.write_bundle(tmp_path / "bad")
    (media / "airlock/acme/targets/link").symlink_to("/etc/passwd")
    refused(airlock, home, media, "symbolic link")


@pytest.mark.parametrize("content", [
    b'{"signed": {"_type": "snapshot", "x": 1}, "signatures": []}',
    b'{"signed": {"_type": "snapshot"}, "signatures": [}',
    b"[]",
    b"",
])
def test_malformed_metadata(airlock, served, home, tmp_path, content):
    served.add_target("fw/b.bin", b"B")
    served.publish()
    media = served.write_bundle(tmp_path / "bad")
    name = f"{served.snapshot.signed.version}.snapshot.json"
    (media / "airlock/acme/metadata" / name).write_bytes(content)
    refused(airlock, home, media, name)


def test_wrong_type_in_file(airlock, served, home, tmp_path):
    served.add_target("fw/b.bin", b"B")
    served.publish()
    media = served.write_bundle(tmp_path / "bad")
    name = f"{served.snapshot.signed.version}.snapshot.json"
    (media / "airlock/acme/metadata" / name).write_bytes(served.metadata["timestamp.json"])
    refused(airlock, home, media, name)
