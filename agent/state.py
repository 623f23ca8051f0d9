"""The agent's state: one typed object, loaded once at start and saved
atomically after each change (``_files.write_atomic``: temporary file,
fsync, rename, fsync of the folder), so a power cut leaves the old state or
the new one, never half of either.

On disk it is ``STATE/state.json`` (the same keys the agent has always
written, so a state folder from an older agent loads, and an older agent
can still read a newer file) and ``STATE/token`` (mode 0600, written only
when the token changes).  Keys this agent does not know are kept as they
were.  The daemon (``run``) owns ``state.json`` while it runs: another
command run beside it (``report``, ``status``) may read it, but what such a
command writes there can be overwritten by the daemon's next save (only a
counter, in practice; the spool is shared safely, one file per entry)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent._files import write_atomic
from agent.exceptions import StateError

logger = logging.getLogger(__name__)
STATE_FILE = "state.json"
TOKEN_FILE = "token"


@dataclass
class PendingInstall:
    """An install the hook finished with "reboot into it" (exit 10)."""

    release_id: int
    version: str
    boot_id: str | None  # the kernel boot id when the hook ran: a different one means the reboot happened


@dataclass
class AgentState:
    token: str | None = None  # bearer token from an accepted enrollment (STATE/token)
    enrollment: str | None = None  # pending, accepted, token_refused, or the appliance's refusal (rejected ...)
    enrolled_at: str | None = None  # UTC, ISO 8601
    checkin_interval: float | None = None  # seconds, as the appliance last answered
    jitter: float | None = None  # seconds, as the appliance last answered
    last_checkin: str | None = None  # UTC, ISO 8601
    last_update_offer: dict[str, Any] | None = None  # the `update` of the last check-in answer
    firmware: str | None = None  # version recorded after an install (used when there is no firmware_file)
    pending_install: PendingInstall | None = None
    attempts: dict[int, int] = field(default_factory=dict)  # release id -> failed installs
    last_failure: str | None = None  # reason of the last failed install
    error_counters: dict[str, int] = field(default_factory=dict)  # cumulative, sent with every check-in
    appliance_tls: str | None = None  # the certificate pin last used (hex): plain HTTP is never used again
    extra: dict[str, Any] = field(default_factory=dict)  # keys written by a newer agent, kept as they were

    def count_error(self, name: str) -> None:
        self.error_counters[name] = self.error_counters.get(name, 0) + 1

    def to_json(self) -> dict[str, Any]:
        """The ``state.json`` document (the token lives in its own file)."""
        pending = self.pending_install
        # written only once a pin was used, so a state without one reads back the same
        pin = {"appliance_tls": self.appliance_tls} if self.appliance_tls else {}
        return {**self.extra, **pin, "enrollment": self.enrollment, "enrolled_at": self.enrolled_at,
                "checkin_interval": self.checkin_interval, "jitter": self.jitter, "last_checkin": self.last_checkin,
                "last_update_offer": self.last_update_offer, "firmware": self.firmware,
                "pending_install": None if pending is None else {"release_id": pending.release_id,
                                                                 "version": pending.version,
                                                                 "boot_id": pending.boot_id},
                "attempts": {str(k): v for k, v in self.attempts.items()}, "last_failure": self.last_failure,
                "error_counters": dict(self.error_counters)}

    @classmethod
    def from_json(cls, doc: dict[str, Any], token: str | None = None) -> AgentState:
        """Parse ``state.json``; raises ValueError naming the first bad key."""
        known = {f for f in cls.__dataclass_fields__ if f not in ("token", "extra")}
        pending = doc.get("pending_install")
        return cls(
            token=token,
            enrollment=_opt(doc, "enrollment", str),
            enrolled_at=_opt(doc, "enrolled_at", str),
            checkin_interval=_opt_seconds(doc, "checkin_interval"),
            jitter=_opt_seconds(doc, "jitter"),
            last_checkin=_opt(doc, "last_checkin", str),
            last_update_offer=_opt(doc, "last_update_offer", dict),
            firmware=_opt(doc, "firmware", str) or None,
            pending_install=None if not pending else _pending(pending),
            attempts=_counts(doc, "attempts", int),
            last_failure=_opt(doc, "last_failure", str),
            error_counters=_counts(doc, "error_counters", str),
            appliance_tls=_opt(doc, "appliance_tls", str),
            extra={k: v for k, v in doc.items() if k not in known},
        )


def _opt(doc: dict[str, Any], key: str, kind: type) -> Any:
    value = doc.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise ValueError(f"{key} is {type(value).__name__}, not {kind.__name__}")
    return value


def _opt_seconds(doc: dict[str, Any], key: str) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{key} is {value!r}, not a number of seconds")
    return float(value)


def _pending(value: Any) -> PendingInstall:
    if not isinstance(value, dict):
        raise ValueError("pending_install is not an object")
    try:
        boot = value.get("boot_id")
        return PendingInstall(int(value["release_id"]), str(value["version"]), None if boot is None else str(boot))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"pending_install is malformed: {exc!r}") from None


def _counts(doc: dict[str, Any], key: str, key_type: type) -> dict:
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise ValueError(f"{key} is not an object")
    out = {}
    for name, count in value.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{key}[{name!r}] is {count!r}, not a count")
        try:
            out[key_type(name)] = count
        except ValueError:
            raise ValueError(f"{key} has a bad key {name!r}") from None
    return out


class StateStore:
    """Reads the state once and writes it back atomically."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / STATE_FILE
        self.token_path = folder / TOKEN_FILE
        self._saved_token: str | None = None

    def load(self) -> AgentState:
        """The state on disk, or a fresh one.  Raises StateError (with what
        to do) when a file is unreadable or malformed."""
        try:
            token = self.token_path.read_text().strip() or None
        except FileNotFoundError:
            token = None
        except (OSError, UnicodeDecodeError) as exc:
            raise StateError(f"cannot read {self.token_path}: {exc}") from None
        self._saved_token = token
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return AgentState(token=token)
        except (OSError, UnicodeDecodeError) as exc:
            raise StateError(f"cannot read {self.path}: {exc}") from None
        except ValueError:
            raise StateError(f"{self.path} is not JSON: move it away and the agent starts afresh "
                             "(it keeps its key and token; counters restart)") from None
        try:
            if not isinstance(doc, dict):
                raise ValueError("it is not a JSON object")
            return AgentState.from_json(doc, token)
        except ValueError as exc:
            raise StateError(f"{self.path}: {exc}: move it away and the agent starts afresh "
                             "(it keeps its key and token; counters restart)") from None

    def save(self, state: AgentState) -> None:
        if state.token != self._saved_token:
            if state.token is None:
                self.token_path.unlink(missing_ok=True)
            else:
                write_atomic(self.token_path, state.token.encode(), 0o600)
            self._saved_token = state.token
        write_atomic(self.path, json.dumps(state.to_json(), indent=1, sort_keys=True).encode() + b"\n", 0o600)
