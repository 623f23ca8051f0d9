"""The console's Overview page, as one dataclass read from the services that
own each number: devices by state, reports by status, each repository's
metadata expiries, the last import and the last export, the disk space
left where the appliance keeps its home, the halted rollouts, the open
alerts by kind, and the timestamp warnings ``server.freshness`` gives for
repositories whose root does not let the appliance re-sign.  Counting
happens in the database, so the page costs the same at 50,000 devices as
at 5."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from server.alerts.services import counts as alert_counts
from server.clock import now_iso, utcnow
from server.devices.services import count_devices
from server.exports.records import ExportRecord
from server.exports.services import last_export
from server.freshness import all_freshness
from server.imports.records import ImportEntry
from server.imports.services import import_history
from server.reports.services import count_reports
from server.repositories.services import list_repositories, trust_report
from server.rollouts.records import RolloutInfo
from server.rollouts.services import halted_rollouts
from server.settings import Settings
from server.timekeeping import clock_health
from signing.exceptions import AirlockError

SOON = 7  # days: an expiry closer than this is shown as a warning
TOP_ROLES = ("root", "timestamp", "snapshot", "targets")
# What devices see when a role's metadata expires (a TUF client refuses it).
WHEN_EXPIRED = {
    "root": "devices refuse every update from this repository until a newer root is imported",
    "timestamp": "devices refuse new updates from this repository until a fresh bundle is imported",
    "snapshot": "devices refuse new updates from this repository until a fresh bundle is imported",
    "targets": "devices refuse this repository's targets until a fresh bundle is imported",
}


@dataclass(frozen=True)
class RoleExpiry:
    role: str
    version: int
    expires: str
    days_left: int
    when_expired: str

    @property
    def soon(self) -> bool:
        return self.days_left < SOON


@dataclass(frozen=True)
class RepositoryExpiries:
    name: str
    roles: list[RoleExpiry]
    targets: int
    error: str | None = None  # why its published state cannot be read


@dataclass(frozen=True)
class Overview:
    clock: str
    devices: dict[str, int]
    reports: dict[str, int]
    repositories: list[RepositoryExpiries]
    last_import: ImportEntry | None
    last_export: ExportRecord | None
    disk_free: int  # bytes free where the appliance keeps its home (the published tree, the database)
    disk_total: int  # bytes
    clock_problem: str | None = None  # the clock reads earlier than the time mark, or far ahead: what to do
    halted: list[RolloutInfo] = field(default_factory=list)  # rollouts that halted by themselves
    open_alerts: dict[str, int] = field(default_factory=dict)  # kind -> open now (kinds with none left out)
    timestamp_warnings: list[str] = field(default_factory=list)  # expiring timestamps the appliance may not re-sign


def _expiries(settings: Settings, name: str) -> RepositoryExpiries:
    try:
        report = trust_report(settings, name)
    except (AirlockError, OSError, ValueError) as exc:
        return RepositoryExpiries(name, [], 0, error=str(exc) or type(exc).__name__)
    roles = [RoleExpiry(r.name, r.version, r.expires, r.days_left, WHEN_EXPIRED[r.name])
             for r in report.roles if r.name in TOP_ROLES and r.delegator in (None, "root")]
    return RepositoryExpiries(name, roles, len(report.targets))


def _timestamp_warnings(settings: Settings) -> list[str]:
    try:
        found = all_freshness(settings, utcnow())
    except (AirlockError, OSError, ValueError) as exc:
        return [f"the served timestamps cannot be read: {exc or type(exc).__name__}"]
    return [f.warning for f in found if f.warning]


def overview(settings: Settings) -> Overview:
    history = import_history(limit=1)
    disk = shutil.disk_usage(settings.home)
    return Overview(clock=now_iso(), devices=count_devices(settings), reports=count_reports(),
                    repositories=[_expiries(settings, r.name) for r in list_repositories()],
                    last_import=history[0] if history else None, last_export=last_export(),
                    disk_free=disk.free, disk_total=disk.total, clock_problem=clock_health(settings).problem,
                    halted=halted_rollouts(),
                    open_alerts={kind: n for kind, (n, _) in alert_counts().items() if n},
                    timestamp_warnings=_timestamp_warnings(settings))
