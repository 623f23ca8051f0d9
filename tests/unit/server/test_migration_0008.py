"""Migration 0008 rebuilds the report, report note and update report tables
with AUTOINCREMENT, with foreign keys off while it runs: every row and link
is kept, cascades still work afterwards, and new ids start past both the
highest id in the table and the highest id an export already covered."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

from server.db import _statements, available_migrations, migrate, open_database


def _database_at(path, version: int) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA foreign_keys = ON")
    con.execute("CREATE TABLE schema_migration (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at TEXT NOT NULL)")
    for number, name, sql in available_migrations():
        if number > version:
            break
        for statement in _statements(sql):
            con.execute(statement)
        con.execute("INSERT INTO schema_migration VALUES (?, ?, ?)", (number, name, datetime.now(UTC).isoformat()))
    con.execute("INSERT INTO device (id, device_id, hardware, firmware, state, state_changed_at, state_changed_by, "
                "enrolled_at, last_enroll_at) VALUES (1, 'd-1', 'plc-x', '1.0.0', 'accepted', 't', 'it', 't', 't')")
    con.execute("INSERT INTO firmware_release (id, repository, target_path, version, target_hardware, length, "
                "hardware, approved_at, approved_by) VALUES (1, 'acme', 'plc-x/fw.bin', '2.0.0', '[\"plc-x\"]', 1, "
                "'plc-x', 't', 'it')")
    con.execute("INSERT INTO report (id, device, source, kind, severity, message, created_at, created_ts) "
                "VALUES (4, 1, 'device', 'crash', 'error', 'fault', 't', 0)")
    con.execute("INSERT INTO report_attachment (report, name, size, sha256) VALUES (4, 'dmesg', 3, 'ab')")
    con.execute("INSERT INTO report_note (id, report, action, text, author, at) "
                "VALUES (2, 4, 'reopened', '', 'it', 't')")
    con.execute("INSERT INTO update_report (id, device, report_id, release_id, step, at, received_at) "
                "VALUES (3, 1, 'u-1', 1, 'failure', 't', 't')")
    ranges = {"reports": {"after_id": 0, "to_id": 9}, "report_notes": {"after_id": 0, "to_id": 2},
              "update_reports": {"after_id": 0, "to_id": 7}}
    con.execute("INSERT INTO export_record (sequence, created_at, finished_at, operator, file_name, bytes, "
                "manifest_sha256, ranges) VALUES (1, 't', 't', 'it', 'x.tar', 1, 'ff', ?)", (json.dumps(ranges),))
    con.commit()
    con.close()


def test_rows_and_links_are_kept_and_ids_move_past_every_export(tmp_path):
    path = tmp_path / "airlock.db"
    _database_at(path, 7)
    db = open_database(path)
    assert migrate(db)[0] == "0008_ids_never_reused"
    assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute_sql("PRAGMA foreign_key_check").fetchall() == []
    assert db.execute_sql("SELECT report FROM report_attachment").fetchall() == [(4,)]
    assert db.execute_sql("SELECT id, report FROM report_note").fetchall() == [(2, 4)]
    db.execute_sql("INSERT INTO report (device, source, kind, severity, message, created_at, created_ts) "
                   "VALUES (1, 'device', 'error', 'error', 'next', 't', 0)")
    db.execute_sql("INSERT INTO report_note (report, action, author, at) VALUES (4, 'note', 'it', 't')")
    db.execute_sql("INSERT INTO update_report (device, report_id, release_id, step, at, received_at) "
                   "VALUES (1, 'u-2', 1, 'success', 't', 't')")
    assert db.execute_sql("SELECT MAX(id) FROM report").fetchone()[0] == 10  # past the export's 9
    assert db.execute_sql("SELECT MAX(id) FROM report_note").fetchone()[0] == 3  # past the table's 2
    assert db.execute_sql("SELECT MAX(id) FROM update_report").fetchone()[0] == 8
    db.execute_sql("DELETE FROM device")  # cascades still reach every rebuilt table
    for table in ("report", "report_attachment", "report_note", "update_report"):
        assert db.execute_sql(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0, table
    db.close()


def test_a_rebuild_that_would_orphan_rows_changes_nothing(tmp_path, monkeypatch):
    """The foreign-key check before commit: a row pointing at nothing rolls the migration back."""
    import pytest

    from server import db as dbmod
    from server.db import SchemaError

    path = tmp_path / "airlock.db"
    _database_at(path, 7)
    con = sqlite3.connect(path)  # an orphan an older bug could have left (foreign keys off here)
    con.execute("INSERT INTO report_attachment (report, name, size, sha256) VALUES (99, 'x', 1, 'cd')")
    con.commit()
    con.close()
    db = open_database(path)
    with pytest.raises(SchemaError, match="pointing at nothing"):
        migrate(db)
    assert dbmod.applied_migrations(db)[-1] == 7
    assert "AUTOINCREMENT" not in db.execute_sql("SELECT sql FROM sqlite_master WHERE name = 'report'").fetchone()[0]
    assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    db.close()
