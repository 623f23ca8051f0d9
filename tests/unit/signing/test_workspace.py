"""The workspace makes real signed metadata that python-tuf's client accepts."""

import json
import shutil
import tarfile

import pytest
from tuf.api.metadata import Metadata

from signing.exceptions import RepositoryNameError, ThresholdError, UnsafeNameError, WorkspaceError
from signing.workspace import Workspace

META = "published/metadata"
PASS = b"correct horse battery staple"  # the conftest's passphrase for every test key


def root_v1(ws: Workspace) -> bytes:
    return (ws.path / META / "1.root.json").read_bytes()


def test_create_publishes_version_1_of_every_role(make_workspace):
    ws = make_workspace()
    names = sorted(p.name for p in (ws.path / META).iterdir())
    assert names == ["1.root.json", "1.snapshot.json", "1.targets.json", "timestamp.json"]
    root = Metadata.from_bytes(root_v1(ws)).signed
    assert root.consistent_snapshot is True
    assert {r: len(root.roles[r].keyids) for r in root.roles} == {
        "root": 1, "targets": 1, "snapshot": 1, "timestamp": 1
    }
    assert (root.expires - root.expires.replace(microsecond=0)).total_seconds() == 0
    assert sorted(p.name for p in (ws.path / "keys").iterdir()) == sorted(
        f"{r}-1.{ext}" for r in ("root", "targets", "snapshot", "timestamp") for ext in ("key", "pub")
    )
    assert ws.staged_roles() == []
    assert Workspace.open(ws.path).name == "acme"


def test_client_installs_published_target(make_workspace, firmware, tuf_client, fetch_target, signers_of):
    ws = make_workspace()
    ws.add_target(firmware, "firmware/model-x/fw.bin", hardware=["model-x", "model-y"], version="1.0.0")
    assert [s["role"] for s in ws.status()] == ["targets"]
    assert ws.publish(signers_of(ws)) == {"targets": 2, "snapshot": 2, "timestamp": 2}
    assert ws.staged_roles() == []

    client = tuf_client(ws.path / "published", root_v1(ws))
    assert fetch_target(client, "firmware/model-x/fw.bin") == firmware.read_bytes()
    info = client.get_targetinfo("firmware/model-x/fw.bin")
    assert info.custom == {"hardware": ["model-x", "model-y"], "version": "1.0.0"}
    assert list(info.hashes) == ["sha256"]
    stored = list((ws.path / "published/targets/firmware/model-x").iterdir())
    assert [p.name for p in stored] == [f"{info.hashes['sha256']}.fw.bin"]


def test_versions_bump_by_one_and_history_is_kept(make_workspace, firmware, signers_of):
    ws = make_workspace()
    signers = signers_of(ws)
    ws.add_target(firmware, "a.bin", hardware=["m"], version="1.0.0")
    ws.add_target(firmware, "b.bin", hardware=["m"], version="1.0.0")  # same staged version
    assert ws.publish(signers)["targets"] == 2
    assert ws.publish(signers) == {"snapshot": 3, "timestamp": 3}  # nothing staged: refresh only
    ws.remove_target("a.bin")
    assert ws.publish(signers)["targets"] == 3
    assert ws.published_versions() == {"root": 1, "timestamp": 4, "snapshot": 4, "targets": 3}
    for n in (1, 2, 3):
        assert (ws.path / META / f"{n}.targets.json").is_file()
    with pytest.raises(WorkspaceError, match="lists no target"):
        ws.remove_target("a.bin")


def test_publish_without_enough_signatures_names_the_role(make_workspace, firmware, signers_of):
    ws = make_workspace()
    ws.add_target(firmware, "a.bin", hardware=["m"], version="1.0.0")
    before = sorted((ws.path / META).iterdir())
    with pytest.raises(ThresholdError, match=r"targets needs 1 more signature"):
        ws.publish(signers_of(ws, "snapshot-1", "timestamp-1"))
    with pytest.raises(ThresholdError, match=r"timestamp needs 1 more signature"):
        ws.publish(signers_of(ws, "targets-1", "snapshot-1"))
    assert sorted((ws.path / META).iterdir()) == before
    assert ws.staged_roles() == ["targets"]


def test_unsafe_target_paths_and_bad_custom_refused(make_workspace, firmware):
    ws = make_workspace()
    for bad in ("../evil.bin", "/etc/passwd", "a//b", "a/./b", "dir\\x.bin", "x\x00y"):
        with pytest.raises(UnsafeNameError):
            ws.add_target(firmware, bad, hardware=["m"], version="1.0.0")
    with pytest.raises(WorkspaceError, match="X.Y.Z"):
        ws.add_target(firmware, "ok.bin", hardware=["m"], version="1.0")
    with pytest.raises(WorkspaceError, match="hardware"):
        ws.add_target(firmware, "ok.bin", hardware=[], version="1.0.0")
    assert ws.staged_roles() == []


def test_root_rotation_client_bootstraps_from_v1(make_workspace, firmware, tuf_client, fetch_target, signers_of):
    ws = make_workspace()
    v1 = root_v1(ws)
    ws.rotate("root", passphrase=PASS)  # root-1 -> root-2
    status = ws.status()[0]
    assert [c["keys_of"] for c in status["signatures"]] == ["root v1", "root v2"]
    with pytest.raises(ThresholdError, match="root needs 1 more signature"):
        ws.publish(signers_of(ws, "root-2", "snapshot-1", "timestamp-1"))
    assert ws.publish(signers_of(ws))["root"] == 2

    ws.rotate("targets", passphrase=PASS)
    ws.rotate("timestamp", passphrase=PASS)
    ws.rotate("root", passphrase=PASS)
    assert ws.staged_roles() == ["root", "targets"]  # targets must be re-signed by its new key
    ws.add_target(firmware, "fw.bin", hardware=["m"], version="2.0.0")
    written = ws.publish(signers_of(ws))
    assert written["root"] == 3 and written["targets"] == 2
    assert ws.layout.root_versions() == [1, 2, 3]

    client = tuf_client(ws.path / "published", v1)
    assert fetch_target(client, "fw.bin") == firmware.read_bytes()
    root = Metadata.from_bytes((ws.path / META / "3.root.json").read_bytes()).signed
    assert root.roles["root"].keyids == [signers_of(ws, "root-3")[0].public_key.keyid]
    assert root.roles["timestamp"].keyids == [signers_of(ws, "timestamp-2")[0].public_key.keyid]


def test_rotating_root_refuses_an_impossible_threshold(make_workspace):
    ws = make_workspace()
    with pytest.raises(WorkspaceError, match="threshold 2 for root is impossible"):
        ws.rotate("root", threshold=2, passphrase=PASS)
    with pytest.raises(WorkspaceError, match="is not a key of root"):
        ws.rotate("root", remove_keyids=["deadbeefdeadbeef"], passphrase=PASS)
    assert ws.staged_roles() == []


def test_delegation_serves_targets_to_the_client(make_workspace, firmware, tuf_client, fetch_target, signers_of):
    ws = make_workspace()
    keyids = ws.delegate("model-x", ["firmware/model-x/*"], passphrase=PASS)
    assert len(keyids) == 1 and ws.staged_roles() == ["targets", "model-x"]
    with pytest.raises(WorkspaceError, match="outside what model-x may sign"):
        ws.add_target(firmware, "firmware/model-y/fw.bin", hardware=["y"], version="1.0.0", role="model-x")
    ws.add_target(firmware, "firmware/model-x/fw.bin", hardware=["model-x"], version="1.2.3", role="model-x")
    written = ws.publish(signers_of(ws))
    assert written == {"targets": 2, "model-x": 1, "snapshot": 2, "timestamp": 2}
    snapshot = Metadata.from_bytes((ws.path / META / "2.snapshot.json").read_bytes()).signed
    assert snapshot.meta["model-x.json"].version == 1 and snapshot.meta["model-x.json"].length > 0

    client = tuf_client(ws.path / "published", root_v1(ws))
    assert fetch_target(client, "firmware/model-x/fw.bin") == firmware.read_bytes()

    # rotating the delegated role's key: its parent changes and it is re-signed
    ws.rotate("model-x", passphrase=PASS)
    assert ws.staged_roles() == ["targets", "model-x"]
    assert ws.publish(signers_of(ws))["model-x"] == 2
    client = tuf_client(ws.path / "published", root_v1(ws))
    assert fetch_target(client, "firmware/model-x/fw.bin") == firmware.read_bytes()

    with pytest.raises(WorkspaceError, match="already exists"):
        ws.delegate("model-x", ["x/*"], passphrase=PASS)
    with pytest.raises(UnsafeNameError):
        ws.delegate("../up", ["x/*"], passphrase=PASS)


def test_ecdsa_keys(make_workspace, firmware, tuf_client, fetch_target, signers_of):
    ws = make_workspace(key_type="ecdsa")
    root = Metadata.from_bytes(root_v1(ws)).signed
    assert {k.scheme for k in root.keys.values()} == {"ecdsa-sha2-nistp256"}
    ws.add_target(firmware, "fw.bin", hardware=["m"], version="1.0.0")
    ws.publish(signers_of(ws))
    assert fetch_target(tuf_client(ws.path / "published", root_v1(ws)), "fw.bin") == firmware.read_bytes()


def test_two_of_three_root_signed_by_two_people(make_workspace, tuf_client, firmware, fetch_target, signers_of):
    ws = make_workspace(key_counts={"root": 3}, thresholds={"root": 2})
    ws.set_expiry("root", 500)  # any root change needs 2 of the 3 root keys
    assert ws.status()[0]["signatures"][0] == {
        "keys_of": "root v1", "signed": 0, "threshold": 2, "missing": 2,
        "unsigned_keyids": sorted(s.public_key.keyid for s in signers_of(ws, "root-1", "root-2", "root-3")),
    }
    # person A signs on this machine
    assert ws.sign(signers_of(ws, "root-1")) == [("root", signers_of(ws, "root-1")[0].public_key.keyid)]
    online = signers_of(ws, "snapshot-1", "timestamp-1")
    with pytest.raises(ThresholdError, match="root needs 1 more signature"):
        ws.publish(online)
    # person B gets a copy of staged/, signs elsewhere, and it is copied back
    elsewhere = ws.path.parent / "elsewhere"
    shutil.copytree(ws.path, elsewhere)
    Workspace.open(elsewhere).sign(signers_of(ws, "root-3"))
    shutil.copy(elsewhere / "staged/root.json", ws.path / "staged/root.json")
    assert ws.status()[0]["ready"] is True
    ws.add_target(firmware, "fw.bin", hardware=["m"], version="1.0.0")
    assert ws.publish(online + signers_of(ws, "targets-1"))["root"] == 2
    assert fetch_target(tuf_client(ws.path / "published", root_v1(ws)), "fw.bin") == firmware.read_bytes()


def test_sign_refuses_a_key_of_no_staged_role(make_workspace, signers_of, firmware):
    ws = make_workspace()
    with pytest.raises(WorkspaceError, match="nothing is staged"):
        ws.sign(signers_of(ws, "targets-1"))
    ws.add_target(firmware, "fw.bin", hardware=["m"], version="1.0.0")
    with pytest.raises(WorkspaceError, match="not a key of any staged role"):
        ws.sign(signers_of(ws, "snapshot-1"))
    assert ws.sign(signers_of(ws, "targets-1"))[0][0] == "targets"


def test_expired_root_must_be_renewed_before_publishing(make_workspace, signers_of):
    ws = make_workspace()
    root_file = ws.path / META / "1.root.json"
    md = Metadata.from_bytes(root_file.read_bytes())
    md.signed.expires = md.signed.expires.replace(year=2000)
    md.sign(signers_of(ws, "root-1")[0])
    root_file.write_bytes(md.to_bytes())
    with pytest.raises(WorkspaceError, match="root v1 expired"):
        ws.publish(signers_of(ws))
    ws.set_expiry("root", 30)
    assert ws.publish(signers_of(ws))["root"] == 2


def bundle_files(top):
    return sorted(p.relative_to(top).as_posix() for p in top.rglob("*") if p.is_file())


def test_dir_bundle_layout_and_incremental(make_workspace, firmware, tmp_path, signers_of, tuf_client, fetch_target):
    ws = make_workspace()
    signers = signers_of(ws)
    ws.add_target(firmware, "fw/one.bin", hardware=["m"], version="1.0.0")
    ws.rotate("root", passphrase=PASS)
    ws.publish(signers_of(ws))
    first = ws.write_bundle(tmp_path / "stick1")
    assert first == tmp_path / "stick1/airlock/acme"
    files = bundle_files(first)
    sha_one = ws._current("targets").signed.targets["fw/one.bin"].hashes["sha256"]
    assert files == [
        "metadata/1.root.json", "metadata/2.root.json", "metadata/2.snapshot.json",
        "metadata/2.targets.json", "metadata/timestamp.json", f"targets/fw/{sha_one}.one.bin",
    ]
    with pytest.raises(WorkspaceError, match="already exists"):
        ws.write_bundle(tmp_path / "stick1")

    two = tmp_path / "two.bin"
    two.write_bytes(b"second firmware")
    ws.add_target(two, "fw/two.bin", hardware=["m"], version="2.0.0")
    ws.publish(signers + signers_of(ws, "root-2"))
    second = ws.write_bundle(tmp_path / "stick2", exclude_from=tmp_path / "stick1")
    targets = [f for f in bundle_files(second) if f.startswith("targets/")]
    assert len(targets) == 1 and targets[0].endswith(".two.bin")
    # the full bundle is a repository a client can use as is
    client = tuf_client(ws.write_bundle(tmp_path / "stick3"), root_v1(ws))
    assert fetch_target(client, "fw/two.bin") == b"second firmware"


@pytest.mark.parametrize("fmt", ["tar", "tar.gz"])
def test_tar_bundle_has_only_plain_members(make_workspace, firmware, tmp_path, signers_of, fmt):
    ws = make_workspace()
    ws.add_target(firmware, "fw/one.bin", hardware=["m"], version="1.0.0")
    ws.publish(signers_of(ws))
    archive = ws.write_bundle(tmp_path / f"b.{fmt}", fmt=fmt)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    assert members and all(m.isfile() or m.isdir() for m in members)
    assert all(m.name == "airlock" or m.name.startswith("airlock/acme") for m in members)
    assert all(m.uid == 0 and m.gid == 0 for m in members)
    assert {m.mode for m in members if m.isdir()} == {0o755}
    assert {m.mode for m in members if m.isfile()} == {0o644}
    names = {m.name for m in members}
    assert "airlock/acme/metadata/1.root.json" in names and "airlock/acme/metadata/timestamp.json" in names

    two = tmp_path / "two.bin"
    two.write_bytes(b"second")
    ws.add_target(two, "fw/two.bin", hardware=["m"], version="2.0.0")
    ws.publish(signers_of(ws))
    inc = ws.write_bundle(tmp_path / f"inc.{fmt}", fmt=fmt, exclude_from=archive)
    with tarfile.open(inc) as tar:
        target_files = [m.name for m in tar.getmembers() if m.isfile() and "/targets/" in m.name]
    assert len(target_files) == 1 and target_files[0].endswith(".two.bin")
    with pytest.raises(WorkspaceError, match="already exists"):
        ws.write_bundle(archive, fmt=fmt)


def test_workspace_settings_and_errors(make_workspace, tmp_path):
    with pytest.raises(WorkspaceError, match="impossible"):
        Workspace.create(tmp_path / "x", "acme", passphrase=PASS, thresholds={"root": 2})
    with pytest.raises(RepositoryNameError, match="not allowed"):
        Workspace.create(tmp_path / "x", "../acme", passphrase=PASS)
    with pytest.raises(WorkspaceError, match="not an airlock-sign workspace"):
        Workspace.open(tmp_path)
    ws = make_workspace(expiry_days={"timestamp": 2})
    with pytest.raises(WorkspaceError, match="already exists"):
        Workspace.create(ws.path, "acme", passphrase=PASS)
    assert ws.set_expiry("timestamp", 3) is False
    assert json.loads((ws.path / "workspace.json").read_text())["expiry_days"]["timestamp"] == 3

