-- 0005: the audit log (append-only, hash-chained) and the exports written to USB media.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,                    -- ISO 8601 UTC
    actor TEXT NOT NULL,                 -- who: an operator's login, a device id, "appliance"
    action TEXT NOT NULL,                -- what, e.g. device.accept, import.accepted, export.written
    subject TEXT NOT NULL,               -- on what: a device id, a repository, a file name
    details TEXT NOT NULL DEFAULT '{}',  -- JSON object, never secrets
    prev_hash TEXT NOT NULL,             -- the previous record's hash (64 zeros for the first)
    hash TEXT NOT NULL UNIQUE            -- sha256(prev_hash + "\n" + canonical JSON of at..details)
);

CREATE TABLE export_record (
    id INTEGER PRIMARY KEY,
    sequence INTEGER NOT NULL UNIQUE,    -- numbered per appliance: 1, 2, 3 ...
    re_export_since INTEGER,             -- N for `airlock export --since N`, else NULL
    created_at TEXT NOT NULL,            -- ISO 8601 UTC
    finished_at TEXT NOT NULL,           -- when the file was flushed to the media and renamed
    operator TEXT NOT NULL,
    file_name TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    manifest_sha256 TEXT NOT NULL,       -- the next export's manifest names it: a chain
    encrypted_for TEXT,                  -- repository whose export key encrypted it, else NULL
    ranges TEXT NOT NULL DEFAULT '{}'    -- JSON: what it covers, per data set ({"from": .., "to": ..})
);
