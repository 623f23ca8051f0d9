"""What ``airlock status`` reports from the database and the published
trees: each repository's served roles and when they expire (and what
devices will do then), devices by state, the last import, export and backup.

Reads only: a few aggregate queries and each repository's trusted
metadata, as ``/metrics`` reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from peewee import fn
from tuf.api.metadata import Metadata

from server.clock import iso, utcnow
from server.devices.checkins import OFFLINE_AFTER_INTERVALS
from server.devices.firmware import count_unverified
from server.devices.models import Device
from server.freshness import TimestampFreshness, freshness_of
from server.imports.services import import_history
from server.models import database, tuples
from server.repositories.models import Repository
from server.repositories.store import RepositoryStore
from server.rollouts.services import counts as rollout_counts
from server.rollouts.services import halted_rollouts
from server.settings import Settings

SOON = 7  # days: an expiry this close is flagged


@dataclass
class RoleExpiry:
    role: str
    version: int
    expires: str  # ISO 8601, UTC
    days_left: float


@dataclass
class RepositoryStatus:
    name: str
    roles: list[RoleExpiry] = field(default_factory=list)
    next_expiry: RoleExpiry | None = None
    state: str = "ok"  # ok | expires soon | EXPIRED | not published
    when_expired: str = ""  # what devices do once next_expiry has passed
    timestamp: TimestampFreshness | None = None  # may the appliance re-sign it; a warning ahead of expiry if not


@dataclass
class ActivityEntry:
    at: str
    what: str


@dataclass
class ServedStatus:
    repositories: list[RepositoryStatus]
    devices: dict[str, int]  # by state
    devices_online: int
    last_import: ActivityEntry | None
    last_export: ActivityEntry | None
    last_backup: ActivityEntry | None = None
    rollouts: dict[str, int] = field(default_factory=dict)  # by state (server.rollouts)
    halted: list[ActivityEntry] = field(default_factory=list)  # halted rollouts, each with its reason
    unverified_firmware: int = 0  # accepted devices flagged unverified_firmware

    def to_dict(self) -> dict:
        return asdict(self)


def _effect(repository: str, role: str) -> str:
    if role == "root":
        return (f"devices refuse all of {repository} (an expired root is trusted for nothing) until a bundle "
                "with a newer root is imported")
    return (f"devices refuse every update from {repository} (TUF clients reject expired {role} metadata) and "
            "keep their current firmware until a newer bundle is imported")


def repository_status(settings: Settings, name: str, now: datetime) -> RepositoryStatus:
    status = RepositoryStatus(name)
    store = RepositoryStore(settings.public_dir, name)
    if not store.exists():
        status.state = "not published"
        return status
    state = store.trusted_state()
    status.timestamp = freshness_of(settings, name, now)
    first_left = 0.0
    for role, data in (("root", state.root), *state.roles.items()):
        signed = Metadata.from_bytes(data).signed
        left = (signed.expires - now).total_seconds() / 86400
        status.roles.append(RoleExpiry(role, signed.version, iso(signed.expires), round(left, 1)))
        first_left = min(left, first_left) if status.roles[:-1] else left
    if status.roles:
        first = min(status.roles, key=lambda r: r.expires)
        status.next_expiry = first
        status.state = "EXPIRED" if first_left < 0 else "expires soon" if first_left < SOON else "ok"
        status.when_expired = _effect(name, first.role)
    return status


def served_status(settings: Settings, now: datetime | None = None) -> ServedStatus:
    now = now or utcnow()
    offline_before = int(now.timestamp()) - OFFLINE_AFTER_INTERVALS * settings.checkin_interval
    with database.connection_context():
        states = dict(tuples(Device.select(Device.state, fn.COUNT(Device.id)).group_by(Device.state)))
        online = Device.select().where(Device.state == "accepted", Device.last_seen >= offline_before).count()
        names = [r.name for r in Repository.select(Repository.name).order_by(Repository.name)]
        imports = import_history(limit=1)
        export = database.execute_sql("SELECT sequence, created_at, file_name, re_export_since FROM export_record "
                                      "ORDER BY sequence DESC LIMIT 1").fetchone()
        backup = database.execute_sql("SELECT at, actor, subject FROM audit_log WHERE action = 'appliance.backup' "
                                      "ORDER BY id DESC LIMIT 1").fetchone()
        rollout_states = rollout_counts()
        halted = [ActivityEntry(r.halted_at or r.updated_at,
                                f"rollout {r.id} of release {r.release_id} ({r.version}) halted: {r.halt_reason}")
                  for r in halted_rollouts()]
        unverified = count_unverified()
    last_import = None
    if imports:
        entry = imports[0]
        outcome = entry.status + (f": {entry.reason}" if entry.reason else "")
        last_import = ActivityEntry(entry.finished_at or entry.started_at,
                                    f"import {entry.id} from {entry.source} by {entry.operator}: {outcome}")
    last_export = None
    if export:
        again = f" (re-export since {export[3]})" if export[3] is not None else ""
        last_export = ActivityEntry(export[1], f"export {export[0]}{again}: {export[2]}")
    last_backup = ActivityEntry(backup[0], f"{backup[2]} by {backup[1]}") if backup else None
    return ServedStatus([repository_status(settings, n, now) for n in names],
                        {str(k): int(v) for k, v in sorted(states.items())}, online, last_import, last_export,
                        last_backup, rollout_states, halted, unverified)
