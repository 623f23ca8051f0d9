"""`airlock backup` and `airlock restore` end to end: a real appliance with
history (tests/functional/export/conftest.py) backed up while a real
`airlock serve` takes check-ins, restored onto a fresh home, and compared:
the same id, keys (the export chain continues, checked by `airlock-sign
export verify --previous`), devices and tokens (a device checks in with its
old token against the restored appliance, served), published trees (a
python-tuf client fetches) and audit log.  A flipped byte, a cut file and a
wrong passphrase change nothing; a home with data is not replaced unless
forced."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from tuf.ngclient import Updater

from tests.conftest import run_airlock, sign_cli
from tests.functional.devices.client import ApiClient
from tests.functional.export.conftest import Site, build_site
from tests.support import homedb
from tests.support.server import airlock_server, free_port

PASSPHRASE = "plant backup passphrase 2026"
DEVICES = ("exp-0", "exp-1", "exp-2")
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def files_under(root: Path) -> dict[str, str]:
    """Every file (sha256), link (its target) and folder under ``root``.
    The database counts as what it holds, read through SQLite, WAL
    included (``homedb.database_bytes``: opening the file here would drop
    this process's locks on it); SQLite's side files (-wal, -shm, -journal)
    are left out."""
    out: dict[str, str] = {}
    for folder, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            if name.endswith(SQLITE_SIDE_FILES):
                continue
            p = Path(folder) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            elif name == "airlock.db":
                out[rel] = hashlib.sha256(homedb.database_bytes(p)).hexdigest()
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def tables(home: Path) -> dict[str, list]:
    con = sqlite3.connect(home / "airlock.db")
    names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                       "'sqlite_%' ORDER BY name")]
    out = {n: con.execute(f"SELECT * FROM {n} ORDER BY 1").fetchall() for n in names}  # noqa: S608
    con.close()
    return out


def checkins(home: Path) -> int:
    con = sqlite3.connect(home / "airlock.db")
    (n,) = con.execute("SELECT COALESCE(SUM(checkins), 0) FROM device").fetchone()
    con.close()
    return n


class CheckinLoad:
    """Devices checking in against a served appliance in a thread, bounded
    in count and time; counts answers by status."""

    def __init__(self, base: str, tokens: dict[str, str], limit: int = 3000, seconds: float = 120):
        self.base, self.tokens, self.limit, self.seconds = base, tokens, limit, seconds
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = ApiClient(self.base, timeout=10)
        deadline = time.monotonic() + self.seconds
        for i in range(self.limit):
            if self.stop.is_set() or time.monotonic() > deadline:
                break
            device = DEVICES[i % len(DEVICES)]
            try:
                r = client.post("/api/v1/checkin", {"firmware": "1.0.0", "metrics": {"uptime_s": 1000 + i}},
                                {"Authorization": f"Bearer {self.tokens[device]}"})
            except OSError as exc:
                self.failures.append(f"{device}: {exc}")
                continue
            if r.status == 200:
                self.ok += 1
            else:
                self.failures.append(f"{device}: {r.status} {r.body[:200]!r}")
        client.close()

    def wait_for(self, count: int, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while self.ok < count and time.monotonic() < deadline and self.thread.is_alive():
            time.sleep(0.05)
        assert self.ok >= count, (self.ok, self.failures[:3])


@pytest.fixture(autouse=True)
def quiet_bind(monkeypatch):
    """Restore refuses while an Airlock answers on the configured bind: point
    it at a free port, so that a `make demo` on 127.0.0.1:8080 elsewhere on
    this machine is not taken for this home's server."""
    monkeypatch.setenv("AIRLOCK_BIND", f"127.0.0.1:{free_port()}")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    from server.reports.labels import form_secret

    built = build_site(tmp_path_factory.mktemp("backup"))
    form_secret(built.home / "state")  # made on the label form's first use: it must come back too
    return built


def passphrase_file(folder: Path, text: str = PASSPHRASE) -> Path:
    path = folder / "backup-passphrase"
    path.write_text(text + "\n")
    return path


def test_round_trip_under_load(site, tmp_path):
    exports, backups = tmp_path / "exports", tmp_path / "backups"
    exports.mkdir()
    backups.mkdir()
    pw = passphrase_file(tmp_path)
    r = site.airlock("export", exports)
    assert r.code == 0, r.err
    first_export = next(exports.iterdir())
    tokens = {d: site.secrets[f"token of {d}"].decode() for d in DEVICES}

    with airlock_server(site.home, workers=2) as base:
        load = CheckinLoad(base, tokens)
        load.thread.start()
        load.wait_for(20)
        before = checkins(site.home)
        r = site.airlock("backup", backups, "--passphrase-file", pw)
        after = checkins(site.home)
        load.wait_for(load.ok + 20)  # the server still takes check-ins after the backup
        load.stop.set()
        load.thread.join(30)
    assert r.code == 0, r.err
    assert not load.failures, load.failures[:5]
    assert after >= before
    (backup,) = backups.iterdir()
    assert backup.name.startswith("airlock-backup-") and backup.name.endswith(".tar.enc") and str(backup) in r.out
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    assert hashlib.sha256(backup.read_bytes()).hexdigest() in r.out
    data = backup.read_bytes()
    for name, secret in site.secrets.items():  # the backup is encrypted: no secret shows
        assert secret not in data, name

    fresh = tmp_path / "fresh"
    assert run_airlock(fresh, "init").code == 0  # a just-initialised home: its own new id and key
    r = run_airlock(fresh, "restore", backup, "--passphrase-file", pw)
    assert r.code == 0, r.err
    assert "restored appliance" in r.out and not list(fresh.glob("replaced-*"))

    # the same appliance: id, key, form secret, trees, attachments
    for rel in ("appliance-id", "appliance-key.pem", "state/form-secret"):
        assert (fresh / rel).read_bytes() == (site.home / rel).read_bytes(), rel
    assert oct((fresh / "appliance-key.pem").stat().st_mode & 0o777) == "0o600"
    assert run_airlock(fresh, "keys", "show").out == site.airlock("keys", "show").out
    for rel in ("public", "reports/blobs"):
        assert files_under(fresh / rel) == files_under(site.home / rel), rel
    assert before <= checkins(fresh) <= after  # one snapshot, taken during the backup
    restored, original = tables(fresh), tables(site.home)
    for table in ("repository", "import_record", "user", "device_key", "firmware_release", "report",
                  "report_attachment", "export_record", "auto_accept_rule"):
        assert restored[table] == original[table], table
    r = run_airlock(fresh, "audit", "verify")
    assert r.code == 0 and "chain intact" in r.out, r.out + r.err
    assert run_airlock(fresh, "repo", "show", "acme").out == site.airlock("repo", "show", "acme").out

    # served: a device checks in with its old token; a TUF client fetches
    with airlock_server(fresh) as base:
        client = ApiClient(base)
        answer = client.post("/api/v1/checkin", {"firmware": "1.0.0", "metrics": {"uptime_s": 5}},
                             {"Authorization": f"Bearer {tokens['exp-2']}"})
        assert answer.status == 200, answer.body
        assert client.post("/api/v1/checkin", {"firmware": "1.0.0", "metrics": {}},
                           {"Authorization": "Bearer not-a-token"}).status == 401
        client.close()
        meta, dl = tmp_path / "device-meta", tmp_path / "device-dl"
        meta.mkdir()
        dl.mkdir()
        updater = Updater(metadata_dir=str(meta), metadata_base_url=f"{base}/repos/acme/metadata/",
                          target_base_url=f"{base}/repos/acme/targets/", target_dir=str(dl),
                          bootstrap=site.sim.first_root())
        updater.refresh()
        info = updater.get_targetinfo("plc-x/fw-2.0.0.bin")
        assert info is not None
        assert Path(updater.download_target(info)).read_bytes() == b"firmware two" * 100

    # the export chain continues from the last export before the backup
    first_export.rename(tmp_path / first_export.name)
    r = run_airlock(fresh, "export", exports)
    assert r.code == 0, r.err
    (second_export,) = exports.iterdir()
    assert "-000002.tar" in second_export.name
    code, out, err = sign_cli("export", "verify", second_export, "--appliance-key", site.appliance_pub(),
                              "--previous", tmp_path / first_export.name)
    assert code == 0, out + err


def test_quiet_backup_restores_every_row(site, tmp_path):
    """With nothing running, the restored database equals the original row
    for row (but for the audit records of the backup and the restore)."""
    pw = passphrase_file(tmp_path)
    (tmp_path / "usb").mkdir()
    r = site.airlock("backup", tmp_path / "usb", "--passphrase-file", pw)
    assert r.code == 0, r.err
    (backup,) = (tmp_path / "usb").iterdir()
    target = tmp_path / "new"
    assert run_airlock(target, "restore", backup, "--passphrase-file", pw).code == 0  # no home yet at all
    original, restored = tables(site.home), tables(target)
    assert original["audit_log"][-1][3] == "appliance.backup"
    assert restored["audit_log"][-1][3] == "appliance.restore"
    assert restored.pop("audit_log")[:-1] == original.pop("audit_log")[:-1]
    assert restored == original
    assert files_under(target / "public") == files_under(site.home / "public")


def test_refusals_change_nothing(site, tmp_path):
    pw = passphrase_file(tmp_path)
    (tmp_path / "usb").mkdir()
    assert site.airlock("backup", tmp_path / "usb", "--passphrase-file", pw).code == 0
    (backup,) = (tmp_path / "usb").iterdir()
    data = backup.read_bytes()

    other = tmp_path / "other"
    assert run_airlock(other, "init").code == 0
    (other / "state" / "import.lock").touch()  # what any import leaves: the empty lock files
    (other / "state" / "export.lock").touch()
    state = files_under(other)

    def refused(source: Path, *fragments: str, passphrase: Path = pw, home: Path = other) -> None:
        r = run_airlock(home, "restore", source, "--passphrase-file", passphrase)
        assert r.code == 1, r.out
        line = r.err.strip()
        assert line.startswith("airlock: error: ") and "\n" not in line, line
        for fragment in fragments:
            assert fragment in line, line
        assert files_under(other) == state

    for at in (len(data) // 2, len(data) - 1, 100):  # a byte flipped in the middle, the last chunk, the header
        flipped = bytearray(data)
        flipped[at] ^= 0x01
        (tmp_path / "flipped.enc").write_bytes(bytes(flipped))
        refused(tmp_path / "flipped.enc", "nothing was restored")
    (tmp_path / "cut.enc").write_bytes(data[: len(data) - 40])
    refused(tmp_path / "cut.enc", "use another copy")
    (tmp_path / "longer.enc").write_bytes(data + b"\0" * 32)
    refused(tmp_path / "longer.enc", "use another copy")
    other_passphrase = passphrase_file(tmp_path / "usb", "some other passphrase")
    refused(backup, "the passphrase does not open", passphrase=other_passphrase)
    (tmp_path / "usb" / "backup-passphrase").unlink()
    refused(tmp_path / "no-such-file.enc", "is not a file")
    refused(pw, "is not an Airlock backup")

    # a home with data is replaced only when forced, and kept aside
    before = files_under(site.home), tables(site.home)
    r = run_airlock(site.home, "restore", backup, "--passphrase-file", pw)
    assert r.code == 1 and "holds an appliance with data" in r.err and "--force" in r.err, r.err
    assert (files_under(site.home), tables(site.home)) == before

    with airlock_server(other) as base, pytest.MonkeyPatch.context() as env:  # not under a running serve
        env.setenv("AIRLOCK_BIND", base.removeprefix("http://"))
        # what the running serve itself keeps there (its log, its lock files) is not the restore's doing
        serving = {k: v for k, v in files_under(other).items() if k != "serve.log"}
        r = run_airlock(other, "restore", backup, "--passphrase-file", pw, "--force")
        assert r.code == 1 and "airlock serve answers on" in r.err and "stop it first" in r.err, r.err
        assert {k: v for k, v in files_under(other).items() if k != "serve.log"} == serving
    (other / "serve.log").unlink()
    assert set(files_under(other)) - set(state) <= {"run", "run/alert-sweep.lock", "airlock.db-write.lock"}
    assert {k: v for k, v in files_under(other).items() if k in state} == state

    r = run_airlock(other, "restore", backup, "--passphrase-file", pw, "--force")  # just initialised: no data
    assert r.code == 0, r.err
    r = run_airlock(other, "restore", backup, "--passphrase-file", pw)
    assert r.code == 1 and "devices" in r.err, r.err
    r = run_airlock(other, "restore", backup, "--passphrase-file", pw, "--force")
    assert r.code == 0, r.err
    (kept,) = other.glob("replaced-*")
    assert str(kept) in r.out and (kept / "airlock.db").exists() and (kept / "appliance-key.pem").exists()


def test_backup_refusals(site, tmp_path):
    pw = passphrase_file(tmp_path)
    r = site.airlock("backup", tmp_path / "missing", "--passphrase-file", pw)
    assert r.code == 1 and "is not a folder" in r.err, r.err
    r = site.airlock("backup", site.home / "public", "--passphrase-file", pw)
    assert r.code == 1 and "inside the appliance's home" in r.err, r.err
    short = tmp_path / "short"
    short.write_text("too short\n")
    r = site.airlock("backup", tmp_path, "--passphrase-file", short)
    assert r.code == 1 and "at least 12 characters" in r.err, r.err
    r = site.airlock("backup", tmp_path)
    assert r.code == 1 and "--passphrase-file" in r.err, r.err
    assert not list(tmp_path.glob("*airlock-backup-*"))


def test_keep_removes_only_this_appliances_oldest_backups(site, tmp_path):
    pw = passphrase_file(tmp_path)
    dest = tmp_path / "usb"
    dest.mkdir()
    appliance = (site.home / "appliance-id").read_text().strip()
    old = [f"airlock-backup-{appliance}-2020010{d}T000000Z.tar.enc" for d in (1, 2, 3)]
    for name in old:
        (dest / name).write_bytes(b"an older backup")
    others = ["airlock-backup-airlock-0123456789ab-20200101T000000Z.tar.enc",  # another appliance's
              f"airlock-backup-{appliance}-20200101T000000Z.tar.enc.copy", "notes.txt"]
    for name in others:
        (dest / name).write_bytes(b"not ours to remove")
    link = dest / f"airlock-backup-{appliance}-20190101T000000Z.tar.enc"
    link.symlink_to(dest / "notes.txt")
    r = site.airlock("backup", dest, "--passphrase-file", pw, "--keep", "2")
    assert r.code == 0, r.err
    assert f"removed 2 older: {old[0]}, {old[1]}" in r.out, r.out
    left = {p.name for p in dest.iterdir()}
    (new,) = left - {old[2], *others, link.name}  # the backup just written, and nothing else of ours
    assert new.startswith(f"airlock-backup-{appliance}-") and new in r.out and not {old[0], old[1]} & left
    r = site.airlock("backup", dest, "--passphrase-file", pw, "--keep", "0")
    assert r.code == 1 and "--keep must be at least 1" in r.err, r.err
