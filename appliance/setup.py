"""``airlock init``: create or upgrade an appliance's home in place."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

from appliance.export.identity import ensure_key
from server import bind_database, timekeeping
from server.clock import utcnow
from server.db import check_not_newer, migrate
from server.settings import Settings
from server.timestamp_key import ensure_timestamp_key
from server.users.services import check_new_password, create_user


@dataclass
class InitResult:
    home: str
    appliance_id: str
    migrations_applied: list[str]
    admin_created: str | None
    clock_problem: str | None = None  # the clock cannot be trusted: what is wrong, what to do


def appliance_id(settings: Settings) -> str:
    path = settings.home / "appliance-id"
    return path.read_text().strip() if path.exists() else ""


def refuse_newer_schema(settings: Settings) -> None:
    db = bind_database(settings)
    try:
        check_not_newer(db, str(settings.home))
    finally:
        db.close()


def initialise(settings: Settings, admin: str | None = None, password: str | None = None,
               operator: str = "airlock init") -> InitResult:
    """Create the folders and database, apply pending migrations, and add
    the first admin if asked.  Safe to run again: it upgrades in place."""
    home = settings.home
    if settings.database_url or settings.database_path.exists():  # PostgreSQL: maybe migrated by another box
        refuse_newer_schema(settings)
    for folder in (home, settings.public_dir / "repos", settings.staging_dir, settings.state_dir):
        folder.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o750)
    id_path = home / "appliance-id"
    if not id_path.exists():
        id_path.write_text(f"airlock-{uuid.uuid4().hex[:12]}\n")
    ensure_key(settings)  # the appliance's identity key, which signs its exports
    ensure_timestamp_key(settings)  # the key a vendor's root may authorize for timestamp (server/freshness.py)
    db = bind_database(settings)
    applied = migrate(db)
    now = utcnow()
    clock = timekeeping.clock_health(settings, now)
    if clock.ok:  # the appliance's own last known time: a clock set back after this is caught
        timekeeping.record("seen", now, operator)
    created = None
    if admin:
        password = check_new_password(password, "the admin password")
        created = create_user(admin, password, "admin", operator).username
    db.close()
    return InitResult(str(home), appliance_id(settings), applied, created, clock.problem)
