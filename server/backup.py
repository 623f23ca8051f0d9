"""The database's side of backup and restore (``airlock backup``/``restore``).

A backup copies the database with SQLite's online backup API from a
connection of its own: in WAL mode the copy is one read transaction, so it
is a consistent snapshot while ``airlock serve`` keeps writing check-ins
(readers never block the writer).  A restore checks the copy it is given
(``PRAGMA integrity_check``) and puts it in place of the home's database,
removing the old ``-wal`` and ``-shm`` files first: a stale write-ahead log
applied to another database file would corrupt it.  The file handling of
the rest of the home is ``appliance/backup/``'s.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from signing.durable import fsync_dir, fsync_file
from signing.exceptions import AirlockError

# tables whose rows mean "this home holds an appliance with data": restoring
# over them would lose it (users and the audit log alone come with `init`)
DATA_TABLES = {
    "repository": "repositories",
    "import_record": "imports",
    "device": "devices",
    "export_record": "exports",
    "report": "reports",
}
SIDE_FILES = ("-wal", "-shm", "-journal")


class BackupDatabaseError(AirlockError):
    """The database cannot be copied, or a copy cannot be restored."""


def snapshot_database(database_path: Path, dest: Path) -> int:
    """Copy the live database at ``database_path`` into the new file
    ``dest`` (flushed to disk) in one consistent snapshot; returns the
    schema version it holds."""
    if not database_path.exists():
        raise BackupDatabaseError(f"no appliance database at {database_path}: run `airlock init` first")
    # read-write, though it only reads: a read-only connection cannot open a
    # WAL database whose -shm file is missing
    source = sqlite3.connect(database_path, timeout=10)
    try:
        target = sqlite3.connect(dest)
        try:
            source.backup(target)  # all pages in one step: one read transaction, one snapshot
            version = schema_version(target)
        finally:
            target.close()
    except sqlite3.Error as exc:
        raise BackupDatabaseError(f"cannot copy the database {database_path}: {exc}") from None
    finally:
        source.close()
    fsync_file(dest)
    return version


def schema_version(con: sqlite3.Connection) -> int:
    try:
        row = con.execute("SELECT MAX(version) FROM schema_migration").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0] or 0)


def check_copy(path: Path) -> int:
    """Check a database copy about to be restored; its schema version."""
    try:
        con = sqlite3.connect(path)
        try:
            problems = [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
            version = schema_version(con)
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise BackupDatabaseError(f"the backup's database cannot be read ({exc}): use another backup") from None
    if problems != ["ok"]:
        raise BackupDatabaseError(f"the backup's database fails SQLite's integrity check ({problems[0][:200]}): "
                                  "use another backup")
    from server.db import available_migrations

    latest = available_migrations()[-1][0]
    if version > latest:
        raise BackupDatabaseError(f"the backup's database schema ({version}) is newer than this Airlock's "
                                  f"({latest}): install the Airlock the backup was made with, or a newer one")
    return version


def upgrade_copy(path: Path) -> list[str]:
    """Bring a database copy about to be restored to this Airlock's schema,
    before anything in the home changes: a migration that fails refuses the
    restore and leaves the home as it was."""
    from server.db import migrate, open_database

    db = open_database(path)
    try:
        return migrate(db)
    except Exception as exc:  # noqa: BLE001 - any failure refuses the restore, with its reason
        raise BackupDatabaseError(f"the backup's database cannot be upgraded to this Airlock's schema ({exc}): "
                                  "nothing was restored; restore it with the Airlock that made it") from None
    finally:
        db.close()


def data_in(database_path: Path) -> dict[str, int]:
    """What the database at ``database_path`` holds that a restore over it
    would lose: {"devices": 12, ...}, only the kinds with rows."""
    if not database_path.exists():
        return {}
    try:
        con = sqlite3.connect(database_path, timeout=10)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            found = {}
            for table, what in DATA_TABLES.items():
                if table in tables:
                    (count,) = con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()  # noqa: S608 - fixed names
                    if count:
                        found[what] = count
            return found
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise BackupDatabaseError(f"cannot read {database_path} to see whether it holds data ({exc}); "
                                  "give --force to replace it anyway") from None


def database_files(database_path: Path) -> list[Path]:
    """The database file and whichever of its side files exist."""
    return [p for p in [database_path, *(Path(f"{database_path}{s}") for s in SIDE_FILES)] if os.path.lexists(p)]


def install_database(staged: Path, database_path: Path) -> None:
    """Put the checked copy ``staged`` (same file system) in place as the
    database; the caller has moved the old one and its side files away."""
    for side in SIDE_FILES:
        Path(f"{database_path}{side}").unlink(missing_ok=True)
    os.chmod(staged, 0o640)
    os.replace(staged, database_path)
    fsync_dir(database_path.parent)


def record_backup(operator: str, file_name: str, size: int, sha256: str, schema: int) -> None:
    """Audit a backup written (no secret: the passphrase never reaches here)."""
    from server import audit

    audit.record(operator, "appliance.backup", file_name, {"bytes": size, "sha256": sha256, "schema": schema})


def record_restore(operator: str, source_name: str, made_at: str, replaced: str | None) -> None:
    """Audit a restore, as the restored chain's next record."""
    from server import audit

    audit.record(operator, "appliance.restore", source_name, {"backup_made_at": made_at, "replaced_to": replaced})
