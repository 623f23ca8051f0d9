"""An appliance with one user of each role, for the console's tests; a
served one with a small fleet of devices."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import new_home, run_airlock
from tests.functional.devices.client import ApiClient, SimDevice, SpecChecker, utc_now
from tests.support.server import airlock_server

PASSWORDS = {"ada": "ada's admin password", "otto": "otto's operator password", "aude": "aude's auditor password"}
ROLE_OF = {"ada": "admin", "otto": "operator", "aude": "auditor"}
USER_OF = {role: name for name, role in ROLE_OF.items()}


@pytest.fixture
def console_home(tmp_path, database_url):
    home = new_home(tmp_path / "home", database_url)
    pw = tmp_path / "ada"
    pw.write_text(PASSWORDS["ada"] + "\n")
    assert run_airlock(home, "init", "--admin", "ada", "--password-file", pw).code == 0
    for name in ("otto", "aude"):
        pw = tmp_path / name
        pw.write_text(PASSWORDS[name] + "\n")
        r = run_airlock(home, "users", "add", name, "--role", ROLE_OF[name], "--password-file", pw)
        assert r.code == 0, r.err
    return home


@dataclass
class Fleet:
    home: Path
    base: str
    api: ApiClient  # validates every answer against the served OpenAPI document

    def __iter__(self):  # home, api = fleet
        return iter((self.home, self.api))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, module_database_url):
    """Twelve devices: plc-00..07 (plc-x) and gw-00..03 (gw-1); plc-00..05
    accepted (plc-00..02 tagged hall-a), gw-00 rejected, the rest pending;
    plc-00 has checked in and filed a crash report."""
    root = tmp_path_factory.mktemp("fleet")
    home = new_home(root / "home", module_database_url)
    (root / "ada").write_text(PASSWORDS["ada"] + "\n")
    assert run_airlock(home, "init", "--admin", "ada", "--password-file", root / "ada").code == 0
    for name in ("otto", "aude"):
        (root / name).write_text(PASSWORDS[name] + "\n")
        assert run_airlock(home, "users", "add", name, "--role", ROLE_OF[name], "--password-file",
                           root / name).code == 0
    with airlock_server(home, workers=2, threads=4) as base:
        raw = ApiClient(base)
        checker = SpecChecker(raw.get("/api/v1/openapi.json").json)
        devices = [SimDevice(f"plc-{i:02d}") for i in range(8)] + \
            [SimDevice(f"gw-{i:02d}", hardware="gw-1") for i in range(4)]
        for dev in devices:
            assert raw.post("/api/v1/enroll", dev.enrollment()).status == 202
        for dev in devices[:6]:
            assert run_airlock(home, "devices", "accept", dev.device_id).code == 0
        assert run_airlock(home, "devices", "reject", "gw-00").code == 0
        for dev in devices[:3]:
            assert run_airlock(home, "devices", "tag", dev.device_id, "hall-a").code == 0
        devices[0].token = raw.post("/api/v1/enroll", devices[0].enrollment()).json["token"]
        assert raw.post("/api/v1/checkin", {"firmware": "1.2.0"}, devices[0].auth()).status == 200
        report = {"report_id": str(uuid.uuid4()), "kind": "crash", "severity": "critical", "firmware": "1.2.0",
                  "message": "hard fault in task modbus\nPC=0x0800_1234", "occurred_at": utc_now()}
        assert raw.post("/api/v1/reports", report, devices[0].auth()).status == 201
        raw.close()
        api = ApiClient(base, checker)
        yield Fleet(home, base, api)
        api.close()
