"""The Repositories page's and API's read model: each pinned repository
with the targets a device finds there now (model, version, size, and when
the import that added it ran), from the repository and imports services."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from server.repositories.services import list_repositories, trust_report
from server.settings import Settings
from signing.exceptions import AirlockError


@dataclass(frozen=True)
class TargetRow:
    path: str
    hardware: list[str]
    version: str | None
    length: int
    sha256: str | None
    role: str
    added_at: str | None  # when the accepted import that added it started (None: before the history kept)


@dataclass(frozen=True)
class RepositoryView:
    name: str
    root_fingerprint: str
    pinned_at: str
    pinned_by: str
    error: str | None = None
    targets: list[TargetRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _added_when(imports: list[dict]) -> dict[str, str]:
    added: dict[str, str] = {}
    for entry in reversed(imports):  # oldest first: a later re-add is the one that counts
        change = entry.get("repository") or {}
        if entry.get("status") != "accepted":
            continue
        for path in change.get("targets_removed", []):
            added.pop(path, None)
        for path in change.get("targets_added", []):
            added[path] = entry["started_at"]
    return added


def _hardware(custom: dict) -> list[str]:
    models = custom.get("hardware")
    if isinstance(models, str):
        return [models]
    if isinstance(models, list):
        return [str(m) for m in models]
    return []


def repositories(settings: Settings) -> list[RepositoryView]:
    out = []
    for info in list_repositories():
        base: dict = {"name": info.name, "root_fingerprint": info.root_fingerprint, "pinned_at": info.added_at,
                "pinned_by": info.added_by}
        try:
            report = trust_report(settings, info.name)
        except (AirlockError, OSError, ValueError) as exc:
            out.append(RepositoryView(**base, error=str(exc) or type(exc).__name__))
            continue
        added = _added_when(report.imports)
        rows = []
        for t in report.targets:
            custom = t.get("custom") or {}
            version = custom.get("version")
            rows.append(TargetRow(t["path"], _hardware(custom), str(version) if version is not None else None,
                                  t["length"], t["hashes"].get("sha256"), t["role"], added.get(t["path"])))
        out.append(RepositoryView(**base, targets=rows))
    return out
