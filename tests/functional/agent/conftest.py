"""The reference agent against a real appliance: `airlock init`, a vendor
repository (RepoSim, real keys) pinned and imported, `airlock serve` on
loopback, and `airlock-agent` run as its own process, as on a device.
mDNS stays off (tests/conftest.py); test_mdns.py covers it in a namespace."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Result, pin, run_airlock
from tests.support.server import airlock_server
from tests.support.simulator import RepoSim

ADMIN, PASSWORD = "it-admin", "a long admin password"
HOOK = Path(__file__).with_name("install_hook.py")


def firmware(model: str, size: int) -> bytes:
    """Deterministic, incompressible-looking bytes."""
    out, block = bytearray(), model.encode()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


TARGETS = {  # hardware model -> firmware 2.0.0 bytes (one model per test, so tests do not meet)
    "plc-x": firmware("plc-x", 3000),
    "plc-t": firmware("plc-t", 5000),
    "plc-r": firmware("plc-r", 400_000),
    "plc-q": firmware("plc-q", 100_000),
    "plc-s": firmware("plc-s", 20_000),
    "plc-b": firmware("plc-b", 2_000),
}


def target_path(model: str) -> str:
    return f"{model}/fw-2.0.0.bin"


def make_home(root: Path) -> tuple[Path, RepoSim]:
    home = root / "home"
    (root / "pw").write_text(PASSWORD)
    assert run_airlock(home, "init", "--admin", ADMIN, "--password-file", root / "pw").code == 0
    sim = RepoSim("acme")
    assert pin(lambda *a: run_airlock(home, *a), sim, root).code == 0
    for model, data in TARGETS.items():
        sim.add_target(target_path(model), data, hardware=(model,), version="2.0.0")
    sim.publish()
    r = run_airlock(home, "import", sim.write_bundle(root / "usb"))
    assert r.code == 0, r.err
    (root / "vendor-root.json").write_bytes(sim.first_root())
    return home, sim


@dataclass
class Device:
    """One `airlock-agent` installation: its config file and folders."""

    name: str
    config: Path
    state_dir: Path
    firmware_file: Path
    hook_out: Path

    def agent(self, *args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agent.cli", args[0], "--config", str(self.config), *args[1:]],
                              check=False, capture_output=True, text=True, timeout=timeout, env=self.env(env))

    def popen(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "agent.cli", args[0], "--config", str(self.config),
                                 *args[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env(env))

    def env(self, extra: dict | None = None) -> dict:
        return dict(os.environ, HOOK_OUT=str(self.hook_out), **(extra or {}))

    def hook_runs(self) -> list[dict]:
        if not self.hook_out.exists():
            return []
        return [json.loads(line) for line in self.hook_out.read_text().splitlines()]

    def spool(self) -> list[Path]:
        return sorted((self.state_dir / "spool").glob("*.json"))


@dataclass
class Site:
    root: Path
    home: Path
    base: str
    sim: RepoSim

    def airlock(self, *args) -> Result:
        return run_airlock(self.home, *args)

    def device(self, name: str, hardware: str, **settings) -> Device:
        folder = self.root / "devices" / name
        folder.mkdir(parents=True)
        fw = folder / "firmware-version"
        fw.write_text("1.0.0\n")
        values = {"state_dir": str(folder / "state"), "appliance_url": self.base, "device_id": name,
                  "hardware": hardware, "firmware_file": str(fw), "repository": "acme",
                  "root_file": str(self.root / "vendor-root.json"),
                  "install_hook": f"{sys.executable} {HOOK}", "request_timeout": 10.0, **settings}
        lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        (folder / "agent.toml").write_text("\n".join(lines) + "\n")
        return Device(name, folder / "agent.toml", folder / "state", fw, folder / "hook-out.jsonl")

    def show(self, device_id: str) -> dict:
        r = self.airlock("devices", "show", device_id, "--json")
        assert r.code == 0, r.err
        return json.loads(r.out)

    def approve(self, model: str) -> int:
        r = self.airlock("releases", "approve", "acme", target_path(model), "--hardware", model)
        assert r.code == 0, r.err
        return int(r.out.split()[1].rstrip(":"))

    def published_target(self, model: str) -> Path:
        found = list((self.home / "public" / "repos" / "acme").glob(f"**/targets/{model}/*.fw-2.0.0.bin"))
        assert len(found) == 1, found
        return found[0].resolve()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("agent")
    home, sim = make_home(root)
    with airlock_server(home, workers=2, threads=8) as base:
        yield Site(root, home, base, sim)
