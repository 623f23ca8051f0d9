"""The slots and the pace, on real lock files; the pace with a clock the
test drives (no wall-clock assertions)."""

from __future__ import annotations

import pytest

from server.delivery.caps import Cap
from server.delivery.slots import Busy, DownloadSlots, Ticket, paced


def test_a_scope_admits_its_cap_then_says_when_to_come_back(tmp_path):
    slots = DownloadSlots(tmp_path / "slots", retry_after=10)
    cap = Cap("appliance", 3, 0)
    tickets = [slots.admit([cap]) for _ in range(3)]
    assert all(isinstance(t, Ticket) for t in tickets)
    refused = slots.admit([cap])
    assert isinstance(refused, Busy) and 10 <= refused.retry_after <= 15
    assert "maximum of 3 concurrent firmware downloads" in refused.message()
    tickets[0].release()
    tickets[0].release()  # twice is harmless
    assert isinstance(slots.admit([cap]), Ticket)


def test_all_scopes_or_none(tmp_path):
    slots = DownloadSlots(tmp_path / "slots", retry_after=10)
    appliance, group = Cap("appliance", 5, 0), Cap("group:line-3", 1, 0)
    held = slots.admit([appliance, group])
    assert isinstance(held, Ticket) and len(held.fds) == 2
    refused = slots.admit([appliance, group])
    assert isinstance(refused, Busy) and refused.cap == group and "group line-3" in refused.message()
    # the refused download gave back the appliance slot it took: 4 more fit
    assert all(isinstance(slots.admit([appliance]), Ticket) for _ in range(4))
    assert isinstance(slots.admit([appliance]), Busy)


def test_the_slowest_scope_paces_the_download(tmp_path):
    slots = DownloadSlots(tmp_path / "slots", retry_after=10)
    ticket = slots.admit([Cap("appliance", 4, 4_000_000), Cap("group:g", 2, 400_000)])
    assert isinstance(ticket, Ticket) and ticket.pace == 200_000


def test_paced_bytes_never_run_ahead_of_the_rate():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    class Body:
        closed = False

        def __iter__(self):
            return iter([b"x" * 100_000] * 10)

        def close(self):
            self.closed = True

    body = Body()
    sent = 0
    for piece in paced(body, 50_000, clock=lambda: now[0], sleep=sleep):
        sent += len(piece)
        assert sent <= 50_000 * now[0]  # never ahead of the rate
    assert sent == 1_000_000 and body.closed
    assert now[0] == pytest.approx(20.0)  # a million bytes at 50 kB/s, on the test's clock
    assert max(slept) <= 1.0
