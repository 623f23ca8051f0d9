-- 0004: problem reports: devices' error reports (with attachments kept on
-- disk, content-addressed, under HOME/reports/blobs/), operators' reports
-- filed through a device's QR label, and IT's triage of both.
-- Every text here came from a device or a person on the floor: it is data,
-- escaped wherever it is shown.
CREATE TABLE report (
    id INTEGER PRIMARY KEY,
    device INTEGER NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    source TEXT NOT NULL CHECK (source IN ('device', 'operator')),
    report_id TEXT,                          -- the device's uuid (lower case): a resend is stored once
    kind TEXT NOT NULL CHECK (kind IN ('crash', 'error', 'watchdog_reset', 'log', 'operator')),
    severity TEXT NOT NULL CHECK (severity IN ('critical', 'error', 'warning', 'info')),
    message TEXT NOT NULL,
    firmware TEXT,                           -- as the device reported it (device reports)
    occurred_at TEXT,                        -- when the device says it happened
    reporter TEXT,                           -- operator's name or badge (operator reports)
    snapshot TEXT NOT NULL DEFAULT '{}',     -- JSON: the device's state when the report was filed
    attachment_bytes INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'acknowledged', 'resolved')),
    status_changed_at TEXT,
    status_changed_by TEXT,
    created_at TEXT NOT NULL,                -- ISO 8601 UTC
    created_ts INTEGER NOT NULL,             -- unix seconds, for rate limits
    UNIQUE (device, report_id)
);
CREATE INDEX report_device_time ON report (device, source, created_ts);
CREATE INDEX report_status ON report (status, id);

CREATE TABLE report_attachment (
    id INTEGER PRIMARY KEY,
    report INTEGER NOT NULL REFERENCES report (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,                   -- bytes
    sha256 TEXT NOT NULL                     -- the blob's name under HOME/reports/blobs/
);
CREATE INDEX report_attachment_report ON report_attachment (report);

CREATE TABLE report_note (
    id INTEGER PRIMARY KEY,
    report INTEGER NOT NULL REFERENCES report (id) ON DELETE CASCADE,
    action TEXT NOT NULL CHECK (action IN ('note', 'acknowledged', 'resolved')),
    text TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX report_note_report ON report_note (report);

CREATE TABLE device_label (
    device INTEGER PRIMARY KEY REFERENCES device (id) ON DELETE CASCADE,
    key_hash TEXT NOT NULL,                  -- sha256 hex of the label key printed in the QR code's URL
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
