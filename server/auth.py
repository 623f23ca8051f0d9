"""Administrator credentials: password hashes and HTTP Basic checks.

Passwords are stored as scrypt hashes (OWASP ASVS 5.0: N >= 2^17, r = 8,
p = 1).  One verification costs about 128 MiB and a few hundred ms of CPU, so
verifications are serialised per process (a burst of guesses cannot exhaust
memory), and failed logins are limited per user name in a sliding window.
The limiter lives in each worker's memory: with W workers an attacker gets
at most W x ``MAX_FAILURES`` guesses per window, and a restart clears it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from signing.exceptions import AirlockError

# OWASP ASVS 5.0: scrypt with N >= 2^17, r = 8, p = 1
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 17, 8, 1
SCRYPT_MAXMEM = 256 * 1024 * 1024  # bytes
_MAX_N = 1 << 20  # refuse stored parameters that would hash for seconds

MAX_FAILURES = 5  # failed logins per user name ...
FAILURE_WINDOW = 300.0  # ... within this many seconds, then 429 until the window clears
MAX_USERNAME = 64  # characters
MAX_PASSWORD = 1024  # characters

# Verify an unknown user name against this, so it costs what a real one does.
DUMMY_HASH = (f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${base64.b64encode(b'0' * 16).decode()}$"
               f"{base64.b64encode(b'0' * 32).decode()}")
_scrypt_slot = threading.BoundedSemaphore(1)


class AuthError(AirlockError):
    """An administrator's credentials are missing, wrong (401 ``unauthorized``),
    not an admin's (403 ``forbidden``) or rate-limited (429 ``too_many_attempts``)."""

    challenge = 'Basic realm="airlock admin", charset="UTF-8"'  # WWW-Authenticate on a 401
    CODES = {401: "unauthorized", 403: "forbidden", 429: "too_many_attempts"}

    def __init__(self, message: str, *, status: int = 401, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = self.CODES[status]
        self.retry_after = retry_after
        if retry_after:
            self.extra = {"retry_after": retry_after}


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=SCRYPT_MAXMEM, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n_text, r_text, p_text, salt, digest = stored.split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        salt_bytes, digest_bytes = base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True)
    except (ValueError, binascii.Error):
        return False
    if scheme != "scrypt" or not (2 <= n <= _MAX_N and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    with _scrypt_slot:
        computed = hashlib.scrypt(password.encode(), salt=salt_bytes, n=n, r=r, p=p,
                                  maxmem=SCRYPT_MAXMEM, dklen=len(digest_bytes) or 32)
    return hmac.compare_digest(computed, digest_bytes)


class LoginLimiter:
    """Failed logins per user name in a sliding window (per process)."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = FAILURE_WINDOW, max_names: int = 10_000):
        self.max_failures = max_failures
        self.window = window
        self.max_names = max_names
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, username: str, now: float | None = None) -> int:
        """Seconds until ``username`` may try again; 0 when it may now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._failures.get(username)
            if not times:
                return 0
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) < self.max_failures:
                return 0
            return max(1, int(times[0] + self.window - now) + 1)

    def failed(self, username: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if username not in self._failures and len(self._failures) >= self.max_names:
                # Bounded memory under a flood of made-up names: forget the stalest.
                stalest = min(self._failures, key=lambda k: self._failures[k][-1] if self._failures[k] else 0)
                del self._failures[stalest]
            times = self._failures.setdefault(username, deque())
            times.append(now)
            while len(times) > self.max_failures:
                times.popleft()

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(username, None)


@dataclass(frozen=True)
class Admin:
    username: str
    role: str


def parse_basic(header: str | None) -> tuple[str, str]:
    """(username, password) from an ``Authorization: Basic`` header."""
    if not header or not header[:6].lower() == "basic ":
        raise AuthError("this needs an administrator: send HTTP Basic credentials of a user made by "
                        "`airlock init --admin`")
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise AuthError("the Basic credentials are not base64 of UTF-8 `user:password`") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username or len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
        raise AuthError("the Basic credentials are not `user:password` of sensible length")
    return username, password


def authenticate_admin(header: str | None, limiter: LoginLimiter) -> Admin:
    """Check HTTP Basic credentials against the ``user`` table; admins only."""
    from server.users.services import verify_password

    username, password = parse_basic(header)
    wait = limiter.retry_after(username)
    if wait:
        raise AuthError(f"too many failed logins for {username!r}: try again in {wait} s", status=429,
                        retry_after=wait)
    user = verify_password(username, password)
    if user is None:
        limiter.failed(username)
        raise AuthError("wrong user name or password")
    limiter.succeeded(username)
    if user.role != "admin":
        raise AuthError(f"user {username!r} is not an administrator", status=403)
    return Admin(user.username, user.role)
