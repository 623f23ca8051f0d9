-- 0011: trusted time.  The appliance's high-water mark of time: the newest
-- clock readings it had reason to trust, persisted so that a clock set back
-- (a dead RTC battery, a freeze attack) is caught after a reboot.  One row per
-- kind of mark; a mark only ever moves forward (server/timekeeping.py).
CREATE TABLE time_mark (
    name TEXT PRIMARY KEY,               -- 'verified': signed metadata verified (import) or signed (timestamp refresh); 'seen': init
    at BIGINT NOT NULL,                 -- unix seconds
    detail TEXT NOT NULL DEFAULT ''      -- what set it ("import 12", "airlock init")
);
