"""mDNS scenarios, each run by tests/functional/test_mdns.py in a private
network namespace (``python -m tests.support.mdns_scenarios NAME JSON``).

Each scenario sets the namespace up, runs the real processes (``airlock
serve``, ``airlock mdns``, the agent's functions, avahi-daemon and its
tools), waits, bounded in time, for what it expects, and prints one JSON
line of observations for the test to check.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

from tests.support.netns import Avahi, emit, reap, setup_loopback, sh, stop, wait_for

PY = sys.executable
DEVICE_TYPE = "_airlock-device._tcp.local."
APPLIANCE_TYPE = "_airlock._tcp.local."


def airlock(home: Path, *args: str, env: dict | None = None, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen([PY, "-m", "appliance.cli", "--home", str(home), *args],
                            env=dict(os.environ, **(env or {})), stdout=out, stderr=subprocess.STDOUT)


def discovered(home: Path) -> list[dict]:
    from server import bind_database
    from server.discovery.services import list_discovered
    from server.settings import load_settings

    db = bind_database(load_settings(home))
    try:
        return [d.to_dict() for d in list_discovered()]
    finally:
        db.close()


def by_instance(home: Path) -> dict[str, dict]:
    return {d["instance"]: d for d in discovered(home)}


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    reap()  # orphans are ours (subreaper): a dead one must not linger as a zombie
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


class Browse:
    """A plain zeroconf browser (not Airlock code) that resolves what it sees."""

    def __init__(self, service_type: str):
        from zeroconf import IPVersion, ServiceBrowser, Zeroconf

        self.type = service_type
        self.zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        self.added: list[str] = []
        self.removed: list[str] = []
        self.browser = ServiceBrowser(self.zc, service_type, handlers=[self._on_change])

    def _on_change(self, zeroconf, service_type, name, state_change):
        (self.removed if state_change.name == "Removed" else self.added).append(name)

    def resolved(self) -> list[dict]:
        from zeroconf import IPVersion, ServiceInfo

        out = []
        for name in dict.fromkeys(self.added):
            info = ServiceInfo(self.type, name)
            if info.request(self.zc, 1500):
                out.append({"name": name, "port": info.port,
                            "addresses": info.parsed_addresses(IPVersion.V4Only),
                            "txt": {k.decode(): (v or b"").decode() for k, v in info.properties.items()}})
        return out

    def close(self):
        self.browser.cancel()
        self.zc.close()


# --- scenarios -------------------------------------------------------------

def scenario_appliance(args: dict) -> dict:
    """`airlock serve` advertises the appliance through its supervised mDNS
    process: zeroconf, avahi and the agent find it; a killed mDNS process is
    restarted; stopping serve stops it, with a goodbye."""
    from agent.mdns import find_appliance

    home, work, port = Path(args["home"]), Path(args["work"]), args["port"]
    setup_loopback()
    result: dict = {}
    log = work / "serve.log"
    serve = airlock(home, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "2", log=log)
    browse = Browse(APPLIANCE_TYPE)
    try:
        def healthy():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False
        result["healthy"] = wait_for(healthy, 20)
        with Avahi(work) as avahi:
            wait_for(lambda: browse.added, 10)
            result["zeroconf"] = browse.resolved()
            result["avahi"] = avahi.browse("_airlock._tcp", until=f";{port};", timeout=10)
        result["agent"] = [asdict(a) for a in find_appliance(timeout=6, interfaces=["127.0.0.1"], limit=1)]

        # supervision: kill the mDNS process, a new one takes over
        supervisor = next(p for p in children(serve.pid) if "--supervise" in cmdline(p))
        first = wait_for(lambda: children(supervisor), 5)[0]
        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: [c for c in children(supervisor) if c != first], 10)
        result["restarted"] = bool(second)
        result["agent_after_restart"] = [
            asdict(a) for a in find_appliance(timeout=10, interfaces=["127.0.0.1"], limit=1)]

        removed_before = len(browse.removed)
        stop(serve, timeout=20)
        result["serve_exit"] = serve.returncode
        result["supervisor_alive"] = alive(supervisor)
        result["mdns_alive"] = bool(second) and alive(second[0])
        result["goodbye"] = bool(wait_for(lambda: len(browse.removed) > removed_before, 5))
    finally:
        stop(serve)
        browse.close()
        result["log"] = log.read_text()[-3000:] if log.exists() else ""
    return result


def scenario_devices(args: dict) -> dict:
    """Devices advertised by the agent and by avahi, and an extra type, are
    recorded as discovered; an unbrowsed type is not."""
    from agent.mdns import advertise_device

    home, work = Path(args["home"]), Path(args["work"])
    setup_loopback()
    log = work / "mdns.log"
    mdns = airlock(home, "mdns", env={"AIRLOCK_MDNS_EXTRA_TYPES": "_opcua-tcp._tcp"}, log=log)
    try:
        with Avahi(work) as avahi, advertise_device("dev-1", "plc-x", "1.2.0", 7000, interfaces=["127.0.0.1"]):
            avahi.publish("dev-av", "_airlock-device._tcp", "7001", "id=dev-2", "hw=gw-100", "fw=3.1.0")
            avahi.publish("opc-1", "_opcua-tcp._tcp", "4840", "path=/")
            avahi.publish("web-1", "_http._tcp", "80")
            wait_for(lambda: {"dev-1", "dev-av", "opc-1"} <= set(by_instance(home)), 20)
            time.sleep(1)
            running = mdns.poll() is None
            stop(mdns)  # before the devices say goodbye, so they stay listed as present
            return {"discovered": discovered(home), "mdns_running": running}
    finally:
        stop(mdns)
        print(log.read_text()[-3000:], file=sys.stderr)


def _advertiser(device_id: str) -> subprocess.Popen:
    """A device in its own process, so it can die without a goodbye."""
    code = ("import sys, time\nfrom agent.mdns import advertise_device\n"
            f"h = advertise_device({device_id!r}, 'plc-x', '1.0.0', 7100, interfaces=['127.0.0.1'])\n"
            "print('ready', flush=True)\ntime.sleep(120)\n")
    return subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, text=True)


def scenario_gone(args: dict) -> dict:
    """With mdns_gone_after = 3 s: a device that dies silently is marked gone
    after about that long; one that says goodbye at once; one that keeps
    answering stays present; a gone device that comes back is present again."""
    from agent.mdns import advertise_device

    home, work = Path(args["home"]), Path(args["work"])
    setup_loopback()
    log = work / "mdns.log"
    mdns = airlock(home, "mdns", env={"AIRLOCK_MDNS_GONE_AFTER": "3", "AIRLOCK_LOG_LEVEL": "INFO"}, log=log)
    result: dict = {}
    silent = _advertiser("dev-silent")
    try:
        with Avahi(work) as avahi, advertise_device("dev-stays", "plc-x", "1.0.0", 7101, interfaces=["127.0.0.1"]):
            bye = avahi.publish("dev-bye", "_airlock-device._tcp", "7102", "id=dev-bye")
            assert silent.stdout.readline().strip() == "ready"
            result["all_present"] = bool(wait_for(
                lambda: all(by_instance(home).get(n, {}).get("state") == "present"
                            for n in ("dev-silent", "dev-stays", "dev-bye")), 20))
            t0 = time.monotonic()
            silent.kill()
            stop(bye)
            wait_for(lambda: by_instance(home)["dev-bye"]["state"] == "gone", 10, every=0.1)
            result["bye_gone_after"] = time.monotonic() - t0
            wait_for(lambda: by_instance(home)["dev-silent"]["state"] == "gone", 15, every=0.1)
            result["silent_gone_after"] = time.monotonic() - t0
            # which path marked dev-bye gone: its goodbye, or the sweep of the silent
            result["bye_by_goodbye"] = "gone (goodbye): 'dev-bye." in log.read_text()
            time.sleep(max(0.0, t0 + 7 - time.monotonic()))  # over twice mdns_gone_after
            result["later"] = by_instance(home)
            with advertise_device("dev-silent", "plc-x", "1.0.1", 7100, interfaces=["127.0.0.1"]):
                wait_for(lambda: by_instance(home)["dev-silent"]["state"] == "present", 10)
                result["back"] = by_instance(home)["dev-silent"]
    finally:
        stop(silent)
        stop(mdns)
        print(log.read_text()[-3000:], file=sys.stderr)
    return result


def _hostile_packets() -> list[bytes]:
    """An unsolicited mDNS answer no well-behaved library would build: a
    name with control characters and invalid UTF-8, and a hostile TXT."""
    from zeroconf import DNSAddress, DNSOutgoing, DNSPointer, DNSService, DNSText
    from zeroconf.const import (
        _CLASS_IN,
        _FLAGS_AA,
        _FLAGS_QR_RESPONSE,
        _TYPE_A,
        _TYPE_PTR,
        _TYPE_SRV,
        _TYPE_TXT,
    )

    name = "evil\x07\x1b[2J\u202e\\x41." + DEVICE_TYPE
    entries = [
        b"id=\x1b]0;pwned\x07dev\x00x\nline",
        b"ID=second-id-ignored",
        b"hw=\xff\xfe\xc3(bad",
        "fw=\u202egnp.exe\u200b".encode(),
        b"flag",
        b"=no-key",
        b"K" * 100 + b"=long-key",
        b"back=\\x41",
    ] + [b"k%02d=" % i + b"v" * 95 for i in range(36)]
    txt = b"".join(bytes([len(e)]) + e for e in entries)
    out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
    now = 0
    out.add_answer_at_time(DNSPointer(DEVICE_TYPE, _TYPE_PTR, _CLASS_IN, 4500, name), now)
    out.add_answer_at_time(DNSService(name, _TYPE_SRV, _CLASS_IN | 0x8000, 120, 0, 0, 9, "evil.local."), now)
    out.add_answer_at_time(DNSText(name, _TYPE_TXT, _CLASS_IN | 0x8000, 4500, txt), now)
    out.add_answer_at_time(DNSAddress("evil.local.", _TYPE_A, _CLASS_IN | 0x8000, 120,
                                      socket.inet_aton("127.0.0.1")), now)
    return out.packets()


def scenario_hostile(args: dict) -> dict:
    """A hostile answer is stored bounded and escaped."""
    home, work = Path(args["home"]), Path(args["work"])
    setup_loopback()
    log = work / "mdns.log"
    mdns = airlock(home, "mdns", log=log)
    packets = _hostile_packets()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("", 5353))  # mDNS answers from another port are ignored
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    try:
        def sent_and_seen():
            for packet in packets:
                sock.sendto(packet, ("224.0.0.251", 5353))
            return [d for d in discovered(home) if d["instance"].startswith("evil")]
        found = wait_for(sent_and_seen, 15, every=0.5)
        return {"found": found, "packet_bytes": [len(p) for p in packets]}
    finally:
        sock.close()
        stop(mdns)
        print(log.read_text()[-3000:], file=sys.stderr)


def scenario_management_port(args: dict) -> dict:
    """With mdns_interfaces = 127.0.0.1 and a second network (a veth pair
    standing for the management port), the appliance neither lists a device
    advertised on that network nor sends anything on it."""
    from agent.mdns import advertise_device

    home, work = Path(args["home"]), Path(args["work"])
    setup_loopback()
    sh("ip link add mgmt0 type veth peer name mgmt1 && ip addr add 10.99.0.1/24 dev mgmt0 "
       "&& ip addr add 10.99.0.2/24 dev mgmt1 && ip link set mgmt0 up multicast on "
       "&& ip link set mgmt1 up multicast on")
    # An observer that takes only what arrives on the management network.
    obs = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    obs.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    obs.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    obs.setsockopt(socket.IPPROTO_IP, 49, 0)  # IP_MULTICAST_ALL off
    obs.bind(("", 5353))
    for local in ("10.99.0.1", "10.99.0.2"):
        obs.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                       socket.inet_aton("224.0.0.251") + socket.inet_aton(local))
    obs.settimeout(0.2)
    log = work / "mdns.log"
    mdns = airlock(home, "mdns", log=log)
    sources: dict[str, int] = {}
    try:
        with advertise_device("dev-lan", "plc-x", "1.0.0", 7200, interfaces=["127.0.0.1"]), \
                advertise_device("dev-mgmt", "plc-x", "1.0.0", 7201, interfaces=["10.99.0.2"]):
            deadline = time.monotonic() + 20
            settle = None
            while time.monotonic() < deadline:
                try:
                    _, (src, _) = obs.recvfrom(9000)
                    sources[src] = sources.get(src, 0) + 1
                except TimeoutError:
                    pass
                if settle is None and "dev-lan" in by_instance(home):
                    settle = time.monotonic() + 4  # a few of the appliance's probes more
                if settle is not None and time.monotonic() > settle:
                    break
            return {"discovered": sorted(by_instance(home)), "management_sources": sources}
    finally:
        obs.close()
        stop(mdns)
        print(log.read_text()[-3000:], file=sys.stderr)


def scenario_tls(args: dict) -> dict:
    """The appliance behind its TLS front (nginx from the docs' site file)
    advertises tls=<sha256> and nginx's port; an agent that finds it by mDNS
    pins that certificate and enrolls, checks in and installs over HTTPS."""
    from tests.support.tls_front import tls_front

    home, work = Path(args["home"]), Path(args["work"])
    app_port, http_port, https_port = args["app_port"], args["http_port"], args["https_port"]
    setup_loopback()
    result: dict = {}
    log = work / "serve.log"
    serve = airlock(home, "serve", "--bind", f"127.0.0.1:{app_port}", "--workers", "1", "--threads", "4", log=log)
    browse = Browse(APPLIANCE_TYPE)
    agent = [PY, "-m", "agent.cli"]
    agent_env = dict(os.environ, HOOK_OUT=args["hook_out"])  # what tests/functional/agent/install_hook.py writes
    try:
        with tls_front(home, f"127.0.0.1:{app_port}", work / "nginx", http_port=http_port, https_port=https_port,
                       timeout=30):
            wait_for(lambda: browse.added, 15)
            result["zeroconf"] = browse.resolved()
            config = ["--config", args["agent_config"]]
            enroll = subprocess.run([*agent, "enroll", *config], capture_output=True, text=True, timeout=60,
                                    env=agent_env)
            result["enroll"] = [enroll.returncode, enroll.stderr[-2000:]]
            accept = airlock(home, "devices", "accept", args["device"])
            result["accept"] = accept.wait(timeout=30)
            run = subprocess.run([*agent, "run", "--once", *config], capture_output=True, text=True, timeout=120,
                                 env=agent_env)
            result["run"] = [run.returncode, run.stdout[-2000:], run.stderr[-2000:]]
            state = json.loads((Path(args["state_dir"]) / "state.json").read_text())
            result["pinned"] = state.get("appliance_tls")
    finally:
        stop(serve)
        browse.close()
        result["log"] = log.read_text()[-3000:] if log.exists() else ""
    return result


SCENARIOS = {name.removeprefix("scenario_"): f for name, f in globals().items() if name.startswith("scenario_")}

if __name__ == "__main__":
    emit(SCENARIOS[sys.argv[1]](json.loads(sys.argv[2])))
