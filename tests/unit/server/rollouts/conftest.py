"""Fixtures for the rollout services: a real appliance home with a real
signed repository imported (RepoSim) and the models bound to its SQLite
file; devices enrolled and accepted through the device services."""

from __future__ import annotations

import pytest

from tests.conftest import pin
from tests.unit.server.devices.conftest import accepted, db, request_for, settings  # noqa: F401 - fixtures

__all__ = ["accepted", "request_for"]


@pytest.fixture
def repo(airlock, sim, tmp_path):
    """``acme`` pinned and imported: plc-x 1.0.0, 2.0.0 and 3.0.0."""
    assert pin(airlock, sim, tmp_path).code == 0
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        sim.add_target(f"plc-x/fw-{version}.bin", version.encode() * 10, hardware=("plc-x",), version=version)
    sim.publish()
    r = airlock("import", sim.write_bundle(tmp_path / "usb"))
    assert r.code == 0, r.err
    return "acme"
