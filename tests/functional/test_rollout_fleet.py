"""A three-wave rollout across 2,000 simulated devices (``airlock-agent
simulate``: real agents, real keys, python-tuf verifying every download)
against a real ``airlock serve``: a good release reaches every device; a
bad one (installs fail, or the device reboot-loops after it) halts by
itself in wave 1, and no device of waves 2 and 3 is ever offered it.

The gates run in the server's background (``rollout_check_interval`` = 1 s
here); the test only watches, through the CLI and the database file.  The
home and the devices' state live on tmpfs when the machine has one: 2,000
agents fsync their state files at every step, and what is measured here is
the decisions, not the disk (``make bench`` runs the same at 20,000)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import pytest

from agent.simulate import SimSettings, simulate
from tests.conftest import pin, run_airlock
from tests.support.server import airlock_server
from tests.support.simulator import RepoSim

DEVICES = 2000
MODEL = "plc-f"
WAVES = ("--wave", "10%", "--wave", "50%", "--wave", "100%")


def _query(home, sql: str, *args):
    con = sqlite3.connect(f"file:{home / 'airlock.db'}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def _firmware(home) -> dict[str, int]:
    return dict(_query(home, "SELECT firmware, COUNT(*) FROM device WHERE hardware = ? GROUP BY firmware", MODEL))


def _rollout(home, rollout_id: int) -> dict:
    r = run_airlock(home, "rollouts", "show", str(rollout_id), "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    shm = Path("/dev/shm")
    root = (Path(tempfile.mkdtemp(prefix="airlock-fleet-", dir=shm)) if shm.is_dir()
            else tmp_path_factory.mktemp("fleet"))
    try:
        yield from _appliance(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _appliance(root: Path):
    home = root / "home"
    assert run_airlock(home, "init").code == 0
    (home / "airlock.toml").write_text("rollout_check_interval = 1\n")
    sim = RepoSim("acme")
    assert pin(lambda *a: run_airlock(home, *a), sim, root).code == 0
    for version in ("2.0.0", "3.0.0"):
        sim.add_target(f"{MODEL}/fw-{version}.bin", version.encode() * 500, hardware=(MODEL,), version=version)
    sim.publish()
    assert run_airlock(home, "import", sim.write_bundle(root / "usb")).code == 0
    (root / "root.json").write_bytes(sim.first_root())
    (root / "token").write_text("line-f-commissioning")
    assert run_airlock(home, "devices", "auto-accept", "add", "--hardware", MODEL, "--token-file",
                       root / "token").code == 0
    with airlock_server(home, workers=2, threads=16) as base:
        # the fleet enrolls and checks in once before any release (so each wave's size is the whole wave)
        fleet = (root, home, base)
        summary = _run(fleet, until=None, interval=0.0)
        assert summary.enrolled == summary.checked_in == DEVICES, summary.text(base)
        yield fleet


def _run(fleet, until, interval: float = 12.0, **faults):
    root, _home, base = fleet
    return simulate(SimSettings(server=base, devices=DEVICES, duration=150.0, interval=interval, hardware=MODEL,
                                firmware="1.0.0", enrollment_token_file=root / "token", root_file=root / "root.json",
                                repository="acme", concurrency=32, id_prefix="line-f", state_dir=root / "devices",
                                fetch=False, until=until, **faults))


def test_a_good_release_reaches_every_device_wave_by_wave(fleet):
    _root, home, _base = fleet
    r = run_airlock(home, "releases", "approve", "acme", f"{MODEL}/fw-2.0.0.bin", "--hardware", MODEL, *WAVES,
                    "--soak", "0", "--min-success", "95")
    assert r.code == 0, r.err
    summary = _run(fleet, until=lambda: _firmware(home).get("2.0.0") == DEVICES)
    assert summary.errors == [] and summary.update_failures == 0, summary.text("appliance")
    assert _firmware(home) == {"2.0.0": DEVICES}
    shown = _rollout(home, 1)
    assert shown["state"] == "completed", shown
    waves = shown["waves"]
    assert [w["number"] for w in waves] == [1, 2, 3] and all(w["failed"] == w["unhealthy"] == 0 for w in waves)
    assert sum(w["succeeded"] for w in waves) == DEVICES
    assert sum(w["size"] for w in waves) == DEVICES
    # each device was offered the release in its own wave, never earlier
    by_wave = dict(_query(home, "SELECT wave, COUNT(*) FROM update_offer WHERE release_id = 1 GROUP BY wave"))
    assert sum(by_wave.values()) == DEVICES and set(by_wave) == {1, 2, 3}
    assert 120 < by_wave[1] < 280, by_wave  # about 10% (a hash, not an exact count)
    first_wave2 = _query(home, "SELECT MIN(offered_at) FROM update_offer WHERE release_id = 1 AND wave = 2")[0][0]
    wave1_done = _query(home, "SELECT finished_at FROM rollout_wave WHERE rollout = 1 AND wave = 1")[0][0]
    assert first_wave2 >= wave1_done


def test_a_bad_release_halts_in_wave_1_and_the_rest_are_untouched(fleet):
    _root, home, _base = fleet
    r = run_airlock(home, "releases", "approve", "acme", f"{MODEL}/fw-3.0.0.bin", "--hardware", MODEL, *WAVES,
                    "--soak", "0", "--min-success", "95", "--min-sample", "10")
    assert r.code == 0, r.err
    started = time.monotonic()
    summary = _run(fleet, until=lambda: _rollout(home, 2)["state"] == "halted",
                   fail_install=50, reboot_loop=100, fault_version="3.0.0")
    assert time.monotonic() - started < 150
    shown = _rollout(home, 2)
    assert shown["state"] == "halted" and shown["current_wave"] == 1, shown
    assert shown["halt_reason"].startswith("wave 1: ")
    offered = dict(_query(home, "SELECT wave, COUNT(*) FROM update_offer WHERE release_id = 2 GROUP BY wave"))
    assert set(offered) == {1}, offered  # waves 2 and 3: never offered
    assert summary.firmware.get("3.0.0", 0) <= offered[1]
    # the devices of waves 2 and 3 still run 2.0.0, and never reported a step of release 2
    outside_wave1 = _query(home, "SELECT COUNT(*) FROM update_report AS u JOIN update_offer AS o "
                                 "ON o.device = u.device AND o.release_id = 2 WHERE u.release_id = 2 AND o.wave <> 1")
    assert outside_wave1 == [(0,)]
    assert _firmware(home).get("2.0.0", 0) >= DEVICES - offered[1]
    # after the halt, nobody new is offered it
    before = sum(offered.values())
    _run(fleet, until=lambda: True)
    assert sum(dict(_query(home, "SELECT wave, COUNT(*) FROM update_offer WHERE release_id = 2 "
                                 "GROUP BY wave")).values()) == before
    halts = [json.loads(line) for line in run_airlock(home, "audit", "list", "--json").out.splitlines()
             if json.loads(line)["action"] == "rollout.halt"]
    assert len(halts) == 1 and halts[0]["actor"] == "airlock"
