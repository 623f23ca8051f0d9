"""A crafted backup (an attacker who knows the passphrase, or a mix-up) is
refused whole and leaves the home as it was: chained links that lead out of
the restore folder, sparse files that fill the disk, a header tarfile would
read whole into memory, and a database whose migration fails."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from appliance.backup.crypto import EncryptingWriter
from appliance.backup.service import MANIFEST
from tests.conftest import run_airlock
from tests.support import homedb

PASSPHRASE = b"correct horse battery staple"


def _backup(out: Path, home: Path, build, fmt=tarfile.PAX_FORMAT, database: Path | None = None) -> Path:
    with open(out, "wb") as f:
        w = EncryptingWriter(f.write, PASSPHRASE)
        tar = tarfile.open(fileobj=w, mode="w|", format=fmt)  # type: ignore[call-overload]  # noqa: SIM115

        def add(name: str, data: bytes = b"", **kw) -> None:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o640
            for k, v in kw.items():
                setattr(ti, k, v)
            tar.addfile(ti, io.BytesIO(data) if ti.isfile() else None)

        manifest = {"format": "airlock-backup", "version": 1, "appliance_id": "x", "made_at": "2026-01-01T00:00:00Z",
                    "schema": 0}
        add(MANIFEST, json.dumps(manifest).encode())
        add("airlock.db", homedb.database_bytes(database or home / "airlock.db"))
        for name in ("appliance-id", "appliance-key.pem"):
            add(name, (home / name).read_bytes())
        build(add, tar)
        tar.close()
        w.close()
    return out


def _restore(tmp_path: Path, backup: Path) -> tuple[int, str, Path]:
    target = tmp_path / "target"
    assert run_airlock(target, "init").code == 0
    (tmp_path / "pw").write_bytes(PASSPHRASE)
    def listing() -> list[str]:  # lock files and the log come and go with any command
        return sorted(str(p.relative_to(target)) for p in target.rglob("*")
                      if "log" not in p.parts and not p.name.endswith(".lock"))

    before = listing()
    r = run_airlock(target, "restore", backup, "--passphrase-file", tmp_path / "pw")
    after = listing()
    assert after == before, "a refused restore changed the home"
    return r.code, r.err, target


@pytest.fixture
def source(tmp_path) -> Path:
    home = tmp_path / "source"
    assert run_airlock(home, "init").code == 0
    return home


def test_chained_links_out_of_the_restore_folder_are_refused(source, tmp_path):
    outside = tmp_path / "outside-written"

    def build(add, _tar):
        add("public", type=tarfile.DIRTYPE, mode=0o750)
        add("public/l1", type=tarfile.SYMTYPE, linkname=".")
        name = "public/" + "l1/" * 30 + "R"
        add(name, type=tarfile.SYMTYPE, linkname="../" * 30)
        add(name + str(outside), b"written outside the home\n")

    code, err, _ = _restore(tmp_path, _backup(tmp_path / "escape.enc", source, build))
    assert code == 1 and "is not a repository's metadata link" in err, err
    assert not outside.exists()


def test_a_link_to_the_database_under_public_is_refused(source, tmp_path):
    def build(add, _tar):
        for d in ("public", "public/repos", "public/repos/x", "public/repos/x/targets"):
            add(d, type=tarfile.DIRTYPE, mode=0o750)
        add("public/repos/x/targets/db", type=tarfile.SYMTYPE, linkname="../../../../airlock.db")

    code, err, target = _restore(tmp_path, _backup(tmp_path / "expose.enc", source, build))
    assert code == 1 and "is not a repository's metadata link" in err, err
    assert not os.path.lexists(target / "public/repos/x")


def test_a_member_larger_than_the_free_space_is_refused_before_a_byte_is_written(source, tmp_path):
    """A header may claim any size (a sparse member, or a plain one): the
    sizes are counted against the disk's free space as the headers come."""

    def build(_add, tar):
        info = tarfile.TarInfo("reports/blobs/huge")
        info.size = 1 << 50  # a PiB: its header alone is written, the restore must stop there
        tar.fileobj.write(info.tobuf(tarfile.PAX_FORMAT))

    code, err, target = _restore(tmp_path, _backup(tmp_path / "huge.enc", source, build))
    assert code == 1 and "more than the free space" in err, err
    assert not (target / "reports/blobs/huge").exists()


def test_an_oversized_extended_header_is_refused_without_reading_it(source, tmp_path):
    def build(_add, tar):
        info = tarfile.TarInfo("public/x")
        info.pax_headers = {"comment": "x" * (2 << 20)}  # 2 MiB: over the 1 MiB any backup needs
        tar.addfile(info, io.BytesIO(b""))

    code, err, _ = _restore(tmp_path, _backup(tmp_path / "pax.enc", source, build))
    assert code == 1 and "extended header" in err, err


def test_a_database_whose_migration_fails_leaves_the_home_as_it_was(source, tmp_path):
    import sqlite3

    broken = tmp_path / "broken.db"
    broken.write_bytes(homedb.database_bytes(source / "airlock.db"))
    con = sqlite3.connect(broken)
    con.execute("DELETE FROM schema_migration WHERE version = (SELECT MAX(version) FROM schema_migration)")
    con.commit()
    con.close()

    backup = _backup(tmp_path / "mig.enc", source, lambda _add, _tar: None, database=broken)
    code, err, target = _restore(tmp_path, backup)
    assert code == 1 and "cannot be upgraded" in err and "nothing was restored" in err, err
