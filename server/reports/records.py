"""Dataclasses at the report side's boundary: what the services take and
return to the API, the label form and the CLI.  No peewee rows here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

KINDS = ["crash", "error", "watchdog_reset", "log"]  # a device's; operator reports have kind "operator"
SEVERITIES = ["critical", "error", "warning", "info"]
STATUSES = ["new", "acknowledged", "resolved"]


@dataclass(frozen=True)
class Attachment:
    name: str
    content: bytes


@dataclass(frozen=True)
class DeviceReportIn:
    report_id: str  # uuid
    kind: str
    severity: str
    message: str
    firmware: str
    occurred_at: str | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class OperatorReportIn:
    problem: str
    urgency: str  # one of SEVERITIES
    reporter: str


@dataclass(frozen=True)
class Filed:
    """The answer to filing a report."""

    id: int
    duplicate: bool


@dataclass
class AttachmentInfo:
    name: str
    size: int  # bytes
    sha256: str
    path: str  # where the content is on the appliance's disk


@dataclass
class NoteInfo:
    action: str  # note | acknowledged | resolved
    text: str
    author: str
    at: str


@dataclass
class ReportSummary:
    id: int
    device_id: str
    source: str  # device | operator
    kind: str
    severity: str
    status: str
    message: str
    created_at: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ReportDetail:
    summary: ReportSummary
    report_id: str | None
    firmware: str | None
    occurred_at: str | None
    reporter: str | None
    snapshot: dict
    status_changed_at: str | None
    status_changed_by: str | None
    attachments: list[AttachmentInfo] = field(default_factory=list)
    notes: list[NoteInfo] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Label:
    device_id: str
    hardware: str
    url: str  # carries the label key: print it, never log it
