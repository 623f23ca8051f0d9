"""Releases and what a check-in answers, over a repository imported from a
real signed bundle (RepoSim)."""

from __future__ import annotations

import pytest

from server.db import engine_of
from server.devices import services
from server.devices.exceptions import InvalidTokenError, NotFoundError, ReleaseError
from server.devices.records import Checkin, UpdateReportIn
from server.devices.releases import should_install, version_key
from tests.conftest import pin
from tests.functional.devices.client import SimDevice
from tests.unit.server.devices.conftest import accepted, counts


@pytest.fixture
def repo(airlock, sim, tmp_path):
    """``acme`` pinned and imported: plc-x 1.0.0 / 2.0.0 / 3.0.0-rc1, a
    multi-model 2.1.0, one without custom metadata, and one through a
    delegated role."""
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("plc-x/fw-1.0.0.bin", b"one", hardware=("plc-x",), version="1.0.0")
    sim.add_target("plc-x/fw-2.0.0.bin", b"two", hardware=("plc-x",), version="2.0.0")
    sim.add_target("plc-x/fw-3.0.0-rc1.bin", b"three", hardware=("plc-x",), version="3.0.0-rc1")
    sim.add_target("common/fw-2.1.0.bin", b"both", hardware=("plc-x", "plc-y"), version="2.1.0")
    sim.add_target("misc/readme.txt", b"text", custom={})
    sim.delegate("gateways", ["gw/*"])
    sim.add_target("gw/gw-5.0.0.bin", b"gw", role="gateways", hardware=("gw-1",), version="5.0.0")
    sim.publish(roles=("targets", "gateways"))
    r = airlock("import", sim.write_bundle(tmp_path / "usb"))
    assert r.code == 0, r.err
    return "acme"


def checkin(settings, db, dev, firmware=None, **metrics):
    device = services.authenticate(db, dev.token)
    return services.record_checkin(settings, db, device, Checkin(firmware or dev.firmware, metrics))


@pytest.mark.parametrize("device, release, allowed, expected", [
    ("1.0.0", "2.0.0", False, True),
    ("2.0.0", "2.0.0", False, False),
    ("2.0.0", "1.9.9", False, False),
    ("2.0.0", "1.9.9", True, True),
    ("1.10.0", "1.9.0", False, False),  # numeric, not lexical
    ("1.9.0", "1.10.0", False, True),
    ("2.0.0-rc1", "2.0.0", False, True),  # a pre-release comes before its release
    ("2.0.0", "2.0.0-rc1", False, False),
    ("2.0.0+b7", "2.0.0", False, False),  # build metadata does not order
])
def test_versions_compare_numerically(device, release, allowed, expected):
    assert should_install(device, release, allowed) is expected


def test_version_key_orders_numerically():
    assert version_key("10.0.0") > version_key("9.99.99")


def test_approval_checks_the_target_against_verified_metadata(settings, db, repo):
    with pytest.raises(NotFoundError):
        services.approve(settings, "nope", "x.bin", "it", hardware="plc-x")
    with pytest.raises(ReleaseError, match="not a target"):
        services.approve(settings, repo, "plc-x/missing.bin", "it", hardware="plc-x")
    with pytest.raises(ReleaseError, match="not plc-y"):
        services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", hardware="plc-y")
    with pytest.raises(ReleaseError, match="custom metadata"):
        services.approve(settings, repo, "misc/readme.txt", "it", hardware="plc-x")
    with pytest.raises(ReleaseError, match="exactly one"):
        services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", hardware="plc-x", group="pilot")
    r = services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", hardware="plc-x")
    assert (r.version, r.target_hardware, r.length) == ("2.0.0", ["plc-x"], 3)
    with pytest.raises(ReleaseError, match="already release"):
        services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", hardware="plc-x")
    delegated = services.approve(settings, repo, "gw/gw-5.0.0.bin", "it", hardware="gw-1")
    assert delegated.version == "5.0.0"
    assert [x.id for x in services.list_releases()] == [delegated.id, r.id]
    services.withdraw(r.id, "it")
    assert [x.id for x in services.list_releases()] == [delegated.id]
    assert len(services.list_releases(include_withdrawn=True)) == 2
    with pytest.raises(ReleaseError):
        services.withdraw(r.id, "it")


def test_checkin_answers_the_approved_update_when_firmware_differs(settings, db, repo):
    dev = accepted(settings, SimDevice("d-1"))
    assert checkin(settings, db, dev).update is None
    release = services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", hardware="plc-x")
    update = checkin(settings, db, dev).update
    assert update.release_id == release.id and update.version == "2.0.0"
    assert update.metadata_url == "/repos/acme/metadata/" and update.targets_url == "/repos/acme/targets/"
    assert update.target_path == "plc-x/fw-2.0.0.bin"
    assert checkin(settings, db, dev, firmware="2.0.0").update is None
    other = accepted(settings, SimDevice("d-2", hardware="plc-y"))
    assert checkin(settings, db, other).update is None


def test_group_release_wins_then_newest_approval(settings, db, repo):
    dev = accepted(settings, SimDevice("d-3"))
    services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", hardware="plc-x")
    newer = services.approve(settings, repo, "common/fw-2.1.0.bin", "it", hardware="plc-x")
    assert checkin(settings, db, dev).update.release_id == newer.id
    pilot = services.approve(settings, repo, "plc-x/fw-3.0.0-rc1.bin", "it", group="pilot")
    assert checkin(settings, db, dev).update.release_id == newer.id  # not tagged yet
    assert services.tag("d-3", "pilot", "it") and not services.tag("d-3", "pilot", "it")
    assert checkin(settings, db, dev).update.release_id == pilot.id
    services.untag("d-3", "pilot", "it")
    assert checkin(settings, db, dev).update.release_id == newer.id


def test_never_a_downgrade_unless_the_release_permits_it(settings, db, repo):
    dev = accepted(settings, SimDevice("d-4", firmware="2.5.0"))
    services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", hardware="plc-x")
    assert checkin(settings, db, dev).update is None
    allowed = services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", hardware="plc-x", allow_downgrade=True)
    assert checkin(settings, db, dev).update.release_id == allowed.id


def test_a_group_release_for_other_hardware_does_not_apply(settings, db, repo):
    dev = accepted(settings, SimDevice("d-5", hardware="plc-y"))
    services.tag("d-5", "pilot", "it")
    services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", group="pilot")  # plc-x only
    hw = services.approve(settings, repo, "common/fw-2.1.0.bin", "it", hardware="plc-y")
    assert checkin(settings, db, dev).update.release_id == hw.id


def test_update_reports_are_deduplicated_per_device(settings, db, repo, home):
    dev = accepted(settings, SimDevice("d-6"))
    release = services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", hardware="plc-x")
    device = services.authenticate(db, dev.token)
    report = UpdateReportIn("0b6f0a2e-8d1c-4f0e-9b7a-2b1a3c4d5e6f", release.id, "failure", "2026-11-01T10:00:00Z",
                            "signature check failed")
    assert services.record_report(device, report) is True
    assert services.record_report(device, report) is False
    assert counts(home)["update_report"] == 1
    with pytest.raises(ReleaseError) as info:
        services.record_report(device, UpdateReportIn("1b6f0a2e-8d1c-4f0e-9b7a-2b1a3c4d5e6f", 999, "success",
                                                      "2026-11-01T10:00:00Z"))
    assert info.value.code == "unknown_release" and counts(home)["update_report"] == 1
    shown = services.show_device(settings, "d-6")
    assert shown.updates[0].step == "failure" and shown.updates[0].version == "2.0.0"
    assert "update_failed" in shown.summary.health


# Defect 17: update reports only on releases offered to the device ---------------------

def _post_update(client, dev, release_id: int, step: str = "failure"):
    import uuid

    from tests.functional.devices.client import utc_now

    body = {"report_id": str(uuid.uuid4()), "release_id": release_id, "step": step, "at": utc_now()}
    if step == "failure":
        body["reason"] = "flash failed"
    return client.post("/api/v1/updates", json=body, headers={"Authorization": f"Bearer {dev.token}"})


@pytest.fixture
def client(settings, db):
    from server import create_app

    return create_app(settings).test_client()


def _health(settings, device_id: str) -> list[str]:
    return services.get_device(settings, device_id).health


def test_a_report_on_a_release_for_another_model_or_group_is_refused(settings, db, repo, client, home):
    dev = accepted(settings, SimDevice("d-17a"))
    other_model = services.approve(settings, repo, "gw/gw-5.0.0.bin", "it", hardware="gw-1")
    pilot = services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", group="pilot")
    before = counts(home)
    for release in (other_model, pilot):
        r = _post_update(client, dev, release.id)
        assert (r.status_code, r.json["error"]) == (422, "release_not_offered"), r.json
        assert f"release {release.id}" in r.json["message"]
    assert counts(home) == before and "update_failed" not in _health(settings, "d-17a")
    r = _post_update(client, dev, 987654)
    assert (r.status_code, r.json["error"]) == (422, "unknown_release")
    services.tag("d-17a", "pilot", "it")  # now the group release is for it
    assert _post_update(client, dev, pilot.id).status_code == 200
    assert "update_failed" in _health(settings, "d-17a")


def test_a_withdrawn_release_never_offered_is_refused(settings, db, repo, client, home):
    dev = accepted(settings, SimDevice("d-17b"))  # it never checks in
    release = services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", hardware="plc-x")
    services.withdraw(release.id, "it")
    before = counts(home)
    r = _post_update(client, dev, release.id)
    assert (r.status_code, r.json["error"]) == (422, "release_not_offered")
    assert "withdrawn" in r.json["message"] and counts(home) == before
    assert "update_failed" not in _health(settings, "d-17b")


def test_a_release_withdrawn_while_a_device_installs_it_still_takes_its_reports(settings, db, repo, client):
    installing, offered = accepted(settings, SimDevice("d-17c")), accepted(settings, SimDevice("d-17d"))
    release = services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", hardware="plc-x")
    for dev in (installing, offered):
        assert checkin(settings, db, dev).update.release_id == release.id
    assert _post_update(client, installing, release.id, "downloading").status_code == 200
    services.withdraw(release.id, "it")
    assert checkin(settings, db, installing).update is None  # no longer offered, but it is mid-install
    assert _post_update(client, installing, release.id, "success").status_code == 200
    # offered at its latest check-in, withdrawn before its first report: the report is taken
    assert _post_update(client, offered, release.id, "failure").status_code == 200


def test_a_release_behind_a_role_that_expired_is_no_longer_offered(settings, db, airlock, sim, tmp_path,
                                                                   monkeypatch):
    """Check-ins follow a device's client: once the role providing the
    target has expired, its lookup fails, so the release is not offered."""
    from datetime import UTC, datetime, timedelta

    from appliance.importer import import_bundle
    from server.devices import releases

    assert pin(airlock, sim, tmp_path).code == 0
    expired = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    sim.delegate("gateways", ["gw/*"])
    sim.add_target("gw/gw-5.0.0.bin", b"gw", role="gateways", hardware=("gw-1",), version="5.0.0")
    sim.delegated["gateways"].signed.expires = expired
    sim.publish(roles=("targets", "gateways"))
    before = expired - timedelta(days=1)
    import_bundle(settings, sim.write_bundle(tmp_path / "usb"), "it", now=before)  # imported while valid
    monkeypatch.setattr(releases, "utcnow", lambda: before)  # ... and approved then
    release = services.approve(settings, "acme", "gw/gw-5.0.0.bin", "it", hardware="gw-1")
    dev = accepted(settings, SimDevice("gw-a", hardware="gw-1", firmware="4.0.0"))
    assert checkin(settings, db, dev).update.release_id == release.id
    monkeypatch.undo()  # now: the role has expired
    assert checkin(settings, db, dev).update is None
    with pytest.raises(ReleaseError, match="stops at role 'gateways' of acme, which expired on"):
        services.approve(settings, "acme", "gw/gw-5.0.0.bin", "it", group="pilot")


def test_what_a_checkin_reads_after_its_write_comes_with_the_write_on_postgresql(settings, db, repo, monkeypatch):
    """Through the group commit: on PostgreSQL the batch's one statement
    also returns the kinds of the device's open alerts and its candidate
    releases, and neither is read again; on SQLite both are read after the
    write as before.  Either way the check-in closes the offline alert and
    is offered the approved release, and a revoked token still stores nothing."""
    from server.alerts import services as alerts
    from server.devices import releases
    from server.devices.group_commit import GroupCommit

    dev = accepted(settings, SimDevice("d-with"))
    release = services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", hardware="plc-x")
    alerts.open_alert("device_offline", alerts.device_subject("d-with"), "silent for a test")
    reads: list[str] = []
    for module in (alerts, releases):
        real = module.execute_prepared
        monkeypatch.setattr(module, "execute_prepared",
                            lambda db_, name, *args, real=real: reads.append(name) or real(db_, name, *args))
    writer = GroupCommit(db)
    device = services.authenticate(db, dev.token)
    result = services.record_checkin(settings, db, device, Checkin("1.0.0", {}), writer=writer)
    assert result.update is not None and result.update.release_id == release.id
    assert [a.kind for a in alerts.list_alerts() if a.subject == "device:d-with"] == []  # closed by the check-in
    if engine_of(db) == "postgresql":
        assert reads == []
    else:
        assert reads == ["airlock_open_alerts", "airlock_candidates"]
    services.reject("d-with", "it")  # the token is revoked: the batch stores nothing and reads nothing for it
    before = list(reads)
    with pytest.raises(InvalidTokenError):
        services.record_checkin(settings, db, device, Checkin("1.0.0", {}), writer=writer)
    assert reads == before
