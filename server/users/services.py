"""Creating users, checking and changing their passwords.

Every write of the ``user`` table goes through here, each with its audit
record in the same transaction.  Audit details never hold a password or a
hash: they are exported."""

from __future__ import annotations

from server import audit
from server.auth import DUMMY_HASH, MAX_PASSWORD, MAX_USERNAME, check_password, hash_password
from server.clock import now_iso
from server.models import database
from server.users.models import User
from server.users.records import ROLES, UserInfo
from signing.exceptions import AirlockError

MIN_PASSWORD = 12  # characters


class UserError(AirlockError):
    """A user cannot be created, found or changed as asked."""



def _info(row: User) -> UserInfo:
    return UserInfo(row.username, row.role, row.created_at)


def check_new_password(password: str | None, who: str = "the password") -> str:
    """The password if it may be set; else a :class:`UserError` saying why."""
    if not password or len(password) < MIN_PASSWORD:
        raise UserError(f"{who} must be at least {MIN_PASSWORD} characters; nothing changed")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"{who} must be at most {MAX_PASSWORD} characters; nothing changed")
    return password


def create_user(username: str, password: str, role: str, operator: str) -> UserInfo:
    """Add a user; refused when the name is taken or the password too short."""
    if not username or len(username) > MAX_USERNAME or ":" in username or not username.isprintable():
        raise UserError(f"user name {username[:MAX_USERNAME]!r} is not allowed: use 1 to {MAX_USERNAME} printable "
                        "characters without ':'")
    if role not in ROLES:
        raise UserError(f"role {role!r} is not one of {', '.join(ROLES)}")
    check_new_password(password, f"the {role} password")
    hashed = hash_password(password)
    with database.atomic("IMMEDIATE"):
        if User.get_or_none(User.username == username) is not None:
            raise UserError(f"user {username!r} already exists; nothing changed")
        row = User.create(username=username, password_hash=hashed, role=role, created_at=now_iso())
        audit.record(operator, "user.create", username, {"role": role})
    return _info(row)


def get_user(username: str) -> UserInfo:
    row = User.get_or_none(User.username == username)
    if row is None:
        raise UserError(f"no user named {username[:MAX_USERNAME]!r}: see `airlock init --admin` for the first one")
    return _info(row)


def verify_password(username: str, password: str) -> UserInfo | None:
    """The user, if ``password`` is theirs; else None.  An unknown name costs
    what a known one does (it is checked against a dummy hash)."""
    row = User.get_or_none(User.username == username)
    ok = check_password(password, row.password_hash if row is not None else DUMMY_HASH)
    return _info(row) if ok and row is not None else None


def change_password(username: str, password: str, operator: str) -> UserInfo:
    """Set a new password for an existing user; the old one stops working."""
    check_new_password(password, "the new password")
    hashed = hash_password(password)
    with database.atomic("IMMEDIATE"):
        row = User.get_or_none(User.username == username)
        if row is None:
            raise UserError(f"no user named {username[:MAX_USERNAME]!r}; nothing changed")
        row.password_hash = hashed
        row.save()
        audit.record(operator, "user.password", username, {})
    return _info(row)
