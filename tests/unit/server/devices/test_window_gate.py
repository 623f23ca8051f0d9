"""The check-in's update offer honours the device's groups' maintenance
windows, over a real imported repository; and ``airlock windows`` manages
them, audited."""

from __future__ import annotations

import json

from server.clock import utcnow
from server.delivery import windows
from server.delivery.windows import DAYS
from server.devices import services
from tests.functional.devices.client import SimDevice
from tests.support import homedb
from tests.unit.server.devices.conftest import accepted
from tests.unit.server.devices.test_releases import checkin, repo  # noqa: F401 - the fixture

TODAY = DAYS[utcnow().weekday()]
FAR_DAY = DAYS[(utcnow().weekday() + 3) % 7]  # neither today nor yesterday: closed all day


def test_a_device_is_offered_its_update_only_inside_a_window_of_its_group(settings, db, repo):  # noqa: F811
    dev = accepted(settings, SimDevice("d-w1"))
    release = services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", hardware="plc-x")
    assert checkin(settings, db, dev).update.release_id == release.id  # no group, no window: any time
    services.tag("d-w1", "line-3", "it")
    closed = windows.add_window("line-3", FAR_DAY, "00:00", "24:00", "UTC", "it")
    assert checkin(settings, db, dev).update is None
    other = accepted(settings, SimDevice("d-w2"))  # not in line-3: unaffected
    assert checkin(settings, db, other).update.release_id == release.id
    windows.add_window("line-3", "daily", "00:00", "24:00", "Etc/UTC", "it")  # any open window of its groups
    assert checkin(settings, db, dev).update.release_id == release.id
    windows.remove_window(closed.id, "it")
    services.tag("d-w1", "night-shift", "it")
    windows.add_window("night-shift", FAR_DAY, "00:00", "24:00", "UTC", "it")
    assert checkin(settings, db, dev).update.release_id == release.id  # line-3's window is open


def test_the_cli_adds_lists_and_removes_windows_audited(airlock, home):
    r = airlock("windows", "add", "line-3", "--days", "sun", "--start", "22:00", "--end", "02:00",
                "--timezone", "Europe/Berlin")
    assert r.code == 0, r.err
    assert "window 1 for group line-3: sun 22:00-02:00 (next day) Europe/Berlin" in r.out
    listed = json.loads(airlock("windows", "list", "--json").out)
    assert [(w["group"], w["days"], w["start"], w["end"], w["timezone"]) for w in listed] == [
        ("line-3", ["sun"], "22:00", "02:00", "Europe/Berlin")]
    assert isinstance(listed[0]["open_now"], bool)
    for args, message in [
        (("--days", "sun", "--start", "2:00", "--end", "04:00", "--timezone", "UTC"), "is not HH:MM"),
        (("--days", "someday", "--start", "02:00", "--end", "04:00", "--timezone", "UTC"), "mon,tue"),
        (("--days", "sun", "--start", "02:00", "--end", "02:00", "--timezone", "UTC"), "needs a length"),
        (("--days", "sun", "--start", "02:00", "--end", "04:00", "--timezone", "Plant/Time"), "IANA"),
    ]:
        bad = airlock("windows", "add", "line-3", *args)
        assert bad.code != 0 and message in bad.err and len(bad.err.strip().splitlines()) == 1, bad.err
    assert len(json.loads(airlock("windows", "list", "--json").out)) == 1  # refusals changed nothing
    assert airlock("windows", "remove", "1").code == 0
    gone = airlock("windows", "remove", "1")
    assert gone.code != 0 and "no maintenance window 1" in gone.err
    assert "no maintenance windows" in airlock("windows", "list").out
    actions = [a for (a,) in homedb.rows(home, "SELECT action FROM audit_log WHERE action LIKE 'window.%' ORDER BY id")]
    assert actions == ["window.add", "window.remove"]
