"""The audit log: an append-only table whose rows form a hash chain.

Each record's hash covers the previous record's hash and the canonical JSON
of its fields (``at``, ``actor``, ``action``, ``subject``, ``details``), so a
changed, removed or inserted row breaks the chain from there on, and
:func:`verify` finds the first broken row.  The head hash travels in every
export's signed manifest, so even cutting rows off the end is noticed by the
vendor.  :func:`record` writes inside the caller's transaction when there is
one (the action and its record commit together, with ``synchronous=FULL``),
else in a short ``BEGIN IMMEDIATE`` transaction of its own.  Details must
never hold secrets (passwords, tokens, keys): they are exported.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from peewee import TextField

from server.clock import now_iso
from server.db import WRITE_LOCK, engine_of
from server.models import BaseModel, database
from signing.exceptions import AirlockError
from signing.export import AUDIT_GENESIS, audit_body, audit_hash

logger = logging.getLogger(__name__)

MAX_TEXT = 1000  # characters of actor, action and subject kept


class AuditError(AirlockError):
    """The audit log's hash chain is broken."""


class AuditRecord(BaseModel):
    at = TextField()
    actor = TextField()
    action = TextField()
    subject = TextField()
    details = TextField(default="{}")  # JSON
    prev_hash = TextField()
    hash = TextField(unique=True)

    class Meta:
        table_name = "audit_log"


@dataclass
class AuditEntry:
    id: int
    at: str
    actor: str
    action: str
    subject: str
    details: dict
    prev_hash: str
    hash: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ChainReport:
    records: int
    head: str  # hash of the last record (the genesis value when empty)

    @property
    def message(self) -> str:
        return f"{self.records} records, chain intact (head {self.head[:16]}...)"



def record(actor: str, action: str, subject: str, details: dict | None = None, *, at: str | None = None) -> str:
    """Append one record; returns its hash.  Inside a transaction it joins it."""
    fields = _fields(actor, action, subject, details, at)
    if database.in_transaction():
        digest = _append(fields)
    else:
        with database.atomic("IMMEDIATE"):
            digest = _append(fields)
    assert digest is not None  # no condition: always appended
    return digest


def record_if(exists: str, params: tuple, actor: str, action: str, subject: str, details: dict | None = None) -> bool:
    """Inside the caller's transaction: append one record if ``SELECT 1 FROM
    <exists>`` (with ``params``) finds a row once the chain's lock is held,
    so a change committed by a writer before this one is seen.  False:
    nothing appended (the caller rolls back what it wrote).  On SQLite the
    transaction must hold the write lock already (``BEGIN IMMEDIATE``, or a
    write before this), as every writer's there does.  ``exists`` is SQL
    pasted into the statement: a constant of the caller's module, never
    built from a value (values go in ``params``)."""
    return _append(_fields(actor, action, subject, details, None), (exists, params)) is not None


def _fields(actor: str, action: str, subject: str, details: dict | None, at: str | None) -> dict:
    return {"at": at or now_iso(), "actor": str(actor)[:MAX_TEXT], "action": str(action)[:MAX_TEXT],
            "subject": str(subject)[:MAX_TEXT], "details": json.loads(json.dumps(details or {}, default=str))}


# PostgreSQL: the chain's next link in one round trip.  The writers' lock is
# the first statement; the INSERT after it, sent in the same query string,
# takes its own snapshot once the lock is held (READ COMMITTED), so it chains
# to the head the previous holder committed, and computes the hash as
# signing.export.audit_hash does (sha256 of the previous hash, a newline and
# the body).  Three round trips (lock, head, insert) were one each, and the
# lock is held until COMMIT: every enrollment that waited for it waited for
# them all, each behind the worker's GIL (docs/benchmarks.md).
_APPEND_POSTGRESQL = (
    "SELECT pg_advisory_xact_lock(?); "
    "INSERT INTO audit_log (at, actor, action, subject, details, prev_hash, hash) "
    "SELECT ?, ?, ?, ?, ?, h.prev, encode(sha256(convert_to(h.prev, 'UTF8') || ?), 'hex') "
    "FROM (SELECT coalesce((SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1), ?) AS prev) AS h")


def _append(fields: dict, only_if: tuple[str, tuple] | None = None) -> str | None:
    details = json.dumps(fields["details"], sort_keys=True, separators=(",", ":"))
    values = (fields["at"], fields["actor"], fields["action"], fields["subject"], details)
    if engine_of(database) == "postgresql":
        sql, params = _APPEND_POSTGRESQL, (WRITE_LOCK, *values, b"\n" + audit_body(fields), AUDIT_GENESIS)
        if only_if is not None:
            sql, params = sql + " WHERE EXISTS (SELECT 1 FROM " + only_if[0] + ")", (*params, *only_if[1])
        row = database.execute_sql(sql + " RETURNING hash", params).fetchone()
        return row[0] if row else None
    # SQLite: the caller's transaction holds the one write lock already
    if only_if is not None and not database.execute_sql("SELECT 1 FROM " + only_if[0], only_if[1]).fetchone():
        return None
    row = database.execute_sql("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    prev = row[0] if row else AUDIT_GENESIS
    digest = audit_hash(prev, fields)
    database.execute_sql(
        "INSERT INTO audit_log (at, actor, action, subject, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (*values, prev, digest))
    return digest


def iter_rows(after_id: int = 0, up_to_id: int | None = None, batch: int = 1000):
    """Audit rows as dicts, in order, read in batches (memory stays flat)."""
    last = after_id
    while True:
        sql = "SELECT id, at, actor, action, subject, details, prev_hash, hash FROM audit_log WHERE id > ?"
        params: list = [last]
        if up_to_id is not None:
            sql += " AND id <= ?"
            params.append(up_to_id)
        rows = database.execute_sql(sql + " ORDER BY id LIMIT ?", (*params, batch)).fetchall()
        if not rows:
            return
        for r in rows:
            try:
                details = json.loads(r[5])
            except ValueError:
                details = r[5]  # kept as it is: verify reports the row
            yield {"id": r[0], "at": r[1], "actor": r[2], "action": r[3], "subject": r[4], "details": details,
                   "prev_hash": r[6], "hash": r[7]}
        last = rows[-1][0]


def head() -> tuple[int, str]:
    """(id, hash) of the last record; (0, genesis) when the log is empty."""
    row = database.execute_sql("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, AUDIT_GENESIS)


def hash_before(record_id: int) -> str:
    """The hash a record after ``record_id`` chains to."""
    row = database.execute_sql("SELECT hash FROM audit_log WHERE id <= ? ORDER BY id DESC LIMIT 1",
                               (record_id,)).fetchone()
    return row[0] if row else AUDIT_GENESIS


def verify() -> ChainReport:
    """Recompute the whole chain; raise :class:`AuditError` at the first broken row."""
    prev, count = AUDIT_GENESIS, 0
    for rec in iter_rows():
        if rec["prev_hash"] != prev:
            raise AuditError(f"audit record {rec['id']} ({rec['action']} at {rec['at']}) does not follow the record "
                             f"before it: a record was removed or inserted; chain broken after {count} good records")
        if not isinstance(rec["details"], dict) or audit_hash(prev, rec) != rec["hash"]:
            raise AuditError(f"audit record {rec['id']} ({rec['action']} at {rec['at']}) does not match its hash: "
                             f"it was changed; chain broken after {count} good records")
        prev = rec["hash"]
        count += 1
    return ChainReport(count, prev)


def search(*, action: str | None = None, actor: str | None = None, subject: str | None = None, after: int = 0,
           limit: int = 100) -> list[AuditEntry]:
    """Records after id ``after``, oldest first, at most ``limit``; ``action``
    ending in ``.`` matches every action it starts (``user.``)."""
    sql = "SELECT id, at, actor, action, subject, details, prev_hash, hash FROM audit_log WHERE id > ?"
    params: list = [after]
    if action and action.endswith("."):
        sql += " AND substr(action, 1, ?) = ?"
        params += [len(action), action]
    elif action:
        sql += " AND action = ?"
        params.append(action)
    for column, value in (("actor", actor), ("subject", subject)):
        if value:
            sql += f" AND {column} = ?"
            params.append(value)
    rows = database.execute_sql(sql + " ORDER BY id LIMIT ?", (*params, limit)).fetchall()
    out = []
    for r in rows:
        try:
            details = json.loads(r[5])
        except ValueError:
            details = {"unreadable": r[5][:200]}
        out.append(AuditEntry(r[0], r[1], r[2], r[3], r[4], details if isinstance(details, dict) else
                              {"value": details}, r[6], r[7]))
    return out


def entries(since: int = 0, limit: int | None = None) -> list[AuditEntry]:
    out = []
    for rec in iter_rows(after_id=since):
        out.append(AuditEntry(**rec))
        if limit is not None and len(out) >= limit:
            break
    return out
