"""Start-up reconciliation after a crash or power loss.

An import publishes each repository with one atomic rename, then records
the import in the database.  A crash can leave: staging folders, temporary
files of an unfinished publication, a generation built but never made
current, or a publication that went live whose database record was never
written.  :func:`reconcile` repairs each, so that the served tree, the
trusted state and the database agree.  It runs under the import lock, before
every import and when ``airlock serve`` starts.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field

from server.imports import services as imports
from server.repositories.services import list_repositories
from server.repositories.store import RepositoryStore
from server.settings import Settings

logger = logging.getLogger(__name__)

@dataclass
class Reconciliation:
    removed: list[str] = field(default_factory=list)
    recorded: list[int] = field(default_factory=list)  # import records written for unrecorded publications

    def __bool__(self) -> bool:
        return bool(self.removed or self.recorded)


def reconcile(settings: Settings) -> Reconciliation:
    """Repair what an interrupted import left behind.  Caller holds the
    import lock."""
    result = Reconciliation()
    if settings.staging_dir.exists():
        for entry in sorted(settings.staging_dir.iterdir()):
            shutil.rmtree(entry, ignore_errors=True)
            result.removed.append(str(entry))
    unrecorded: dict[str, dict] = {}
    for repo in list_repositories():
        store = RepositoryStore(settings.public_dir, repo.name)
        if not store.exists():
            continue
        result.removed += store.clean_up_after_crash()
        publication = store.manifest().get("publication") or {}
        token = publication.get("token")
        if token and not imports.is_publication_recorded(token):
            unrecorded.setdefault(token, {"publication": publication, "repositories": {}})
            unrecorded[token]["repositories"][repo.name] = publication.get("change", {})
    for token, info in unrecorded.items():
        record_id = imports.record_recovered_publication(info["publication"], info["repositories"])
        result.recorded.append(record_id)
        logger.warning("recorded import #%d after a crash (publication %s)", record_id, token)
    for path in result.removed:
        logger.warning("removed after an interrupted import: %s", path)
    return result

