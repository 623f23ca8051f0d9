-- 0010: the web console.  Users can be disabled; console sessions live in the
-- database (a cookie alone cannot be revoked), so that logout, a password or
-- role change and disabling end them at once in every gunicorn worker; failed
-- logins are counted here too, so throttling holds across workers and restarts.
ALTER TABLE user ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;

CREATE TABLE console_session (
    token_sha256 TEXT PRIMARY KEY,       -- SHA-256 of the cookie's secret; the secret itself is never stored
    username TEXT NOT NULL REFERENCES user (username) ON DELETE CASCADE,
    csrf TEXT NOT NULL,                  -- the form token every state change must carry
    created_at INTEGER NOT NULL,         -- unix seconds
    last_seen INTEGER NOT NULL,          -- unix seconds
    remote TEXT NOT NULL DEFAULT ''
);
CREATE INDEX console_session_user ON console_session (username);

CREATE TABLE login_failure (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL,
    at INTEGER NOT NULL                  -- unix seconds
);
CREATE INDEX login_failure_user ON login_failure (username, at);
CREATE INDEX login_failure_at ON login_failure (at);
