"""A real appliance for the device API tests: `airlock init --admin`, a
vendor repository pinned and imported from a RepoSim bundle, and `airlock
serve` (gunicorn, 2 workers) on loopback.  One per test module, to keep the
suite fast; tests use distinct device ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Result, new_home, pin, run_airlock
from tests.functional.devices.client import ApiClient, SpecChecker
from tests.support import homedb
from tests.support.server import airlock_server
from tests.support.simulator import RepoSim

ADMIN, PASSWORD = "it-admin", "a long admin password"


@dataclass
class Appliance:
    home: Path
    base: str
    checker: SpecChecker

    def airlock(self, *args) -> Result:
        return run_airlock(self.home, *args)

    def client(self) -> ApiClient:
        return ApiClient(self.base, self.checker)

    def counts(self) -> dict[str, int]:
        con = homedb.connect(self.home)
        try:
            return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: S608 - fixed names
                    for t in ("device", "device_key", "enrollment_nonce", "metric_sample", "update_report",
                              "firmware_release", "device_tag")}
        finally:
            con.close()

    def checkins(self) -> int:
        con = homedb.connect(self.home)
        try:
            return con.execute("SELECT COALESCE(SUM(checkins), 0) FROM device").fetchone()[0]
        finally:
            con.close()


@pytest.fixture(scope="module")
def appliance(tmp_path_factory, module_database_url):
    root = tmp_path_factory.mktemp("devices")
    home = new_home(root / "home", module_database_url)
    (root / "pw").write_text(PASSWORD)
    assert run_airlock(home, "init", "--admin", ADMIN, "--password-file", root / "pw").code == 0
    sim = RepoSim("acme")
    assert pin(lambda *a: run_airlock(home, *a), sim, root).code == 0
    sim.add_target("plc-x/fw-2.0.0.bin", b"firmware two" * 100, hardware=("plc-x",), version="2.0.0")
    sim.add_target("plc-x/fw-1.5.0.bin", b"firmware one five", hardware=("plc-x",), version="1.5.0")
    sim.publish()
    r = run_airlock(home, "import", sim.write_bundle(root / "usb"))
    assert r.code == 0, r.err
    with airlock_server(home, workers=2, threads=8) as base:
        raw = ApiClient(base)
        spec_response = raw.get("/api/v1/openapi.json")
        assert spec_response.status == 200
        checker = SpecChecker(spec_response.json)
        checker.check("GET", "/api/v1/openapi.json", spec_response)
        raw.close()
        yield Appliance(home, base, checker)
