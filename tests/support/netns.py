"""Running mDNS tests inside a private network namespace.

Multicast never touches the machine's real interfaces: a test runs a
scenario script under ``unshare -nm`` (:func:`run_in_netns`), and the
script, as root in its own network and mount namespaces, brings up
loopback with multicast (:func:`setup_loopback`) and, when it needs an
independent peer, Debian's avahi-daemon with a private D-Bus on a private
``/run`` (:class:`Avahi`).  The script becomes a child subreaper, so the
daemons (which fork away from it) are its children: it kills them by their
pid files and reaps them before it exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[2]
PR_SET_CHILD_SUBREAPER = 36

AVAHI_CONF = """[server]
use-ipv4=yes
use-ipv6=no
allow-interfaces=lo
enable-dbus=yes
disallow-other-stacks=no

[publish]
publish-aaaa-on-ipv4=no
publish-workstation=no
"""


# --- the pytest side -------------------------------------------------------

def require(*commands: str) -> None:
    """Fail (never skip) when a tool the mDNS tests need is missing: `make test` installs them (tests/prereqs.sh)."""
    missing = [c for c in commands if shutil.which(c) is None]
    assert not missing, f"mDNS tests need {missing} (run `sh tests/prereqs.sh` as root; `make test` does)"
    assert os.geteuid() == 0, "mDNS tests need root for a private network namespace (unshare -n)"


def run_in_netns(scenario: str, args: dict, timeout: float = 60.0) -> dict:
    """Run ``tests.support.mdns_scenarios SCENARIO`` in fresh network and mount
    namespaces; return the JSON it prints last."""
    require("unshare", "ip")
    env = dict(os.environ, PYTHONPATH=str(ROOT), AIRLOCK_MDNS_ENABLED="1")
    proc = subprocess.run(  # noqa: PLW1510 - the assert below reports a failure with its output
        ["unshare", "--net", "--mount", "--propagation", "private", sys.executable, "-m",
         "tests.support.mdns_scenarios", scenario, json.dumps(args)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, (
        f"scenario {scenario} failed ({proc.returncode})\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-6000:]}")
    return json.loads(lines[-1])


# --- the namespace side ----------------------------------------------------

def sh(command: str) -> None:
    subprocess.run(command, shell=True, check=True)


def setup_loopback() -> None:
    """Loopback up, with multicast routed over it; refuse to run outside a
    private namespace (where other interfaces would exist)."""
    links = [name for _, name in socket.if_nameindex()]
    assert links == ["lo"], f"not in a private network namespace: interfaces {links}"
    sh("ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo")
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_pidfile(path: Path) -> None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        reap()
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    reap()


class Avahi:
    """avahi-daemon and a system D-Bus on a private /run (needs ``unshare -m``)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.pidfiles = [workdir / "dbus.pid", Path("/run/avahi-daemon/pid")]
        self.clients: list[subprocess.Popen] = []

    def __enter__(self) -> Self:
        require("dbus-daemon", "avahi-daemon", "avahi-browse", "avahi-publish")
        sh("mount -t tmpfs tmpfs /run && mkdir -p /run/dbus /run/avahi-daemon")
        with open(self.pidfiles[0], "w") as f:
            subprocess.run(["dbus-daemon", "--system", "--fork", "--print-pid"], stdout=f, check=True)
        conf = self.workdir / "avahi-daemon.conf"
        conf.write_text(AVAHI_CONF)
        subprocess.run(["avahi-daemon", "-f", str(conf), "--no-drop-root", "--no-chroot", "-D"], check=True)
        # Keep a copy of the pid: /run/avahi-daemon/pid goes when avahi exits.
        deadline = time.monotonic() + 10
        while subprocess.run(["avahi-browse", "-apt"], capture_output=True, check=False).returncode != 0:
            assert time.monotonic() < deadline, "avahi-daemon did not come up"
            time.sleep(0.1)
        return self

    def publish(self, name: str, service_type: str, port: int, *txt: str) -> subprocess.Popen:
        """``avahi-publish -s``; stop it with :meth:`unpublish` (avahi says goodbye)."""
        proc = subprocess.Popen(["avahi-publish", "-s", name, service_type, str(port), *txt],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.clients.append(proc)
        return proc

    def browse(self, service_type: str, until: str, timeout: float = 8.0) -> list[list[str]]:
        """``avahi-browse -rpt`` resolved lines (split on ';') until one contains ``until``."""
        deadline = time.monotonic() + timeout
        while True:
            out = subprocess.run(["avahi-browse", "-rpt", service_type], capture_output=True, text=True,
                                 timeout=10, check=False).stdout
            lines = [line.split(";") for line in out.splitlines() if line.startswith("=")]
            if any(until in line for line in out.splitlines()) or time.monotonic() > deadline:
                return lines
            time.sleep(0.3)

    def __exit__(self, *exc) -> None:
        for proc in self.clients:
            stop(proc)
        kill_pidfile(Path("/run/avahi-daemon/pid"))
        kill_pidfile(self.pidfiles[0])


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(check, timeout: float, every: float = 0.2):
    """Call ``check()`` until it returns something true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(every)


def emit(result: dict) -> None:
    print(json.dumps(result), flush=True)
