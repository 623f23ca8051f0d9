-- 0003: what the appliance sees by mDNS (appliance/mdns.py writes, through server/discovery/services.py).
-- Every text here came off the network: it is stored already bounded and escaped.
CREATE TABLE discovered_service (
    id INTEGER PRIMARY KEY,
    service_type TEXT NOT NULL,          -- e.g. _airlock-device._tcp.local.
    instance TEXT NOT NULL,              -- the instance label, without the service type
    host TEXT NOT NULL DEFAULT '',       -- target host of the SRV record
    addresses TEXT NOT NULL DEFAULT '[]',-- JSON list of IP addresses
    port INTEGER,
    txt TEXT NOT NULL DEFAULT '{}',      -- JSON object: key -> value (null for a key without '=')
    device_id TEXT,                      -- TXT id of an _airlock-device service: links to device.device_id
    first_seen TEXT NOT NULL,            -- ISO 8601 UTC
    last_seen TEXT NOT NULL,             -- ISO 8601 UTC: last answer heard
    gone_since TEXT,                     -- ISO 8601 UTC; NULL while it answers
    UNIQUE (service_type, instance)
);
CREATE INDEX discovered_service_device ON discovered_service (device_id);
CREATE INDEX discovered_service_last_seen ON discovered_service (last_seen);
