"""Edges of the API that a real server cannot easily be made to show: an
unexpected error is JSON under /api/ and unchanged elsewhere."""

from __future__ import annotations

from server import create_app
from tests.functional.devices.client import SimDevice
from tests.support import homedb
from tests.unit.server.devices.conftest import accepted


def test_an_unexpected_error_under_api_is_json_and_elsewhere_unchanged(settings, db, home):
    dev = accepted(settings, SimDevice("v-1"))
    app = create_app(settings)
    client = app.test_client()
    con = homedb.connect(home)
    con.execute("DROP TABLE metric_sample")  # a check-in now fails inside its transaction
    con.commit()
    con.close()
    r = client.post("/api/v1/checkin", json={"firmware": "1.0.0"}, headers={"Authorization": f"Bearer {dev.token}"})
    assert r.status_code == 500 and r.is_json and r.json["error"] == "internal_error"
    con = homedb.connect(home)
    assert con.execute("SELECT checkins FROM device").fetchone()[0] == 0  # rolled back
    con.close()
    r = client.get("/repos/acme/metadata/timestamp.json")
    assert r.status_code == 404 and r.mimetype == "text/html"

