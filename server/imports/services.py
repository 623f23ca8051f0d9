"""Writing and reading the import record.

Every write of the ``import_record`` table goes through here: an import's
record and its audit record commit in one transaction (``synchronous=FULL``:
an acknowledged import is on disk), and so does a publication that went live
but whose record a crash cut off (written by start-up reconciliation)."""

from __future__ import annotations

import json
import logging

from server import audit
from server.clock import now_iso
from server.imports.models import ImportRecord
from server.imports.records import ImportEntry, ImportOutcome
from server.models import database

logger = logging.getLogger(__name__)

RECOVERY_OPERATOR = "airlock (recovery)"



def record_import(outcome: ImportOutcome) -> int:
    """Record one import and its audit record together; returns the record's id."""
    details: dict = {"names": outcome.names, "repositories": outcome.repositories}
    if outcome.publication:
        details["publication"] = outcome.publication
    with database.atomic("IMMEDIATE"):
        audit.record(outcome.operator, f"import.{outcome.status}", outcome.source,
                     {"bundle_digest": outcome.bundle_digest, "reason": outcome.reason,
                      "repositories": outcome.names})
        row = ImportRecord.create(started_at=outcome.started_at, finished_at=now_iso(), operator=outcome.operator,
                                  source=outcome.source, bundle_digest=outcome.bundle_digest,
                                  status=outcome.status, reason=outcome.reason,
                                  details=json.dumps(details, sort_keys=True))
    return row.get_id()


def record_recovered_publication(publication: dict, repositories: dict[str, dict]) -> int:
    """Record an import whose publication went live (``publication`` is what
    its manifests kept) but whose record was never written; returns its id."""
    token = publication.get("token")
    details = {"names": sorted(repositories), "publication": token, "repositories": repositories,
               "recovered": True}
    with database.atomic("IMMEDIATE"):
        row = ImportRecord.create(
            started_at=publication.get("started_at", now_iso()), finished_at=now_iso(),
            operator=publication.get("operator", RECOVERY_OPERATOR), source=publication.get("source", "?"),
            bundle_digest=publication.get("bundle_digest"), status="accepted",
            reason="recorded at start-up: the publication went live but the appliance stopped before "
                   "recording it", details=json.dumps(details, sort_keys=True))
    return row.get_id()


def is_publication_recorded(token: str) -> bool:
    pattern = f'%"publication": "{token}"%'
    return ImportRecord.select().where(ImportRecord.details ** pattern).exists()


def latest_id() -> int:
    """The newest import record's id (0 before the first): where the history
    of a repository pinned now starts."""
    newest = ImportRecord.select(ImportRecord.id).order_by(ImportRecord.id.desc()).first()
    return newest.id if newest else 0


def imported_into(name: str, after: int = 0) -> int:
    """How many accepted imports published something into repository
    ``name`` after import record ``after`` (where its pin's history starts:
    an earlier repository of the same name, removed, is not this one)."""
    count = 0
    query = ImportRecord.select(ImportRecord.details).where(
        (ImportRecord.status == "accepted") & (ImportRecord.id > after))
    for rec in query:
        try:
            details = json.loads(rec.details or "{}")
        except ValueError:
            continue
        if name in (details.get("repositories") or {}):
            count += 1
    return count


def import_history(name: str | None = None, limit: int = 50, after: int = 0) -> list[ImportEntry]:
    """The newest imports first; for one repository, those that touched it
    or that were refused while holding it, after import record ``after``
    (where its pin's history starts)."""
    out = []
    query = ImportRecord.select().where(ImportRecord.id > after)
    for rec in query.order_by(ImportRecord.id.desc()).limit(limit * 4 if name else limit):
        details = json.loads(rec.details or "{}")
        repos = details.get("repositories", {})
        if name and name not in repos and rec.status != "refused":
            continue
        if name and rec.status == "refused" and name not in details.get("names", []):
            continue
        out.append(ImportEntry(rec.get_id(), rec.started_at, rec.finished_at, rec.operator, rec.source,
                               rec.bundle_digest, rec.status, rec.reason, repos.get(name) if name else repos))
        if len(out) >= limit:
            break
    return out

