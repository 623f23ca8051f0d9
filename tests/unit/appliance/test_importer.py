"""The import pipeline (appliance/importer.py) called directly, on real
bundles signed by tests/support/simulator.py and a real appliance home:
what it returns, what it records, and that a refusal changes nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from appliance.importer import ImportBusyError, StagingSpaceError, import_bundle, remove_repository
from server import bind_database
from server.audit import entries
from server.imports.services import import_history
from server.settings import load_settings
from signing.exceptions import AirlockError, VerificationError
from tests.conftest import pin, tree_state


@pytest.fixture
def settings(home):
    s = load_settings(home, environ={})
    bind_database(s)
    return s


@pytest.fixture
def pinned(airlock, sim, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("fw/plc-x-1.0.0.bin", b"firmware one" * 100, version="1.0.0")
    sim.publish()
    return sim


def last_refusal(settings):
    history = import_history()
    assert history and history[0].status == "refused"
    return history[0]


def test_accepted_then_unchanged_each_recorded_with_the_bundle_digest(settings, pinned, tmp_path):
    media = pinned.write_bundle(tmp_path / "usb")
    first = import_bundle(settings, media, "ops")
    assert first.status == "accepted" and first.files > 0 and first.bytes > 0
    assert [(r.name, r.unchanged, r.targets_added) for r in first.repositories] == \
        [("acme", False, ["fw/plc-x-1.0.0.bin"])]
    again = import_bundle(settings, media, "ops")
    assert again.status == "unchanged" and again.bundle_digest == first.bundle_digest
    history = import_history("acme")
    assert [(h.id, h.status, h.operator, h.bundle_digest) for h in history] == [
        (again.import_id, "unchanged", "ops", again.bundle_digest),
        (first.import_id, "accepted", "ops", first.bundle_digest)]
    assert [e.action for e in entries()][-2:] == ["import.accepted", "import.unchanged"]
    assert os.listdir(settings.staging_dir) == []


def test_a_refusal_is_recorded_with_its_reason_and_changes_nothing_else(settings, pinned, tmp_path, home):
    media = pinned.write_bundle(tmp_path / "usb")
    target = next((media / "airlock/acme/targets/fw").iterdir())
    target.write_bytes(b"X" + target.read_bytes()[1:])  # one byte flipped on the stick
    before = tree_state(home)
    with pytest.raises(AirlockError) as refused:
        import_bundle(settings, media, "ops")
    assert tree_state(home) == before
    record = last_refusal(settings)
    assert record.reason == str(refused.value) and record.operator == "ops"
    assert record.bundle_digest  # staging got that far: the record names the bytes that were refused
    audit = entries()[-1]
    assert audit.action == "import.refused" and audit.details["reason"] == str(refused.value)


def test_a_bundle_for_an_unpinned_repository_is_refused_and_recorded(settings, home, tmp_path):
    from tests.support.simulator import RepoSim

    other = RepoSim("globex")
    before = tree_state(home)
    with pytest.raises(VerificationError, match="'globex', which is not pinned"):
        import_bundle(settings, other.write_bundle(tmp_path / "usb"), "ops")
    assert tree_state(home) == before
    assert "not pinned" in last_refusal(settings).reason


def test_no_room_for_the_new_targets_is_refused_before_copying(settings, pinned, tmp_path, home, monkeypatch):
    import appliance.importer as importer

    # The margin the appliance keeps free is more than any disk has: the
    # real free-space check (shutil.disk_usage of HOME) must refuse.
    monkeypatch.setattr(importer, "FREE_SPACE_MARGIN", 1 << 62)
    before = tree_state(home)
    with pytest.raises(StagingSpaceError, match=r"need 1200 bytes .* bytes are free under .*free space") as refused:
        import_bundle(settings, pinned.write_bundle(tmp_path / "usb"), "ops")
    assert tree_state(home) == before
    assert last_refusal(settings).reason == str(refused.value)
    assert os.listdir(settings.staging_dir) == []
    monkeypatch.undo()
    assert import_bundle(settings, pinned.write_bundle(tmp_path / "usb2"), "ops").status == "accepted"


@pytest.fixture
def lock_holder(settings):
    """Another process holding the import lock, as a running import does."""
    script = textwrap.dedent(f"""
        import fcntl, os, sys
        fd = os.open({str(settings.state_dir / "import.lock")!r}, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0); os.pwrite(fd, str(os.getpid()).encode(), 0)
        print("locked", flush=True)
        sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def test_a_second_import_is_refused_while_one_runs(settings, pinned, tmp_path, home, lock_holder):
    media = pinned.write_bundle(tmp_path / "usb")
    before, history = tree_state(home), import_history()
    with pytest.raises(ImportBusyError, match=f"another import is running \\(pid {lock_holder.pid}\\).*import again"):
        import_bundle(settings, media, "ops")
    assert tree_state(home) == before and import_history() == history
    assert os.listdir(settings.staging_dir) == []


def test_repo_remove_waits_for_no_running_import(settings, pinned, home, lock_holder):
    before = tree_state(home)
    with pytest.raises(ImportBusyError, match="wait for it to finish and remove it again"):
        remove_repository(settings, "acme", "ops")
    assert tree_state(home) == before


def test_the_lock_is_free_again_after_a_refusal(settings, pinned, tmp_path):
    media = pinned.write_bundle(tmp_path / "usb")
    (media / "airlock/acme/metadata/timestamp.json").write_bytes(b"{}")
    with pytest.raises(AirlockError):
        import_bundle(settings, media, "ops")
    assert import_bundle(settings, pinned.write_bundle(tmp_path / "usb2"), "ops").status == "accepted"
    assert (settings.state_dir / "import.lock").read_bytes() == b""  # no stale pid left for the next refusal
