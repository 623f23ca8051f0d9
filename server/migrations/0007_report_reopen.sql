-- 0007: a resolved report can be reopened (`airlock reports reopen`); its
-- triage note says so.  SQLite cannot widen a CHECK in place: the notes
-- table is rebuilt with the same rows.
CREATE TABLE report_note_new (
    id INTEGER PRIMARY KEY,
    report INTEGER NOT NULL REFERENCES report (id) ON DELETE CASCADE,
    action TEXT NOT NULL CHECK (action IN ('note', 'acknowledged', 'resolved', 'reopened')),
    text TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL,
    at TEXT NOT NULL
);
INSERT INTO report_note_new (id, report, action, text, author, at)
    SELECT id, report, action, text, author, at FROM report_note;
DROP TABLE report_note;
ALTER TABLE report_note_new RENAME TO report_note;
CREATE INDEX report_note_report ON report_note (report);
