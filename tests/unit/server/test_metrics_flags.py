"""/metrics counts devices per health flag from a fixed list: it must name
every flag a check-in can raise."""

from server.devices.checkins import health_flags
from server.devices.firmware import FLAG as UNVERIFIED
from server.metrics import HEALTH_FLAGS
from server.settings import Settings


def test_every_health_flag_has_a_metric():
    settings = Settings()
    now = 10**9
    metrics = {"cpu_temp_c": 1000, "storage_free_bytes": 0, "mem_free_bytes": 0, "boot_count": 100,
               "error_counters": {"watchdog": 5}}
    previous = {"boot_count": 1, "error_counters": {"watchdog": 1}}
    flags, _ = health_flags(settings, metrics, previous, [], now)
    # the health flags from metrics, and the one a check-in adds when the firmware is no signed target's
    assert set(flags) | {UNVERIFIED} == set(HEALTH_FLAGS)
