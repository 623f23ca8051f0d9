"""Firmware the appliance did not deliver: the ``unverified_firmware`` flag
and "installed outside Airlock" history entries, over a real signed
repository."""

from __future__ import annotations

from server.alerts import services as alerts
from server.devices import services
from server.devices.firmware import unverified_devices
from tests.functional.devices.client import SimDevice
from tests.unit.server.rollouts.conftest import accepted
from tests.unit.server.rollouts.test_rollouts import checkin, install


def events(settings, dev) -> list[tuple[str, str | None]]:
    return [(h.event, h.version) for h in services.show_device(settings, dev.device_id).update_history]


def test_a_version_no_signed_target_names_is_flagged_and_recorded(settings, db, repo):
    dev = accepted(settings, SimDevice("laptop-flashed", firmware="1.0.0"))
    checkin(settings, db, dev)
    assert services.get_device(settings, dev.device_id).health == []
    checkin(settings, db, dev, firmware="9.9.9")
    assert services.get_device(settings, dev.device_id).health == ["unverified_firmware"]
    checkin(settings, db, dev, firmware="9.9.9")  # kept while it runs that version
    assert services.get_device(settings, dev.device_id).health == ["unverified_firmware"]
    assert events(settings, dev) == [("installed_outside", "9.9.9")]
    assert [d["device_id"] for d in unverified_devices()] == ["laptop-flashed"]
    assert [a.subject for a in alerts.list_alerts(kind="unverified_firmware")] == ["device:laptop-flashed"]
    assert services.page_devices(settings, services.DeviceQuery(flag="unverified_firmware")).total == 1
    checkin(settings, db, dev, firmware="1.0.0")  # flashed back to a signed version
    assert services.get_device(settings, dev.device_id).health == []
    assert unverified_devices() == []
    assert alerts.list_alerts(kind="unverified_firmware") == []  # closed by the check-in that cleared the flag


def test_a_signed_version_never_offered_is_history_but_no_flag(settings, db, repo):
    dev = accepted(settings, SimDevice("side-loaded", firmware="1.0.0"))
    checkin(settings, db, dev, firmware="3.0.0")
    assert services.get_device(settings, dev.device_id).health == []
    assert events(settings, dev) == [("installed_outside", "3.0.0")]


def test_an_update_the_appliance_offered_is_not_outside(settings, db, repo):
    dev = accepted(settings, SimDevice("by-the-book", firmware="1.0.0"))
    release = services.approve(settings, "acme", "plc-x/fw-2.0.0.bin", "it", hardware="plc-x")
    assert checkin(settings, db, dev).update.release_id == release.id
    install(settings, db, dev, release.id, "2.0.0")
    assert events(settings, dev) == [("offered", "2.0.0"), ("downloading", "2.0.0"), ("success", "2.0.0")]
    assert services.get_device(settings, dev.device_id).health == []


def test_a_model_no_repository_serves_is_never_judged(settings, db, repo):
    dev = accepted(settings, SimDevice("other-vendor", hardware="hmi-9", firmware="4.2.0"))
    checkin(settings, db, dev, firmware="4.3.0")
    assert services.get_device(settings, dev.device_id).health == []


def test_the_firmware_a_device_enrolled_with_is_its_baseline(settings, db, repo):
    dev = accepted(settings, SimDevice("factory-image", firmware="0.9.0"))  # no signed target names 0.9.0
    checkin(settings, db, dev)
    assert services.get_device(settings, dev.device_id).health == []
    assert events(settings, dev) == []
