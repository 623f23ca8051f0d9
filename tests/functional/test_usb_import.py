"""`airlock usb-import DEVICE` end to end, as root, with ext4 images on loop
devices (there is no udev daemon here: the test drives the command the
rule's unit runs, with the loop device): a stick with a bundle is mounted
read-only,nodev,nosuid,noexec, imported and unmounted; a stick without
airlock/ is ignored and unmounted; a bad bundle is refused, recorded, and
unmounted; a stick with airlock-export/ gets an export written into it; the
import runs as the home's owner, never as root."""

from __future__ import annotations

import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import pin, run_airlock, sign_cli


@pytest.fixture(autouse=True)
def _loop_devices():
    """Fail, never skip, without what the tests need (`make test` installs the tools; CI runs as root)."""
    assert os.geteuid() == 0, "the USB tests mount loop devices: run them as root"
    for tool in ("losetup", "mkfs.ext4", "blkid", "mount"):
        assert shutil.which(tool), f"{tool} is needed: `make test` installs it (tests/prereqs.sh)"


def _give_to_nobody(home: Path) -> None:
    user = pwd.getpwnam("nobody")
    for path in [home, *home.rglob("*")]:
        os.lchown(path, user.pw_uid, user.pw_gid)


@pytest.fixture
def home(request) -> Path:
    """A home owned by an unprivileged user, as the service user owns it
    (usb-import refuses a home owned by root); pytest's tmp_path is root's alone."""
    base = Path(tempfile.mkdtemp(prefix="airlock-usb-home-"))
    base.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    h = base / "home"
    assert run_airlock(h, "init").code == 0
    _give_to_nobody(h)
    return h


@pytest.fixture
def airlock(home):
    """`airlock` in-process, as root (setting up what the test needs); the home stays nobody's."""
    def run(*args):
        r = run_airlock(home, *args)
        _give_to_nobody(home)
        return r
    return run


@pytest.fixture
def stick(tmp_path):
    """Make an ext4 image from a folder and attach it to a loop device."""
    attached: list[str] = []

    def make(folder: Path) -> str:
        image = tmp_path / f"{folder.name}.img"
        with open(image, "wb") as f:
            f.truncate(32 << 20)
        subprocess.run(["mkfs.ext4", "-q", "-d", str(folder), str(image)], check=True, timeout=60)
        device = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True,
                                text=True, timeout=30).stdout.strip()
        attached.append(device)
        return device

    yield make
    for device in attached:
        subprocess.run(["losetup", "-d", device], check=False, timeout=30)


def mounted(device: str) -> bool:
    real = os.path.realpath(device)
    return any(line.split()[0] == real for line in Path("/proc/mounts").read_text().splitlines())


def imports(home: Path) -> list[tuple]:
    con = sqlite3.connect(home / "airlock.db")
    rows = con.execute("SELECT status, operator, reason FROM import_record ORDER BY id").fetchall()
    con.close()
    return rows


def test_a_stick_with_a_bundle_is_imported_and_unmounted(airlock, home, sim, tmp_path, stick):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("plc-x/fw-3.0.0.bin", b"firmware three" * 50, hardware=("plc-x",), version="3.0.0")
    sim.publish()
    device = stick(sim.write_bundle(tmp_path / "media"))
    r = airlock("usb-import", device)
    assert r.code == 0, r.err
    assert f"{device} (mounted ro,nodev,nosuid,noexec): imported: acme" in r.out, r.out
    assert not mounted(device)
    assert imports(home) == [("accepted", f"usb:{Path(device).name}", None)]
    assert "plc-x/fw-3.0.0.bin" in airlock("repo", "show", "acme").out
    assert not list(Path("/tmp").glob(f"airlock-usb-{Path(device).name}-*"))  # its mount folder is gone


def test_a_stick_without_airlock_folder_is_ignored(airlock, home, tmp_path, stick):
    other = tmp_path / "holiday-photos"
    other.mkdir()
    (other / "beach.jpg").write_bytes(b"\xff\xd8" + b"jpeg" * 100)
    device = stick(other)
    r = airlock("usb-import", device)
    assert r.code == 0, r.err
    assert "no airlock/ or airlock-export/ folder" in r.out and "ignored, unmounted" in r.out
    assert not mounted(device)
    assert imports(home) == []


def test_a_bad_bundle_is_refused_recorded_and_unmounted(airlock, home, sim, tmp_path, stick):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("plc-x/fw.bin", b"genuine firmware")
    sim.publish()
    media = sim.write_bundle(tmp_path / "media")
    (media / "airlock" / "acme" / "targets" / "plc-x").iterdir().__next__().write_bytes(b"tampered firmware")
    device = stick(media)
    r = airlock("usb-import", device)
    assert r.code == 1
    line = r.err.strip()
    assert "\n" not in line and line.startswith(f"airlock: error: {device} (mounted ro,nodev,nosuid,noexec): "), line
    assert "plc-x/fw.bin" in line and "airlock: error:" not in line.removeprefix("airlock: error:"), line
    assert not mounted(device)
    assert [row[0] for row in imports(home)] == ["refused"]


def test_the_import_runs_as_the_homes_owner(sim, tmp_path, stick, request):
    """A home owned by an unprivileged user: the import writes as that user."""
    user = pwd.getpwnam("nobody")  # Debian always has it
    base = Path(tempfile.mkdtemp(prefix="airlock-usb-owner-"))  # pytest's tmp_path is root's alone
    base.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    home = base / "home"
    assert run_airlock(home, "init").code == 0
    assert pin(lambda *a: run_airlock(home, *a), sim, tmp_path).code == 0
    sim.add_target("plc-x/fw.bin", b"firmware")
    sim.publish()
    for path in [home, *home.rglob("*")]:
        os.lchown(path, user.pw_uid, user.pw_gid)
    device = stick(sim.write_bundle(tmp_path / "media"))
    r = run_airlock(home, "usb-import", device)
    assert r.code == 0, r.err
    owners = {p.stat(follow_symlinks=False).st_uid for p in (home / "public").rglob("*")}
    assert owners == {user.pw_uid}, owners


def test_a_home_owned_by_root_is_refused_before_anything_is_mounted(tmp_path, stick, sim):
    root_home = tmp_path / "root-home"
    assert run_airlock(root_home, "init").code == 0
    device = stick(sim.write_bundle(tmp_path / "media"))
    r = run_airlock(root_home, "usb-import", device)
    assert r.code == 1 and "owned by root" in r.err and "chown -R airlock:airlock" in r.err, r.err
    assert not mounted(device)


def test_refusals(airlock, tmp_path):
    r = airlock("usb-import", "no-such-device-xyz")
    assert r.code == 1 and "does not exist" in r.err, r.err
    r = airlock("usb-import", "/dev/null")
    assert r.code == 1 and "not a block device" in r.err, r.err
    r = airlock("usb-import", "../etc/passwd")
    assert r.code == 1 and "not a device under /dev" in r.err, r.err


def test_a_stick_with_airlock_export_gets_the_export(airlock, home, sim, tmp_path, stick):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("plc-x/fw.bin", b"firmware")
    sim.publish()
    media = sim.write_bundle(tmp_path / "media")
    (media / "airlock-export").mkdir()
    # an ext4 stick keeps its owners (FAT and exFAT get the home owner's at mount): the service user's folder
    user = pwd.getpwnam("nobody")
    os.chown(media / "airlock-export", user.pw_uid, user.pw_gid)
    device = stick(media)
    r = airlock("usb-import", device)
    assert r.code == 0, r.err
    assert "(mounted ro,nodev,nosuid,noexec; rw for airlock-export/): imported: acme" in r.out, r.out
    assert "wrote export 1" in r.out and not mounted(device)
    look = tmp_path / "look"
    look.mkdir()
    subprocess.run(["mount", "-o", "ro", device, str(look)], check=True, timeout=60)
    try:
        (export,) = (look / "airlock-export").iterdir()
        (tmp_path / "appliance.pub").write_text(airlock("keys", "show").out)
        code, out, err = sign_cli("export", "verify", export, "--appliance-key", tmp_path / "appliance.pub")
        assert code == 0, out + err
        assert sorted(p.name for p in look.iterdir() if p.name != "lost+found") == ["airlock", "airlock-export"]
    finally:
        subprocess.run(["umount", str(look)], check=True, timeout=60)
    assert [row[0] for row in imports(home)] == ["accepted"]
