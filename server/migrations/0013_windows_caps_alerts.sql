-- 0013: maintenance windows and download caps per group (a device tag), and
-- alerts.  Portable SQL (SQLite and PostgreSQL): no AUTOINCREMENT, partial
-- indexes only.
CREATE TABLE maintenance_window (
    id INTEGER PRIMARY KEY,
    group_tag TEXT NOT NULL,             -- the devices of this tag are offered updates only inside their windows
    days TEXT NOT NULL,                  -- weekdays the window starts on, e.g. "sat,sun" (mon..sun)
    start_minute INTEGER NOT NULL,       -- local wall-clock minute of the day the window opens, 0..1439
    end_minute INTEGER NOT NULL,         -- local minute it closes, 1..1440; at or before start: the next day
    timezone TEXT NOT NULL,              -- IANA zone name, e.g. Europe/Berlin
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE INDEX maintenance_window_group ON maintenance_window (group_tag);

CREATE TABLE download_cap (
    group_tag TEXT PRIMARY KEY,
    max_downloads INTEGER NOT NULL,      -- concurrent firmware downloads by the group's devices
    max_bytes_per_second INTEGER NOT NULL DEFAULT 0,  -- all of them together; 0: no bandwidth cap
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);

-- a firmware download names no device: its group is found by the client's
-- address, which each check-in records
CREATE INDEX device_last_address ON device (last_address);

CREATE TABLE alert (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,                  -- device_offline, reboot_loop, errors_rising, update_failed, ...
    subject TEXT NOT NULL,               -- what it is about: a device id, a repository, a rollout
    detail TEXT NOT NULL DEFAULT '',
    opened_at TEXT NOT NULL,
    closed_at TEXT,                      -- NULL while open
    close_reason TEXT
);
CREATE UNIQUE INDEX alert_one_open ON alert (kind, subject) WHERE closed_at IS NULL;
CREATE INDEX alert_open_subject ON alert (subject) WHERE closed_at IS NULL;
CREATE INDEX alert_opened ON alert (opened_at);
