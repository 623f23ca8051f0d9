"""The console's Overview page, as one dataclass read from the services that
own each number: devices by state, reports by status, each repository's
metadata expiries, the last import and the last export, and the disk space
left where the appliance keeps its home.  Counting happens in
the database, so the page costs the same at 50,000 devices as at 5."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from server.clock import now_iso
from server.devices.services import count_devices
from server.exports.records import ExportRecord
from server.exports.services import last_export
from server.imports.records import ImportEntry
from server.imports.services import import_history
from server.reports.services import count_reports
from server.repositories.services import list_repositories, trust_report
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


def _expiries(settings: Settings, name: str) -> RepositoryExpiries:
    try:
        report = trust_report(settings, name)
    except (AirlockError, OSError, ValueError) as exc:
        return RepositoryExpiries(name, [], 0, error=str(exc) or type(exc).__name__)
    roles = [RoleExpiry(r.name, r.version, r.expires, r.days_left, WHEN_EXPIRED[r.name])
             for r in report.roles if r.name in TOP_ROLES and r.delegator in (None, "root")]
    return RepositoryExpiries(name, roles, len(report.targets))


def overview(settings: Settings) -> Overview:
    history = import_history(limit=1)
    disk = shutil.disk_usage(settings.home)
    return Overview(clock=now_iso(), devices=count_devices(settings), reports=count_reports(),
                    repositories=[_expiries(settings, r.name) for r in list_repositories()],
                    last_import=history[0] if history else None, last_export=last_export(),
                    disk_free=disk.free, disk_total=disk.total, clock_problem=clock_health(settings).problem)
