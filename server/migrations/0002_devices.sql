-- 0002: devices: enrollment and admission, check-ins with a bounded metric
-- history, releases approved by IT, and the devices' update reports.
-- Times a person reads are ISO 8601 UTC text; times the appliance computes
-- with (ages, buckets) are unix seconds.
CREATE TABLE device (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL UNIQUE,          -- the device's own id
    hardware TEXT NOT NULL,                  -- hardware model, as in targets' custom metadata
    firmware TEXT NOT NULL,                  -- version it runs (X.Y.Z), from its latest request
    state TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'rejected', 'decommissioned')),
    state_reason TEXT,
    state_changed_at TEXT NOT NULL,
    state_changed_by TEXT NOT NULL,
    token_hash TEXT UNIQUE,                  -- sha256 hex of the bearer token; NULL: no credential
    token_issued_at TEXT,
    enrolled_at TEXT NOT NULL,
    last_enroll_at TEXT NOT NULL,
    last_seen INTEGER,                       -- unix seconds of the latest check-in
    last_address TEXT,
    checkins INTEGER NOT NULL DEFAULT 0,
    metrics TEXT NOT NULL DEFAULT '{}',      -- JSON: the latest check-in's metrics
    health TEXT NOT NULL DEFAULT '[]',       -- JSON: flags computed at the latest check-in
    reboots TEXT NOT NULL DEFAULT '[]',      -- JSON: unix seconds of recent reboots (bounded)
    update_status TEXT                       -- JSON: the latest update report
);
CREATE INDEX device_state ON device (state);
CREATE INDEX device_hardware ON device (hardware);

CREATE TABLE device_key (
    id INTEGER PRIMARY KEY,
    device INTEGER NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    public_key TEXT NOT NULL,                -- base64 of the raw 32-byte Ed25519 public key
    state TEXT NOT NULL CHECK (state IN ('active', 'pending', 'rejected', 'retired')),
    created_at TEXT NOT NULL,
    decided_at TEXT,
    decided_by TEXT,
    UNIQUE (device, public_key)
);

CREATE TABLE enrollment_nonce (
    public_key TEXT NOT NULL,
    nonce TEXT NOT NULL,                     -- lower-case hex
    seen_at INTEGER NOT NULL,                -- unix seconds; pruned once older than the skew allows
    PRIMARY KEY (public_key, nonce)
) WITHOUT ROWID;
CREATE INDEX enrollment_nonce_seen ON enrollment_nonce (seen_at);

CREATE TABLE auto_accept_rule (
    id INTEGER PRIMARY KEY,
    hardware TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,              -- sha256 hex of the pre-shared enrollment token
    note TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    UNIQUE (hardware, token_sha256)
);

CREATE TABLE device_tag (
    device INTEGER NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (device, tag)
) WITHOUT ROWID;
CREATE INDEX device_tag_tag ON device_tag (tag);

CREATE TABLE metric_sample (
    id INTEGER PRIMARY KEY,
    device INTEGER NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    resolution INTEGER NOT NULL CHECK (resolution IN (0, 3600, 86400)),  -- seconds; 0: one check-in
    ts INTEGER NOT NULL,                     -- unix seconds; start of the bucket for rollups
    data TEXT NOT NULL                       -- JSON: raw values, or {metric: [min, max, sum, count]}
);
CREATE INDEX metric_sample_device ON metric_sample (device, resolution, ts);
CREATE INDEX metric_sample_age ON metric_sample (resolution, ts);

CREATE TABLE firmware_release (
    id INTEGER PRIMARY KEY,
    repository TEXT NOT NULL,
    target_path TEXT NOT NULL,
    version TEXT NOT NULL,                   -- X.Y.Z from the target's custom metadata
    target_hardware TEXT NOT NULL,           -- JSON list from the target's custom metadata
    length INTEGER NOT NULL,
    sha256 TEXT,
    hardware TEXT,                           -- released to this hardware model ...
    group_tag TEXT,                          -- ... or to the devices with this tag
    allow_downgrade INTEGER NOT NULL DEFAULT 0,
    approved_at TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    withdrawn_at TEXT,
    withdrawn_by TEXT,
    CHECK ((hardware IS NULL) != (group_tag IS NULL))
);
CREATE INDEX firmware_release_hardware ON firmware_release (hardware) WHERE withdrawn_at IS NULL;
CREATE INDEX firmware_release_group ON firmware_release (group_tag) WHERE withdrawn_at IS NULL;

CREATE TABLE update_report (
    id INTEGER PRIMARY KEY,
    device INTEGER NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    report_id TEXT NOT NULL,                 -- the device's uuid: a resend is stored once
    release_id INTEGER NOT NULL REFERENCES firmware_release (id),
    step TEXT NOT NULL CHECK (step IN ('downloading', 'installing', 'rebooted', 'success', 'failure')),
    reason TEXT,
    at TEXT NOT NULL,                        -- when the device says it happened
    received_at TEXT NOT NULL,
    UNIQUE (device, report_id)
);

CREATE TABLE device_maintenance (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    claimed_at INTEGER NOT NULL DEFAULT 0,   -- unix seconds; one worker at a time runs it
    finished_at INTEGER NOT NULL DEFAULT 0,
    summary TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO device_maintenance (id) VALUES (1);
