"""Dataclasses at the rollouts' boundary: what the services hand the CLI,
the admin API, status, metrics and the export.  No peewee rows here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class RolloutSpec:
    """What an admin asks for when creating a rollout."""

    waves: list[str]  # "10%", "group:line3" ...
    soak: int = 3600  # seconds each wave runs before the next may start
    min_success: int = 95  # percent of a wave's finished devices that must be healthy
    min_sample: int = 5  # finished devices before a failure rate can halt a wave


@dataclass
class WaveInfo:
    number: int  # 1-based
    target: str  # "10%" or "group line3"
    size: int | None  # devices that needed the release when the wave started
    started_at: str | None
    finished_at: str | None
    offered: int = 0
    succeeded: int = 0  # reported success and stayed healthy so far
    failed: int = 0  # reported failure
    unhealthy: int = 0  # reported success, then a reboot loop, rising errors, a new flag or silence

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RolloutInfo:
    id: int
    release_id: int
    repository: str
    target_path: str
    version: str
    state: str  # running | paused | halted | aborted | completed
    current_wave: int
    soak: int  # seconds
    min_success: int  # percent
    min_sample: int
    halt_reason: str | None
    halted_at: str | None
    created_at: str
    created_by: str
    updated_at: str
    waves: list[WaveInfo] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GateVerdict:
    """What one evaluation of a wave concluded."""

    rollout_id: int
    action: str  # "wait" | "advance" | "complete" | "halt"
    reason: str
