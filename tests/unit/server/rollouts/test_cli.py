"""``airlock rollouts ...`` and ``releases approve --wave`` through the real
CLI (a subprocess on a real home)."""

from __future__ import annotations

import json

from tests.functional.devices.client import SimDevice
from tests.unit.server.rollouts.conftest import accepted


def test_the_rollout_commands_end_to_end(airlock, settings, db, repo):
    for i in range(3):
        accepted(settings, SimDevice(f"cli-{i}"))
    r = airlock("releases", "approve", "acme", "plc-x/fw-2.0.0.bin", "--hardware", "plc-x",
                "--wave", "10%", "--wave", "100%", "--soak", "30m", "--min-success", "90")
    assert r.code == 0, r.err
    assert "rolled out in 2 waves" in r.out and "rollout 1:" in r.out and "soak 1800 s" in r.out
    shown = json.loads(airlock("rollouts", "show", "1", "--json").out)
    assert shown["state"] == "running" and shown["release_id"] == 1 and shown["min_success"] == 90
    assert [w["target"] for w in shown["waves"]] == ["10%", "100%"]
    assert "wave 1/2" in airlock("rollouts", "list").out
    assert airlock("rollouts", "pause", "1").out.strip() == "rollout 1: paused, wave 1 of 2"
    assert airlock("rollouts", "resume", "1").out.strip() == "rollout 1: running, wave 1 of 2"
    assert "rollout 1: running, wave 2 of 2" in airlock("rollouts", "advance", "1").out
    assert "rollout 1: wait: wave 2 soaks until" in airlock("rollouts", "check").out
    r = airlock("rollouts", "abort", "1", "--reason", "bad batch")
    assert r.code == 0 and "aborted in wave 2" in r.out
    assert json.loads(airlock("rollouts", "list", "--state", "aborted", "--json").out)[0]["halt_reason"] == "bad batch"
    log = airlock("audit", "list", "--json")
    assert {"rollout.create", "rollout.pause", "rollout.resume", "rollout.advance", "rollout.abort"} <= {
        json.loads(line)["action"] for line in log.out.splitlines()}


def test_refusals_are_one_line_and_change_nothing(airlock, repo):
    for args, message in [
        (("rollouts", "show", "7"), "no rollout 7"),
        (("rollouts", "create", "1", "--wave", "10%"), "no release 1"),
        (("releases", "approve", "acme", "plc-x/fw-2.0.0.bin", "--hardware", "plc-x", "--wave", "50%", "--wave",
          "5%"), "cumulative"),
        (("releases", "approve", "acme", "plc-x/fw-2.0.0.bin", "--hardware", "plc-x", "--wave", "50%", "--soak",
          "soon"), "not a duration"),
    ]:
        r = airlock(*args)
        assert r.code != 0 and message in r.err, (args, r.err)
    assert airlock("releases", "list", "--json").out.strip() == "[]"
    assert airlock("rollouts", "list").out.startswith("no rollouts")
