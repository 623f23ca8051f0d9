"""Defect 16: one text rule for every string a device sends, enforced at
the API (through the real app) and again when logging."""

from __future__ import annotations

import logging
import unicodedata
import uuid

import pytest

from server import create_app
from server.devices import services
from server.devices.records import UpdateReportIn
from server.text import (
    MULTILINE_PATTERN,
    REFUSED_CATEGORIES,
    TEXT_PATTERN,
    escape_text,
    first_unsafe,
)
from tests.functional.devices.client import SimDevice, utc_now
from tests.unit.server.devices.conftest import accepted, counts
from tests.unit.server.devices.test_releases import repo  # noqa: F401 - a fixture

# C1 (U+009B is the one-byte CSI, U+0085 a next-line), bidi overrides and
# isolates, zero-width and byte-order marks, separators, and C0 besides.
BAD = ["\x9b2J", "\x85", "\u202egnp.exe", "\u2066", "\u200b", "\u2028", "\ufeff", "\x1b[31m", "\x00", "\r", "\x7f"]
BAD_IDS = ["csi", "nel", "rlo", "lri", "zwsp", "lsep", "bom", "esc", "nul", "cr", "del"]


def test_the_pattern_states_the_rule_for_the_whole_bmp():
    import re

    # anchored with \Z as the validator does: Python's $ also matches before a final newline
    single, multi = (re.compile(p.removesuffix("$") + r"\Z") for p in (TEXT_PATTERN, MULTILINE_PATTERN))
    for o in range(0x10000):
        ch = chr(o)
        refused = unicodedata.category(ch) in REFUSED_CATEGORIES
        assert (single.search(ch) is None) == (refused or ch in "\t\n") == (first_unsafe(ch) is not None), hex(o)
        assert (multi.search(ch) is None) == (refused and ch not in "\t\n"), hex(o)


@pytest.fixture
def api(settings, db, repo):  # noqa: F811
    dev = accepted(settings, SimDevice("txt-1"))
    release = services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", hardware="plc-x")
    client = create_app(settings).test_client()
    headers = {"Authorization": f"Bearer {dev.token}"}
    client.post("/api/v1/checkin", json={"firmware": "1.0.0"}, headers=headers)
    return client, headers, release.id


def _update(release_id: int, reason: str) -> dict:
    return {"report_id": str(uuid.uuid4()), "release_id": release_id, "step": "failure", "reason": reason,
            "at": utc_now()}


def _report(message: str) -> dict:
    return {"report_id": str(uuid.uuid4()), "kind": "error", "severity": "error", "message": message,
            "firmware": "1.0.0"}


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_update_reasons_with_control_or_bidi_characters_are_refused(api, home, bad):
    client, headers, release_id = api
    before = counts(home)
    r = client.post("/api/v1/updates", json=_update(release_id, f"flash {bad} failed"), headers=headers)
    assert (r.status_code, r.json["error"]) == (400, "invalid_request")
    assert "body.reason" in r.json["message"] and f"U+{ord(bad[0]):04X}" in r.json["message"]
    assert counts(home) == before


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_report_messages_with_control_or_bidi_characters_are_refused(api, home, bad):
    client, headers, _ = api
    before = counts(home)
    r = client.post("/api/v1/reports", json=_report(f"fault\n\tin {bad} task"), headers=headers)
    assert (r.status_code, r.json["error"]) == (400, "invalid_request")
    assert "body.message" in r.json["message"] and f"U+{ord(bad[0]):04X}" in r.json["message"]
    assert counts(home) == before
    ok = client.post("/api/v1/reports", json=_report("fault\n\tin task \u00e9\u4e2d"), headers=headers)
    assert ok.status_code == 201  # line breaks, tabs and any printable script stay allowed


def test_an_update_failure_is_logged_escaped(api, db, caplog):
    client, headers, release_id = api
    caplog.set_level(logging.DEBUG)
    for bad in BAD:
        client.post("/api/v1/updates", json=_update(release_id, bad), headers=headers)
    r = client.post("/api/v1/updates", json=_update(release_id, "hash \\x1b mismatch \u00e9"), headers=headers)
    assert r.status_code == 200
    # A caller that skips the API (the CLI, a future console) is escaped again in the log.
    device = services.authenticate(db, headers["Authorization"].split()[1])
    services.record_report(device, UpdateReportIn(str(uuid.uuid4()), release_id, "failure", utc_now(),
                                                  reason="\x1b]0;pwned\x07\u202eevil\x9b2J\nnext"))
    lines = [record.getMessage() for record in caplog.records if "failed:" in record.getMessage()]
    assert len(lines) == 2, lines
    alert_lines = [record.getMessage() for record in caplog.records if "alert opened" in record.getMessage()]
    assert len(alert_lines) == 1 and first_unsafe(alert_lines[0]) is None, alert_lines  # server.alerts, too
    for line in lines:
        assert first_unsafe(line) is None, ascii(line)
    assert "hash \\\\x1b mismatch \u00e9" in lines[0]  # a literal backslash cannot pose as an escape
    assert lines[1].endswith(escape_text("\x1b]0;pwned\x07\u202eevil\x9b2J\nnext"))
    assert "\\u202eevil\\x9b2J\\x0anext" in lines[1]
