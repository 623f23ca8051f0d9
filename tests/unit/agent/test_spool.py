"""The spool: what must reach the appliance stays on disk, oldest first,
until a 2xx answer; a refusal for good goes to dead/; nothing is lost
across a restart.  Real files and a real HTTP server on loopback."""

from __future__ import annotations

import json

import pytest

from agent import spool as spool_module
from agent._http import ApiClient
from agent.exceptions import SpoolFullError, TokenRefusedError
from agent.spool import Spool
from tests.support.server import free_port
from tests.unit.agent.conftest import scripted_server

TOKEN = "s" * 43


def report(n: int) -> dict:
    return {"report_id": f"00000000-0000-4000-8000-{n:012d}", "release_id": 1, "step": "downloading"}


def filled(tmp_path, count: int) -> Spool:
    spool = Spool(tmp_path / "spool")
    for n in range(count):
        spool.add("/api/v1/updates", report(n))
    return spool


def test_entries_are_sent_oldest_first_and_deleted_after_2xx(tmp_path):
    spool = filled(tmp_path, 3)
    with scripted_server([(201, {}), (200, {"duplicate": True}), (201, {})]) as server:
        result = spool.flush(ApiClient(server.url, 5), TOKEN)
    assert (result.sent, result.duplicates, result.left, result.dead, result.unreachable) == (3, 1, 0, 0, False)
    assert [r["body"]["report_id"] for r in server.requests] == [report(n)["report_id"] for n in range(3)]
    assert {r["authorization"] for r in server.requests} == {f"Bearer {TOKEN}"}
    assert len(spool) == 0


@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_appliance_keeps_everything_and_stops(tmp_path, status):
    spool = filled(tmp_path, 3)
    with scripted_server([(201, {}), (status, {"error": "busy"})]) as server:
        result = spool.flush(ApiClient(server.url, 5), TOKEN)
    assert (result.sent, result.left, result.unreachable) == (1, 2, True)
    assert len(server.requests) == 2  # stopped at the first that could not go


def test_an_appliance_that_is_down_keeps_everything_across_a_restart(tmp_path):
    spool = filled(tmp_path, 2)
    result = spool.flush(ApiClient(f"http://127.0.0.1:{free_port()}", 5), TOKEN)
    assert (result.sent, result.left, result.unreachable) == (0, 2, True)
    again = Spool(tmp_path / "spool")  # the agent restarted (or the power came back)
    assert [json.loads(p.read_text())["body"] for p in again.entries()] == [report(0), report(1)]


def test_a_refused_token_stops_and_keeps_the_entry(tmp_path):
    spool = filled(tmp_path, 2)
    with scripted_server([(401, {"error": "unauthorized"})]) as server, pytest.raises(TokenRefusedError):
        spool.flush(ApiClient(server.url, 5), TOKEN)
    assert len(spool) == 2


def test_a_refusal_for_good_goes_to_dead_with_the_answer(tmp_path):
    spool = filled(tmp_path, 2)
    (spool.folder / "00000000000000000000-garbage.json").write_text("{not json")  # oldest: sent first
    answer = {"error": "unprocessable", "message": "release 1 was never offered to this device"}
    with scripted_server([(422, answer), (201, {})]) as server:
        result = spool.flush(ApiClient(server.url, 5), TOKEN)
    assert (result.sent, result.dead, result.left) == (1, 2, 0)
    dead = sorted(p.name for p in spool.dead.iterdir())
    assert len(dead) == 4 and "00000000000000000000-garbage.json" in dead
    kept = [json.loads(p.read_text()) for p in spool.dead.glob("*.answer.json")]
    assert answer in kept and {"error": "unreadable spool entry"} in kept


def test_a_full_spool_refuses_more_and_keeps_what_it_has(tmp_path, monkeypatch):
    monkeypatch.setattr(spool_module, "MAX_ENTRIES", 3)
    spool = filled(tmp_path, 3)
    with pytest.raises(SpoolFullError, match="is full"):
        spool.add("/api/v1/updates", report(9))
    assert len(spool) == 3


def test_entries_are_private_and_no_temporary_file_is_left(tmp_path):
    spool = filled(tmp_path, 2)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in spool.entries())
    assert sorted(p.name for p in spool.folder.iterdir()) == sorted(p.name for p in spool.entries())


def test_two_processes_flushing_one_spool_send_each_entry_and_neither_fails(tmp_path):
    """`airlock-agent report` beside the daemon: while one flush waits for
    an answer, the other sends and deletes the entries (as a second process
    would); the first one skips what is gone instead of failing."""
    spool = filled(tmp_path, 3)
    other = Spool(tmp_path / "spool")  # the other process's view of the same folder

    def meanwhile(request: dict) -> None:
        if len(server.requests) == 1:
            for entry in other.entries():
                entry.unlink()

    with scripted_server([(201, {})] * 3, on_request=meanwhile) as server:
        result = spool.flush(ApiClient(server.url, 5), TOKEN)
    assert (result.sent, result.dead, result.left, result.unreachable) == (1, 0, 0, False)
    assert len(server.requests) == 1 and not spool.dead.exists()


def test_an_entry_the_other_process_buried_meanwhile_is_not_an_error(tmp_path):
    spool = filled(tmp_path, 1)
    other = Spool(tmp_path / "spool")
    refusal = {"error": "unprocessable", "message": "unknown release"}

    def meanwhile(request: dict) -> None:
        other._bury(other.entries()[0], refusal)  # it got the same refusal first

    with scripted_server([(422, refusal)], on_request=meanwhile) as server:
        result = spool.flush(ApiClient(server.url, 5), TOKEN)
    assert (result.dead, result.left) == (1, 0) and len(server.requests) == 1
    assert len(list(spool.dead.glob("*.answer.json"))) == 1 and len(list(spool.dead.glob("*.json"))) == 2
