"""Hostile media: whatever is on the stick, the import refuses it with one
clear line, writes nothing outside staging, removes staging, and changes
nothing else.  Built on a genuinely signed repository, so that only the
file-level trick is wrong."""

import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import pin, refused, tree_state


@pytest.fixture
def served(airlock, sim, home, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("fw/a.bin", b"A" * 1000)
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "good")).code == 0
    sim.add_target("fw/b.bin", b"B" * 3000)
    sim.publish()
    return sim


def tar_of(tmp_path, media, extra=(), *, gz=False, name="bundle.tar"):
    """An archive of the good bundle plus ``extra`` (TarInfo, bytes|None) members."""
    path = tmp_path / (name + (".gz" if gz else ""))
    with tarfile.open(path, "w:gz" if gz else "w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(media / "airlock", arcname="airlock")
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name, *, type=tarfile.REGTYPE, data=b"x", linkname=""):
    info = tarfile.TarInfo(name)
    info.type = type
    info.size = len(data) if type == tarfile.REGTYPE else 0
    info.linkname = linkname
    return info, (data if type == tarfile.REGTYPE else None)


@pytest.mark.parametrize("name", ["../escape.txt", "airlock/../../escape.txt", "/tmp/airlock-escape.txt",
                                  "airlock/acme/targets/../../../escape.txt"])
def test_tar_names_that_climb_out(airlock, served, home, tmp_path, name):
    media = served.write_bundle(tmp_path / "usb")
    refused(airlock, home, tar_of(tmp_path, media, [member(name)]), "unsafe name")
    assert not (tmp_path / "escape.txt").exists() and not os.path.exists("/tmp/airlock-escape.txt")


@pytest.mark.parametrize("kind,link", [(tarfile.SYMTYPE, "/etc/passwd"), (tarfile.LNKTYPE, "/etc/passwd"),
                                       (tarfile.SYMTYPE, "../../../../etc"), (tarfile.CHRTYPE, ""),
                                       (tarfile.BLKTYPE, ""), (tarfile.FIFOTYPE, "")])
def test_tar_links_devices_and_fifos(airlock, served, home, tmp_path, kind, link):
    media = served.write_bundle(tmp_path / "usb")
    archive = tar_of(tmp_path, media, [member("airlock/acme/targets/fw/x.bin", type=kind, linkname=link)])
    refused(airlock, home, archive, "not a regular file or folder")


def test_link_planted_by_one_import_cannot_be_used_by_the_next(airlock, served, home, tmp_path):
    media = served.write_bundle(tmp_path / "usb")
    archive = tar_of(tmp_path, media, [member("airlock/acme/targets/etc", type=tarfile.SYMTYPE, linkname="/etc")])
    refused(airlock, home, archive, "not a regular file or folder")
    # the second import writes through the same name: nothing of the first is left to follow
    second = tar_of(tmp_path, media, [member("airlock/acme/targets/etc/passwd", data=b"owned")], name="second.tar")
    r = airlock("import", second)
    assert r.code == 0, r.err
    assert b"owned" not in Path("/etc/passwd").read_bytes()
    assert not list(home.glob("public/repos/acme/targets/etc"))


def test_symlinked_folder_and_device_and_fifo_in_a_directory(airlock, served, home, tmp_path):
    media = served.write_bundle(tmp_path / "usb")
    targets = media / "airlock/acme/targets"
    (targets / "etc").symlink_to("/etc", target_is_directory=True)
    refused(airlock, home, media, "symbolic link")
    (targets / "etc").unlink()

    os.mkfifo(targets / "fifo")
    started = time.monotonic()
    refused(airlock, home, media, "special file")
    assert time.monotonic() - started < 30  # a FIFO must not hang the import
    (targets / "fifo").unlink()

    os.mknod(targets / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    refused(airlock, home, media, "special file")


def test_media_root_that_is_itself_a_symlink(airlock, served, home, tmp_path):
    media = served.write_bundle(tmp_path / "usb")
    (tmp_path / "link").symlink_to(media / "airlock")
    refused(airlock, home, tmp_path / "link", "symbolic link")


def test_sparse_file_claiming_a_terabyte_is_never_read(airlock, served, home, tmp_path):
    media = served.write_bundle(tmp_path / "usb")
    tf = served.targets.signed.targets["fw/b.bin"]
    big = media / f"airlock/acme/targets/fw/{tf.hashes['sha256']}.b.bin"
    with open(big, "r+b") as f:
        f.truncate(1 << 40)
    refused(airlock, home, media, "bundle is larger than")
    with open(big, "r+b") as f:
        f.truncate(10 << 30)  # under the cap: refused by the signed length, before a byte is read
    started = time.monotonic()
    refused(airlock, home, media, "fw/b.bin", "is 10737418240 bytes but")
    assert time.monotonic() - started < 30


def test_unlisted_huge_file_is_not_copied(airlock, served, home, tmp_path):
    media = served.write_bundle(tmp_path / "usb")
    with open(media / "airlock/acme/targets/junk.bin", "wb") as f:
        f.truncate(50 << 30)
    r = airlock("import", media)
    assert r.code == 0, r.err
    assert not list(home.glob("public/repos/acme/targets/junk.bin"))


def test_sparse_tar_member(airlock, served, home, tmp_path):
    media = served.write_bundle(tmp_path / "usb")
    with open(media / "airlock/acme/targets/sparse.bin", "wb") as f:
        f.truncate(1 << 20)
    archive = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", "--format=gnu", "-cf", str(archive), "-C", str(media), "airlock"], check=True)
    refused(airlock, home, archive, "not a regular file or folder")


def test_gzip_bomb(airlock, served, home, tmp_path, monkeypatch):
    import signing.bundle

    # the ratio limit starts after 1 GiB; for a quick test start it after 1 MiB
    monkeypatch.setattr(signing.bundle, "GZIP_FREE_BYTES", 1 << 20)
    media = served.write_bundle(tmp_path / "usb")
    zeros = b"\0" * (64 << 20)
    archive = tar_of(tmp_path, media, [member("airlock/acme/targets/zeros.bin", data=zeros)], gz=True)
    assert archive.stat().st_size < len(zeros) // 200
    refused(airlock, home, archive, "gzip bomb")


def test_too_many_files(airlock, served, home, tmp_path):
    (home / "airlock.toml").write_text("max_bundle_files = 300\n")
    media = served.write_bundle(tmp_path / "usb")
    junk = media / "airlock/acme/targets/junk"
    junk.mkdir()
    for i in range(400):
        (junk / f"{i}.bin").touch()
    refused(airlock, home, media, "more than 300 entries")
    archive = tar_of(tmp_path, media)
    refused(airlock, home, archive, "more than 300 entries")


def test_duplicate_member_names(airlock, served, home, tmp_path):
    media = served.write_bundle(tmp_path / "usb")
    name = f"airlock/acme/metadata/{served.snapshot.signed.version}.snapshot.json"
    archive = tar_of(tmp_path, media, [member(name, data=b"{}")])
    refused(airlock, home, archive, "twice")


@pytest.mark.parametrize("name", ["fw/new\nline.bin", "fw/\x1b[31mred.bin", "fw/\u202etxt.exe", "fw/" + "n" * 256,
                                  "fw/bell\x07.bin"])
def test_hostile_names_in_tar(airlock, served, home, tmp_path, name):
    media = served.write_bundle(tmp_path / "usb")
    refused(airlock, home, tar_of(tmp_path, media, [member("airlock/acme/targets/" + name)]), "unsafe name")


def test_hostile_names_in_directory(airlock, served, home, tmp_path):
    media = served.write_bundle(tmp_path / "usb")
    targets = os.fsencode(media / "airlock/acme/targets")
    for raw in (b"bad\xff\xfename.bin", b"esc\x1b[2J.bin", "bidi\u202e.bin".encode(), b"x" * 255):
        path = os.path.join(targets, raw)
        open(path, "wb").close()
        refused(airlock, home, media)
        os.unlink(path)


def test_truncated_archive(airlock, served, home, tmp_path):
    archive = tar_of(tmp_path, served.write_bundle(tmp_path / "usb"), gz=True)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    refused(airlock, home, archive, "archive")


def test_not_an_archive(airlock, served, home, tmp_path):
    bogus = tmp_path / "bundle.zip"
    bogus.write_bytes(b"PK\x03\x04" + b"\0" * 600)
    refused(airlock, home, bogus, "neither a folder, a .tar nor a .tar.gz")


def test_verification_uses_the_appliances_copy(served, home, tmp_path):
    """A file changed on the stick after it was copied cannot reach devices."""
    from server import bind_database
    from server.repositories.store import RepositoryStore
    from server.settings import load_settings
    from signing.bundle import scan_bundle
    from signing.report import verify_staged_bundle

    settings = load_settings(home)
    bind_database(settings)
    media = served.write_bundle(tmp_path / "usb")
    store = RepositoryStore(settings.public_dir, "acme")
    staged = scan_bundle(media, tmp_path / "staging")
    [verified] = verify_staged_bundle(
        staged, lambda name: (store.trusted_state(), store.read_metadata, lambda rel: store.has_target(rel) or None))
    tf = served.targets.signed.targets["fw/b.bin"]
    source = media / f"airlock/acme/targets/fw/{tf.hashes['sha256']}.b.bin"
    source.write_bytes(b"E" * 3000)  # same length, evil content, after verification
    store.publish(verified, grace_period=60)
    published = home / f"public/repos/acme/targets/fw/{tf.hashes['sha256']}.b.bin"
    assert published.read_bytes() == b"B" * 3000


def test_read_error_part_way(tmp_path):
    """An I/O error from the media is a clear refusal, not a traceback."""
    from signing.bundle import BundleLimits, UnsafeBundleError, _Budget, _copy

    class FailingMedia:
        def __init__(self):
            self.calls = 0

        def readinto(self, view):
            self.calls += 1
            if self.calls > 2:
                raise OSError(5, "Input/output error")
            view[:10] = b"0123456789"
            return 10

    with pytest.raises(UnsafeBundleError, match="read error in 'x.bin' after 20 bytes .*media may be damaged"):
        _copy(FailingMedia(), tmp_path / "x.bin", "x.bin", 1000, ["sha256"], _Budget(BundleLimits(), None, None))


def run_in_small_fs(home, size: str, *args):
    """`airlock import` with the appliance's staging folder on a small tmpfs,
    in a private mount namespace (the mount vanishes with the process)."""
    script = (f'mount -t tmpfs -o size={size} tmpfs "$1/staging" && shift && exec "$@"')
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(home), sys.executable, "-m",
                           "appliance.cli", "--home", str(home), *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_free_space_is_checked_from_signed_lengths(airlock, served, home, tmp_path):
    from tests.support.simulator import RepoSim  # noqa: F401 - same simulator as `served`

    served.add_target("fw/big.bin", b"G" * (3 << 20))
    served.publish()
    media = served.write_bundle(tmp_path / "usb")
    before = tree_state(home)
    # staging (and so the free space the check sees) is a 2 MiB file system
    import appliance.importer as importer
    assert importer.FREE_SPACE_MARGIN > 0
    proc = run_in_small_fs(home, "2m", "import", media)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "bytes are free" in proc.stderr and "signed lengths" in proc.stderr
    assert tree_state(home) == before


def test_disk_full_while_copying_metadata(airlock, served, home, tmp_path):
    media = served.write_bundle(tmp_path / "usb")
    bloat = media / "airlock/acme/metadata/99.unused.json"
    bloat.write_bytes(b" " * (1 << 20))
    before = tree_state(home)
    proc = run_in_small_fs(home, "256k", "import", media)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "disk filled up" in proc.stderr
    assert tree_state(home) == before


def test_nothing_is_left_in_staging_after_a_crash(airlock, served, home, tmp_path):
    leftover = home / "staging" / "20260101T000000-deadbeef"
    leftover.mkdir()
    (leftover / "half.bin").write_bytes(b"half")
    r = airlock("import", served.write_bundle(tmp_path / "usb"))
    assert r.code == 0, r.err
    assert os.listdir(home / "staging") == []


def test_only_tar_and_folders(airlock, served, home, tmp_path):
    media = served.write_bundle(tmp_path / "usb")
    shutil.make_archive(str(tmp_path / "bundle"), "bztar", media)
    refused(airlock, home, tmp_path / "bundle.tar.bz2", "neither a folder, a .tar nor a .tar.gz")
