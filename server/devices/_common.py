"""Small helpers shared by the device services: clocks, tokens, keys."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import datetime, timezone

TOKEN_BYTES = 32


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def iso_from_unix(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return iso(datetime.fromtimestamp(seconds, timezone.utc))


def canonical_json(fields: dict) -> bytes:
    """The bytes an enrollment signature covers."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("ascii")


def new_token() -> tuple[str, str]:
    """(token, its sha256 hex): the token goes to the device once, only the hash is kept."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def key_fingerprint(public_key_b64: str) -> str:
    """SHA-256 hex of the raw public key: what IT compares with the device's label."""
    return hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest()
