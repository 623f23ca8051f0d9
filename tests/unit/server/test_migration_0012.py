"""Migration 0012 fills ``update_offer`` from the update reports already
stored, so that a device updated before it is not taken for one whose
firmware was "installed outside Airlock"."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from server.db import _statements, available_migrations, migrate, open_database


def test_devices_updated_before_the_migration_keep_their_offers(tmp_path):
    path = tmp_path / "airlock.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE schema_migration (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at TEXT NOT NULL)")
    for number, name, sql in available_migrations():
        if number > 11:
            break
        for statement in _statements(sql):
            con.execute(statement)
        con.execute("INSERT INTO schema_migration VALUES (?, ?, ?)", (number, name, datetime.now(UTC).isoformat()))
    con.execute("INSERT INTO device (id, device_id, hardware, firmware, state, state_changed_at, state_changed_by, "
                "enrolled_at, last_enroll_at) VALUES (1, 'd-1', 'plc-x', '2.0.0', 'accepted', 't', 'it', 't', 't')")
    con.execute("INSERT INTO firmware_release (id, repository, target_path, version, target_hardware, length, "
                "hardware, approved_at, approved_by) VALUES (1, 'acme', 'plc-x/fw.bin', '2.0.0', '[\"plc-x\"]', 1, "
                "'plc-x', 't', 'it')")
    for n, (step, at) in enumerate([("downloading", "2026-03-01T10:00:00+00:00"),
                                    ("success", "2026-03-01T10:05:00+00:00")]):
        con.execute("INSERT INTO update_report (device, report_id, release_id, step, at, received_at) "
                    "VALUES (1, ?, 1, ?, ?, ?)", (f"u-{n}", step, at, at))
    con.commit()
    con.close()
    db = open_database(path)
    assert migrate(db)[0] == "0012_rollouts"
    rows = db.execute_sql("SELECT device, release_id, version, rollout, offered_at, outcome FROM update_offer"
                          ).fetchall()
    assert rows == [(1, 1, "2.0.0", None, int(datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp()), "success")]
    assert db.execute_sql("SELECT claimed_at FROM rollout_check").fetchall() == [(0,)]
    db.close()
