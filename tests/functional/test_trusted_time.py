"""Trusted time end to end: the real `airlock` CLI under Debian's libfaketime
(`faketime`), so the process's own clock is wrong as on a real box, for a
clock set back a year, set ahead ten years, a dead RTC at 1970 and normal
drift; then a real `airlock serve` whose clock falls behind the appliance's
time mark: `/healthz`, `/metrics`, the console's overview and enrollment say
so (enrollment is refused)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from server import bind_database, timekeeping
from server.settings import load_settings
from tests.conftest import Result, pin, tree_state
from tests.functional.console.browser import Browser
from tests.functional.console.conftest import PASSWORDS
from tests.functional.devices.client import SimDevice
from tests.support.server import airlock_server

REPO = Path(__file__).resolve().parents[2]


def faked(home: Path, spec: str, *args) -> Result:
    """`airlock --home HOME ARGS...` in its own process, its clock faked by
    libfaketime (`faketime -f SPEC`: "-365d" an offset, "@1970-01-01 00:00:00"
    a start time that then ticks)."""
    env = dict(os.environ, AIRLOCK_MDNS_ENABLED="0")
    proc = subprocess.run(["faketime", "-f", spec, sys.executable, "-m", "appliance.cli", "--home", str(home),
                           *map(str, args)], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def imported(airlock, sim, home, tmp_path):
    """A pinned repository with one import done at the real time (which set
    the mark), and a second, newer bundle on a stick."""
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("fw/a.bin", b"A" * 64)
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb1")).code == 0
    sim.add_target("fw/b.bin", b"B" * 64)
    sim.publish()
    return sim.write_bundle(tmp_path / "usb2")


def test_the_faked_clock_is_what_the_cli_reads(home):
    """The tests below prove something only if libfaketime moves the clock
    Python reads."""
    r = faked(home, "-365d", "status", "--json")
    assert r.code == 0, r.err
    clock = datetime.fromisoformat(json.loads(r.out)["clock_utc"])
    assert abs((clock - (datetime.now(UTC) - timedelta(days=365))).total_seconds()) < 600


@pytest.mark.parametrize("spec, reads", [("-365d", "earlier than"), ("+3650d", "3650 days after")])
def test_a_clock_set_back_a_year_or_ahead_ten_years_refuses_the_import_and_changes_nothing(
        home, imported, spec, reads):
    before = tree_state(home)
    r = faked(home, spec, "import", imported)
    assert r.code == 1, r.out
    line = r.err.strip()
    assert line.startswith("airlock: error: import refused: the clock reads ") and "\n" not in line, line
    assert reads in line and "timedatectl set-time" in line, line
    assert "signed metadata verified or signed at import 1" in line, line  # the mark the first import left
    assert tree_state(home) == before  # nothing published, nothing recorded
    status = faked(home, spec, "status")
    assert "NOT TRUSTED: the clock reads" in status.out, status.out


def test_normal_drift_is_accepted(home, imported):
    r = faked(home, "-5m", "import", imported)
    assert r.code == 0, r.err
    assert r.out.startswith("imported: acme:"), r.out
    assert "trusted: not before" in faked(home, "+3m", "status").out


def test_a_dead_rtc_at_1970_is_caught_on_a_fresh_home(tmp_path, sim):
    home = tmp_path / "home"
    init = faked(home, "@1970-01-01 00:00:00", "init")
    assert init.code == 0, init.err  # the home is still made: only what trusts the clock is refused
    assert "airlock: warning: the clock reads 1970-01-01T00:00" in init.err, init.err
    assert "earlier than 2026-11-01T00:00:00+00:00 (the release of this Airlock version)" in init.err
    root = tmp_path / "root.json"
    root.write_bytes(sim.first_root())
    import hashlib
    assert faked(home, "@1970-01-01 00:00:00", "repo", "add", "acme", "--root", root, "--fingerprint",
                 hashlib.sha256(sim.first_root()).hexdigest()).code == 0
    sim.publish()
    r = faked(home, "@1970-01-01 00:00:00", "import", sim.write_bundle(tmp_path / "usb"))
    assert r.code == 1 and "import refused: the clock reads 1970-01-01" in r.err, r.err
    # with the clock set, the same stick imports
    assert faked(home, "+0", "import", tmp_path / "usb").code == 0


def test_a_served_appliance_whose_clock_falls_behind_its_mark_says_so_everywhere(tmp_path):
    home = tmp_path / "home"
    pw = tmp_path / "pw"
    pw.write_text(PASSWORDS["ada"])
    from tests.conftest import run_airlock
    assert run_airlock(home, "init", "--admin", "ada", "--password-file", pw).code == 0
    with airlock_server(home) as base:
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as r:
            assert json.load(r)["clock"]["state"] == "ok"
        # what a later import under a right clock leaves, seen by a box whose clock was then set back a year
        settings = load_settings(home)
        bind_database(settings)
        ahead = datetime.now(UTC) + timedelta(days=365)
        timekeeping.record("verified", ahead, "import 7")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/healthz", timeout=10)
        assert err.value.code == 503
        health = json.load(err.value)
        assert health["clock"]["state"] == "behind" and health["clock"]["mark"].startswith(f"{ahead:%Y-%m-%d}")
        assert any(p.startswith("clock: the clock reads ") and "timedatectl" in p for p in health["problems"])
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        assert "\nairlock_clock_trusted 0\n" in metrics
        assert f"\nairlock_clock_mark_seconds {int(ahead.timestamp())}\n" in metrics
        browser = Browser(base)
        assert browser.login("ada", PASSWORDS["ada"]).status == 303
        page = browser.get("/overview")
        assert page.status == 200 and 'id="clock-problem"' in page.text
        assert "Clock not trusted: the clock reads" in page.text
        body = json.dumps(SimDevice("dev-1").enrollment()).encode()
        request = urllib.request.Request(f"{base}/api/v1/enroll", body, {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=10)
        assert err.value.code == 503
        answer = json.load(err.value)
        assert answer["error"] == "clock_untrusted"
        assert answer["message"].startswith("enrollment refused: the clock reads "), answer
