"""A private PostgreSQL cluster for the test session, on loopback.

Debian's postgresql (tests/prereqs.sh installs it): ``initdb`` into a
temporary folder and ``pg_ctl start`` listening on 127.0.0.1 at a free port,
with its socket in that folder.  PostgreSQL refuses to run as root: as root
the cluster runs as the ``postgres`` user (which Debian's package creates).
Each test gets its own database, copied from a template that holds the
migrated schema (``CREATE DATABASE ... TEMPLATE``: a file copy, far quicker
than migrating again).  A missing binary raises: the PostgreSQL tests fail,
they never skip.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import psycopg2

SERVER_OPTIONS = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "  # a throwaway cluster: speed over durability
    "-c max_connections=400 -c shared_buffers=32MB"
)
# the benchmarks' cluster: durable, as a site would run it (fsync, synchronous commits;
# the appliance turns synchronous_commit off for its check-ins' own connections)
DURABLE_OPTIONS = "-c max_connections=400 -c shared_buffers=256MB"


def bindir() -> Path:
    """Where Debian keeps initdb and pg_ctl (/usr/lib/postgresql/N/bin), newest first."""
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name), reverse=True):
        return Path(found).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise RuntimeError("PostgreSQL is not installed (no initdb): run `sh tests/prereqs.sh` as root "
                       "(apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """``start()``, then ``new_database()`` for each test, ``stop()`` at the end."""

    def __init__(self, options: str = SERVER_OPTIONS) -> None:
        self.options = options  # the server's -c settings
        self.bin = bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="airlock-pg-"))
        self.port = _free_port()
        self.user = "airlock"
        self._as: list[str] = []
        self._names = itertools.count(1)
        self.template: str | None = None
        self._maker = ThreadPoolExecutor(max_workers=1)
        self._next: Future[str] | None = None

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> Cluster:
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            account = pwd.getpwnam("postgres")
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        try:
            self._run(str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", self.user,
                      "-E", "UTF8", "--locale=C", "--no-sync")
            self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-w", "-t", "60",
                      "-o", f"-k {self.dir} -h 127.0.0.1 -p {self.port} {self.options}", "start")
        except subprocess.CalledProcessError as exc:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise RuntimeError(f"the test PostgreSQL did not start: {exc.stderr.decode()[-2000:]} {log[-2000:]}") \
                from None
        return self

    def url(self, name: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def _admin(self, sql: str) -> None:
        con = psycopg2.connect(self.url("postgres"))
        try:
            con.autocommit = True
            con.cursor().execute(sql)
        finally:
            con.close()

    def new_database(self, migrated: bool = True) -> str:
        """The URL of a new, empty database (``migrated``: holding the current
        schema, as `airlock init` leaves it, without any user)."""
        name = f"t{next(self._names)}"
        if migrated and self.template is None:
            self.template = "airlock_template"
            self._admin(f"CREATE DATABASE {self.template}")
            from server.db import migrate, open_postgresql

            db = open_postgresql(self.url(self.template))
            migrate(db)
            db.close_all()
        if not migrated:
            self._admin(f"CREATE DATABASE {name}")
            return self.url(name)
        # a copy of the template takes a few tenths of a second: the next test's is made meanwhile
        ready = self._next.result() if self._next is not None else self._copy(name)
        self._next = self._maker.submit(self._copy, f"t{next(self._names)}")
        return ready

    def _copy(self, name: str) -> str:
        self._admin(f"CREATE DATABASE {name} TEMPLATE {self.template}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
        self._admin(f"DROP DATABASE IF EXISTS {name}")

    def stop(self) -> None:
        self._maker.shutdown(wait=True)
        subprocess.run([*self._as, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)
