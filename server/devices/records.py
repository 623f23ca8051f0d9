"""Dataclasses at the device side's boundary: what the services take and
return to the API, the CLI and (later) the console.  No peewee rows here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class EnrollmentRequest:
    device_id: str
    hardware: str
    firmware: str
    public_key: str  # base64 of the raw 32-byte Ed25519 key
    nonce: str  # hex
    timestamp: str  # ISO 8601 UTC
    signature: str  # base64
    enrollment_token: str | None = None

    def signed_fields(self) -> dict:
        fields = {k: v for k, v in asdict(self).items() if k != "signature"}
        if fields["enrollment_token"] is None:
            del fields["enrollment_token"]
        return fields


@dataclass(frozen=True)
class EnrollmentResult:
    state: str  # pending | accepted
    checkin_interval: int  # seconds
    jitter: int  # seconds
    token: str | None = None  # only when accepted; shown once
    reason: str | None = None


@dataclass(frozen=True)
class DeviceIdentity:
    """An authenticated device, as a check-in or report sees it."""

    pk: int
    device_id: str
    hardware: str
    firmware: str
    token_hash: str
    metrics: dict
    reboots: list[int]
    health: list[str] = field(default_factory=list)  # the flags of its previous check-in


@dataclass(frozen=True)
class Checkin:
    firmware: str
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class UpdateOffer:
    release_id: int
    repository: str
    target_path: str
    version: str
    metadata_url: str
    targets_url: str


@dataclass(frozen=True)
class CheckinResult:
    checkin_interval: int  # seconds
    jitter: int  # seconds
    update: UpdateOffer | None


@dataclass(frozen=True)
class UpdateReportIn:
    report_id: str
    release_id: int
    step: str
    at: str
    reason: str | None = None


@dataclass
class UpdateReportInfo:
    report_id: str
    release_id: int
    version: str
    step: str
    reason: str | None
    at: str
    received_at: str


@dataclass
class RemovedDevice:
    """What ``devices remove`` took out of the inventory with the device."""

    device_id: str
    state: str  # the state it was in
    update_reports: int
    reports: int  # error and operator reports, with their notes and attachments
    metric_samples: int
    blobs_deleted: int  # attachment files no other report names

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class KeyInfo:
    fingerprint: str  # sha256 hex of the raw key
    state: str  # active | pending | rejected | retired
    created_at: str
    decided_at: str | None
    decided_by: str | None


@dataclass
class DeviceSummary:
    device_id: str
    hardware: str
    firmware: str
    state: str
    state_reason: str | None
    last_seen: str | None  # ISO 8601 UTC
    online: bool
    health: list[str]
    tags: list[str]
    key_change_pending: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DeviceQuery:
    """Which devices a page lists, in what order (see ``services.page_devices``)."""

    state: str | None = None  # a device state, or online / offline / flagged
    hardware: str | None = None
    tag: str | None = None
    firmware: str | None = None
    flag: str | None = None  # a stored health flag (hot, low_storage ...)
    prefix: str | None = None  # device ids starting with this
    sort: str = "device_id"  # a column of PAGE_SORTS; "-" first for descending
    page: int = 1
    per_page: int = 100


@dataclass(frozen=True)
class DevicePage:
    total: int  # devices matching the query, over every page
    page: int
    per_page: int
    devices: list[DeviceSummary]

    def to_dict(self) -> dict:
        return {"total": self.total, "page": self.page, "per_page": self.per_page,
                "devices": [d.to_dict() for d in self.devices]}


@dataclass
class HistoryEntry:
    """One step of a device's update history (``server.devices.history``)."""

    at: str  # ISO 8601 UTC, as the appliance saw it
    event: str  # offered | downloading | installing | rebooted | success | failure | unhealthy | halted
    # | installed_outside
    version: str | None
    release_id: int | None
    rollout_id: int | None
    wave: int | None
    detail: str | None  # a failure's reason, the new health flags, a halt's reason, "was 1.0.0"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DeviceDetail:
    summary: DeviceSummary
    enrolled_at: str
    last_enroll_at: str
    state_changed_at: str
    state_changed_by: str
    token_issued_at: str | None
    last_address: str | None
    checkins: int
    metrics: dict
    keys: list[KeyInfo]
    updates: list[UpdateReportInfo]
    history: dict[str, int]  # samples kept per resolution: raw, hourly, daily
    update_history: list[HistoryEntry] = field(default_factory=list)  # oldest first, across releases and rollouts

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ReleaseInfo:
    id: int
    repository: str
    target_path: str
    version: str
    target_hardware: list[str]
    length: int
    sha256: str | None
    hardware: str | None
    group: str | None
    allow_downgrade: bool
    approved_at: str
    approved_by: str
    withdrawn_at: str | None
    withdrawn_by: str | None
    shadowed_by: int | None = None  # a newer active release of the same scope that check-ins offer instead
    shadows: list[int] = field(default_factory=list)  # on approval: active releases this one now shadows

    @property
    def scope(self) -> str:
        return f"hardware {self.hardware}" if self.hardware else f"group {self.group}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RuleInfo:
    id: int
    hardware: str
    note: str
    created_at: str
    created_by: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MaintenanceResult:
    raw_rolled_up: int = 0  # raw samples folded into hourly rollups
    hourly_rolled_up: int = 0  # hourly rollups folded into daily ones
    daily_dropped: int = 0
    nonces_pruned: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)
