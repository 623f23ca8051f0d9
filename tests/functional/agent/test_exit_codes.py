"""Every exit code docs/agent.md documents, command by command, against a
real run of `airlock-agent`: a real appliance on loopback (accepted,
pending, rejected devices, a release that fails), a closed port on
127.0.0.1 for an appliance that is down, a corrupt state file, bad flags.
The documented table must be the code's (`agent.cli.ExitCode`), and each
command must exit with exactly the codes documented for it."""

from __future__ import annotations

import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.cli import COMMANDS, ExitCode
from tests.functional.agent.conftest import Device, Site
from tests.support.server import free_port

GUIDE = Path(__file__).parents[3] / "docs" / "agent.md"


def documented_table() -> dict[int, str]:
    """The `### Exit codes` table: code -> name."""
    section = GUIDE.read_text().split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(code): name for code, name in re.findall(r"^\| `(\d+)` \| (\w+) \|", section, re.MULTILINE)}


def documented_per_command() -> dict[str, set[int]]:
    """The commands table's last column: `run --once` -> {0, 1, ...}."""
    out = {}
    for line in GUIDE.read_text().splitlines():
        if line.startswith("| `airlock-agent "):
            cells = line.replace("\\|", "/").split("|")
            words = cells[1].strip(" `").split()
            command = " ".join(words[1:3]) if words[2:3] == ["--once"] else words[1]
            out[command] = {int(m.group(1)) for seg in cells[3].split(";") if (m := re.match(r"\s*(\d+)\b", seg))}
    return out


def test_the_documented_exit_codes_are_the_codes_table():
    assert documented_table() == {code.value: code.name.lower() for code in ExitCode}
    per_command = documented_per_command()
    assert set(per_command) == {*COMMANDS, "run --once"}, per_command
    for command, codes in per_command.items():
        assert codes <= set(documented_table()), (command, codes)


@dataclass
class Fleet:
    site: Site
    down: str  # a closed port on 127.0.0.1: the appliance is away
    accepted: Device
    pending: Device
    rejected: Device
    failing: Device  # offered a release it cannot take: the update fails
    broken: Device  # its state.json is not JSON


@pytest.fixture(scope="module")
def fleet(site) -> Fleet:
    def enrolled(name: str, hardware: str = "plc-x", **settings) -> Device:
        device = site.device(name, hardware, **settings)
        r = device.agent("enroll")
        assert r.returncode == ExitCode.PENDING, r.stderr
        return device

    accepted, pending, rejected = enrolled("exit-ok"), enrolled("exit-pending"), enrolled("exit-rejected")
    failing = enrolled("exit-fails", "plc-t", repository="other")  # the release is acme's
    for device in (accepted, rejected, failing):
        assert site.airlock("devices", "accept", device.name).code == 0
    assert site.airlock("devices", "reject", "exit-rejected", "--reason", "not ours").code == 0
    site.approve("plc-t")
    broken = site.device("exit-broken", "plc-x")
    broken.state_dir.mkdir()
    (broken.state_dir / "state.json").write_text("{half a file")
    return Fleet(site, f"http://127.0.0.1:{free_port()}", accepted, pending, rejected, failing, broken)


def code(r: subprocess.CompletedProcess) -> int:
    if r.returncode != 0:  # every refusal says why, in one line
        assert r.stderr.strip(), r
    return r.returncode


def observed_for(fleet: Fleet, command: str) -> dict[int, str]:
    """Exit code -> the situation that produced it, for each situation the
    command documents."""
    f = fleet
    bad_config = ("--log-level", "LOUD")
    if command in ("run --once", "enroll", "checkin"):
        args = command.split()
        runs = {
            "accepted": f.accepted.agent(*args), "down": f.accepted.agent(*args, "--url", f.down),
            "pending": f.pending.agent(*args), "rejected": f.rejected.agent(*args),
            "broken state": f.broken.agent(*args), "bad config": f.accepted.agent(*args, *bad_config),
        }
        if command == "run --once":
            runs["update failed"] = f.failing.agent(*args)
    elif command == "report":
        big = f.site.root / "core.dump"
        big.write_bytes(b"\0" * 300_000)  # over the appliance's report_max_attachment_bytes (256 KiB)
        report = ("report", "--kind", "error", "--message", "pump 3 stalled")
        runs = {
            "delivered": f.accepted.agent(*report), "refused for good": f.accepted.agent(*report, "--attach", str(big)),
            "five attachments": f.accepted.agent(*report, *[a for _ in range(5) for a in ("--attach", str(big))]),
            "pending": f.pending.agent(*report), "rejected": f.rejected.agent(*report),
            "down": f.pending.agent(*report, "--url", f.down),
        }
    elif command == "status":
        runs = {"ok": f.accepted.agent("status"), "broken state": f.broken.agent("status"),
                "bad config": f.accepted.agent("status", *bad_config)}
    elif command == "simulate":
        token = f.site.root / "exit-commissioning-token"
        token.write_text("sheet-4712-commissioning")
        assert f.site.airlock("devices", "auto-accept", "add", "--hardware", "plc-q", "--token-file", token).code == 0
        sim = [sys.executable, "-m", "agent.cli", "simulate", "--devices", "2", "--hardware", "plc-q",
               "--duration", "30", "--enrollment-token-file", str(token)]
        runs = {"ok": subprocess.run([*sim, "--server", f.site.base], capture_output=True, text=True, timeout=60),
                "down": subprocess.run([*sim, "--server", f.down], capture_output=True, text=True, timeout=60),
                "bad bound": subprocess.run([*sim[:5], "0", *sim[6:], "--server", f.site.base],
                                            capture_output=True, text=True, timeout=60)}
    elif command == "run":
        runs = {"stopped": stopped_daemon(f.accepted, f.down), "broken state": f.broken.agent("run"),
                "bad config": f.accepted.agent("run", *bad_config)}
    else:
        raise AssertionError(f"no runs for {command}: add them")
    return {code(r): situation for situation, r in runs.items()}


def stopped_daemon(device: Device, url: str) -> subprocess.CompletedProcess:
    """`run` against an appliance that is down, until it has tried once; then SIGTERM."""
    proc = device.popen("run", "--url", url, env={"AIRLOCK_AGENT_CHECKIN_INTERVAL": "0.2"})
    seen, deadline = "", time.monotonic() + 30
    while "did not answer" not in seen and time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            seen += proc.stderr.readline()
    assert "did not answer" in seen, seen
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, seen + err)


@pytest.mark.parametrize("command", ["run", "run --once", "enroll", "checkin", "status", "report", "simulate"])
def test_each_command_exits_with_exactly_the_documented_codes(fleet, command):
    observed = observed_for(fleet, command)
    assert set(observed) == documented_per_command()[command], observed


def test_the_cases_a_device_script_tells_apart(fleet):
    """The codes that changed meaning: an appliance that is down is 75 (it
    was 1), pending is 3 and a bad setting is 2 for every command."""
    f = fleet
    assert f.accepted.agent("checkin", "--url", f.down).returncode == ExitCode.UNREACHABLE
    assert f.pending.agent("checkin").returncode == ExitCode.PENDING
    r = f.accepted.agent("checkin", "--device-id", "no spaces")
    assert r.returncode == ExitCode.USAGE and r.stderr.count("\n") == 1 and "device_id" in r.stderr
    assert r.stderr.startswith("airlock-agent: error: "), r.stderr  # the same form as airlock's refusals
    r = f.broken.agent("status")
    assert r.returncode == ExitCode.FAILED and "state.json is not JSON" in r.stderr
