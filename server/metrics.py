"""``/metrics``: the appliance's state as Prometheus text (exposition 0.0.4).

Counts read from the database at scrape time with a few aggregate queries
(no per-request counters to keep in step across gunicorn workers), plus each
repository's served versions and expiries from its published tree, and the
target downloads the app served (server/downloads.py: per-worker files,
added up here; nginx's are not seen).  Each health flag's device count is
one aggregate query over the devices, whatever their number.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from flask import Blueprint, Response, current_app
from peewee import Case, fn
from tuf.api.metadata import Metadata

from server import downloads
from server.alerts import services as alerts
from server.clock import now_unix, utcnow
from server.devices.checkins import OFFLINE_AFTER_INTERVALS
from server.devices.firmware import count_unverified
from server.devices.models import Device
from server.exports.services import export_totals
from server.freshness import all_freshness
from server.imports.models import ImportRecord
from server.models import database, tuples
from server.reports.models import Report
from server.repositories.models import Repository
from server.repositories.store import RepositoryStore
from server.rollouts.services import counts as rollout_counts
from server.timekeeping import clock_health

bp = Blueprint("metrics", __name__)
# every flag server/devices/checkins.health_flags can raise (a unit test checks)
HEALTH_FLAGS = ("hot", "low_storage", "low_memory", "rebooting_often", "errors_rising", "unverified_firmware")

def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Exposition:
    def __init__(self):
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Sequence[tuple[dict[str, str], float]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            inner = ",".join(f'{k}="{_label(v)}"' for k, v in sorted(labels.items()))
            self.lines.append(f"{name}{{{inner}}} {value}" if inner else f"{name} {value}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@bp.get("/metrics")
def metrics():
    settings = current_app.config["AIRLOCK"]
    out = _Exposition()
    now = now_unix()
    offline_before = now - OFFLINE_AFTER_INTERVALS * settings.checkin_interval
    with database.connection_context():
        states = list(tuples(Device.select(Device.state, fn.COUNT(Device.id).alias("n")).group_by(Device.state)))
        online = Device.select().where(Device.state == "accepted", Device.last_seen >= offline_before).count()
        checkins = Device.select(fn.COALESCE(fn.SUM(Device.checkins), 0)).scalar()
        imports = list(tuples(ImportRecord.select(ImportRecord.status, fn.COUNT(ImportRecord.id))
                              .group_by(ImportRecord.status)))
        reports = list(tuples(Report.select(Report.status, fn.COUNT(Report.id)).group_by(Report.status)))
        repos = [r.name for r in Repository.select(Repository.name).order_by(Repository.name)]
        rollout_states = rollout_counts()
        unverified = count_unverified()
        # health is a JSON list of flag names: '"hot"' appears in it exactly when the device is flagged hot
        per_flag = [fn.COALESCE(fn.SUM(Case(None, [(Device.health.contains(f'"{flag}"'), 1)], 0)), 0)
                    for flag in HEALTH_FLAGS]
        flagged = next(iter(tuples(Device.select(*per_flag).where(Device.state == "accepted"))))
        exports, export_bytes = export_totals()
    out.family("airlock_devices", "gauge", "Devices in the inventory, by state.",
               [({"state": s}, n) for s, n in states])
    out.family("airlock_devices_online", "gauge",
               "Accepted devices that checked in within 3 check-in intervals.", [({}, online)])
    out.family("airlock_device_checkins_total", "counter", "Check-ins stored since the devices enrolled.",
               [({}, checkins)])
    out.family("airlock_imports_total", "counter", "Bundle imports, by outcome.",
               [({"status": s}, n) for s, n in imports])
    out.family("airlock_devices_flagged", "gauge", "Accepted devices with each health flag (one device may have "
               "several).", [({"flag": f}, n) for f, n in zip(HEALTH_FLAGS, flagged, strict=True)])
    out.family("airlock_exports_total", "counter", "Exports written to USB media.", [({}, exports)])
    out.family("airlock_export_bytes_total", "counter", "Bytes of the exports written.", [({}, export_bytes)])
    served = downloads.totals(settings)
    out.family("airlock_downloads_total", "counter", "Target files served by the app, by repository (not those "
               "nginx serves in front of it).", [({"repository": r}, n) for r, (n, _) in served.items()])
    out.family("airlock_download_bytes_total", "counter", "Bytes of the target files served by the app, by "
               "repository.", [({"repository": r}, b) for r, (_, b) in served.items()])
    out.family("airlock_reports", "gauge", "Device and operator problem reports, by triage status.",
               [({"status": s}, n) for s, n in reports])
    out.family("airlock_rollouts", "gauge", "Staged rollouts, by state (halted: stopped by a failing health gate).",
               [({"state": s}, n) for s, n in rollout_states.items()])
    out.family("airlock_devices_unverified_firmware", "gauge",
               "Accepted devices running firmware that no signed target names for their model.", [({}, unverified)])
    versions, expiries = [], []
    for name in repos:
        store = RepositoryStore(settings.public_dir, name)
        if not store.exists():
            continue
        state = store.trusted_state()
        for role, data in (("root", state.root), *state.roles.items()):
            signed = Metadata.from_bytes(data).signed
            versions.append(({"repository": name, "role": role}, signed.version))
            expiries.append(({"repository": name, "role": role}, int(signed.expires.timestamp())))
    out.family("airlock_repository_role_version", "gauge", "Version of each role the appliance serves.", versions)
    out.family("airlock_repository_role_expiry_seconds", "gauge",
               "Unix time at which each served role's metadata expires.", expiries)
    fresh = all_freshness(settings, utcnow())
    out.family("airlock_repository_timestamp_key_authorized", "gauge",
               "1 when the repository's root lets the appliance re-sign timestamp.json with its own key "
               "(`airlock timestamp refresh`); 0: it expires as the vendor signed it.",
               [({"repository": f.repository}, 1 if f.authorized else 0) for f in fresh])
    clock = clock_health(settings)
    out.family("airlock_clock_trusted", "gauge",
               "1 when the clock reads no earlier than the appliance's time mark and not implausibly far "
               "ahead of it; 0: imports, signing and enrollment are refused.", [({}, 1 if clock.ok else 0)])
    out.family("airlock_clock_mark_seconds", "gauge",
               "Unix time of the appliance's high-water mark of time: the clock should read at least this.",
               [({}, int(datetime.fromisoformat(clock.mark).timestamp()))])
    with database.connection_context():
        alert_counts = alerts.counts()
    out.family("airlock_alerts_open", "gauge", "Alerts open now, by kind (airlock alerts).",
               [({"kind": k}, n) for k, (n, _) in sorted(alert_counts.items())])
    out.family("airlock_alerts_opened_total", "counter", "Alerts opened since the appliance was set up, by kind.",
               [({"kind": k}, n) for k, (_, n) in sorted(alert_counts.items())])
    return Response(out.text(), mimetype="text/plain", content_type="text/plain; version=0.0.4; charset=utf-8")
