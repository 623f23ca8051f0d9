-- airlock: rebuilds tables
-- 0008: the ids of reports, report notes and update reports are never
-- reused.  Exports select each data set by id range (after_id, to_id]; a
-- plain INTEGER PRIMARY KEY hands out max(id) + 1, so once `airlock devices
-- remove` deleted the newest rows, new rows got ids an earlier export had
-- already covered and were never exported.  AUTOINCREMENT keeps the highest
-- id ever given; it starts at least at what the last export covered.
-- The marker line above makes `migrate` run this with foreign keys off (a
-- dropped parent table would otherwise take its children with it) and check
-- them before committing.
CREATE TABLE report_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device INTEGER NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    source TEXT NOT NULL CHECK (source IN ('device', 'operator')),
    report_id TEXT,
    kind TEXT NOT NULL CHECK (kind IN ('crash', 'error', 'watchdog_reset', 'log', 'operator')),
    severity TEXT NOT NULL CHECK (severity IN ('critical', 'error', 'warning', 'info')),
    message TEXT NOT NULL,
    firmware TEXT,
    occurred_at TEXT,
    reporter TEXT,
    snapshot TEXT NOT NULL DEFAULT '{}',
    attachment_bytes INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'acknowledged', 'resolved')),
    status_changed_at TEXT,
    status_changed_by TEXT,
    created_at TEXT NOT NULL,
    created_ts INTEGER NOT NULL,
    UNIQUE (device, report_id)
);
INSERT INTO report_new SELECT id, device, source, report_id, kind, severity, message, firmware, occurred_at, reporter,
    snapshot, attachment_bytes, status, status_changed_at, status_changed_by, created_at, created_ts FROM report;
DROP TABLE report;
ALTER TABLE report_new RENAME TO report;
CREATE INDEX report_device_time ON report (device, source, created_ts);
CREATE INDEX report_status ON report (status, id);

CREATE TABLE report_note_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    report INTEGER NOT NULL REFERENCES report (id) ON DELETE CASCADE,
    action TEXT NOT NULL CHECK (action IN ('note', 'acknowledged', 'resolved', 'reopened')),
    text TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL,
    at TEXT NOT NULL
);
INSERT INTO report_note_new SELECT id, report, action, text, author, at FROM report_note;
DROP TABLE report_note;
ALTER TABLE report_note_new RENAME TO report_note;
CREATE INDEX report_note_report ON report_note (report);

CREATE TABLE update_report_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device INTEGER NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    report_id TEXT NOT NULL,
    release_id INTEGER NOT NULL REFERENCES firmware_release (id),
    step TEXT NOT NULL CHECK (step IN ('downloading', 'installing', 'rebooted', 'success', 'failure')),
    reason TEXT,
    at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    UNIQUE (device, report_id)
);
INSERT INTO update_report_new SELECT id, device, report_id, release_id, step, reason, at, received_at FROM update_report;
DROP TABLE update_report;
ALTER TABLE update_report_new RENAME TO update_report;

-- start each sequence past every id an export already covered
INSERT INTO sqlite_sequence (name, seq)
    SELECT t.name, 0 FROM (SELECT 'report' AS name UNION ALL SELECT 'report_note' UNION ALL SELECT 'update_report') AS t
    WHERE t.name NOT IN (SELECT name FROM sqlite_sequence);
UPDATE sqlite_sequence SET seq = MAX(seq,
    COALESCE((SELECT MAX(CAST(json_extract(ranges, '$.reports.to_id') AS INTEGER)) FROM export_record), 0))
    WHERE name = 'report';
UPDATE sqlite_sequence SET seq = MAX(seq,
    COALESCE((SELECT MAX(CAST(json_extract(ranges, '$.report_notes.to_id') AS INTEGER)) FROM export_record), 0))
    WHERE name = 'report_note';
UPDATE sqlite_sequence SET seq = MAX(seq,
    COALESCE((SELECT MAX(CAST(json_extract(ranges, '$.update_reports.to_id') AS INTEGER)) FROM export_record), 0))
    WHERE name = 'update_report';
