"""`make dist` and `install.sh`: the offline install and the upgrade, as
docs/install.md tells them, with no network.

The dist is built once per module (packaging/build_dist.py, wheels cached in
the test's tmp).  Each install runs as root in private network and mount
namespaces (``unshare --net --mount``): no route anywhere, and the paths
install.sh writes (/etc, /opt, /var/lib, /var/backups, /usr/local/bin,
/usr/share/doc, /root, /media) are the test's own folders bound over the
real ones, so it runs with its real defaults (useradd, /opt/airlock, the
units) and touches nothing of this machine.  /run is an empty tmpfs: no
systemd runs, as in a container, and install.sh says so.

The upgrade test installs the release made from an older commit (``git
archive`` of migration 0009's time, the schema before the console) with
that commit's own code, fills its home through that code (repository,
import, devices enrolled and checked in, a report, an admin), then
installs this tree's dist over it: a backup first (by the old release),
migration 0010, and everything still there."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

import pytest

from tests.functional.test_docs_run import block, substitute
from tests.support.simulator import RepoSim

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# the last commit before migration 0010 (the console): backup, status, schema 9
OLDER = "69900d01703ba4d866daef9e1bd65b2777d0c868"
BOUND = {"etc": "/etc", "opt": "/opt", "var-lib": "/var/lib", "var-backups": "/var/backups",
         "usr-local-bin": "/usr/local/bin", "usr-share-doc": "/usr/share/doc", "root": "/root", "media": "/media"}
PASSPHRASE = "upgrade backup passphrase, long enough"

pytestmark = pytest.mark.slow


def require_root_tools() -> None:
    missing = [c for c in ("unshare", "runuser", "useradd", "sha256sum", "git") if shutil.which(c) is None]
    assert not missing, f"the install tests need {missing} (run `sh tests/prereqs.sh` as root; `make test` does)"
    assert os.geteuid() == 0, "the install tests need root (useradd, mounts in a private namespace)"
    assert Path("/usr/bin/python3").exists(), "the install tests need Debian's python3 (apt-get install python3-venv)"


def build_dist(source: Path, out: Path, cache: Path) -> Path:
    proc = subprocess.run([sys.executable, str(ROOT / "packaging" / "build_dist.py"), "--source", str(source),
                           "--out", str(out), "--wheel-cache", str(cache)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out / f"airlock-{VERSION}.tar.gz"


@pytest.fixture(scope="module")
def wheel_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wheel-cache")


@pytest.fixture(scope="module")
def dist(tmp_path_factory, wheel_cache) -> Path:
    require_root_tools()
    return build_dist(ROOT, tmp_path_factory.mktemp("dist"), wheel_cache)


class Box:
    """A Debian box with no network: this machine, seen through private
    namespaces with the install's folders bound to the test's own."""

    def __init__(self, root: Path):
        self.root = root
        for name in BOUND:
            (root / name).mkdir(parents=True, exist_ok=True)
        shutil.rmtree(root / "etc")
        shutil.copytree("/etc", root / "etc", symlinks=True)
        (root / "media" / "usb").mkdir()
        for p in (root, root / "media", root / "media" / "usb"):
            p.chmod(0o755)

    def path(self, inside: str) -> Path:
        """Where a path inside the box lives here."""
        for name, real in sorted(BOUND.items(), key=lambda kv: -len(kv[1])):
            if inside == real or inside.startswith(real + "/"):
                return self.root / name / inside[len(real):].lstrip("/")
        raise ValueError(inside)

    def run(self, script: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        mounts = "".join(f"mount --bind {self.root / name} {real}\n" for name, real in BOUND.items())
        prologue = f"set -eu\n{mounts}mount -t tmpfs tmpfs /run\nmount -t tmpfs tmpfs /tmp\ncd /\n"
        base = {"PATH": "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        return subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "bash", "-c",
                               prologue + script], capture_output=True, text=True, timeout=timeout,
                              env={**base, **(env or {})})

    def ok(self, script: str, env: dict | None = None) -> str:
        proc = self.run(script, env)
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout + proc.stderr


def put_media(box: Box, sim: RepoSim) -> str:
    """The vendor's stick: the bundle as airlock/ and the first root; its fingerprint."""
    usb = box.path("/media/usb")
    sim.write_bundle(usb)
    root = sim.first_root()
    (usb / f"{sim.name}-1.root.json").write_bytes(root)
    for p in [usb, *usb.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return hashlib.sha256(root).hexdigest()


def install_block(dist_archive: Path, box: Box) -> str:
    shutil.copy2(dist_archive, box.path("/media/usb") / dist_archive.name)
    return substitute(block("install"), {"VERSION": VERSION})


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_offline_install_from_the_dist_then_init_pin_import_status(dist, tmp_path):
    box = Box(tmp_path / "box")
    sim = RepoSim("acme")
    sim.add_target("plc-x/fw-1.2.0.bin", b"firmware 1.2.0" * 500, version="1.2.0")
    sim.publish()
    fingerprint = put_media(box, sim)
    # the network really is gone in there
    assert "lo" in box.ok("ip -o link") and "eth" not in box.ok("ip -o link")
    assert box.run(f"{sys.executable} -c 'import socket; socket.create_connection((\"1.1.1.1\", 53), 3)'"
                   ).returncode != 0

    # Debian's python3 without python3-venv has no ensurepip: install.sh does not need it
    ensurepip = "/usr/lib/python3.11/ensurepip"
    assert Path(ensurepip).is_dir()
    out = box.ok(f"mount -t tmpfs tmpfs {ensurepip}\n" + install_block(dist, box))
    assert "systemd is not running here" in out
    assert f"Airlock {VERSION} is installed" in out

    # what install.sh made, seen from outside the box
    current = box.path("/opt/airlock")
    assert current.is_symlink() and os.readlink(current).startswith("/opt/airlock-releases/")
    for tool in ("airlock", "airlock-sign", "airlock-agent"):
        assert os.readlink(box.path(f"/usr/local/bin/{tool}")) == f"/opt/airlock/bin/{tool}"
    home = box.path("/var/lib/airlock")
    assert mode(home) == 0o750 and mode(home / "airlock.db") == 0o600
    assert mode(home / "appliance-key.pem") == 0o600
    passwd = (box.path("/etc") / "passwd").read_text()
    entry = next(line for line in passwd.splitlines() if line.startswith("airlock:")).split(":")
    assert entry[5] == "/var/lib/airlock" and entry[6] == "/usr/sbin/nologin" and int(entry[2]) < 1000
    assert home.stat().st_uid == int(entry[2]) and (home / "airlock.db").stat().st_uid == int(entry[2])
    units = box.path("/etc/systemd/system")
    for unit in (ROOT / "systemd").iterdir():
        assert (units / unit.name).read_bytes() == unit.read_bytes()
    assert (box.path("/etc/udev/rules.d") / "99-airlock-usb.rules").read_bytes() == \
        (ROOT / "udev" / "99-airlock-usb.rules").read_bytes()
    confs = sorted((ROOT / "docs").glob("nginx-*.conf"))
    assert ROOT / "docs" / "nginx-airlock.conf" in confs
    for conf in confs:
        assert (box.path("/etc/airlock") / conf.name).read_bytes() == conf.read_bytes()
    assert (box.path("/usr/share/doc/airlock") / "install.md").exists()

    # then the guide's first steps, as the service user, with the installed venv
    out = box.ok(block("first-appliance"), env={"FINGERPRINT": fingerprint})
    assert "imported" in out.lower() and "acme" in out
    status = json.loads(box.ok("runuser -u airlock -- airlock status --json"))
    assert [r["name"] for r in status["served"]["repositories"]] == ["acme"]
    assert status["served"]["repositories"][0]["state"] in ("ok", "expires soon")  # short-lived timestamp
    assert status["served"]["last_import"] is not None


def test_a_damaged_dist_is_refused_before_anything_changes(dist, tmp_path):
    box = Box(tmp_path / "box")
    folder = box.path("/root")
    with tarfile.open(dist) as tar:
        tar.extractall(folder, filter="data")
    wheel = next((folder / f"airlock-{VERSION}" / "wheels").glob("airlock-*.whl"))
    wheel.write_bytes(wheel.read_bytes()[:-10] + b"0123456789")
    proc = box.run(f"sh /root/airlock-{VERSION}/install.sh")
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("install.sh: error: the dist's files do not match SHA256SUMS")
    assert not any(box.path("/opt").iterdir()) and not any(box.path("/var/lib").iterdir())
    assert "airlock:" not in (box.path("/etc") / "passwd").read_text()


# --- upgrades ------------------------------------------------------------------------------

OLD_POPULATE = r'''
import base64, json, secrets, sys
from datetime import datetime, timezone
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from server import create_app
from server.settings import load_settings

client = create_app(load_settings("/var/lib/airlock")).test_client()
tokens = {}
for n in range(3):
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    fields = {"device_id": f"plc-{n}", "hardware": "plc-x", "firmware": "1.0.0",
              "public_key": base64.b64encode(raw).decode(), "nonce": secrets.token_hex(16),
              "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "enrollment_token": sys.argv[1]}
    signed = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    r = client.post("/api/v1/enroll", json={**fields, "signature": base64.b64encode(key.sign(signed)).decode()})
    assert r.status_code == 200, r.get_data(as_text=True)
    tokens[fields["device_id"]] = r.get_json()["token"]
    auth = {"Authorization": "Bearer " + tokens[fields["device_id"]]}
    r = client.post("/api/v1/checkin", json={"firmware": "1.0.0", "metrics": {"uptime_s": 60 + n}}, headers=auth)
    assert r.status_code == 200, r.get_data(as_text=True)
report = {"report_id": "9b2f6c1e-3d4a-4f5b-8c7d-1e2f3a4b5c6d", "kind": "crash", "severity": "critical",
          "message": "hard fault in task modbus", "firmware": "1.0.0",
          "attachments": [{"name": "dmesg.txt", "content": base64.b64encode(b"soft lockup\n").decode()}]}
r = client.post("/api/v1/reports", json=report, headers={"Authorization": "Bearer " + tokens["plc-2"]})
assert r.status_code == 201, r.get_data(as_text=True)
print(json.dumps(tokens))
'''

# the service runs; the timers' one-shot services are inactive between runs
FAKE_SYSTEMD = r"""
mkdir -p /run/systemd/system /tmp/manager
for tool in systemctl udevadm; do
    printf '%s\n' '#!/bin/sh' \
        "echo \"$tool \$*; backups \$(ls /var/backups/airlock 2>/dev/null | wc -l)\" >> /var/lib/service-manager.log" \
        'case "$*" in "is-active --quiet airlock-backup.service") exit 1;; esac' \
        'case "$*" in "is-active --quiet airlock-timestamp.service") exit 1;; esac' \
        'exit 0' > /tmp/manager/$tool
    chmod 755 /tmp/manager/$tool
done
export PATH=/tmp/manager:$PATH
"""

NEW_CHECKIN = r'''
import json, sys
from server import create_app
from server.settings import load_settings

client = create_app(load_settings("/var/lib/airlock")).test_client()
r = client.post("/api/v1/checkin", json={"firmware": "1.0.0", "metrics": {"uptime_s": 999}},
                headers={"Authorization": "Bearer " + sys.argv[1]})
print(r.status_code)
'''


@pytest.fixture(scope="module")
def older_dist(tmp_path_factory, wheel_cache) -> Path:
    """The release as it was built at OLDER, from that commit's own files."""
    require_root_tools()
    source = tmp_path_factory.mktemp("older-source")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", OLDER], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    assert sorted(p.name for p in (source / "server" / "migrations").glob("*.sql"))[-1].startswith("0009_")
    return build_dist(source, tmp_path_factory.mktemp("older-dist"), wheel_cache)


def table_counts(db: Path) -> dict[str, int]:
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 - our own table names
                for t in ("repository", "import_record", "device", "report", "metric_sample", "app_user")
                if con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (t,)).fetchone()}
    finally:
        con.close()


def test_upgrade_from_the_previous_release_keeps_the_home_backs_up_and_migrates(dist, older_dist, tmp_path):
    box = Box(tmp_path / "box")
    sim = RepoSim("acme")
    sim.add_target("plc-x/fw-1.2.0.bin", b"firmware 1.2.0" * 500, version="1.2.0")
    sim.publish()
    fingerprint = put_media(box, sim)
    usb = box.path("/media/usb")
    (usb / "admin-password").write_text("an admin password, long enough\n")
    (usb / "enroll-token").write_text("commissioning-token-0123456789\n")
    for name in ("admin-password", "enroll-token"):
        (usb / name).chmod(0o644)
    (usb / "older").mkdir(mode=0o755)
    shutil.copy2(older_dist, usb / "older" / older_dist.name)  # the new dist has the same name

    # the previous release, installed and used
    out = box.ok(f"""
rm -rf /root/airlock-{VERSION}
tar -xzf /media/usb/older/{older_dist.name} -C /root
sh /root/airlock-{VERSION}/install.sh
rm -rf /root/airlock-{VERSION}
as() {{ runuser -u airlock -- "$@"; }}
as airlock init --admin admin --password-file /media/usb/admin-password
as airlock repo add acme --root /media/usb/acme-1.root.json --fingerprint {fingerprint}
as airlock import /media/usb/airlock
as airlock devices auto-accept add --hardware plc-x --token-file /media/usb/enroll-token
as /opt/airlock/bin/python -c '{OLD_POPULATE}' commissioning-token-0123456789 > /var/lib/airlock/../tokens.json
as airlock status
""")
    home = box.path("/var/lib/airlock")
    tokens = json.loads((box.path("/var/lib") / "tokens.json").read_text())
    old_release = os.readlink(box.path("/opt/airlock"))
    before = table_counts(home / "airlock.db")
    assert before["device"] == 3 and before["report"] == 1 and before["import_record"] == 1
    import sqlite3
    con = sqlite3.connect(home / "airlock.db")
    assert max(v for (v,) in con.execute("SELECT version FROM schema_migration")) == 9
    con.close()
    appliance_id = (home / "appliance-id").read_text()
    key = (home / "appliance-key.pem").read_bytes()
    published = {p.relative_to(home): p.read_bytes() for p in (home / "public").rglob("*") if p.is_file()}

    # no passphrase: the upgrade refuses before changing anything
    script = install_block(dist, box)
    proc = box.run(script)
    assert proc.returncode != 0
    assert "an upgrade takes a backup first and /etc/airlock/backup-passphrase does not exist" in proc.stderr
    assert os.readlink(box.path("/opt/airlock")) == old_release
    assert table_counts(home / "airlock.db") == before

    # with the passphrase where the backup timer keeps it
    pw = box.path("/etc/airlock") / "backup-passphrase"
    pw.write_text(PASSPHRASE + "\n")
    pw.chmod(0o600)
    # and a box whose systemd runs airlock.service: systemctl and udevadm stand in for the service
    # manager (recording each call and how many backups existed then), install.sh is the real one
    out = box.ok(FAKE_SYSTEMD + script)
    assert "upgrading from airlock, version" in out and "applied migration 0010_" in out
    assert "systemd is not running" not in out and "started airlock.service again" in out
    assert (box.path("/var/lib") / "service-manager.log").read_text().splitlines() == [
        "systemctl is-active --quiet airlock-backup.service; backups 0",
        "systemctl is-active --quiet airlock-timestamp.service; backups 0",
        "systemctl is-active --quiet airlock.service; backups 0",
        "systemctl stop airlock.service; backups 0",  # stopped before the backup
        "systemctl daemon-reload; backups 1",  # the new units, after the backup
        "udevadm control --reload; backups 1",
        "systemctl start airlock.service; backups 1",  # started again
    ]
    new_release = os.readlink(box.path("/opt/airlock"))
    assert new_release != old_release
    assert sorted(p.name for p in box.path("/opt/airlock-releases").iterdir()) == \
        sorted(Path(r).name for r in (old_release, new_release))  # the previous one is kept to go back to
    backups = list(box.path("/var/backups/airlock").iterdir())
    assert len(backups) == 1 and backups[0].name.startswith(f"airlock-backup-{appliance_id.strip()}-")

    # everything intact, on the new schema
    assert table_counts(home / "airlock.db").items() >= before.items()
    assert (home / "appliance-id").read_text() == appliance_id and (home / "appliance-key.pem").read_bytes() == key
    assert {p.relative_to(home): p.read_bytes() for p in (home / "public").rglob("*") if p.is_file()} == published
    out = box.ok(f"""
as() {{ runuser -u airlock -- "$@"; }}
as airlock status
as airlock audit verify
as airlock devices list
as /opt/airlock/bin/python -c '{NEW_CHECKIN}' {tokens["plc-0"]}
""")
    assert "plc-0" in out and "plc-2" in out and out.rstrip().endswith("200")
    # the backup taken before the upgrade restores (with the new release: it upgrades the copy)
    box.ok(f"""
install -o airlock -m 0600 /etc/airlock/backup-passphrase /tmp/pw
runuser -u airlock -- airlock --home /tmp/drill restore /var/backups/airlock/{backups[0].name} \\
    --passphrase-file /tmp/pw
runuser -u airlock -- airlock --home /tmp/drill status
""")

    # the older dist run again over the upgraded home: init refuses the newer schema, the release stays
    proc = box.run(f"""
rm -rf /root/airlock-{VERSION}
tar -xzf /media/usb/older/{older_dist.name} -C /root
sh /root/airlock-{VERSION}/install.sh --no-backup
""")
    assert proc.returncode != 0
    assert re.fullmatch(r"install.sh: error: the database in /var/lib/airlock has schema 1\d, newer than this "
                        r"release's \(0009\): this dist is older than the installed Airlock; nothing was changed",
                        proc.stderr.strip()), proc.stderr
    assert os.readlink(box.path("/opt/airlock")) == new_release
    assert len(list(box.path("/var/backups/airlock").iterdir())) == 1
    assert sorted(p.name for p in box.path("/opt/airlock-releases").iterdir()) == \
        sorted(Path(r).name for r in (old_release, new_release))
    assert box.ok("runuser -u airlock -- airlock status").count("repository acme") == 1


def test_an_upgrade_on_postgresql_asks_for_pg_dump_then_migrates_that_database(dist, tmp_path):
    """A home whose database_url names PostgreSQL (no SQLite file in it):
    install.sh knows it for an upgrade, refuses to promise a backup it
    cannot take, and with --no-backup upgrades, reading and migrating
    PostgreSQL through the home's settings."""
    from tests.support.postgres import Cluster

    cluster = Cluster()
    # the socket where the box sees it (its /tmp is its own), reachable by its airlock user
    cluster.dir = Path(tempfile.mkdtemp(prefix="airlock-pg-", dir="/var/tmp"))
    cluster.dir.chmod(0o755)
    cluster.start()
    try:
        cluster.new_database(migrated=False)  # t1: empty; `airlock init` migrates it
        url = f"postgresql://airlock@/t1?host={cluster.dir}&port={cluster.port}"
        box = Box(tmp_path / "box")
        usb = box.path("/media/usb")
        (usb / "admin-password").write_text("an admin password, long enough\n")
        (usb / "admin-password").chmod(0o644)
        script = install_block(dist, box)
        box.ok(script)
        home = box.path("/var/lib/airlock")
        box.ok(f"""
as() {{ runuser -u airlock -- "$@"; }}
echo 'database_url = "{url}"' >> /var/lib/airlock/airlock.toml
as airlock init --admin admin --password-file /media/usb/admin-password
rm /var/lib/airlock/airlock.db*
""")
        assert not list(home.glob("airlock.db*"))
        release = os.readlink(box.path("/opt/airlock"))

        proc = box.run(script)  # the passphrase is there: still no backup of PostgreSQL
        pw = box.path("/etc/airlock") / "backup-passphrase"
        assert proc.returncode != 0
        assert proc.stderr.strip().startswith("install.sh: error: this appliance's database is PostgreSQL "
                                              "(database_url): airlock backup covers"), proc.stderr
        assert "pg_dump" in proc.stderr and proc.stderr.strip().endswith("--no-backup; nothing was changed")
        assert not pw.exists()
        assert os.readlink(box.path("/opt/airlock")) == release
        assert len(list(box.path("/opt/airlock-releases").iterdir())) == 1

        out = box.ok(f"sh /root/airlock-{VERSION}/install.sh --no-backup")
        assert "upgrading from airlock, version" in out and "--no-backup: upgrading without a backup" in out
        assert os.readlink(box.path("/opt/airlock")) != release
        assert not list(home.glob("airlock.db*"))  # nothing fell back to a SQLite file
        box.ok("runuser -u airlock -- airlock status")  # on PostgreSQL, through the socket
        import psycopg2

        con = psycopg2.connect(cluster.url("t1"))
        try:
            con.autocommit = True
            cur = con.cursor()
            cur.execute('SELECT count(*) FROM "user"')
            assert cur.fetchone()[0] == 1  # the administrator init made, in PostgreSQL
            # a newer Airlock migrated the shared database (from another box): this release refuses it,
            # in `airlock init` and in install.sh, also on a box joining the home (no /opt/airlock yet)
            cur.execute("INSERT INTO schema_migration (version, name, applied_at) VALUES (99, 'future', 'x')")
            proc = box.run("runuser -u airlock -- airlock init")
            assert proc.returncode != 0 and "has schema 99, newer than this Airlock" in proc.stderr, proc.stderr
            releases = sorted(box.path("/opt/airlock-releases").iterdir())
            box.path("/opt/airlock").unlink()
            proc = box.run(f"sh /root/airlock-{VERSION}/install.sh --no-backup")
            assert proc.returncode != 0
            assert proc.stderr.strip().endswith("has schema 99, newer than this release's (" +
                                                max(p.name[:4] for p in (ROOT / "server/migrations").glob("0*.sql")) +
                                                "): this dist is older than the installed Airlock; nothing was "
                                                "changed"), proc.stderr
            assert sorted(box.path("/opt/airlock-releases").iterdir()) == releases
            assert not box.path("/opt/airlock").exists()
        finally:
            con.close()
    finally:
        cluster.stop()


def test_init_refuses_a_home_newer_than_the_release(tmp_path):
    from tests.conftest import run_airlock

    home = tmp_path / "home"
    assert run_airlock(home, "init").code == 0
    import sqlite3
    con = sqlite3.connect(home / "airlock.db")
    con.execute("INSERT INTO schema_migration (version, name, applied_at) VALUES (9999, 'from_the_future', 'x')")
    con.commit()
    con.close()
    r = run_airlock(home, "init")
    assert r.code != 0
    assert "newer than this Airlock" in r.err and "\n" not in r.err.strip()


def test_make_dist_runs_the_builder_into_dist():
    proc = subprocess.run(["make", "-n", "dist"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "packaging/build_dist.py --out dist" in proc.stdout


def test_the_builder_refuses_a_folder_that_is_no_source_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "packaging" / "build_dist.py"), "--source", str(tmp_path),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == f"make dist: error: {tmp_path} has no pyproject.toml: give the Airlock source folder\n"
    assert not (tmp_path / "out").exists()
