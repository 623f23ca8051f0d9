-- 0001: repositories pinned by a security officer, the import history, users.
CREATE TABLE repository (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    root_fingerprint TEXT NOT NULL,      -- sha256 of the pinned root file's bytes
    pinned_root_version INTEGER NOT NULL,
    added_at TEXT NOT NULL,              -- ISO 8601 UTC
    added_by TEXT NOT NULL
);

CREATE TABLE import_record (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    operator TEXT NOT NULL,
    source TEXT NOT NULL,
    bundle_digest TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'accepted', 'unchanged', 'refused')),
    reason TEXT,
    details TEXT NOT NULL DEFAULT '{}'   -- JSON: per repository versions and targets
);
CREATE INDEX import_record_started ON import_record (started_at);

CREATE TABLE user (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'admin',
    created_at TEXT NOT NULL
);
