"""Check-ins, health flags, offline detection and the metric history."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from server.devices import maintenance, services
from server.devices.checkins import health_flags
from server.devices.exceptions import InvalidTokenError
from server.devices.records import Checkin
from tests.functional.devices.client import SimDevice
from tests.support import homedb
from tests.unit.server.devices.conftest import accepted, counts

NOW = 1_800_000_000


def test_health_flags(settings):
    ok = {"cpu_temp_c": 40.0, "storage_free_bytes": 10**9, "mem_free_bytes": 10**9, "boot_count": 3}
    assert health_flags(settings, ok, ok, [], NOW) == ([], [])
    hot = {**ok, "cpu_temp_c": settings.health_max_cpu_temp_c, "storage_free_bytes": 1, "mem_free_bytes": 1}
    assert health_flags(settings, hot, ok, [], NOW)[0] == ["hot", "low_storage", "low_memory"]
    # boot_count rising counts reboots within a day
    flags, reboots = health_flags(settings, {"boot_count": 7}, {"boot_count": 3}, [NOW - 90_000], NOW)
    assert flags == ["rebooting_often"] and reboots == [NOW] * 4
    # without boot_count, uptime going down is one reboot
    assert health_flags(settings, {"uptime_s": 5}, {"uptime_s": 500}, [], NOW)[1] == [NOW]
    rising = health_flags(settings, {"error_counters": {"crc": 5, "new": 1}}, {"error_counters": {"crc": 4}}, [], NOW)
    assert rising[0] == ["errors_rising"]
    assert health_flags(settings, {"error_counters": {"crc": 0}}, {"error_counters": {"crc": 4}}, [], NOW)[0] == []


def test_checkin_updates_the_device_and_keeps_a_raw_sample(settings, db, home):
    dev = accepted(settings, SimDevice("c-1"))
    device = services.authenticate(db, dev.token)
    metrics = {"uptime_s": 10, "boot_count": 2, "cpu_temp_c": 91.5, "gauges": {"fan_rpm": 1200.0},
               "error_counters": {"crc": 1}, "last_reset_reason": "watchdog"}
    result = services.record_checkin(settings, db, device, Checkin("1.0.1", metrics), address="10.0.0.7")
    assert result.checkin_interval == settings.checkin_interval and result.update is None
    shown = services.show_device(settings, "c-1")
    assert shown.summary.firmware == "1.0.1" and shown.summary.online and shown.checkins == 1
    assert shown.metrics == metrics and shown.last_address == "10.0.0.7"
    assert shown.summary.health == ["hot"]
    assert shown.history == {"raw": 1, "hourly": 0, "daily": 0}


def test_a_token_revoked_between_read_and_write_stores_nothing(settings, db, home):
    dev = accepted(settings, SimDevice("c-2"))
    device = services.authenticate(db, dev.token)
    services.reject("c-2", "it")
    before = counts(home)
    with pytest.raises(InvalidTokenError):
        services.record_checkin(settings, db, device, Checkin("1.0.0", {}))
    assert counts(home) == before


def test_offline_is_computed_when_read(settings, db, home):
    dev = accepted(settings, SimDevice("c-3"))
    assert services.list_devices(settings)[0].health == ["never_checked_in"]
    services.record_checkin(settings, db, services.authenticate(db, dev.token), Checkin("1.0.0", {}))
    assert services.list_devices(settings, "offline") == []
    stale = int(time.time()) - 3 * settings.checkin_interval - 5
    con = homedb.connect(home)
    con.execute("UPDATE device SET last_seen = ?", (stale,))
    con.commit()
    con.close()
    [d] = services.list_devices(settings, "offline")
    assert d.device_id == "c-3" and not d.online and d.health == ["offline"]
    assert services.list_devices(settings, "pending") == []


def _sample(con, device_pk, ts, resolution=0, data=None):
    con.execute("INSERT INTO metric_sample (device, resolution, ts, data) VALUES (?, ?, ?, ?)",
                (device_pk, resolution, ts, json.dumps(data)))


def test_maintenance_rolls_raw_into_hourly_into_daily_and_drops_the_oldest(settings, db, home, monkeypatch):
    monkeypatch.setattr(maintenance, "BATCH", 3)  # buckets split across batches must still merge exactly
    accepted(settings, SimDevice("c-4"))
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    t = int(now.timestamp())
    con = homedb.connect(home)
    hour = t - settings.metrics_raw_retention - 7200  # an hour bucket well past raw retention
    hour -= hour % 3600
    for i, temp in enumerate([40, 50, 60, 70]):
        _sample(con, 1, hour + i * 600, data={"firmware": "1.0.0", "cpu_temp_c": temp, "last_reset_reason": "x",
                                              "gauges": {"g": i}, "error_counters": {"e": 1}})
    _sample(con, 1, t - 60, data={"cpu_temp_c": 99})  # recent: stays raw
    day = t - settings.metrics_hourly_retention - 3 * 86400
    day -= day % 86400
    _sample(con, 1, day, 3600, {"cpu_temp_c": [10, 20, 30, 2]})
    _sample(con, 1, day + 3600, 3600, {"cpu_temp_c": [5, 15, 10, 1]})
    _sample(con, 1, t - settings.metrics_daily_retention - 86400 * 2, 86400, {"cpu_temp_c": [1, 1, 1, 1]})
    con.commit()
    con.close()

    result = maintenance.run_maintenance(settings, now)
    assert (result.raw_rolled_up, result.hourly_rolled_up, result.daily_dropped) == (4, 2, 1)
    hourly = services.metric_history("c-4", 3600)
    assert hourly == [{"at": datetime.fromtimestamp(hour, UTC).isoformat(timespec="seconds"),
                       "values": {"cpu_temp_c": {"min": 40, "max": 70, "avg": 55.0},
                                  "gauges.g": {"min": 0, "max": 3, "avg": 1.5},
                                  "error_counters.e": {"min": 1, "max": 1, "avg": 1.0}}}]
    daily = services.metric_history("c-4", 86400)
    assert daily[0]["values"]["cpu_temp_c"] == {"min": 5, "max": 20, "avg": 40 / 3}
    assert len(services.metric_history("c-4", 0)) == 1
    again = maintenance.run_maintenance(settings, now)
    assert (again.raw_rolled_up, again.hourly_rolled_up, again.daily_dropped) == (0, 0, 0)


def test_only_one_worker_claims_maintenance(settings, db):
    now = int(time.time())
    assert maintenance.claim(settings, now) is True
    assert maintenance.claim(settings, now + 1) is False
    assert maintenance.claim(settings, now + settings.maintenance_interval) is True


def test_the_scheduler_runs_maintenance_in_the_background(settings, db, home):
    scheduler = maintenance.MaintenanceScheduler(settings)
    scheduler.poke()
    scheduler._running.join(10)
    con = homedb.connect(home)
    finished = con.execute("SELECT finished_at FROM device_maintenance").fetchone()[0]
    con.close()
    assert finished > 0
    scheduler.poke()  # not due again for a while: no new thread
    assert not scheduler._running.is_alive()
    assert datetime.now(UTC) - datetime.fromtimestamp(finished, UTC) < timedelta(minutes=1)
