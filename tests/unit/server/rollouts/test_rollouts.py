"""Rollouts over a real signed repository, a real SQLite file and the real
device services: which devices a check-in offers the release, how the
gates advance or halt a rollout, and the operator's steps."""

from __future__ import annotations

import uuid

import pytest

from server import audit
from server.clock import now_unix
from server.devices import services
from server.devices.records import Checkin, UpdateReportIn
from server.rollouts import services as rollouts
from server.rollouts.exceptions import RolloutArgumentError, RolloutError
from server.rollouts.records import RolloutSpec
from server.rollouts.waves import wave_of
from tests.functional.devices.client import SimDevice, utc_now
from tests.unit.server.rollouts.conftest import accepted


def fleet(settings, n: int, prefix: str = "dev", firmware: str = "1.0.0") -> list[SimDevice]:
    return [accepted(settings, SimDevice(f"{prefix}-{i}", firmware=firmware)) for i in range(n)]


def checkin(settings, db, dev, firmware=None, **metrics):
    device = services.authenticate(db, dev.token)
    return services.record_checkin(settings, db, device, Checkin(firmware or dev.firmware, metrics))


def report(db, dev, release_id: int, step: str, reason: str | None = None) -> None:
    device = services.authenticate(db, dev.token)
    services.record_report(device, UpdateReportIn(str(uuid.uuid4()), release_id, step, utc_now(), reason))


def install(settings, db, dev, release_id: int, version: str, ok: bool = True, **metrics) -> None:
    """What an agent does with an offer: steps, then a check-in on the new version."""
    report(db, dev, release_id, "downloading")
    if ok:
        report(db, dev, release_id, "success")
        dev.firmware = version
    else:
        report(db, dev, release_id, "failure", "flash write failed")
    checkin(settings, db, dev, **metrics)


def approve(settings, waves, **kw):
    spec = RolloutSpec(waves, soak=kw.pop("soak", 0), min_success=kw.pop("min_success", 90),
                       min_sample=kw.pop("min_sample", 2))
    return rollouts.approve_with_rollout(settings, "acme", "plc-x/fw-2.0.0.bin", "it", spec, hardware="plc-x")


def wave_members(rollout_id, devices, waves, number):
    return [d for d in devices if wave_of(waves, rollout_id, d.device_id, set()) == number]


def test_waves_open_one_after_the_other_and_a_good_release_reaches_everyone(settings, db, repo):
    devices = fleet(settings, 12)
    release, r = approve(settings, ["30%", "100%"])
    assert r.state == "running" and r.current_wave == 1
    waves = [{"percent": 30.0}, {"percent": 100.0}]
    first, second = wave_members(r.id, devices, waves, 1), wave_members(r.id, devices, waves, 2)
    assert first and second, "the fixed device ids fall in both waves"
    assert r.waves[0].size == len(first)
    for dev in devices:
        offer = checkin(settings, db, dev).update
        assert (offer is not None) == (dev in first), dev.device_id
        if offer:
            assert offer.release_id == release.id
            install(settings, db, dev, release.id, "2.0.0")
    [verdict] = rollouts.evaluate(settings)
    assert verdict.action == "advance", verdict
    r = rollouts.show(r.id)
    assert r.current_wave == 2 and r.waves[0].succeeded == len(first) and r.waves[1].size == len(second)
    for dev in second:
        offer = checkin(settings, db, dev).update
        assert offer is not None and offer.release_id == release.id
        install(settings, db, dev, release.id, "2.0.0")
    assert rollouts.evaluate(settings)[0].action == "complete"
    assert rollouts.show(r.id).state == "completed"
    assert {e.action for e in audit.search(subject=f"rollout {r.id}", limit=50)} >= {
        "rollout.create", "rollout.advance", "rollout.complete"}
    # after completion the release is an ordinary one: a device enrolled now is offered it
    late = fleet(settings, 1, prefix="late")[0]
    assert checkin(settings, db, late).update.release_id == release.id


def test_a_failing_wave_halts_the_rollout_and_the_rest_get_nothing(settings, db, repo):
    devices = fleet(settings, 16)
    release, r = approve(settings, ["30%", "100%"])
    waves = [{"percent": 30.0}, {"percent": 100.0}]
    first = wave_members(r.id, devices, waves, 1)
    for dev in first[:2]:
        assert checkin(settings, db, dev).update is not None
        install(settings, db, dev, release.id, "2.0.0", ok=False)
    [verdict] = rollouts.evaluate(settings)
    assert verdict.action == "halt" and "2 failed of 2 finished" in verdict.reason
    r = rollouts.show(r.id)
    assert r.state == "halted" and r.halt_reason == verdict.reason and r.halted_at
    assert [x.id for x in rollouts.halted_rollouts()] == [r.id]
    for dev in devices:  # wave 1's untouched devices and every later one: nothing
        assert checkin(settings, db, dev).update is None
    assert [e.actor for e in audit.search(action="rollout.halt", limit=5)] == ["airlock"]
    with pytest.raises(RolloutError, match="resume it first"):
        rollouts.advance(r.id, "it")
    # resumed, the wave counts afresh from now: the failures before do not halt it again at once
    assert rollouts.resume(r.id, "it").state == "running"
    assert rollouts.evaluate(settings, now=now_unix() + 1)[0].action == "wait"
    assert len(first) > 2, "the fixed ids put a third device in wave 1"
    assert checkin(settings, db, first[-1]).update is not None, "resumed: wave 1's other devices are offered it"


def test_a_reboot_loop_after_a_successful_install_halts_the_rollout(settings, db, repo):
    devices = fleet(settings, 10)
    release, r = approve(settings, ["50%", "100%"], min_sample=1)
    first = wave_members(r.id, devices, [{"percent": 50.0}, {"percent": 100.0}], 1)
    dev = first[0]
    checkin(settings, db, dev, boot_count=1)
    install(settings, db, dev, release.id, "2.0.0", boot_count=2)
    assert rollouts.evaluate(settings)[0].action == "wait"  # one success of the wave, not enough to advance
    checkin(settings, db, dev, boot_count=9)  # eight reboots since: rebooting_often
    [verdict] = rollouts.evaluate(settings)
    assert verdict.action == "halt" and "1 unhealthy after install" in verdict.reason
    history = services.show_device(settings, dev.device_id).update_history
    assert [h.event for h in history] == ["offered", "downloading", "success", "unhealthy", "halted"]
    assert "rebooting_often" in history[3].detail and history[4].detail == verdict.reason
    assert {h.rollout_id for h in history} == {r.id} and {h.wave for h in history} == {1}


def test_silent_devices_count_against_the_wave(settings, db, repo):
    devices = fleet(settings, 6)
    release, r = approve(settings, ["100%"], min_sample=1)
    dev = devices[0]
    assert checkin(settings, db, dev).update is not None
    later = now_unix() + 4 * settings.checkin_interval  # no check-in for more than 3 intervals
    [verdict] = rollouts.evaluate(settings, now=later)
    assert verdict.action == "halt" and "1 silent" in verdict.reason


def test_soak_time_holds_the_next_wave(settings, db, repo):
    devices = fleet(settings, 4)
    release, r = approve(settings, ["100%"], soak=600)  # under 3 check-in intervals: nobody is silent yet
    for dev in devices:
        checkin(settings, db, dev)
        install(settings, db, dev, release.id, "2.0.0")
    verdict = rollouts.evaluate(settings)[0]
    assert verdict.action == "wait" and "soaks until" in verdict.reason
    assert rollouts.evaluate(settings, now=now_unix() + 601)[0].action == "complete"


def test_pause_resume_abort_and_advance(settings, db, repo):
    devices = fleet(settings, 8)
    release, r = approve(settings, ["25%", "100%"])
    waves = [{"percent": 25.0}, {"percent": 100.0}]
    first, second = wave_members(r.id, devices, waves, 1), wave_members(r.id, devices, waves, 2)
    offered, fresh = first[0], second[0]
    assert checkin(settings, db, offered).update is not None
    assert rollouts.pause(r.id, "it").state == "paused"
    assert checkin(settings, db, offered).update is not None, "a device offered it before may finish"
    with pytest.raises(RolloutError, match="only a running rollout can be paused"):
        rollouts.pause(r.id, "it")
    assert rollouts.advance(r.id, "it").current_wave == 2
    assert checkin(settings, db, fresh).update is None, "paused: nobody new"
    assert rollouts.resume(r.id, "it").state == "running"
    assert checkin(settings, db, fresh).update is not None
    aborted = rollouts.abort(r.id, "it", "wrong build")
    assert aborted.state == "aborted" and aborted.halt_reason == "wrong build"
    assert checkin(settings, db, second[-1]).update is None
    with pytest.raises(RolloutError, match="already aborted"):
        rollouts.abort(r.id, "it")
    # a new rollout of the same release may start once the old one is aborted
    again = rollouts.create(settings, release.id, RolloutSpec(["100%"], soak=0), "it")
    assert again.state == "running"
    with pytest.raises(RolloutError, match="already has rollout"):
        rollouts.create(settings, release.id, RolloutSpec(["100%"]), "it")
    actions = [e.action for e in audit.search(subject=f"rollout {r.id}", limit=50)]
    assert {"rollout.pause", "rollout.resume", "rollout.advance", "rollout.abort"} <= set(actions)


def test_group_waves_follow_the_tags(settings, db, repo):
    line3, line4, other = fleet(settings, 3)
    services.tag(line3.device_id, "line3", "it")
    services.tag(line4.device_id, "line4", "it")
    release, r = approve(settings, ["group:line3", "group:line4"])
    assert [w.size for w in r.waves] == [1, None]
    assert checkin(settings, db, line3).update is not None
    assert checkin(settings, db, line4).update is None
    assert checkin(settings, db, other).update is None
    install(settings, db, line3, release.id, "2.0.0")
    assert rollouts.evaluate(settings)[0].action == "advance"
    assert checkin(settings, db, line4).update is not None
    assert checkin(settings, db, other).update is None, "no wave takes it until the rollout completes"


def test_bad_rollouts_are_refused_and_change_nothing(settings, db, repo, home):
    with pytest.raises(RolloutArgumentError, match="cumulative"):
        approve(settings, ["50%", "20%"])
    assert services.list_releases() == [], "no release without its rollout"
    with pytest.raises(RolloutArgumentError, match="min_success"):
        rollouts.create(settings, 1, RolloutSpec(["100%"], min_success=0), "it")
    with pytest.raises(RolloutError, match="no release 99"):
        rollouts.create(settings, 99, RolloutSpec(["100%"]), "it")
    assert rollouts.counts() == dict.fromkeys(rollouts.STATES, 0)
