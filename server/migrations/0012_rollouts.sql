-- 0012: staged rollouts gated on device health, what each device was offered
-- (and how it went), and firmware installed behind the appliance's back.
-- Portable SQL: no AUTOINCREMENT, no WITHOUT ROWID; ON CONFLICT DO NOTHING
-- and partial indexes work on SQLite and PostgreSQL alike.
CREATE TABLE rollout (
    id INTEGER PRIMARY KEY,
    release_id INTEGER NOT NULL REFERENCES firmware_release (id),
    state TEXT NOT NULL CHECK (state IN ('running', 'paused', 'halted', 'aborted', 'completed')),
    waves TEXT NOT NULL,                     -- JSON list: {"percent": P} (cumulative) or {"group": TAG}
    current_wave INTEGER NOT NULL DEFAULT 1, -- 1-based: devices of waves 1..current_wave are offered the release
    wave_started_at INTEGER NOT NULL,        -- unix seconds
    soak INTEGER NOT NULL,                   -- seconds a wave must run before the next one starts
    min_success INTEGER NOT NULL,            -- percent of a wave's finished devices that must be healthy
    min_sample INTEGER NOT NULL,             -- finished devices before a failure rate can halt the wave
    halt_reason TEXT,                        -- why the rollout halted by itself (or was aborted)
    halted_at INTEGER,                       -- unix seconds
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
-- a check-in reads a release's latest rollout by release; one live rollout per release
CREATE INDEX rollout_release ON rollout (release_id, id);
CREATE UNIQUE INDEX rollout_release_live ON rollout (release_id) WHERE state IN ('running', 'paused', 'halted');

CREATE TABLE rollout_wave (
    rollout INTEGER NOT NULL REFERENCES rollout (id) ON DELETE CASCADE,
    wave INTEGER NOT NULL,                   -- 1-based
    size INTEGER,                            -- devices that needed the release when the wave started
    started_at INTEGER,                      -- unix seconds
    finished_at INTEGER,
    PRIMARY KEY (rollout, wave)
);

CREATE TABLE update_offer (
    id INTEGER PRIMARY KEY,
    device INTEGER NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    release_id INTEGER NOT NULL REFERENCES firmware_release (id),
    version TEXT NOT NULL,
    rollout INTEGER,                         -- NULL: an ordinary release
    wave INTEGER,
    offered_at INTEGER NOT NULL,             -- unix seconds: the first check-in answered with it
    flags_before TEXT NOT NULL DEFAULT '[]', -- JSON: the device's health flags then
    outcome TEXT CHECK (outcome IN ('success', 'failure')),
    outcome_at INTEGER,
    unhealthy TEXT,                          -- after a success: the health problem that followed, if any
    unhealthy_at INTEGER,
    UNIQUE (device, release_id)
);
CREATE INDEX update_offer_wave ON update_offer (rollout, wave);
CREATE INDEX update_offer_device ON update_offer (device, offered_at);

-- firmware a device reported that no offer explains
CREATE TABLE firmware_event (
    id INTEGER PRIMARY KEY,
    device INTEGER NOT NULL REFERENCES device (id) ON DELETE CASCADE,
    at INTEGER NOT NULL,                     -- unix seconds
    previous TEXT NOT NULL,
    version TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('installed_outside'))
);
CREATE INDEX firmware_event_device ON firmware_event (device, at);

CREATE TABLE rollout_check (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    claimed_at INTEGER NOT NULL DEFAULT 0    -- unix seconds; one worker at a time evaluates the gates
);
INSERT INTO rollout_check (id) VALUES (1);

-- what devices were offered before this migration: their update reports say (SQLite's
-- strftime; an unreadable time becomes 0)
INSERT INTO update_offer (device, release_id, version, offered_at, outcome)
SELECT u.device, u.release_id, r.version, COALESCE(MIN(CAST(strftime('%s', u.received_at) AS INTEGER)), 0),
       MAX(CASE WHEN u.step = 'success' THEN 'success' WHEN u.step = 'failure' THEN 'failure' END)
FROM update_report AS u JOIN firmware_release AS r ON r.id = u.release_id
GROUP BY u.device, u.release_id, r.version;
