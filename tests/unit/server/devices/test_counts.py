"""The device counts the console's overview and `airlock status` show,
counted in the database (on both engines: PostgreSQL adds no booleans)."""

from __future__ import annotations

from server.devices import services
from server.devices.records import Checkin
from tests.functional.devices.client import SimDevice
from tests.unit.server.devices.conftest import accepted, request_for


def test_counts_by_state_online_offline_and_flagged(settings, db):
    hot, _quiet = (services.authenticate(db, accepted(settings, SimDevice(f"n-{i}")).token) for i in range(2))
    services.enroll(settings, request_for(SimDevice("n-pending")))
    services.record_checkin(settings, db, hot, Checkin("1.0.1", {"cpu_temp_c": 99}))
    counts = services.count_devices(settings)
    assert counts["accepted"] == 2 and counts["pending"] == 1 and counts["rejected"] == 0
    assert (counts["online"], counts["offline"], counts["flagged"]) == (1, 1, 1)
    assert all(type(n) is int for n in counts.values()), counts
