"""Bounded metric history: raw check-in samples are rolled up into hourly
min/max/avg once older than ``metrics_raw_retention``, hourly rollups into
daily ones after ``metrics_hourly_retention``, and daily rollups are dropped
after ``metrics_daily_retention``; old enrollment nonces are pruned too.

It runs in batches, each read outside any transaction and written in one
short ``BEGIN IMMEDIATE`` transaction, so check-ins keep flowing meanwhile.
It is started at most every ``maintenance_interval`` seconds by a check-in,
in a background thread of the one worker that claims it in the database
(never in the request itself), or at once by ``airlock devices maintain``.
A rollup stores ``{metric: [min, max, sum, count]}`` so that buckets merge
exactly, whatever order the batches come in.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from datetime import datetime

from server.background import ClaimedJob
from server.clock import now_unix, utcnow
from server.devices.enrollment import prune_nonces
from server.devices.records import MaintenanceResult
from server.devices.writes import writing
from server.models import database
from server.settings import Settings

logger = logging.getLogger(__name__)

HOUR, DAY = 3600, 86400  # seconds
BATCH = 500  # rows per transaction (a few ms of holding the write lock)
RECHECK = 60.0  # seconds between a worker's looks at whether maintenance is due


def flatten(sample: dict) -> dict[str, float]:
    """The numeric metrics of a raw sample, named flat (``gauges.fan_rpm``)."""
    out = {}
    for name, value in sample.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[name] = value
        elif isinstance(value, dict) and name in ("gauges", "error_counters"):
            for sub, v in value.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[f"{name}.{sub}"] = v
    return out


def merge(into: dict[str, list], other: dict[str, list]) -> dict[str, list]:
    for name, (lo, hi, total, count) in other.items():
        if name in into:
            a = into[name]
            into[name] = [min(a[0], lo), max(a[1], hi), a[2] + total, a[3] + count]
        else:
            into[name] = [lo, hi, total, count]
    return into


def as_rollup(resolution: int, data: dict) -> dict[str, list]:
    if resolution == 0:
        return {k: [v, v, v, 1] for k, v in flatten(data).items()}
    return data


def _roll_up(source: int, target: int, cutoff: int) -> int:
    """Fold ``source``-resolution samples older than ``cutoff`` into
    ``target``-resolution buckets; returns how many were folded."""
    folded = 0
    while True:
        rows = database.execute_sql(
            "SELECT id, device, ts, data FROM metric_sample WHERE resolution = ? AND ts < ? ORDER BY ts LIMIT ?",
            (source, cutoff, BATCH)).fetchall()
        if not rows:
            return folded
        buckets: dict[tuple[int, int], dict] = defaultdict(dict)
        for _id, device, ts, data in rows:
            merge(buckets[(device, ts - ts % target)], as_rollup(source, json.loads(data)))
        with writing(database):
            for (device, bucket), values in buckets.items():
                existing = database.execute_sql(
                    "SELECT id, data FROM metric_sample WHERE device = ? AND resolution = ? AND ts = ?",
                    (device, target, bucket)).fetchone()
                if existing:
                    merged = merge(json.loads(existing[1]), values)
                    database.execute_sql("UPDATE metric_sample SET data = ? WHERE id = ?",
                                         (json.dumps(merged, separators=(",", ":")), existing[0]))
                else:
                    database.execute_sql(
                        "INSERT INTO metric_sample (device, resolution, ts, data) VALUES (?, ?, ?, ?)",
                        (device, target, bucket, json.dumps(values, separators=(",", ":"))))
            ids = [r[0] for r in rows]
            database.execute_sql(f"DELETE FROM metric_sample WHERE id IN ({','.join('?' * len(ids))})", ids)
        folded += len(rows)


def _drop(resolution: int, cutoff: int) -> int:
    dropped = 0
    while True:
        with writing(database):
            n = database.execute_sql(
                "DELETE FROM metric_sample WHERE id IN (SELECT id FROM metric_sample WHERE resolution = ? "
                "AND ts < ? LIMIT ?)", (resolution, cutoff, BATCH)).rowcount
        dropped += n
        if n < BATCH:
            return dropped


def run_maintenance(settings: Settings, now: datetime | None = None) -> MaintenanceResult:
    """Roll up and prune the metric history and the enrollment nonces."""
    started = time.monotonic()
    now = now or utcnow()
    t = int(now.timestamp())
    result = MaintenanceResult()
    raw_cutoff = t - settings.metrics_raw_retention
    result.raw_rolled_up = _roll_up(0, HOUR, raw_cutoff - raw_cutoff % HOUR)
    hourly_cutoff = t - settings.metrics_hourly_retention
    result.hourly_rolled_up = _roll_up(HOUR, DAY, hourly_cutoff - hourly_cutoff % DAY)
    result.daily_dropped = _drop(DAY, t - settings.metrics_daily_retention)
    result.nonces_pruned = prune_nonces(settings, now)
    result.seconds = round(time.monotonic() - started, 3)
    with writing(database):
        database.execute_sql("UPDATE device_maintenance SET finished_at = ?, summary = ? WHERE id = 1",
                             (now_unix(), json.dumps(result.to_dict())))
    logger.info("device maintenance: %s", result.to_dict())
    return result


def claim(settings: Settings, now: int) -> bool:
    """Take the turn to run maintenance if it is due; one worker wins."""
    with writing(database):
        return database.execute_sql(
            "UPDATE device_maintenance SET claimed_at = ? WHERE id = 1 AND claimed_at <= ?",
            (now, now - settings.maintenance_interval)).rowcount == 1


class MaintenanceScheduler(ClaimedJob):
    """Per worker: look (at most every ``RECHECK`` s, from a check-in) whether
    maintenance is due, and if this worker claims it, run it in a thread."""

    def __init__(self, settings: Settings):
        super().__init__(RECHECK, "airlock-device-maintenance", "device maintenance",
                         lambda: claim(settings, now_unix()), lambda: run_maintenance(settings))
