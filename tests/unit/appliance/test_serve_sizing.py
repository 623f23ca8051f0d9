"""`airlock serve`'s sizing: `workers = 0` (the default) means two per CPU
core this process may use, between 2 and 8; an explicit number is kept; a
negative one is refused with the setting's name.  A real `airlock serve`
says in its log how many it started."""

from __future__ import annotations

import time

import pytest

from server.settings import Settings, SettingsError
from tests.support.server import airlock_server


@pytest.mark.parametrize(("cores", "expected"), [(1, 2), (2, 4), (3, 6), (4, 8), (16, 8)])
def test_zero_workers_is_two_per_core_within_bounds(monkeypatch, cores, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(cores)))
    assert Settings().worker_count == expected


def test_an_explicit_worker_count_is_kept_and_a_negative_one_refused():
    assert Settings(workers=3).worker_count == 3
    with pytest.raises(SettingsError, match="workers must be 0"):
        Settings(workers=-1).validate()


def test_serve_logs_its_sizing(home):
    expected = Settings().worker_count
    with airlock_server(home, workers=None, threads=3):
        deadline = time.monotonic() + 20  # the first worker answers before the last has booted
        while (log := (home / "serve.log").read_text()).count("Booting worker with pid") < expected:
            assert time.monotonic() < deadline, log
            time.sleep(0.1)
    assert f"gunicorn workers: {expected}, threads per worker: 3" in log, log
    assert log.count("Booting worker with pid") == expected
