"""Dataclasses at the exports domain's boundary.  No database rows here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from server.exports.collect import FileEntry


@dataclass(frozen=True)
class ExportRecord:
    """One export as the appliance records it (and notes it while pending)."""

    sequence: int
    re_export_since: int | None
    created_at: str
    operator: str
    file_name: str
    bytes: int
    file_sha256: str
    manifest_sha256: str
    encrypted_for: str | None
    ranges: str  # JSON: what it covers, per data set

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def values(self) -> list:
        return [getattr(self, c) for c in self.columns()]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Collection:
    """What an export holds, read in one snapshot of the database."""

    sequence: int  # the number this export gets
    re_export_since: int | None
    previous_sequence: int | None
    previous_manifest_sha256: str | None
    ranges: dict
    files: list[FileEntry]
