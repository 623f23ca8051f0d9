"""Dataclasses at the imports domain's boundary.  No peewee rows here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ImportOutcome:
    """What one import did, to be recorded (with its audit record)."""

    started_at: str
    operator: str
    source: str
    bundle_digest: str | None
    status: str  # accepted | unchanged | refused
    reason: str | None
    names: list[str]  # repositories the bundle holds
    repositories: dict[str, dict] = field(default_factory=dict)  # name -> change (versions, targets)
    publication: str | None = None  # token kept in each published manifest, until the record is written


@dataclass(frozen=True)
class ImportEntry:
    """One row of the import history, as ``repo show`` prints it."""

    id: int
    started_at: str
    finished_at: str | None
    operator: str
    source: str
    bundle_digest: str | None
    status: str
    reason: str | None
    repository: dict | None  # the change to the repository asked about, or every change when none was

    def to_dict(self) -> dict:
        return asdict(self)
