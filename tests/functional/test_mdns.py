"""mDNS both ways, each scenario in its own private network namespace (see
tests/support/netns.py): the real `airlock serve` / `airlock mdns`, the
agent's functions, and Debian's avahi-daemon as an independent peer.  No
multicast ever reaches the machine's real interfaces.

These tests fail, never skip, when unshare, ip or avahi are missing:
`make test` installs them (tests/prereqs.sh)."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import run_airlock
from tests.support.netns import run_in_netns
from tests.support.server import free_port

pytestmark = pytest.mark.slow

# what must never reach a terminal or a page unescaped
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\udc80-\udcff]")


def appliance_id(home) -> str:
    return (home / "appliance-id").read_text().strip()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One `airlock serve` run in a namespace, observed from every side."""
    base = tmp_path_factory.mktemp("mdns-serve")
    home, work = base / "home", base / "work"
    work.mkdir()
    assert run_airlock(home, "init").code == 0
    port = free_port()
    result = run_in_netns("appliance", {"home": str(home), "work": str(work), "port": port}, timeout=90)
    return result, home, port


def test_serve_advertises_the_appliance_to_zeroconf_and_avahi(served):
    result, home, port = served
    assert result["healthy"], result["log"]
    ident = appliance_id(home)
    [seen] = result["zeroconf"]
    assert seen["port"] == port and seen["addresses"] == ["127.0.0.1"]
    assert seen["txt"] == {"api": "/api/v1", "repos": "/repos/", "id": ident}
    # avahi-browse -rpt: =;iface;proto;name;type;domain;host;address;port;txt
    [line] = [row for row in result["avahi"] if row[4] == "_airlock._tcp"]
    assert line[7:9] == ["127.0.0.1", str(port)]
    assert sorted(re.findall(r'"([^"]*)"', line[9])) == sorted([f"id={ident}", "api=/api/v1", "repos=/repos/"])


def test_agent_finds_the_appliance(served):
    result, home, port = served
    assert result["agent"] == [{"url": f"http://127.0.0.1:{port}", "id": appliance_id(home),
                                "api": "/api/v1", "repos": "/repos/", "tls": None}]


def test_serve_restarts_a_dead_mdns_process_and_stops_it_on_exit(served):
    result, _, port = served
    assert result["restarted"], result["log"]
    assert [a["url"] for a in result["agent_after_restart"]] == [f"http://127.0.0.1:{port}"]
    assert result["serve_exit"] == 0
    assert not result["supervisor_alive"] and not result["mdns_alive"], result["log"]
    assert result["goodbye"], "stopping serve should withdraw the advertisement"


def test_devices_and_extra_types_are_discovered(home, tmp_path):
    result = run_in_netns("devices", {"home": str(home), "work": str(tmp_path)})
    assert result["mdns_running"]
    found = {(d["service_type"], d["instance"]): d for d in result["discovered"]}
    agent = found["_airlock-device._tcp.local.", "dev-1"]
    assert agent["txt"] == {"id": "dev-1", "hw": "plc-x", "fw": "1.2.0"}
    assert (agent["port"], agent["addresses"], agent["device_id"], agent["state"]) == (
        7000, ["127.0.0.1"], "dev-1", "present")
    avahi = found["_airlock-device._tcp.local.", "dev-av"]
    assert avahi["txt"] == {"id": "dev-2", "hw": "gw-100", "fw": "3.1.0"}
    assert (avahi["port"], avahi["device_id"]) == (7001, "dev-2")
    opc = found["_opcua-tcp._tcp.local.", "opc-1"]
    assert (opc["port"], opc["txt"], opc["device_id"]) == (4840, {"path": "/"}, None)
    assert set(found) == {k for k in found if k[0] != "_http._tcp.local."}, "an unbrowsed type was recorded"
    assert all(d["first_seen"] <= d["last_seen"] and d["gone_since"] is None for d in found.values())
    # no enrolled device has these ids
    assert not any(d["enrolled"] for d in found.values())

    listed = run_airlock(home, "discovery", "list", "--json")
    assert listed.code == 0, listed.err
    assert {(d["instance"], d["state"]) for d in json.loads(listed.out)} == {
        ("dev-1", "present"), ("dev-av", "present"), ("opc-1", "present")}
    text = run_airlock(home, "discovery", "list", "--type", "_opcua-tcp._tcp")
    assert text.code == 0 and "opc-1" in text.out and "dev-1" not in text.out
    assert "127.0.0.1:4840" in text.out and "path=/" in text.out


def test_a_device_that_stops_answering_is_marked_gone(home, tmp_path):
    result = run_in_netns("gone", {"home": str(home), "work": str(tmp_path)})  # mdns_gone_after = 3
    assert result["all_present"]
    # a goodbye marks the service gone at once, by its own path, not by the sweep
    # of the silent (no wall-clock bound: a loaded CI machine once took 4.2 s)
    assert result["bye_by_goodbye"], result["bye_gone_after"]
    # silent: gone after 3 s without an answer, give or take a probe (1 s) and whole-second stamps
    assert 1.5 <= result["silent_gone_after"] <= 7.5, result["silent_gone_after"]
    later = result["later"]
    assert later["dev-silent"]["state"] == "gone" and later["dev-bye"]["state"] == "gone"
    assert later["dev-silent"]["last_seen"] < later["dev-silent"]["gone_since"]
    assert later["dev-stays"]["state"] == "present", "a device that answers probes must stay present"
    back = result["back"]
    assert back["state"] == "present" and back["gone_since"] is None and back["txt"]["fw"] == "1.0.1"
    assert back["first_seen"] == later["dev-silent"]["first_seen"]


def test_hostile_answers_are_stored_bounded_and_escaped(home, tmp_path):
    result = run_in_netns("hostile", {"home": str(home), "work": str(tmp_path)})
    [entry] = result["found"]
    everything = json.dumps(entry, ensure_ascii=False)
    assert not UNSAFE.search(everything), everything
    assert entry["instance"] == "evil\\x07\\x1b[2J\\u202e\\\\x41"
    txt = entry["txt"]
    assert txt["id"] == "\\x1b]0;pwned\\x07dev\\x00x\\x0aline"  # first "id" wins; "ID" ignored
    assert entry["device_id"] == txt["id"]
    assert txt["hw"] == "\\xff\\xfe\\xc3(bad"  # invalid UTF-8 as \xNN
    assert txt["fw"] == "\\u202egnp.exe\\u200b"  # bidi override and zero-width space
    assert txt["back"] == "\\\\x41"  # a literal backslash cannot pose as an escape
    assert txt["flag"] is None and "" not in txt  # key without value; "=no-key" dropped
    assert txt["k" * 64] == "long-key" and all(len(k) <= 64 for k in txt)  # long key cut to 64 bytes
    assert "k00" in txt and "k35" not in txt and len(txt) <= 32  # only the first 2048 bytes of TXT data
    shown = run_airlock(home, "discovery", "list")
    assert shown.code == 0 and "evil" in shown.out
    assert not UNSAFE.search(shown.out.replace("\t", " ").replace("\n", " "))


def test_discovery_uses_only_the_configured_interfaces(home, tmp_path):
    """A device on another network (the management port, here a veth pair)
    is not discovered, and the appliance sends nothing there."""
    result = run_in_netns("management_port", {"home": str(home), "work": str(tmp_path)})
    assert result["discovered"] == ["dev-lan"]
    sources = result["management_sources"]
    assert sources.get("10.99.0.2"), "the observer should see the management-side device's own traffic"
    assert set(sources) == {"10.99.0.2"}, f"the appliance talked on the management network: {sources}"
