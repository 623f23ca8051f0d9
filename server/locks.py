"""Locks that hold across app servers: the import lock and the export lock.

On one box the appliance's ``flock`` on a file in its home is the lock
(``appliance/homelock.py``).  With several app servers sharing one
PostgreSQL (docs/scale-out.md), that file lock does not reach the other
boxes (nor hold reliably over network file systems), so the lock is also
taken in PostgreSQL: a session advisory lock on a connection of its own,
held for the whole import or export and released when it ends, or when its
process dies (its session ends).  On SQLite there is one box: nothing more
is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from server.db import EXPORT_LOCK, IMPORT_LOCK, open_settings_database
from server.settings import Settings
from signing.exceptions import AirlockError

KEYS = {"import": IMPORT_LOCK, "export": EXPORT_LOCK}


class LockBusyError(AirlockError):
    """Another app server holds the lock."""

    status = 409
    code = "conflict"


@contextmanager
def held_across_servers(settings: Settings, name: str) -> Iterator[None]:
    """``with held_across_servers(settings, "import"):`` the named lock, in
    every app server sharing this database; raises :class:`LockBusyError` at
    once if another holds it."""
    key = KEYS[name]
    if not settings.database_url:
        yield
        return
    db = open_settings_database(settings)  # its own pool: the lock lives as long as this session
    try:
        (got,) = db.execute_sql("SELECT pg_try_advisory_lock(?)", (key,)).fetchone()
        if not got:
            raise LockBusyError(f"another {name} is running on an app server sharing this database")
        try:
            yield
        finally:
            db.execute_sql("SELECT pg_advisory_unlock(?)", (key,))
    finally:
        db.close_all()
