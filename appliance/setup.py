"""``airlock init``: create or upgrade an appliance's home in place."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

from appliance.export.identity import ensure_key
from server import bind_database
from server.db import SchemaError, applied_migrations, available_migrations, migrate
from server.settings import Settings
from server.users.services import check_new_password, create_user


@dataclass
class InitResult:
    home: str
    appliance_id: str
    migrations_applied: list[str]
    admin_created: str | None


def appliance_id(settings: Settings) -> str:
    path = settings.home / "appliance-id"
    return path.read_text().strip() if path.exists() else ""


def refuse_newer_schema(settings: Settings) -> None:
    """An older Airlock must not touch a home that a newer one has migrated
    (an upgrade rolled back by hand, a restore onto an old install): its
    code does not know the tables it would write."""
    db = bind_database(settings)
    try:
        have = max(applied_migrations(db), default=0)
    finally:
        db.close()
    latest = available_migrations()[-1][0]
    if have > latest:
        raise SchemaError(f"the database in {settings.home} has schema {have}, newer than this Airlock's ({latest}): "
                          "nothing was changed; install the newer Airlock again (or restore the backup taken "
                          "before the upgrade)")


def initialise(settings: Settings, admin: str | None = None, password: str | None = None,
               operator: str = "airlock init") -> InitResult:
    """Create the folders and database, apply pending migrations, and add
    the first admin if asked.  Safe to run again: it upgrades in place."""
    home = settings.home
    if settings.database_path.exists():
        refuse_newer_schema(settings)
    for folder in (home, settings.public_dir / "repos", settings.staging_dir, settings.state_dir):
        folder.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o750)
    id_path = home / "appliance-id"
    if not id_path.exists():
        id_path.write_text(f"airlock-{uuid.uuid4().hex[:12]}\n")
    ensure_key(settings)  # the appliance's identity key, which signs its exports
    db = bind_database(settings)
    applied = migrate(db)
    created = None
    if admin:
        password = check_new_password(password, "the admin password")
        created = create_user(admin, password, "admin", operator).username
    db.close()
    return InitResult(str(home), appliance_id(settings), applied, created)
