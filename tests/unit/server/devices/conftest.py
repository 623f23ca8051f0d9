"""Fixtures for the device services: a real appliance home (``airlock init``)
with the models bound to its SQLite file."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from server import bind_database
from server.devices import services
from server.devices.records import EnrollmentRequest
from server.settings import load_settings
from tests.functional.devices.client import SimDevice
from tests.support import homedb


@pytest.fixture
def settings(home):
    return load_settings(home, environ={})


@pytest.fixture
def db(settings):
    database = bind_database(settings)
    yield database
    database.close()


def request_for(device: SimDevice, **kw) -> EnrollmentRequest:
    return EnrollmentRequest(**device.enrollment(**kw))


def accepted(settings, device: SimDevice) -> SimDevice:
    """Enroll ``device``, accept it, enroll again: it holds a token."""
    services.enroll(settings, request_for(device))
    services.accept(device.device_id, "tester")
    device.token = services.enroll(settings, request_for(device)).token
    assert device.token
    return device


def counts(home) -> dict[str, int]:
    con = homedb.connect(home)
    try:
        return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: S608 - fixed names
                for t in ("device", "device_key", "enrollment_nonce", "metric_sample", "update_report",
                          "firmware_release", "device_tag", "auto_accept_rule")}
    finally:
        con.close()


def at_once(work: Callable[[int], None], parts: int = 8, timeout: float = 120.0) -> None:
    """Run ``work(0)`` ... ``work(parts - 1)``, each in a thread of its own,
    and wait until all have finished (at most ``timeout`` seconds each)."""
    threads = [threading.Thread(target=work, args=(p,)) for p in range(parts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a thread did not finish in time"
