"""The discovery service over a real SQLite file: recording, liveness,
bounds, escaping, and linking to enrolled devices by id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from server.db import _statements, open_database, open_postgresql
from server.discovery import services
from server.discovery.services import (
    DEVICE_TYPE,
    SeenService,
    list_discovered,
    record_seen,
)
from server.discovery.txt import decode_txt, escape_text
from server.models import database

MIGRATION = Path(__file__).resolve().parents[3] / "server" / "migrations" / "0003_discovery.sql"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def txt(*entries: bytes) -> bytes:
    return b"".join(bytes([len(e)]) + e for e in entries)


@pytest.fixture
def db(tmp_path, database_url):
    """Only the discovery table, plus a minimal `device` table when asked:
    this test does not depend on the device schema of migration 0002.  On
    PostgreSQL: the whole schema (its migrations come as one baseline)."""
    if database_url:
        pg = open_postgresql(database_url)
        database.initialize(pg)
        yield pg
        pg.close_all()
        return
    d = open_database(tmp_path / "discovery.db")
    for statement in _statements(MIGRATION.read_text()):
        d.execute_sql(statement)
    database.initialize(d)
    yield d
    d.close()


def device(name: str, ident: str, **kw) -> SeenService:
    return SeenService(DEVICE_TYPE, f"{name}.{DEVICE_TYPE}", kw.get("host", f"{name}.local."),
                       kw.get("addresses", ("10.0.0.7",)), kw.get("port", 7000),
                       txt(b"id=" + ident.encode(), b"hw=plc-x", b"fw=1.0.0"))


def test_escape_text():
    assert escape_text(b"plain text") == "plain text"
    assert escape_text(b"a\\b") == "a\\\\b"
    assert escape_text(b"\x1b[31m\x00\n") == "\\x1b[31m\\x00\\x0a"
    assert escape_text(b"\xff\xfeok") == "\\xff\\xfeok"
    assert escape_text("caf\u00e9 \u202e \u200b") == "caf\u00e9 \\u202e \\u200b"
    assert escape_text(b"x" * 300, 10) == "x" * 10
    assert escape_text("\u00e9".encode() * 3, 5) == "\u00e9\u00e9\\xc3"  # a cut character is escaped


def test_decode_txt_follows_rfc6763():
    raw = txt(b"ID=first", b"id=second", b"flag", b"=nokey", b"", b"Empty=", b"eq=a=b")
    assert decode_txt(raw) == {"id": "first", "flag": None, "empty": "", "eq": "a=b"}
    assert decode_txt(b"\x05ab") == {"ab": None}  # a length past the end is cut, not trusted
    many = txt(*[b"k%03d=v" % i for i in range(100)])
    assert len(decode_txt(many)) == 32


def test_record_seen_then_list(db):
    assert record_seen(device("plc-7", "dev-7"), now=T0)
    record_seen(SeenService("_opcua-tcp._tcp.local.", "opc._opcua-tcp._tcp.local.", "opc.local.",
                            ("10.0.0.9", "not-an-address"), 4840, txt(b"path=/")), now=T0)
    [plc, opc] = list_discovered()  # by service type, then instance
    assert (plc.instance, plc.addresses, plc.port, plc.txt, plc.device_id, plc.state) == (
        "plc-7", ["10.0.0.7"], 7000, {"id": "dev-7", "hw": "plc-x", "fw": "1.0.0"}, "dev-7", "present")
    assert (opc.addresses, opc.device_id) == (["10.0.0.9"], None)  # only a device's TXT id links
    assert plc.first_seen == plc.last_seen == "2026-01-01T12:00:00+00:00"
    assert plc.to_dict()["state"] == "present" and not plc.enrolled
    assert [d.instance for d in list_discovered("_opcua-tcp._tcp")] == ["opc"]


def test_liveness(db):
    record_seen(device("a", "dev-a"), now=T0)
    record_seen(device("b", "dev-b"), now=T0)
    assert services.touch_seen([(DEVICE_TYPE, f"a.{DEVICE_TYPE}"), (DEVICE_TYPE, f"zz.{DEVICE_TYPE}")],
                               now=T0 + timedelta(seconds=50)) == 1
    assert services.sweep_gone(60, now=T0 + timedelta(seconds=61)) == 1
    state = {d.instance: d for d in list_discovered()}
    assert state["a"].state == "present" and state["b"].state == "gone"
    assert state["b"].gone_since == "2026-01-01T12:01:01+00:00"
    assert [d.instance for d in list_discovered(present_only=True)] == ["a"]
    assert services.mark_gone(DEVICE_TYPE, f"a.{DEVICE_TYPE}", now=T0 + timedelta(seconds=70))
    assert not services.mark_gone(DEVICE_TYPE, f"a.{DEVICE_TYPE}")  # already gone
    # heard again: present again, first seen kept
    services.touch_seen([(DEVICE_TYPE, f"b.{DEVICE_TYPE}")], now=T0 + timedelta(seconds=80))
    b = {d.instance: d for d in list_discovered()}["b"]
    assert (b.state, b.first_seen, b.gone_since) == ("present", "2026-01-01T12:00:00+00:00", None)


def test_hostile_fields_are_bounded(db):
    name = "x\x1b[2J" * 100 + "." + DEVICE_TYPE
    record_seen(SeenService(DEVICE_TYPE, name, "h\x00" * 300, tuple(f"10.0.0.{i}" for i in range(50)), 99999,
                            txt(b"id=" + b"\x07" * 250)), now=T0)
    [d] = list_discovered()
    assert "\x1b" not in d.instance and len(d.instance) <= 255 * 4
    assert len(d.addresses) == 16 and d.port is None
    assert d.device_id == "\\x07" * 32  # cut to 128 characters


def test_table_is_bounded(db, monkeypatch):
    monkeypatch.setattr(services, "MAX_ENTRIES", 3)
    for i in range(3):
        assert record_seen(device(f"d{i}", f"id{i}"), now=T0)
    assert not record_seen(device("d3", "id3"), now=T0)  # full of present services: dropped
    services.mark_gone(DEVICE_TYPE, f"d1.{DEVICE_TYPE}", now=T0)
    assert record_seen(device("d3", "id3"), now=T0)  # the gone one makes room
    assert [d.instance for d in list_discovered()] == ["d0", "d2", "d3"]


@pytest.mark.sqlite_only  # it starts without a device table, which only the SQLite migrations allow
def test_linked_to_enrolled_device_by_id(db):
    record_seen(device("plc-7", "dev-7"), now=T0)
    record_seen(device("plc-8", "dev-8"), now=T0)
    assert not any(d.enrolled for d in list_discovered())  # no device table: no links, no error
    db.execute_sql("CREATE TABLE device (id INTEGER PRIMARY KEY, device_id TEXT NOT NULL UNIQUE)")
    db.execute_sql("INSERT INTO device (device_id) VALUES ('dev-7')")
    assert {d.instance: d.enrolled for d in list_discovered()} == {"plc-7": True, "plc-8": False}
