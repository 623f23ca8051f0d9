"""Users: creating them, their roles, passwords, logins and console sessions.

Every write of the ``user``, ``console_session`` and ``login_failure``
tables goes through here (or ``sessions`` and ``throttle``, which this
module calls), each change with its audit record in the same transaction.
Audit details never hold a password or a hash: they are exported.

A password change, a role change and disabling end the user's console
sessions in the same transaction.  The last enabled admin can be neither
disabled nor demoted: the appliance would have no one left to manage it.
"""

from __future__ import annotations

import logging

from server import audit
from server.auth import (
    DUMMY_HASH,
    MAX_PASSWORD,
    MAX_USERNAME,
    VERIFIED,
    AuthError,
    Limiter,
    check_password,
    hash_password,
    needs_rehash,
)
from server.clock import now_iso
from server.models import database
from server.text import escape_text
from server.users import sessions
from server.users.models import User
from server.users.records import ROLES, UserInfo
from signing.exceptions import AirlockError

logger = logging.getLogger(__name__)

MIN_PASSWORD = 12  # characters


class UserError(AirlockError):
    """A user cannot be created, found or changed as asked."""


class UserConflictError(UserError):
    """The change would leave the appliance without an enabled admin."""

    status = 409
    code = "conflict"


def _info(row: User) -> UserInfo:
    return UserInfo(row.username, row.role, row.created_at, bool(row.disabled))


def _shown(username: str) -> str:
    return f"'{escape_text(username, MAX_USERNAME)}'"


def check_new_password(password: str | None, who: str = "the password") -> str:
    """The password if it may be set; else a :class:`UserError` saying why."""
    if not password or len(password) < MIN_PASSWORD:
        raise UserError(f"{who} must be at least {MIN_PASSWORD} characters; nothing changed")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"{who} must be at most {MAX_PASSWORD} characters; nothing changed")
    return password


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"role '{escape_text(role, 40)}' is not one of {', '.join(ROLES)}; nothing changed")
    return role


def create_user(username: str, password: str, role: str, operator: str) -> UserInfo:
    """Add a user; refused when the name is taken or the password too short."""
    if not username or len(username) > MAX_USERNAME or ":" in username or not username.isprintable():
        raise UserError(f"user name {username[:MAX_USERNAME]!r} is not allowed: use 1 to {MAX_USERNAME} printable "
                        "characters without ':'")
    check_role(role)
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
        raise UserError(f"no user named {_shown(username)}: see `airlock users list`, or `airlock users add`")
    return _info(row)


def list_users() -> list[UserInfo]:
    return [_info(row) for row in User.select().order_by(User.username)]


def _existing(username: str) -> User:
    row = User.get_or_none(User.username == username)
    if row is None:
        raise UserError(f"no user named {_shown(username)}; nothing changed (see `airlock users list`)")
    return row


def _check_not_last_admin(row: User, doing: str) -> None:
    if row.role != "admin" or row.disabled:
        return
    others = User.select().where((User.role == "admin") & (User.disabled == False) & (User.id != row.id)).count()  # noqa: E712
    if others == 0:
        raise UserConflictError(f"{row.username!r} is the last enabled admin and cannot be {doing}: add another "
                                "admin first (`airlock users add NAME --role admin`); nothing changed")


def set_role(username: str, role: str, operator: str) -> UserInfo:
    """Give ``username`` another role; their console sessions end."""
    check_role(role)
    with database.atomic("IMMEDIATE"):
        row = _existing(username)
        if row.role == role:
            return _info(row)
        if role != "admin":
            _check_not_last_admin(row, "demoted")
        before = row.role
        row.role = role
        row.save()
        ended = sessions.end_all(username)
        audit.record(operator, "user.role", username, {"from": before, "to": role, "sessions_ended": ended})
    return _info(row)


def disable_user(username: str, operator: str) -> UserInfo:
    """Stop ``username`` from logging in; their console sessions end."""
    with database.atomic("IMMEDIATE"):
        row = _existing(username)
        if row.disabled:
            return _info(row)
        _check_not_last_admin(row, "disabled")
        row.disabled = True
        row.save()
        ended = sessions.end_all(username)
        audit.record(operator, "user.disable", username, {"sessions_ended": ended})
    return _info(row)


def verify_password(username: str, password: str) -> UserInfo | None:
    """The enabled user, if ``password`` is theirs; else None.  An unknown
    name costs what a known one does (it is checked against a dummy hash).
    A hash made with older parameters is replaced by one with today's.  A
    password that verified recently is not hashed again (``auth.VERIFIED``)."""
    row = User.get_or_none(User.username == username)
    if row is not None and VERIFIED.hit(username, row.password_hash, password):
        return None if row.disabled else _info(row)
    ok = check_password(password, row.password_hash if row is not None else DUMMY_HASH)
    if not ok or row is None or row.disabled:
        return None
    VERIFIED.add(username, row.password_hash, password)
    if needs_rehash(row.password_hash):
        old = row.password_hash
        hashed = hash_password(password)
        with database.atomic("IMMEDIATE"):
            # only if nobody changed the password meanwhile
            User.update(password_hash=hashed).where((User.id == row.id) & (User.password_hash == old)).execute()
        logger.info("stored %s's password hash again with today's parameters", escape_text(username, MAX_USERNAME))
    return _info(row)


def authenticate(username: str, password: str, limiter: Limiter, *, via: str) -> UserInfo:
    """The user these credentials name, or :class:`AuthError`: 429 while the
    name is throttled, 401 when wrong or disabled.  Failures are audited
    with the name tried, escaped: it is whatever someone on the LAN sent."""
    tried = escape_text(username, MAX_USERNAME)
    wait = limiter.attempt(username)  # counted before the slow check: parallel guesses stay within the limit
    if wait:
        audit.record(tried, "user.login_failed", tried, {"via": via, "reason": "throttled"})
        raise AuthError(f"too many failed logins for {_shown(username)}: try again in {wait} s", status=429,
                        retry_after=wait)
    user = verify_password(username, password)
    if user is None:  # the attempt already counts as a failure
        audit.record(tried, "user.login_failed", tried, {"via": via, "reason": "wrong name or password"})
        raise AuthError("wrong user name or password")
    limiter.succeeded(username)
    return user


def login(username: str, password: str, limiter: Limiter, remote: str) -> tuple[sessions.Session, str]:
    """Log in to the console: (the new session, its cookie secret).  Audited."""
    user = authenticate(username, password, limiter, via="console")
    with database.atomic("IMMEDIATE"):
        token, csrf = sessions.create(user.username, remote)
        audit.record(user.username, "user.login", user.username, {"via": "console", "remote": remote[:64]})
    session = sessions.resolve(token)
    if session is None:  # disabled between the check and now
        raise AuthError("wrong user name or password")
    return session, token


def logout(token: str) -> str | None:
    """End the console session ``token`` names; audited.  The user's name, or None."""
    with database.atomic("IMMEDIATE"):
        username = sessions.end(token)
        if username is not None:
            audit.record(username, "user.logout", username, {"via": "console"})
    return username


def change_password(username: str, password: str, operator: str) -> UserInfo:
    """Set a new password for an existing user; the old one stops working and
    their console sessions end."""
    check_new_password(password, "the new password")
    hashed = hash_password(password)
    with database.atomic("IMMEDIATE"):
        row = User.get_or_none(User.username == username)
        if row is None:
            raise UserError(f"no user named {username[:MAX_USERNAME]!r}; nothing changed")
        row.password_hash = hashed
        row.save()
        ended = sessions.end_all(username)
        audit.record(operator, "user.password", username, {"sessions_ended": ended})
    return _info(row)
