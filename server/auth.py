"""Users' credentials: password hashes and HTTP Basic checks.

Passwords are stored as scrypt hashes (OWASP ASVS 5.0: N >= 2^17, r = 8,
p = 1).  One verification costs about 128 MiB and a few hundred ms of CPU, so
verifications are serialised per process (a burst of guesses cannot exhaust
memory).  A hash made with other parameters (an older Airlock's) still
verifies, and :func:`needs_rehash` tells the users service to store it again
with today's on the next successful login.  Failed logins are limited per
user name in a sliding window by a :class:`Limiter`; the one the app uses
(``server.users.throttle``) counts them in the database, so the limit holds
across every gunicorn worker and across restarts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

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
    """A user's credentials are missing, wrong (401 ``unauthorized``), of a
    role that may not do this (403 ``forbidden``) or rate-limited (429
    ``too_many_attempts``)."""

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


class VerifiedCache:
    """Passwords that verified recently, so that a script calling the admin
    API with HTTP Basic does not pay a whole scrypt (about 128 MiB and up to
    a second on a busy appliance) on every request.

    An entry is keyed by the user name *and the stored hash*, and holds only
    an HMAC of the password under a key that lives in this process's memory,
    for at most ``ttl`` seconds.  A password change replaces the stored hash,
    so the old entry can never match again; a wrong password never has an
    entry; disabling and role changes are read from the database on every
    request anyway.  Bounded: the oldest entries go first."""

    def __init__(self, size: int = 1024, ttl: float = 300.0):
        self.size, self.ttl = size, ttl
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[tuple[str, str], tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _mac(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode(), hashlib.sha256).digest()

    def hit(self, username: str, stored: str, password: str) -> bool:
        with self._lock:
            entry = self._entries.get((username, stored))
        if entry is None or time.monotonic() - entry[1] > self.ttl:
            return False
        return hmac.compare_digest(entry[0], self._mac(password))

    def add(self, username: str, stored: str, password: str) -> None:
        mac = self._mac(password)
        with self._lock:
            self._entries[(username, stored)] = (mac, time.monotonic())
            self._entries.move_to_end((username, stored))
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


VERIFIED = VerifiedCache()


def needs_rehash(stored: str) -> bool:
    """True when ``stored`` was made with other parameters than today's."""
    parts = stored.split("$")
    return len(parts) != 6 or parts[0] != "scrypt" or parts[1:4] != [str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P)]


class Limiter(Protocol):
    """Failed logins per user name in a sliding window."""

    def retry_after(self, username: str) -> int:
        """Seconds until ``username`` may try again; 0 when it may now."""
        ...

    def attempt(self, username: str) -> int:
        """Like :meth:`retry_after`, and when 0, count this attempt as a
        failure at once (atomically), until :meth:`succeeded`."""
        ...

    def succeeded(self, username: str) -> None: ...


@dataclass(frozen=True)
class Admin:
    username: str
    role: str


def parse_basic(header: str | None) -> tuple[str, str]:
    """(username, password) from an ``Authorization: Basic`` header."""
    if not header or not header[:6].lower() == "basic ":
        raise AuthError("this needs a user: send HTTP Basic credentials of a user made by `airlock init --admin` "
                        "or `airlock users add`")
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise AuthError("the Basic credentials are not base64 of UTF-8 `user:password`") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username or len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
        raise AuthError("the Basic credentials are not `user:password` of sensible length")
    return username, password


def authenticate_basic(header: str | None, limiter: Limiter, roles: tuple[str, ...]) -> Admin:
    """Check HTTP Basic credentials against the ``user`` table; a user whose
    role is not in ``roles`` is refused with 403."""
    from server.users.services import authenticate

    username, password = parse_basic(header)
    user = authenticate(username, password, limiter, via="api")
    if user.role not in roles:
        raise AuthError(f"user {username!r} is a {user.role}, and this needs {' or '.join(roles)}", status=403)
    return Admin(user.username, user.role)


def authenticate_admin(header: str | None, limiter: Limiter) -> Admin:
    """Check HTTP Basic credentials against the ``user`` table; admins only."""
    return authenticate_basic(header, limiter, ("admin",))
