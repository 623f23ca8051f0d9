"""A real appliance for the report tests: `airlock init`, a vendor
repository pinned and imported (so a device can report an update result),
small report limits in airlock.toml, and `airlock serve` (gunicorn, 2
workers) on loopback.  One per test module; tests use distinct device ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.conftest import Result, new_home, pin, run_airlock
from tests.functional.devices.client import ApiClient, Response, SimDevice, SpecChecker
from tests.support import homedb
from tests.support.server import airlock_server
from tests.support.simulator import RepoSim

LIMITS = """
report_rate_per_hour = 6
report_form_rate_per_hour = 4
report_max_attachment_bytes = 4096
report_device_storage_bytes = 10000
"""


@dataclass
class Appliance:
    home: Path
    base: str
    checker: SpecChecker

    def airlock(self, *args) -> Result:
        return run_airlock(self.home, *args)

    def client(self) -> ApiClient:
        return ApiClient(self.base, self.checker)

    def enroll(self, device_id: str, firmware: str = "1.0.0") -> SimDevice:
        """An accepted device holding a token."""
        api, dev = self.client(), SimDevice(device_id, firmware=firmware)
        assert api.post("/api/v1/enroll", dev.enrollment()).status == 202
        assert self.airlock("devices", "accept", device_id).code == 0
        r = api.post("/api/v1/enroll", dev.enrollment())
        assert r.status == 200, r.body
        dev.token = r.json["token"]
        return dev

    def post_form(self, path: str, fields: dict, headers: dict | None = None) -> Response:
        return self.client().post(path, raw=urlencode(fields).encode(), headers=headers,
                                  content_type="application/x-www-form-urlencoded")

    def rows(self, sql: str, *args) -> list[tuple]:
        con = homedb.connect(self.home)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def stored(self) -> tuple:
        """Everything a refused report must leave as it was."""
        blobs = self.home / "reports" / "blobs"
        files = sorted(p.name for p in blobs.rglob("*")) if blobs.exists() else []
        return (self.rows("SELECT COUNT(*) FROM report")[0][0],
                self.rows("SELECT COUNT(*) FROM report_attachment")[0][0], files)


@pytest.fixture(scope="module")
def appliance(tmp_path_factory, module_database_url):
    root = tmp_path_factory.mktemp("reports")
    home = new_home(root / "home", module_database_url)
    assert run_airlock(home, "init").code == 0
    with open(home / "airlock.toml", "a") as toml:
        toml.write(LIMITS)
    sim = RepoSim("acme")
    assert pin(lambda *a: run_airlock(home, *a), sim, root).code == 0
    sim.add_target("plc-x/fw-2.0.0.bin", b"firmware two" * 100, hardware=("plc-x",), version="2.0.0")
    sim.publish()
    r = run_airlock(home, "import", sim.write_bundle(root / "usb"))
    assert r.code == 0, r.err
    with airlock_server(home, workers=2, threads=8) as base:
        raw = ApiClient(base)
        spec = raw.get("/api/v1/openapi.json").json
        raw.close()
        # labels must point where the test reaches the appliance
        with open(home / "airlock.toml", "a") as toml:
            toml.write(f'public_url = "{base}"\n')
        yield Appliance(home, base, SpecChecker(spec))
