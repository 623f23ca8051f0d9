"""Fixtures for the report services: a real appliance home (``airlock init``)
with the models bound to its SQLite file, and accepted devices."""

from __future__ import annotations

import pytest

from server import bind_database
from server.devices import services as devices
from server.settings import load_settings
from tests.functional.devices.client import SimDevice
from tests.support import homedb
from tests.unit.server.devices.conftest import accepted

LIMITS = {"report_rate_per_hour": 5, "report_form_rate_per_hour": 3, "report_max_attachment_bytes": 1000,
          "report_device_storage_bytes": 2500}


@pytest.fixture
def settings(home):
    return load_settings(home, overrides=LIMITS, environ={})


@pytest.fixture
def db(settings):
    database = bind_database(settings)
    yield database
    database.close()


@pytest.fixture
def device(settings, db):
    """An accepted device, as the API sees it after checking its token."""
    sim = accepted(settings, SimDevice("plc-1"))
    return devices.authenticate(db, sim.token)


def counts(home) -> dict[str, int]:
    con = homedb.connect(home)
    try:
        return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("report", "report_attachment", "report_note", "device_label")}
    finally:
        con.close()


def blob_files(home) -> list[str]:
    root = home / "reports" / "blobs"
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []
