-- 0006: an export between "flushed to the media" and "recorded".
-- The row is written (and synced) just before the export file is renamed to
-- its final name on the stick, and removed in the transaction that records
-- the export.  If the power goes in between, the next `airlock export` finds
-- it: the file is on the stick (same length and SHA-256): recorded then; it
-- is not: the same number is written again.  At most one row.
CREATE TABLE export_pending (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sequence INTEGER NOT NULL,
    re_export_since INTEGER,
    created_at TEXT NOT NULL,
    operator TEXT NOT NULL,
    file_name TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    file_sha256 TEXT NOT NULL,           -- of the whole file as written to the media
    manifest_sha256 TEXT NOT NULL,
    encrypted_for TEXT,
    ranges TEXT NOT NULL
);
ALTER TABLE export_record ADD COLUMN file_sha256 TEXT;  -- NULL for exports made before 0006
