"""What a round of the agent ended with, as types instead of strings: the
command line maps these (and the errors of ``agent.exceptions``) to its
exit codes in one table (``agent.cli.ExitCode``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

DEFAULT_INTERVAL, DEFAULT_JITTER = 300.0, 60.0  # seconds, until the appliance says otherwise


class Enrollment(StrEnum):
    """Where this device stood with the appliance at the end of a round."""

    UNKNOWN = "unknown"  # the round ended before the appliance answered anything
    ACCEPTED = "accepted"
    PENDING = "pending"  # plant IT has not accepted it yet
    REFUSED = "refused"  # rejected or decommissioned by plant IT
    UNREACHABLE = "unreachable"  # no answer before the check-in


class UpdateOutcome(StrEnum):
    """What became of an update the appliance offered."""

    INSTALLED = "installed"
    REBOOT_PENDING = "reboot_pending"  # installed; reported after the device reboots into it
    FAILED = "failed"  # fetched, verified or installed badly: reported
    GAVE_UP = "gave_up"  # failed max_install_attempts times: not tried again
    UNREACHABLE = "unreachable"  # the appliance went away mid-way: the next round resumes


@dataclass
class CycleResult:
    state: Enrollment = Enrollment.UNKNOWN
    checked_in: bool = False
    update: UpdateOutcome | None = None
    release_id: int | None = None
    reports_left: int = 0  # entries still in the spool
    interval: float = DEFAULT_INTERVAL  # seconds until the next round
    jitter: float = DEFAULT_JITTER  # seconds, at most, added at random
    errors: list[str] = field(default_factory=list)  # one line each, for stderr
