"""A real appliance with a history worth exporting, built once per module:
`airlock init --admin`, a vendor repository (with the vendor's export key as
target airlock/export-key.pub) pinned and imported, devices enrolled through
the device API (the real Flask app, in-process), check-ins, a failed update,
an error report with an attachment, and audit events.  Sentinel secrets are
planted on the way, so a test can look for them in the export."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import Result, new_home, pin, run_airlock
from tests.functional.devices.client import SimDevice
from tests.support import homedb
from tests.support.simulator import RepoSim

ADMIN = "it-admin"
PASSWORD = "Sentinel-Admin-Password-7c1f0e"
ENROLL_TOKEN = "Sentinel-Enrollment-Token-93ab55"
VENDOR_PASSPHRASE = b"vendor export key passphrase"
HOSTILE_MESSAGE = "=HYPERLINK(\"http://evil\")\x9b2J<script>alert(1)</script>\u202e"
ATTACHMENT = b"kernel: watchdog: BUG: soft lockup\n" * 20


@dataclass
class Site:
    root: Path
    home: Path
    sim: RepoSim
    vendor_key: Path  # the vendor's X25519 private key file
    secrets: dict[str, bytes] = field(default_factory=dict)

    def airlock(self, *args) -> Result:
        return run_airlock(self.home, *args)

    def appliance_pub(self) -> Path:
        path = self.root / "appliance.pub"
        if not path.exists():
            r = self.airlock("keys", "show")
            assert r.code == 0, r.err
            path.write_text(r.out)
        return path

    def db(self):
        return homedb.connect(self.home)


def _checkin(client, dev: SimDevice, metrics: dict):
    r = client.post("/api/v1/checkin", json={"firmware": dev.firmware, "metrics": metrics}, headers=dev.auth())
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def build_site(root: Path, database_url: str = "") -> Site:
    from server import create_app
    from server.settings import load_settings
    from signing.export import generate_export_key

    home = new_home(root / "home", database_url)
    (root / "pw").write_text(PASSWORD)
    assert run_airlock(home, "init", "--admin", ADMIN, "--password-file", root / "pw").code == 0
    vendor_key = root / "vendor-export.key"
    pub = generate_export_key(vendor_key, VENDOR_PASSPHRASE)
    sim = RepoSim("acme")
    assert pin(lambda *a: run_airlock(home, *a), sim, root).code == 0
    sim.add_target("plc-x/fw-2.0.0.bin", b"firmware two" * 100, hardware=("plc-x",), version="2.0.0")
    sim.add_target("airlock/export-key.pub", pub.read_bytes(), custom={})
    sim.publish()
    r = run_airlock(home, "import", sim.write_bundle(root / "usb-bundle"))
    assert r.code == 0, r.err
    site = Site(root, home, sim, vendor_key)

    (root / "enroll-token").write_text(ENROLL_TOKEN)
    assert site.airlock("devices", "auto-accept", "add", "--hardware", "plc-x", "--token-file",
                        root / "enroll-token").code == 0
    client = create_app(load_settings(home)).test_client()
    devices = {}
    for n in range(3):
        dev = SimDevice(f"exp-{n}")
        r = client.post("/api/v1/enroll", json=dev.enrollment(enrollment_token=ENROLL_TOKEN))
        assert r.status_code == 200, r.get_data(as_text=True)
        dev.token = r.get_json()["token"]
        devices[dev.device_id] = dev
    # one device enrolls without the token and waits for IT
    late = SimDevice("exp-late")
    assert client.post("/api/v1/enroll", json=late.enrollment()).status_code == 202
    assert site.airlock("devices", "accept", "exp-late").code == 0
    r = client.post("/api/v1/enroll", json=late.enrollment())
    late.token = r.get_json()["token"]
    devices["exp-late"] = late

    hot = devices["exp-0"]
    _checkin(client, hot, {"uptime_s": 100, "cpu_temp_c": 50})
    _checkin(client, hot, {"uptime_s": 400, "cpu_temp_c": 97})  # flagged hot: an incident
    _checkin(client, devices["exp-1"], {"uptime_s": 50, "cpu_temp_c": 40})
    assert site.airlock("releases", "approve", "acme", "plc-x/fw-2.0.0.bin", "--hardware", "plc-x").code == 0
    offer = _checkin(client, devices["exp-1"], {"uptime_s": 60, "cpu_temp_c": 41})["update"]
    body = {"report_id": str(uuid.uuid4()), "release_id": offer["release_id"], "step": "failure",
            "reason": "flash write failed", "at": "2026-01-01T00:00:00Z"}
    assert client.post("/api/v1/updates", json=body, headers=devices["exp-1"].auth()).status_code in (200, 201)
    report = {"report_id": str(uuid.uuid4()), "kind": "crash", "severity": "critical", "message": HOSTILE_MESSAGE,
              "firmware": "1.0.0", "attachments": [{"name": "dmesg.txt",
                                                     "content": base64.b64encode(ATTACHMENT).decode()}]}
    # The API refuses C1 and bidi characters (server/text.py); a report stored
    # by an older Airlock may still hold them, so the text goes in below.
    assert client.post("/api/v1/reports", json=report, headers=devices["exp-2"].auth()).status_code == 400
    report["message"] = "placeholder"
    r = client.post("/api/v1/reports", json=report, headers=devices["exp-2"].auth())
    assert r.status_code == 201, r.get_data(as_text=True)
    hostile_report = r.get_json()["id"]
    assert site.airlock("devices", "decommission", "exp-late", "--reason", "replaced").code == 0
    # a QR label: its key (in the printed URL) is a secret too
    assert site.airlock("devices", "labels", "--out", root / "labels.svg", "exp-0").code == 0
    url = re.search(r"href=[\"']([^\"']+)[\"']", (root / "labels.svg").read_text()).group(1)
    label_key = parse_qs(urlsplit(html.unescape(url)).query)

    # earlier history: raw check-ins and an hourly rollup from hours ago
    now = int(time.time())
    hour = now - now % 3600
    con = site.db()
    pk = con.execute("SELECT id FROM device WHERE device_id = 'exp-0'").fetchone()[0]
    con.executemany("INSERT INTO metric_sample (device, resolution, ts, data) VALUES (?, 0, ?, ?)",
                    [(pk, hour - 7200 + 300 * i, f'{{"cpu_temp_c": {40 + i}, "uptime_s": {i}}}') for i in range(6)])
    con.execute("INSERT INTO metric_sample (device, resolution, ts, data) VALUES (?, 3600, ?, ?)",
                (pk, hour - 36000, '{"cpu_temp_c": [30, 60, 90, 2]}'))
    con.execute("UPDATE report SET message = ? WHERE id = ?", (HOSTILE_MESSAGE, hostile_report))
    con.commit()
    con.close()

    key_pem = (home / "appliance-key.pem").read_bytes()
    body64 = b"".join(line for line in key_pem.splitlines() if not line.startswith(b"-----"))
    raw_private = base64.b64decode(body64)[-32:]
    site.secrets = {
        **{f"label key ({k})": v[0].encode() for k, v in label_key.items()},
        **{f"label key hash ({k})": hashlib.sha256(v[0].encode()).hexdigest().encode() for k, v in label_key.items()},
        "admin password": PASSWORD.encode(),
        "enrollment token": ENROLL_TOKEN.encode(),
        "enrollment token hash": hashlib.sha256(ENROLL_TOKEN.encode()).hexdigest().encode(),
        "appliance private key (PEM body)": body64[-40:],
        "appliance private key (raw)": raw_private,
        "vendor passphrase": VENDOR_PASSPHRASE,
    }
    ts_body = b"".join(line for line in (home / "timestamp-key.pem").read_bytes().splitlines()
                       if not line.startswith(b"-----"))
    site.secrets["timestamp private key (PEM body)"] = ts_body[-40:]
    site.secrets["timestamp private key (raw)"] = base64.b64decode(ts_body)[-32:]
    form_secret = home / "state" / "form-secret"
    if form_secret.exists():
        site.secrets["form secret"] = form_secret.read_bytes().strip()
    con = site.db()
    site.secrets["admin password hash"] = con.execute('SELECT password_hash FROM "user"').fetchone()[0].encode()
    con.close()
    for dev in devices.values():
        site.secrets[f"token of {dev.device_id}"] = dev.token.encode()
        site.secrets[f"token hash of {dev.device_id}"] = hashlib.sha256(dev.token.encode()).hexdigest().encode()
    return site


@pytest.fixture(scope="module")
def site(tmp_path_factory, module_database_url) -> Site:
    return build_site(tmp_path_factory.mktemp("export"), module_database_url)


def newest(folder: Path) -> Path:
    return max(p for p in folder.iterdir() if p.name.startswith("airlock-export-"))
