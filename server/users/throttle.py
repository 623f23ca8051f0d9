"""Failed logins, counted in the database.

A limiter in each worker's memory gave an attacker W x ``MAX_FAILURES``
guesses per window with W gunicorn workers, and a restart cleared it.  Here
every failure is a row of ``login_failure``, so the limit holds across
workers, app servers on one database, and restarts.  Rows older than the
window are deleted as new ones arrive, so the table holds at most one
window's failures.
"""

from __future__ import annotations

from server.auth import FAILURE_WINDOW, MAX_FAILURES
from server.clock import now_unix
from server.models import database


class LoginThrottle:
    """At most ``max_failures`` failed logins per user name within ``window``
    seconds; then the name is refused until the oldest of them leaves it."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: int = int(FAILURE_WINDOW)):
        self.max_failures = max_failures
        self.window = window

    def retry_after(self, username: str, now: int | None = None) -> int:
        now = now_unix() if now is None else now
        rows = database.execute_sql(
            "SELECT at FROM login_failure WHERE username = ? AND at > ? ORDER BY at DESC LIMIT ?",
            (username, now - self.window, self.max_failures)).fetchall()
        if len(rows) < self.max_failures:
            return 0
        return max(1, rows[-1][0] + self.window - now)

    def attempt(self, username: str, now: int | None = None) -> int:
        """Check and count one login attempt in one transaction: seconds to
        wait (nothing counted), or 0 with the attempt counted as a failure
        until :meth:`succeeded` clears it.  Counting before the slow
        password check keeps parallel guesses within the limit: checking
        first and counting after let every guess in flight through."""
        now = now_unix() if now is None else now
        with database.atomic("IMMEDIATE"):
            database.execute_sql("DELETE FROM login_failure WHERE at <= ?", (now - self.window,))
            wait = self.retry_after(username, now)
            if not wait:
                database.execute_sql("INSERT INTO login_failure (username, at) VALUES (?, ?)", (username, now))
        return wait

    def succeeded(self, username: str) -> None:
        if database.execute_sql("SELECT 1 FROM login_failure WHERE username = ? LIMIT 1", (username,)).fetchone() \
                is None:
            return  # the usual case costs no write
        with database.atomic("IMMEDIATE"):
            database.execute_sql("DELETE FROM login_failure WHERE username = ?", (username,))
