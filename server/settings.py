"""Settings: one registry with help text, loaded in layers.

Defaults, then ``<home>/airlock.toml``, then ``AIRLOCK_*`` environment
variables, then command-line flags (applied by the caller).  Validated once,
at start-up; a bad value stops the process with a message naming it.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from signing.exceptions import AirlockError

DEFAULT_HOME = "/var/lib/airlock"


class SettingsError(AirlockError):
    """A setting has a value that cannot work."""


@dataclass(frozen=True)
class Settings:
    """Everything the appliance can be configured with."""

    home: Path = field(default=Path(DEFAULT_HOME), metadata={
        "help": "Folder holding the database, the published repositories and staging (env AIRLOCK_HOME)."})
    bind: str = field(default="127.0.0.1:8080", metadata={
        "help": "HOST:PORT that `airlock serve` listens on; loopback by default."})
    workers: int = field(default=2, metadata={
        "help": "gunicorn worker processes for `airlock serve` (one per core is a good start)."})
    threads: int = field(default=32, metadata={
        "help": "Threads per worker; each long firmware download holds one thread."})
    grace_period: int = field(default=7 * 86400, metadata={
        "help": "Seconds that superseded snapshot/targets metadata and removed targets stay served, so a "
                "device in the middle of an update can finish."})
    max_bundle_bytes: int = field(default=1 << 40, metadata={
        "help": "Largest bundle accepted, in bytes of file content."})
    max_bundle_files: int = field(default=200_000, metadata={
        "help": "Most files and folders a bundle may hold."})
    log_level: str = field(default="INFO", metadata={
        "help": "Logging level: DEBUG, INFO, WARNING or ERROR."})

    @property
    def database_path(self) -> Path:
        return self.home / "airlock.db"

    @property
    def public_dir(self) -> Path:
        """Document root of the plain file tree a static web server can serve."""
        return self.home / "public"

    @property
    def staging_dir(self) -> Path:
        return self.home / "staging"

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    def validate(self) -> Settings:
        host, sep, port = self.bind.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"bind {self.bind!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
        for name in ("workers", "threads", "max_bundle_bytes", "max_bundle_files"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1")
        if self.grace_period < 0:
            raise SettingsError("grace_period must be 0 or more seconds")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"log_level {self.log_level!r} is not DEBUG, INFO, WARNING or ERROR")
        return self


SETTINGS = {f.name: f for f in dataclasses.fields(Settings)}


def _coerce(name: str, value, source: str):
    kind = SETTINGS[name].type
    try:
        if kind in ("Path", Path):
            return Path(value)
        if kind in ("int", int):
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        return str(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{source}: {name} = {value!r} is not a valid {kind}") from None


def load_settings(home: str | Path | None = None, overrides: dict | None = None,
                  environ: dict | None = None) -> Settings:
    """Build validated settings: defaults < airlock.toml < AIRLOCK_* < overrides."""
    environ = os.environ if environ is None else environ
    home_path = Path(home or environ.get("AIRLOCK_HOME") or DEFAULT_HOME)
    values: dict = {"home": home_path}
    toml_path = home_path / "airlock.toml"
    if toml_path.exists():
        try:
            data = tomllib.loads(toml_path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{toml_path}: not valid TOML ({exc})") from None
        for key, value in data.items():
            if key not in SETTINGS or key == "home":
                raise SettingsError(f"{toml_path}: unknown setting {key!r}; see docs/operator-guide.md")
            values[key] = _coerce(key, value, str(toml_path))
    for name in SETTINGS:
        env = environ.get(f"AIRLOCK_{name.upper()}")
        if env is not None and name != "home":
            values[name] = _coerce(name, env, f"AIRLOCK_{name.upper()}")
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, value, f"--{key.replace('_', '-')}")
    return Settings(**values).validate()
