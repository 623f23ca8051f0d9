"""The agent's configuration: defaults, then a TOML file, then
``AIRLOCK_AGENT_*`` environment variables, then command-line flags;
validated once at start-up.

An unknown key in the file is an error (the file is the agent's own); an
unknown ``AIRLOCK_AGENT_*`` variable is one warning line naming the nearest
setting, and is ignored (the environment is shared with other programs, and
a device must not stop taking updates over a stray variable)."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.exceptions import ConfigError

logger = logging.getLogger(__name__)

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
HARDWARE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
VERSION = re.compile(r"^[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}(-[0-9A-Za-z.-]{1,32})?(\+[0-9A-Za-z.-]{1,32})?$")
ENV_PREFIX = "AIRLOCK_AGENT_"
# AIRLOCK_AGENT_* names that are not settings and must not be reported as misspelt ones (none today;
# the install hook's variables are AIRLOCK_TARGET, AIRLOCK_VERSION, AIRLOCK_RELEASE_ID, AIRLOCK_REPOSITORY)
NOT_SETTINGS: frozenset[str] = frozenset()
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass
class AgentConfig:
    """Every setting, with its unit; `docs/agent.md` documents each one."""

    state_dir: Path = Path("/var/lib/airlock-agent")  # keys, token, spool, TUF cache, downloads
    appliance_url: str = ""  # http(s)://HOST:PORT; empty: discover by mDNS
    tls_fingerprint: str = ""  # SHA-256 of the appliance's certificate (hex), pinned instead of CA checks
    device_id: str = ""
    hardware: str = ""  # hardware model, as in targets' custom metadata
    firmware: str = ""  # version running now, when there is no firmware_file
    firmware_file: Path | None = None  # a file holding the running version (the install hook updates it)
    repository: str = ""  # the vendor repository this device trusts
    root_file: Path | None = None  # the vendor's root.json, used to bootstrap TUF on first run
    install_hook: str = ""  # command run as `HOOK VERIFIED_FILE`; empty: record the version only
    install_timeout: float = 1800.0  # seconds
    max_install_attempts: int = 3  # failed attempts per release before the agent gives it up
    enrollment_token_file: Path | None = None  # pre-shared commissioning token (auto-acceptance)
    enroll_wait: float = 0.0  # seconds `enroll` keeps polling while pending
    request_timeout: float = 30.0  # seconds, per HTTP request (connect and between bytes)
    reset_reason_file: Path | None = None  # a file the platform writes with the last reset reason
    metrics_file: Path | None = None  # JSON {"gauges": {...}, "error_counters": {...}} the vendor's software writes
    mdns_enabled: bool = False  # discover the appliance and advertise _airlock-device._tcp
    mdns_interfaces: list[str] = field(default_factory=lambda: ["127.0.0.1"])  # IPv4 addresses, or ["all"]
    mdns_timeout: float = 5.0  # seconds to browse for the appliance
    mdns_port: int = 0  # port advertised (a service the device offers), 0 if none
    checkin_interval: float | None = None  # seconds; None: what the appliance answers (tests, simulations)
    log_level: str = "INFO"

    def validate(self) -> AgentConfig:
        if not self.device_id or not DEVICE_ID.match(self.device_id):
            raise ConfigError(f"device_id {self.device_id!r} must match {DEVICE_ID.pattern}")
        if not self.hardware or not HARDWARE.match(self.hardware):
            raise ConfigError(f"hardware {self.hardware!r} must match {HARDWARE.pattern}")
        if self.firmware_file is None and not VERSION.match(self.firmware or ""):
            raise ConfigError(f"firmware {self.firmware!r} is not a version X.Y.Z (or set firmware_file)")
        if self.appliance_url and not re.match(r"^https?://[^/\s]+/?$", self.appliance_url):
            raise ConfigError(f"appliance_url {self.appliance_url!r} must be http(s)://HOST:PORT")
        if self.tls_fingerprint:
            clean = self.tls_fingerprint.strip().replace(":", "").lower()
            if not re.fullmatch(r"[0-9a-f]{64}", clean):
                raise ConfigError(f"tls_fingerprint {self.tls_fingerprint[:100]!r} is not a SHA-256 (64 hex digits; "
                                  "`airlock tls show` on the appliance prints it)")
            self.tls_fingerprint = clean
            if self.appliance_url.startswith("http://"):
                raise ConfigError("tls_fingerprint is set but appliance_url is http://: use https:// (the device "
                                  "token never crosses the network in clear)")
        if not self.appliance_url and not self.mdns_enabled:
            raise ConfigError("set appliance_url, or enable mDNS (mdns_enabled = true) to discover the appliance")
        if self.root_file is not None and not self.repository:
            raise ConfigError("root_file is set but repository (its name) is not")
        if self.max_install_attempts < 1 or self.install_timeout <= 0 or self.request_timeout <= 0:
            raise ConfigError("max_install_attempts, install_timeout and request_timeout must be positive")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"log_level {self.log_level!r} is not {', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]}")
        self.log_level = self.log_level.upper()
        self.appliance_url = self.appliance_url.rstrip("/")
        return self


_FIELDS = {f.name: f for f in dataclasses.fields(AgentConfig)}
_PATHS = {"state_dir", "firmware_file", "root_file", "enrollment_token_file", "reset_reason_file", "metrics_file"}


def nearest_setting(name: str) -> str | None:
    """The setting a misspelt ``name`` most likely meant (None: nothing close)."""
    close = difflib.get_close_matches(name.lower(), list(_FIELDS), n=1, cutoff=0.6)
    return close[0] if close else None


def _printable(text: str, limit: int = 64) -> str:
    """An untrusted name, safe for a terminal or a log line."""
    return text.encode("unicode_escape").decode("ascii")[:limit]


def _convert(name: str, value: Any) -> Any:
    """A TOML, environment or flag value as the field's type."""
    if value is None:
        return None
    if name in _PATHS:
        return Path(value).expanduser() if str(value) else None
    default = _FIELDS[name].default
    try:
        if name == "mdns_interfaces":
            return [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
        if name == "checkin_interval":
            return float(value)
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}: {value!r} is not a valid value") from None
    return str(value)


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None,
                environ: dict[str, str] | None = None, validate: bool = True) -> AgentConfig:
    """Defaults, then the TOML file at ``path``, then ``AIRLOCK_AGENT_*``,
    then ``overrides`` (flags; None values are ignored).  Raises
    ConfigError; logs one warning per unknown ``AIRLOCK_AGENT_*`` variable."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            named = ", ".join(_printable(key) + (f" (did you mean {near}?)" if (near := nearest_setting(key)) else "")
                              for key in unknown[:8])
            raise ConfigError(f"config {path}: unknown settings {named}; the settings are in docs/agent.md")
        values.update(data)
    env = os.environ if environ is None else environ
    for variable, value in env.items():
        if not variable.startswith(ENV_PREFIX):
            continue
        name = variable[len(ENV_PREFIX):].lower()
        if name in _FIELDS and variable == ENV_PREFIX + name.upper():
            values[name] = value
        elif variable not in NOT_SETTINGS:
            near = nearest_setting(name)
            hint = f"did you mean {ENV_PREFIX}{near.upper()}?" if near else "the settings are in docs/agent.md"
            logger.warning("%s is not a setting and is ignored; %s", _printable(variable, 96), hint)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    config = AgentConfig(**{name: _convert(name, value) for name, value in values.items()})
    return config.validate() if validate else config
