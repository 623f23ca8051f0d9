"""Console sessions, kept in the database.

Flask's default session is a signed cookie that nothing can revoke.  Here
the cookie holds only a random secret; the ``console_session`` table holds
its SHA-256, the user and the session's CSRF token.  Every request looks the
session up (joined with the user, so a disabled user's session is dead at
once), and the users service deletes a user's sessions in the same
transaction as a password change, a role change or disabling.  A session
ends after ``IDLE_TIMEOUT`` without a request or ``MAX_AGE`` after login.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from server.clock import now_unix
from server.models import database

IDLE_TIMEOUT = 30 * 60  # seconds without a request
MAX_AGE = 12 * 3600  # seconds after login, whatever the activity
TOUCH_EVERY = 60  # seconds: last_seen is written at most this often per session
MAX_TOKEN = 128  # characters of a cookie value looked up at all


@dataclass(frozen=True)
class Session:
    username: str
    role: str
    csrf: str
    created_at: int  # unix seconds


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(username: str, remote: str) -> tuple[str, str]:
    """A new session for ``username``: (cookie secret, CSRF token).  Call it
    inside the login's transaction."""
    token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), now_unix()
    database.execute_sql("DELETE FROM console_session WHERE last_seen <= ? OR created_at <= ?",
                         (now - IDLE_TIMEOUT, now - MAX_AGE))
    database.execute_sql(
        "INSERT INTO console_session (token_sha256, username, csrf, created_at, last_seen, remote) "
        "VALUES (?, ?, ?, ?, ?, ?)", (_digest(token), username, csrf, now, now, remote[:64]))
    return token, csrf


def resolve(token: str | None) -> Session | None:
    """The live session the cookie ``token`` names, or None."""
    if not token or len(token) > MAX_TOKEN:
        return None
    now = now_unix()
    row = database.execute_sql(
        "SELECT s.username, u.role, s.csrf, s.created_at, s.last_seen FROM console_session s "
        "JOIN \"user\" u ON u.username = s.username "
        "WHERE s.token_sha256 = ? AND NOT u.disabled AND s.last_seen > ? AND s.created_at > ?",
        (_digest(token), now - IDLE_TIMEOUT, now - MAX_AGE)).fetchone()
    if row is None:
        return None
    if now - row[4] >= TOUCH_EVERY:
        with database.atomic("IMMEDIATE"):
            database.execute_sql("UPDATE console_session SET last_seen = ? WHERE token_sha256 = ?",
                                 (now, _digest(token)))
    return Session(row[0], row[1], row[2], row[3])


def end(token: str) -> str | None:
    """End the session ``token`` names; the user name it had, or None."""
    with database.atomic("IMMEDIATE"):
        row = database.execute_sql("SELECT username FROM console_session WHERE token_sha256 = ?",
                                   (_digest(token),)).fetchone()
        database.execute_sql("DELETE FROM console_session WHERE token_sha256 = ?", (_digest(token),))
    return row[0] if row else None


def end_all(username: str) -> int:
    """End every session of ``username`` (inside the caller's transaction)."""
    return database.execute_sql("DELETE FROM console_session WHERE username = ?", (username,)).rowcount


def count(username: str | None = None) -> int:
    """Sessions stored (of ``username``), live or not yet pruned."""
    if username is None:
        return database.execute_sql("SELECT COUNT(*) FROM console_session").fetchone()[0]
    return database.execute_sql("SELECT COUNT(*) FROM console_session WHERE username = ?",
                                (username,)).fetchone()[0]
