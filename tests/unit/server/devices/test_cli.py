"""`airlock devices ...` and `airlock releases ...`, run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.devices import services
from server.devices.records import UpdateReportInfo
from tests.conftest import pin
from tests.functional.devices.client import SimDevice
from tests.unit.server.devices.conftest import accepted, request_for


@pytest.fixture
def fleet(settings, db):
    accepted(settings, SimDevice("plc-1"))
    services.enroll(settings, request_for(SimDevice("plc-2", hardware="plc-y")))
    return settings


def test_devices_list_and_show(airlock, fleet):
    r = airlock("devices", "list")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split() == ["DEVICE", "MODEL", "FIRMWARE", "STATE", "LAST", "SEEN", "HEALTH"]
    assert lines[1].split()[:4] == ["plc-1", "plc-x", "1.0.0", "accepted"]
    assert "never_checked_in" in lines[1]
    listed = json.loads(airlock("devices", "list", "--json", "--state", "pending").out)
    assert [d["device_id"] for d in listed] == ["plc-2"]
    assert set(listed[0]) == {"device_id", "hardware", "firmware", "state", "state_reason", "last_seen", "online",
                              "health", "tags", "key_change_pending"}
    shown = airlock("devices", "show", "plc-1")
    assert shown.code == 0 and "state accepted" in shown.out and "active" in shown.out
    assert json.loads(airlock("devices", "show", "plc-1", "--json").out)["summary"]["device_id"] == "plc-1"
    missing = airlock("devices", "show", "nobody")
    assert missing.code == 1 and missing.err.startswith("airlock: error: no device 'nobody'")
    assert airlock("devices", "list", "--state", "bogus").code != 0


def test_admission_commands(airlock, fleet):
    assert airlock("devices", "accept", "plc-2").code == 0
    again = airlock("devices", "accept", "plc-2")
    assert again.code == 1 and "already accepted" in again.err
    assert airlock("devices", "reject", "plc-2", "--reason", "wrong site").code == 0
    assert "wrong site" in airlock("devices", "show", "plc-2").out
    assert airlock("devices", "decommission", "plc-1").code == 0
    assert json.loads(airlock("devices", "list", "--json", "--state", "decommissioned").out)[0]["device_id"] == "plc-1"
    nokey = airlock("devices", "accept", "plc-1", "--new-key")
    assert nokey.code == 1 and "no pending key change" in nokey.err
    assert airlock("devices", "accept", "plc-1", "--key-fingerprint", "ab").code == 1


def test_new_key_commands(airlock, fleet):
    impostor = SimDevice("plc-1")
    services.enroll(fleet, request_for(impostor))
    assert "key_change_pending" in airlock("devices", "list").out
    assert airlock("devices", "reject", "plc-1", "--new-key").code == 0
    assert "rejected" in airlock("devices", "show", "plc-1").out


def test_tags(airlock, fleet):
    assert airlock("devices", "tag", "plc-1", "pilot").out.strip() == "tagged plc-1 pilot"
    assert "already has" in airlock("devices", "tag", "plc-1", "pilot").out
    assert airlock("devices", "tag", "plc-1", "bad tag!").code == 1
    assert "pilot" in airlock("devices", "show", "plc-1").out
    assert airlock("devices", "untag", "plc-1", "pilot").out.strip() == "removed tag pilot from plc-1"
    assert "has no tag" in airlock("devices", "untag", "plc-1", "pilot").out


def test_auto_accept_commands(airlock, fleet, tmp_path):
    token = tmp_path / "token"
    token.write_text("sheet-token-0123456789\n")
    r = airlock("devices", "auto-accept", "add", "--hardware", "plc-x", "--token-file", token, "--note", "batch 7")
    assert r.code == 0 and r.out.startswith("rule 1:")
    listed = airlock("devices", "auto-accept", "list")
    assert "plc-x" in listed.out and "batch 7" in listed.out and "sheet-token" not in listed.out
    assert json.loads(airlock("devices", "auto-accept", "list", "--json").out)[0]["hardware"] == "plc-x"
    dev = SimDevice("plc-9")
    assert services.enroll(fleet, request_for(dev, enrollment_token="sheet-token-0123456789")).state == "accepted"
    assert airlock("devices", "auto-accept", "remove", "1").code == 0
    assert "no auto-accept rules" in airlock("devices", "auto-accept", "list").out
    assert airlock("devices", "auto-accept", "remove", "1").code == 1


def test_maintain(airlock, fleet):
    r = airlock("devices", "maintain")
    assert r.code == 0 and r.out.startswith("rolled up 0 raw samples")


def test_release_commands(airlock, fleet, sim, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("plc-x/fw-2.0.0.bin", b"two", hardware=("plc-x",), version="2.0.0")
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb")).code == 0
    assert "no releases" in airlock("releases", "list").out
    r = airlock("releases", "approve", "acme", "plc-x/fw-2.0.0.bin", "--hardware", "plc-x")
    assert r.code == 0 and r.out.startswith("release 1: acme plc-x/fw-2.0.0.bin version 2.0.0 for hardware plc-x")
    g = airlock("releases", "approve", "acme", "plc-x/fw-2.0.0.bin", "--group", "pilot", "--allow-downgrade")
    assert g.code == 0 and "downgrade allowed" in g.out
    both = airlock("releases", "approve", "acme", "plc-x/fw-2.0.0.bin")
    assert both.code == 1 and "exactly one" in both.err
    wrong = airlock("releases", "approve", "acme", "plc-x/fw-9.bin", "--hardware", "plc-x")
    assert wrong.code == 1 and "not a target" in wrong.err
    listed = airlock("releases", "list")
    assert "group pilot" in listed.out and "hardware plc-x" in listed.out
    assert airlock("releases", "withdraw", "1").code == 0
    assert [x["id"] for x in json.loads(airlock("releases", "list", "--json").out)] == [2]
    assert len(json.loads(airlock("releases", "list", "--json", "--all").out)) == 2
    assert airlock("releases", "withdraw", "1").code == 1


def test_an_approval_that_shadows_another_says_so(airlock, fleet, sim, tmp_path, db):
    """Defect 7: approving fw-2.4.1 while fw-2.5.0 is active leaves 2.5.0
    offered to nobody (and a device on 2.4.1 nothing): the approval says so,
    and `releases list` shows it."""
    from server.devices.records import Checkin

    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("plc-x/fw-2.5.0.bin", b"two five", hardware=("plc-x",), version="2.5.0")
    sim.add_target("plc-x/fw-2.4.1.bin", b"two four one", hardware=("plc-x",), version="2.4.1")
    sim.add_target("gw/fw-1.0.0.bin", b"gateway", hardware=("gw-1", "plc-x"), version="1.0.0")
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb")).code == 0
    first = airlock("releases", "approve", "acme", "plc-x/fw-2.5.0.bin", "--hardware", "plc-x")
    assert first.code == 0 and "shadow" not in first.out
    group = airlock("releases", "approve", "acme", "gw/fw-1.0.0.bin", "--group", "pilot")
    assert group.code == 0 and "shadow" not in group.out  # another scope: it shadows nothing

    second = airlock("releases", "approve", "acme", "plc-x/fw-2.4.1.bin", "--hardware", "plc-x")
    assert second.code == 0, second.err
    lines = second.out.splitlines()
    assert lines[0].startswith("release 3: acme plc-x/fw-2.4.1.bin version 2.4.1 for hardware plc-x")
    assert len(lines) == 2 and lines[1].startswith("note: release 1 (plc-x/fw-2.5.0.bin version 2.5.0 (a newer "
                                                    "version")
    assert "now shadowed: check-ins offer release 3 instead" in lines[1]
    # what it says is what a check-in does: a device on 2.4.1 gets nothing, and 2.5.0 reaches nobody
    device = services.authenticate(db, accepted(fleet, SimDevice("plc-9", firmware="2.4.1")).token)
    assert services.record_checkin(fleet, db, device, Checkin("2.4.1")).update is None

    listed = {r["id"]: r for r in json.loads(airlock("releases", "list", "--json").out)}
    assert listed[1]["shadowed_by"] == 3 and listed[3]["shadowed_by"] is None and listed[2]["shadowed_by"] is None
    table = airlock("releases", "list").out.splitlines()
    status = {line.split()[0]: line for line in table[1:]}
    assert status["1"].endswith("shadowed by 3") and status["3"].endswith("active")
    assert airlock("releases", "withdraw", "3").code == 0
    assert airlock("releases", "list").out.splitlines()[-1].endswith("active")  # 1 is offered again
    assert services.record_checkin(fleet, db, device, Checkin("2.4.1")).update.version == "2.5.0"


def test_devices_show_json_fields_are_documented(airlock, fleet):
    """docs/operator-guide.md documents every field of `devices show --json`."""
    guide = (Path(__file__).resolve().parents[4] / "docs" / "operator-guide.md").read_text()
    section = guide.split("`airlock devices show ID [--json]`", 1)[1].split("\n- `airlock devices accept", 1)[0]
    shown = json.loads(airlock("devices", "show", "plc-1", "--json").out)
    nested = {"summary": shown["summary"], "keys": shown["keys"][0], "history": shown["history"]}
    missing = [name for name in shown if f"`{name}`" not in section]
    missing += [f"{parent}.{name}" for parent, fields in nested.items() for name in fields
                if f"`{name}`" not in section]
    assert not missing, f"undocumented `devices show --json` fields: {missing}"
    assert all(f"`{name}`" in section for name in UpdateReportInfo.__dataclass_fields__)
