"""Check-ins: an accepted device reports its firmware and health, and learns
when to come back and what to install.

A check-in is one indexed read to authenticate the token, then a write (an
``UPDATE`` of the device row that re-checks the token, and an ``INSERT`` of
the raw sample), then one read of the releases that may apply.  Health flags
are computed here, from this check-in and the previous one, so that listing
50,000 devices reads only their rows.

The write is group-committed (``server.devices.group_commit``): concurrent
check-ins in one worker share one short ``BEGIN IMMEDIATE`` transaction of
two statements, and each is answered only after that transaction commits.
On PostgreSQL the batch is one prepared statement, which also returns what
each of its check-ins reads next (its open alerts, its candidate releases):
a round trip to the database costs more there than the reads themselves.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from peewee import DatabaseProxy, SqliteDatabase

from server.alerts.services import device_subject, on_checkin, open_kinds_sql
from server.clock import utcnow
from server.db import engine_of, execute_prepared
from server.devices import firmware
from server.devices._common import token_hash
from server.devices.exceptions import InvalidTokenError
from server.devices.records import Checkin, CheckinResult, DeviceIdentity
from server.devices.releases import candidates_sql, update_for
from server.devices.writes import writing
from server.rollouts import gate
from server.settings import Settings

if TYPE_CHECKING:
    from server.devices.group_commit import GroupCommit

logger = logging.getLogger(__name__)

OFFLINE_AFTER_INTERVALS = 3
REBOOT_MEMORY = 32  # most recent reboots remembered per device
DAY = 86400  # seconds

_AUTH = ("SELECT id, device_id, hardware, firmware, token_hash, metrics, reboots, health FROM device "
         "WHERE token_hash = ? AND state = 'accepted'")
# Many check-ins in a few statements: the device rows are updated from a
# VALUES table (only rows whose token is still valid: _STORED names them
# beforehand) and the samples of exactly those rows are inserted.  A batch
# holds each device once.
_UPDATE_MANY = ("UPDATE device SET firmware = v.column1, last_seen = v.column2, last_address = v.column3, "
                "checkins = checkins + 1, metrics = v.column4, health = v.column5, reboots = v.column6 "
                "FROM (VALUES {rows}) AS v "
                "WHERE device.id = v.column7 AND device.token_hash = v.column8 AND device.state = 'accepted'")
# On SQLite the rows to be stored are named first, in one row, and RETURNING is
# left off: Python's sqlite3 lets go of the GIL for every row a statement
# steps through, and a writer holding the write lock that waits for the GIL
# again after each of 256 rows, behind a worker's busy request threads, held
# every other writer up for hundreds of milliseconds (docs/benchmarks.md).
_STORED = ("SELECT group_concat(device.id) FROM device JOIN (VALUES {rows}) AS v "
           "ON device.id = v.column1 AND device.token_hash = v.column2 AND device.state = 'accepted'")
_STORED_ROW = "(?, ?)"
_UPDATE_ROW = "(?, ?, ?, ?, ?, ?, ?, ?)"
_SAMPLES = "INSERT INTO metric_sample (device, resolution, ts, data) VALUES {rows}"
# On PostgreSQL the whole batch is one statement, prepared once per connection
# whatever the batch's size (its rows come as one array per column): the device
# rows whose token is still valid are updated, the samples of exactly those
# rows inserted, and for each of those rows what its check-in reads next is
# returned with it (the kinds of its open alerts, its candidate releases).
# Run on its own, it is a transaction of its own: one round trip where BEGIN,
# UPDATE, INSERT, COMMIT and the two reads took six.
_STORE_POSTGRESQL = (
    "WITH v AS (SELECT * FROM unnest(?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], "
    "?::bigint[], ?::text[], ?::text[], ?::text[]) "
    "AS v (firmware, ts, address, metrics, health, reboots, id, token, sample, subject)), "
    "u AS (UPDATE device SET firmware = v.firmware, last_seen = v.ts, last_address = v.address, "
    "checkins = checkins + 1, metrics = v.metrics, health = v.health, reboots = v.reboots FROM v "
    "WHERE device.id = v.id AND device.token_hash = v.token AND device.state = 'accepted' "
    "RETURNING device.id, device.hardware), "
    "s AS (INSERT INTO metric_sample (device, resolution, ts, data) SELECT v.id, 0, v.ts, v.sample FROM v "
    "JOIN u ON u.id = v.id) "
    f"SELECT u.id, {open_kinds_sql('v.subject')}, {candidates_sql('u.hardware', 'u.id')} "
    "FROM u JOIN v ON v.id = u.id")
_SAMPLE_ROW = "(?, 0, ?, ?)"


def authenticate(db: SqliteDatabase | DatabaseProxy, token: str | None) -> DeviceIdentity:
    """The accepted device holding ``token``; raises for anything else."""
    if not token:
        raise InvalidTokenError("send the token from an accepted enrollment as `Authorization: Bearer TOKEN`")
    digest = token_hash(token)
    row = execute_prepared(db, "airlock_auth", _AUTH, (digest,)).fetchone()
    # The lookup is by the token's hash, so timing tells nothing about the
    # token; compare once more in constant time all the same.
    if row is None or not hmac.compare_digest(row[4], digest):
        raise InvalidTokenError("the token is unknown or was revoked (a newer enrollment, a rejection or a "
                                "decommissioning): enroll again")
    return DeviceIdentity(pk=row[0], device_id=row[1], hardware=row[2], firmware=row[3], token_hash=row[4],
                          metrics=json.loads(row[5] or "{}"), reboots=json.loads(row[6] or "[]"),
                          health=json.loads(row[7] or "[]"))


def health_flags(settings: Settings, metrics: dict, previous: dict, reboots: list[int],
                 now: int) -> tuple[list[str], list[int]]:
    """(flags, recent reboots) from a check-in's metrics and the previous check-in's."""
    flags = []
    temp = metrics.get("cpu_temp_c")
    if temp is not None and temp >= settings.health_max_cpu_temp_c:
        flags.append("hot")
    storage = metrics.get("storage_free_bytes")
    if storage is not None and storage < settings.health_min_storage_free_bytes:
        flags.append("low_storage")
    memory = metrics.get("mem_free_bytes")
    if memory is not None and memory < settings.health_min_mem_free_bytes:
        flags.append("low_memory")

    boots, before = metrics.get("boot_count"), previous.get("boot_count")
    new_boots = 0
    if boots is not None and before is not None and boots > before:
        new_boots = min(boots - before, REBOOT_MEMORY)
    elif boots is None and metrics.get("uptime_s") is not None and previous.get("uptime_s") is not None:
        new_boots = 1 if metrics["uptime_s"] < previous["uptime_s"] else 0
    reboots = [t for t in reboots if t > now - DAY] + [now] * new_boots
    reboots = reboots[-REBOOT_MEMORY:]
    if len(reboots) > settings.health_max_reboots_per_day:
        flags.append("rebooting_often")

    counters, old = metrics.get("error_counters") or {}, previous.get("error_counters") or {}
    if any(name in old and value > old[name] for name, value in counters.items()):
        flags.append("errors_rising")
    return flags, reboots


@dataclass(frozen=True)
class PendingCheckin:
    """One check-in's write: the device row's new values and the raw sample."""

    device: int  # the device row's id
    params: tuple  # _UPDATE_ROW's eight values
    sample: tuple  # _SAMPLE_ROW's three values
    subject: str = ""  # the device's alert subject (server.alerts), for the reads that come with the write


@dataclass(frozen=True)
class ReadWithWrite:
    """What a stored check-in reads next, read by its write (PostgreSQL)."""

    open_alerts: set[str]  # for server.alerts.services.on_checkin
    candidates: list  # for server.devices.releases.decide


def store_checkins(db: SqliteDatabase, batch: list[PendingCheckin]) -> dict[int, ReadWithWrite | None]:
    """Write ``batch`` (each device at most once) in one transaction; the
    device ids stored, each with what its check-in reads next when the write
    read it too (on PostgreSQL; None on SQLite).  A device whose token was
    revoked meanwhile (a newer enrollment, a rejection) is left out and
    stores nothing."""
    with writing(db):
        return write_checkins(db, batch)


def write_checkins(db: SqliteDatabase, batch: list[PendingCheckin]) -> dict[int, ReadWithWrite | None]:
    """``store_checkins`` inside the caller's write transaction (on
    PostgreSQL: or outside any, as a transaction by itself)."""
    if len({c.device for c in batch}) != len(batch):
        raise ValueError("a check-in batch holds each device at most once")
    if engine_of(db) == "postgresql":
        columns = [list(column) for column in zip(*(c.params for c in batch), strict=True)]
        columns += [[c.sample[2] for c in batch], [c.subject for c in batch]]
        return {pk: ReadWithWrite(set(kinds), candidates or [])
                for pk, kinds, candidates in execute_prepared(db, "airlock_store_checkins", _STORE_POSTGRESQL,
                                                              columns).fetchall()}
    update = _UPDATE_MANY.format(rows=", ".join([_UPDATE_ROW] * len(batch)))
    values = [v for c in batch for v in c.params]
    # inside the write transaction: nothing changes between the two statements
    (named,) = db.execute_sql(_STORED.format(rows=", ".join([_STORED_ROW] * len(batch))),
                              [v for c in batch for v in c.params[6:8]]).fetchone()
    stored = {int(pk) for pk in named.split(",")} if named else set()
    if stored:
        db.execute_sql(update, values)
    samples = [c.sample for c in batch if c.device in stored]
    if samples:
        db.execute_sql(_SAMPLES.format(rows=", ".join([_SAMPLE_ROW] * len(samples))),
                       [v for sample in samples for v in sample])
    return dict.fromkeys(stored)


def record_checkin(settings: Settings, db: SqliteDatabase, device: DeviceIdentity, checkin: Checkin, *,
                   address: str | None = None, now: datetime | None = None,
                   writer: GroupCommit | None = None) -> CheckinResult:
    """Store a check-in and answer it.  ``db`` may be a connection with a
    relaxed ``synchronous`` policy: see ``server.devices.views``.  With a
    ``writer`` the write joins its next group commit; without, it is written
    at once, alone."""
    ts = int((now or utcnow()).timestamp())
    flags, reboots = health_flags(settings, checkin.metrics, device.metrics, device.reboots, ts)
    if firmware.flagged(settings, db, device, checkin.firmware):
        flags.append(firmware.FLAG)
    metrics_json = json.dumps(checkin.metrics, separators=(",", ":"), sort_keys=True)
    sample = json.dumps({"firmware": checkin.firmware, **checkin.metrics}, separators=(",", ":"), sort_keys=True)
    pending = PendingCheckin(device.pk, (checkin.firmware, ts, address, metrics_json, json.dumps(flags),
                                         json.dumps(reboots), device.pk, device.token_hash), (device.pk, ts, sample),
                             device_subject(device.device_id))
    if writer:
        stored, reads = writer.store(pending)
    else:
        written = store_checkins(db, [pending])
        stored, reads = device.pk in written, written.get(device.pk)
    if not stored:
        raise InvalidTokenError("the token was revoked: enroll again")
    gate.note_health(db, device, flags, ts)
    if checkin.firmware != device.firmware:
        firmware.note_change(db, device, checkin.firmware, ts)
    # its own alerts only: one indexed read (server.alerts), or none when the write read them
    on_checkin(db, device.device_id, flags, reads.open_alerts if reads else None)
    update = update_for(settings, db, device, checkin.firmware, flags, ts, reads.candidates if reads else None)
    return CheckinResult(settings.checkin_interval, settings.checkin_jitter, update)


def is_online(settings: Settings, last_seen: int | None, now: int) -> bool:
    return last_seen is not None and now - last_seen <= OFFLINE_AFTER_INTERVALS * settings.checkin_interval
