"""`airlock-agent` end to end against a real `airlock serve`: enrollment and
acceptance, check-ins, an approved release fetched and verified with
python-tuf, the install hook, reports, the spool across an appliance
restart, resumed downloads and the fleet simulator."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
import time

from tests.functional.agent.conftest import TARGETS, make_home
from tests.support.server import airlock_server

EXIT_PENDING, EXIT_UNREACHABLE = 3, 75


def steps(shown: dict) -> list[str]:
    return [u["step"] for u in reversed(shown["updates"])]


def accepted(site, device) -> None:
    r = device.agent("enroll")
    assert r.returncode == EXIT_PENDING, r.stderr
    assert "pending" in r.stderr
    assert site.airlock("devices", "accept", device.name).code == 0


def test_enroll_accept_checkin_update_install_and_report(site):
    device = site.device("e2e-1", "plc-x")
    accepted(site, device)
    key = device.state_dir / "device.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(device.state_dir.stat().st_mode) == 0o700
    pending_key = site.show("e2e-1")["keys"][0]["fingerprint"]
    status = json.loads(device.agent("status", "--json").stdout)
    assert status["key_fingerprint"] == pending_key and status["token"] == "none"

    r = device.agent("run", "--once")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE((device.state_dir / "token").stat().st_mode) == 0o600
    shown = site.show("e2e-1")
    assert shown["summary"]["state"] == "accepted" and shown["checkins"] == 1
    assert shown["metrics"]["uptime_s"] > 0 and shown["metrics"]["boot_count"] == 1
    assert {"mem_free_bytes", "storage_free_bytes"} <= set(shown["metrics"])
    assert device.hook_runs() == []

    release_id = site.approve("plc-x")
    r = device.agent("run", "--once")
    assert r.returncode == 0, r.stderr
    assert f"release {release_id}: installed" in r.stdout
    [run] = device.hook_runs()
    assert run["sha256"] == hashlib.sha256(TARGETS["plc-x"]).hexdigest() and run["size"] == len(TARGETS["plc-x"])
    assert (run["target"], run["version"], run["release_id"]) == ("plc-x/fw-2.0.0.bin", "2.0.0", str(release_id))
    assert run["path"].startswith(str(device.state_dir / "downloads"))
    assert device.firmware_file.read_text().strip() == "2.0.0"

    shown = site.show("e2e-1")
    assert steps(shown) == ["downloading", "installing", "success"]
    assert shown["summary"]["firmware"] == "2.0.0" and shown["checkins"] == 3
    assert device.spool() == []
    # nothing more to install: the next round checks in and stops there
    r = device.agent("run", "--once")
    assert r.returncode == 0 and "installed" not in r.stdout and len(device.hook_runs()) == 1
    # the token is in no log, on either side
    token = (device.state_dir / "token").read_text()
    assert token not in r.stderr and token not in (site.home / "serve.log").read_text()


def test_a_tampered_target_never_reaches_the_install_hook(site):
    device = site.device("tamper-1", "plc-t")
    accepted(site, device)
    published = site.published_target("plc-t")
    size = published.stat().st_size
    with open(published, "r+b") as f:  # same length, other bytes
        f.write(b"EVIL" * 16)
    assert published.stat().st_size == size
    release_id = site.approve("plc-t")

    r = device.agent("run", "--once")
    assert r.returncode == 1, r.stderr
    assert f"release {release_id}: failed" in r.stdout
    assert device.hook_runs() == []
    assert device.firmware_file.read_text().strip() == "1.0.0"
    downloads = device.state_dir / "downloads"
    assert list(downloads.iterdir()) == []  # not even a .part to resume from
    shown = site.show("tamper-1")
    assert steps(shown) == ["downloading", "failure"]
    reason = shown["updates"][0]["reason"]
    assert "failed TUF verification" in reason and "LengthOrHashMismatchError" in reason
    assert "update_failed" in shown["summary"]["health"]
    status = json.loads(device.agent("status", "--json").stdout)
    assert status["failed_attempts"] == {str(release_id): 1}


def test_a_download_resumes_from_a_part_file_with_a_range_request(site):
    device = site.device("resume-1", "plc-r")
    accepted(site, device)
    data = TARGETS["plc-r"]
    digest = hashlib.sha256(data).hexdigest()
    downloads = device.state_dir / "downloads"
    downloads.mkdir(parents=True)
    half = len(data) // 2
    (downloads / f"{digest}.fw-2.0.0.bin.part").write_bytes(data[:half])
    site.approve("plc-r")

    r = device.agent("run", "--once")
    assert r.returncode == 0, r.stderr
    assert f"resuming {digest}.fw-2.0.0.bin from byte {half} with a Range request" in r.stderr
    assert f"{len(data) - half} bytes over the network, {half} kept from an earlier try" in r.stderr
    [run] = device.hook_runs()
    assert run["sha256"] == digest
    assert list(downloads.iterdir()) == []
    assert steps(site.show("resume-1")) == ["downloading", "installing", "success"]


def test_a_bad_part_file_is_thrown_away_not_installed(site):
    device = site.device("resume-2", "plc-q")
    accepted(site, device)
    data = TARGETS["plc-q"]
    digest = hashlib.sha256(data).hexdigest()
    downloads = device.state_dir / "downloads"
    downloads.mkdir(parents=True)
    (downloads / f"{digest}.fw-2.0.0.bin.part").write_bytes(b"\0" * 1000)  # not a prefix of the target
    site.approve("plc-q")
    r = device.agent("run", "--once")
    assert r.returncode == 1 and device.hook_runs() == []
    assert list(downloads.iterdir()) == []
    r = device.agent("run", "--once")  # the next round starts from zero
    assert r.returncode == 0, r.stderr
    assert [run["sha256"] for run in device.hook_runs()] == [digest]
    assert steps(site.show("resume-2")) == ["downloading", "failure", "downloading", "installing", "success"]


def test_the_spool_survives_an_appliance_restart(tmp_path):
    from tests.functional.agent.conftest import Site

    home, sim = make_home(tmp_path)
    go = tmp_path / "go"
    with airlock_server(home, workers=1, threads=4) as base:
        site = Site(tmp_path, home, base, sim)
        device = site.device("spool-1", "plc-x")
        accepted(site, device)
        release_id = site.approve("plc-x")
        agent = device.popen("run", "--once", env={"HOOK_WAIT": str(go)})
        deadline = time.monotonic() + 30
        while not (tmp_path / "go.started").exists():
            assert agent.poll() is None, agent.communicate()
            assert time.monotonic() < deadline, "the install hook did not start"
            time.sleep(0.05)
        before = steps(site.show("spool-1"))
    # the appliance is down while the install finishes
    go.write_text("")
    _out, err = agent.communicate(timeout=60)
    assert agent.returncode == EXIT_UNREACHABLE, err
    assert before == ["downloading", "installing"]
    [entry] = device.spool()
    spooled = json.loads(entry.read_text())
    assert spooled["path"] == "/api/v1/updates" and spooled["body"]["step"] == "success"
    assert spooled["body"]["release_id"] == release_id
    # an agent restart while the appliance is still away loses nothing either
    r = device.agent("run", "--once")
    assert r.returncode == EXIT_UNREACHABLE and device.spool() == [entry]
    kept = entry.read_bytes()

    with airlock_server(home, workers=1, threads=4) as base:  # the same home, a new port
        site = Site(tmp_path, home, base, sim)
        r = device.agent("run", "--once", "--url", base)
        assert r.returncode == 0, r.stderr
        assert device.spool() == []
        shown = site.show("spool-1")
        assert steps(shown) == ["downloading", "installing", "success"]
        assert shown["summary"]["firmware"] == "2.0.0"
        # a resend of a report the appliance already has (its answer was lost) is stored once
        (device.state_dir / "spool" / entry.name).write_bytes(kept)
        r = device.agent("run", "--once", "--url", base)
        assert r.returncode == 0, r.stderr
        assert device.spool() == [] and steps(site.show("spool-1")) == ["downloading", "installing", "success"]
        assert len(device.hook_runs()) == 1


def test_simulate_a_fleet_of_twenty(site):
    token = site.root / "commissioning-token"
    token.write_text("sheet-4711-commissioning")
    assert site.airlock("devices", "auto-accept", "add", "--hardware", "plc-s", "--token-file", token).code == 0
    site.approve("plc-s")
    r = subprocess.run([sys.executable, "-m", "agent.cli", "simulate", "--devices", "20", "--server", site.base,
                        "--hardware", "plc-s", "--enrollment-token-file", str(token),
                        "--root", str(site.root / "vendor-root.json"), "--repository", "acme",
                        "--duration", "60", "--id-prefix", "fleet", "--json"],
                       check=False, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads(r.stdout)
    assert summary["ok"] and summary["devices"] == summary["enrolled"] == summary["checked_in"] == 20
    assert summary["updated"] == 20 and summary["update_failures"] == 0 and summary["errors"] == []
    assert summary["firmware"] == {"2.0.0": 20}
    assert summary["latency_ms"]["checkin"]["count"] == 40 and summary["latency_ms"]["download"]["count"] == 20
    listed = json.loads(site.airlock("devices", "list", "--json").out)
    fleet = [d for d in listed if d["device_id"].startswith("fleet-")]
    assert len(fleet) == 20 and {(d["state"], d["firmware"]) for d in fleet} == {("accepted", "2.0.0")}
    for i in (0, 19):
        assert steps(site.show(f"fleet-{i}")) == ["downloading", "installing", "success"]
    text = subprocess.run([sys.executable, "-m", "agent.cli", "simulate", "--devices", "2", "--server", site.base,
                           "--hardware", "plc-s", "--duration", "20"],
                          check=False, capture_output=True, text=True, timeout=60)
    assert text.returncode == 1 and "pending 2" in text.stdout  # no token, no rule: they wait for IT


def test_an_install_that_reboots_is_reported_after_the_reboot(site):
    device = site.device("reboot-1", "plc-b")
    accepted(site, device)
    site.approve("plc-b")
    r = device.agent("run", "--once", env={"HOOK_EXIT": "10"})
    assert r.returncode == 0, r.stderr
    assert "reboot_pending" in r.stdout and len(device.hook_runs()) == 1
    assert steps(site.show("reboot-1")) == ["downloading", "installing"]
    r = device.agent("run", "--once")  # still the same boot: the offer stands, nothing is installed twice
    assert r.returncode == 0 and "reboot_pending" in r.stdout and len(device.hook_runs()) == 1
    # the device reboots into the new firmware (a new kernel boot id)
    state_file = device.state_dir / "state.json"
    state = json.loads(state_file.read_text())
    state["pending_install"]["boot_id"] = "the-boot-before"
    state_file.write_text(json.dumps(state))
    device.firmware_file.write_text("2.0.0\n")
    r = device.agent("run", "--once")
    assert r.returncode == 0, r.stderr
    shown = site.show("reboot-1")
    assert steps(shown) == ["downloading", "installing", "rebooted", "success"]
    assert shown["summary"]["firmware"] == "2.0.0" and len(device.hook_runs()) == 1


def test_a_refused_token_means_enroll_again_and_a_rejection_stops(site):
    device = site.device("token-1", "plc-z")
    accepted(site, device)
    assert device.agent("run", "--once").returncode == 0
    (device.state_dir / "token").write_text("A" * 43)  # revoked, or never valid
    r = device.agent("run", "--once")
    assert r.returncode == 0, r.stderr
    assert (device.state_dir / "token").read_text() != "A" * 43
    assert site.show("token-1")["checkins"] == 2
    assert site.airlock("devices", "reject", "token-1", "--reason", "not ours").code == 0
    r = device.agent("run", "--once")
    assert r.returncode == 4 and "not ours" in r.stderr
    assert not (device.state_dir / "token").exists()
    assert json.loads(device.agent("status", "--json").stdout)["enrollment"] == "rejected"


def test_enroll_polls_while_pending_and_checkin_prints_the_answer(site):
    device = site.device("poll-1", "plc-z")
    agent = device.popen("enroll", "--wait", "30", "--poll", "0.2")
    deadline = time.monotonic() + 20
    while site.airlock("devices", "accept", "poll-1").code != 0:  # until its first request arrived
        assert time.monotonic() < deadline and agent.poll() is None
        time.sleep(0.1)
    out, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err
    assert "poll-1: accepted" in out
    r = device.agent("checkin")
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert answer["update"] is None and answer["checkin_interval"] > 0


def test_error_reports_are_spooled_sent_once_and_keep_their_attachment(site, tmp_path):
    device = site.device("report-1", "plc-z")
    accepted(site, device)
    excerpt = tmp_path / "kernel.log"
    excerpt.write_bytes(b"watchdog: BUG: soft lockup - CPU#0 stuck for 23s!\n" * 20)

    # the appliance is unreachable: the report waits in the spool
    offline = device.agent("report", "--kind", "watchdog_reset", "--severity", "critical", "--message",
                           "rebooted by the watchdog", "--attach", str(excerpt),
                           "--url", "http://127.0.0.1:9")
    assert offline.returncode == 75, offline.stderr
    assert len(device.spool()) == 1
    spooled = json.loads(device.spool()[0].read_text())
    assert spooled["path"] == "/api/v1/reports" and spooled["body"]["kind"] == "watchdog_reset"

    # back in reach: the next report sends both, oldest first; none is lost or doubled
    r = device.agent("report", "--kind", "log", "--severity", "info", "--message", "back online")
    assert r.returncode == 0, r.stderr
    assert device.spool() == []
    listed = json.loads(site.airlock("reports", "list", "--json", "--device", "report-1").out)
    assert sorted(x["kind"] for x in listed) == ["log", "watchdog_reset"]
    wd = next(x for x in listed if x["kind"] == "watchdog_reset")
    shown = json.loads(site.airlock("reports", "show", str(wd["id"]), "--json").out)
    assert shown["summary"]["message"] == "rebooted by the watchdog" and shown["summary"]["severity"] == "critical"
    assert [a["size"] for a in shown["attachments"]] == [excerpt.stat().st_size]

    # a resend of an already delivered report is recognised, not stored twice
    device.state_dir.joinpath("spool").mkdir(exist_ok=True)
    (device.state_dir / "spool" / "00000000000000000001-resend.json").write_text(json.dumps(spooled))
    again = device.agent("report", "--kind", "log", "--message", "third")
    assert again.returncode == 0 and "1 already there" in again.stdout, again.stdout + again.stderr
    assert len(json.loads(site.airlock("reports", "list", "--json", "--device", "report-1").out)) == 3
