"""Migration 0007 (reports can be reopened) upgrades a database in place:
every triage note is kept, and a 'reopened' note is allowed afterwards."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from server.db import _statements, available_migrations, migrate, open_database


def test_an_older_database_keeps_its_notes(tmp_path):
    path = tmp_path / "airlock.db"
    con = sqlite3.connect(path)
    con.execute("PRAGMA foreign_keys = ON")
    con.execute("CREATE TABLE schema_migration (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at TEXT NOT NULL)")
    for number, name, sql in available_migrations():
        if number > 6:
            break
        for statement in _statements(sql):
            con.execute(statement)
        con.execute("INSERT INTO schema_migration VALUES (?, ?, ?)", (number, name, datetime.now(UTC)
                                                                     .isoformat()))
    con.execute("INSERT INTO device (id, device_id, hardware, firmware, state, state_changed_at, state_changed_by, "
                "enrolled_at, last_enroll_at) VALUES (1, 'd-1', 'plc-x', '1.0.0', 'accepted', 't', 'it', 't', 't')")
    con.execute("INSERT INTO report (id, device, source, kind, severity, message, created_at, created_ts) "
                "VALUES (1, 1, 'device', 'crash', 'error', 'fault', 't', 0)")
    con.executemany("INSERT INTO report_note (report, action, text, author, at) VALUES (1, ?, ?, 'it', 't')",
                    [("acknowledged", "on it"), ("resolved", "")])
    con.commit()
    con.close()

    db = open_database(path)
    assert migrate(db)[0] == "0007_report_reopen"
    db.execute_sql("INSERT INTO report_note (report, action, text, author, at) VALUES (1, 'reopened', '', 'it', 't')")
    assert [r[0] for r in db.execute_sql("SELECT action FROM report_note ORDER BY id")] == [
        "acknowledged", "resolved", "reopened"]
    db.execute_sql("DELETE FROM device")  # the notes still go with their report, and it with its device
    assert db.execute_sql("SELECT COUNT(*) FROM report_note").fetchone()[0] == 0
    db.close()
