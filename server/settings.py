"""Settings: one registry with help text, loaded in layers.

Defaults, then ``<home>/airlock.toml`` (or ``/etc/airlock/airlock.toml``),
then ``AIRLOCK_*`` environment variables, then command-line flags (applied
by the caller).  Validated once, at start-up; a bad value, an unknown key
or an unknown ``AIRLOCK_*`` variable stops the process with a message
naming it.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from signing.exceptions import AirlockError

DEFAULT_HOME = "/var/lib/airlock"
SYSTEM_TOML = Path("/etc/airlock/airlock.toml")  # read when the home holds no airlock.toml
# RFC 6335 service name (1-15 letters, digits, hyphens), then the protocol
_SERVICE_TYPE = re.compile(r"^_[A-Za-z0-9](?:[A-Za-z0-9-]{0,13}[A-Za-z0-9])?\._(?:tcp|udp)\.local\.$")


class SettingsError(AirlockError):
    """A setting has a value that cannot work."""


@dataclass(frozen=True)
class Settings:
    """Everything the appliance can be configured with."""

    home: Path = field(default=Path(DEFAULT_HOME), metadata={
        "help": "Folder holding the database, the published repositories and staging (env AIRLOCK_HOME)."})
    database_url: str = field(default="", metadata={
        "help": "Empty: the SQLite file HOME/airlock.db. postgresql://USER@HOST:PORT/DBNAME: a PostgreSQL "
                "database instead, which several `airlock serve` boxes can share (docs/scale-out.md); keep its "
                "password in ~/.pgpass, not here."})
    bind: str = field(default="127.0.0.1:8080", metadata={
        "help": "HOST:PORT that `airlock serve` listens on; loopback by default."})
    workers: int = field(default=0, metadata={
        "help": "gunicorn worker processes for `airlock serve`; 0 picks two per CPU core, at most 8 (a worker "
                "waits on SQLite's single writer part of the time, so two per core keep the cores busy)."})
    threads: int = field(default=256, metadata={
        "help": "Threads per worker for downloads, the console and the API; each firmware download holds one for "
                "its whole length, so workers x threads must exceed the downloads in flight (200 slow downloads "
                "starve polls at 2 x 32). Check-ins and enrollments (with a Content-Length body of at most 16 KiB, as "
                "devices send them) run on a pool of their own, at most 32 (and at most this many) per worker."})
    header_timeout: int = field(default=10, metadata={
        "help": "Seconds a client of `airlock serve` has to send a request's request line and headers (and a "
                "body of up to 16 KiB), from connecting (or from its next request on a kept-alive connection); "
                "slower connections are closed, so they cannot hold the threads that answer devices; so is a "
                "device that does not take its check-in's or enrollment's answer (run on the devices' own "
                "threads) within that time."})
    grace_period: int = field(default=7 * 86400, metadata={
        "help": "Seconds that superseded snapshot/targets metadata and removed targets stay served, so a "
                "device in the middle of an update can finish."})
    max_bundle_bytes: int = field(default=1 << 40, metadata={
        "help": "Largest bundle accepted, in bytes of file content."})
    max_bundle_files: int = field(default=200_000, metadata={
        "help": "Most files and folders a bundle may hold."})
    max_upload_bytes: int = field(default=16 << 30, metadata={
        "help": "Largest bundle file (.tar or .tar.gz) an admin may upload through the console or admin API."})
    log_level: str = field(default="INFO", metadata={
        "help": "Logging level: DEBUG, INFO, WARNING or ERROR (serve and mdns log to stderr, other commands to "
                "HOME/log/airlock.log)."})
    # TLS front (docs/nginx-airlock-site.conf, appliance/tls.py)
    behind_proxy: int = field(default=0, metadata={
        "help": "1: `airlock serve` sits behind the local nginx, which terminates TLS: its X-Forwarded-Proto "
                "and X-Forwarded-For headers are trusted (one proxy), so the app knows a request came over HTTPS "
                "(console cookies are Secure) and from which address. Needs a loopback bind, so only the local "
                "nginx reaches the app; 0: no forwarded header is trusted."})
    tls_port: int = field(default=443, metadata={
        "help": "Port nginx serves HTTPS on; when the home has a certificate (`airlock tls`), mDNS advertises "
                "this port with TXT tls=<SHA-256 of the certificate> instead of the bind port."})
    # devices (server/devices/)
    checkin_interval: int = field(default=300, metadata={
        "help": "Seconds between a device's check-ins, told to each device in every answer; a device is "
                "offline after missing 3."})
    checkin_jitter: int = field(default=60, metadata={
        "help": "Up to this many seconds a device adds at random to each wait, so a fleet does not arrive "
                "in the same second (after a power cut, say)."})
    enrollment_max_skew: int = field(default=900, metadata={
        "help": "Seconds an enrollment request's timestamp may differ from the appliance's clock; seen "
                "nonces are kept twice as long, so a replay is always refused."})
    timestamp_lifetime: int = field(default=7 * 86400, metadata={
        "help": "Seconds a timestamp.json the appliance signs with its own key stays valid (only for repositories "
                "whose root authorizes that key; see `airlock timestamp refresh`)."})
    timestamp_refresh_before: int = field(default=3 * 86400, metadata={
        "help": "`airlock timestamp refresh` re-signs a repository's timestamp.json once it expires within this "
                "many seconds (the timer runs it hourly); below timestamp_lifetime."})
    clock_max_ahead_days: int = field(default=400, metadata={
        "help": "Days the clock may read after the newest time the appliance has trusted (its last import, "
                "timestamp refresh or init) before imports, signing and enrollment are refused: a clock set years "
                "ahead makes valid metadata look expired.  Raise it when the appliance really was off longer."})
    health_max_cpu_temp_c: int = field(default=85, metadata={
        "help": "A device reporting a CPU temperature at or above this (degrees Celsius) is flagged hot."})
    health_min_storage_free_bytes: int = field(default=64 * 1024 * 1024, metadata={
        "help": "A device reporting less free storage than this, in bytes, is flagged low_storage."})
    health_min_mem_free_bytes: int = field(default=16 * 1024 * 1024, metadata={
        "help": "A device reporting less free memory than this, in bytes, is flagged low_memory."})
    health_max_reboots_per_day: int = field(default=3, metadata={
        "help": "A device that rebooted more often than this in the last 24 hours is flagged rebooting_often."})
    metrics_raw_retention: int = field(default=86400, metadata={
        "help": "Seconds each check-in's metrics are kept as sent; older ones are rolled up hourly "
                "(min/max/avg)."})
    metrics_hourly_retention: int = field(default=30 * 86400, metadata={
        "help": "Seconds hourly rollups are kept; older ones are rolled up daily."})
    metrics_daily_retention: int = field(default=365 * 86400, metadata={
        "help": "Seconds daily rollups are kept; older ones are dropped."})
    maintenance_interval: int = field(default=3600, metadata={
        "help": "Seconds between metric-history maintenance runs, started by a check-in in the background "
                "(one worker at a time); `airlock devices maintain` runs it at once."})
    rollout_check_interval: int = field(default=30, metadata={
        "help": "Seconds between evaluations of the running rollouts' health gates (halt, next wave), started "
                "by a check-in in the background (one worker at a time)."})
    # discovery (appliance/mdns.py, server/discovery/)
    mdns_enabled: int = field(default=1, metadata={
        "help": "1: `airlock serve` also runs mDNS (advertises the appliance, browses for devices); 0: no mDNS."})
    mdns_interfaces: str = field(default="127.0.0.1", metadata={
        "help": "Comma-separated IPv4 addresses of the only interfaces mDNS uses (loopback by default): name "
                "the plant LAN address, never the management port's."})
    mdns_extra_types: str = field(default="", metadata={
        "help": "Comma-separated service types browsed besides _airlock-device._tcp and listed as discovered, "
                "e.g. _opcua-tcp._tcp."})
    mdns_gone_after: int = field(default=600, metadata={
        "help": "Seconds without an mDNS answer after which a discovered service is marked gone."})
    # reports (server/reports/)
    public_url: str = field(default="", metadata={
        "help": "Base URL that plant tablets reach the appliance at, printed in QR labels (e.g. "
                "http://10.20.0.5:8080); empty: http://<bind>."})
    report_max_attachment_bytes: int = field(default=256 * 1024, metadata={
        "help": "Most bytes of attachments (decoded) one device report may carry; larger reports are refused."})
    report_device_storage_bytes: int = field(default=16 * 1024 * 1024, metadata={
        "help": "Most bytes of attachments kept per device; reports with attachments beyond it are refused."})
    report_rate_per_hour: int = field(default=60, metadata={
        "help": "Most error reports one device may send per hour; more are refused (429) and not stored."})
    report_form_rate_per_hour: int = field(default=10, metadata={
        "help": "Most problem reports operators may file against one device per hour through its QR label."})
    # exports (appliance/export/)
    export_incident_window: int = field(default=3600, metadata={
        "help": "Seconds before and after an incident (a flagged device, a failed update, a report) whose raw "
                "check-ins an export includes besides the hourly rollups."})
    # delivery (server/delivery/): download caps; per-group caps are `airlock download-caps`
    download_max_concurrent: int = field(default=0, metadata={
        "help": "Most firmware downloads `airlock serve` serves at once (all devices); more are answered 503 with "
                "Retry-After. 0: no cap. Metadata polls and check-ins are never capped."})
    download_max_bytes_per_second: int = field(default=0, metadata={
        "help": "Bandwidth all firmware downloads share, in bytes per second; each download is paced to this "
                "divided by download_max_concurrent (which must be set too). 0: no cap."})
    download_retry_after: int = field(default=30, metadata={
        "help": "Seconds a device refused a download slot is told to wait (Retry-After), plus up to half as "
                "much again at random so refused devices do not return together."})
    # alerts (server/alerts/)
    alert_sweep_interval: int = field(default=60, metadata={
        "help": "Seconds between `airlock serve`'s looks for devices gone offline and metadata about to expire "
                "(one worker at a time); `airlock alerts sweep` runs it at once."})
    alert_metadata_expiry_warning: int = field(default=7 * 86400, metadata={
        "help": "An alert opens when a served repository's timestamp, snapshot or targets metadata expires "
                "within this many seconds."})

    @property
    def database_path(self) -> Path:
        """The SQLite file (also where the SQLite-only tools look when
        ``database_url`` names PostgreSQL: they refuse, saying so)."""
        return self.home / "airlock.db"

    @property
    def database_engine(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return "postgresql" if self.database_url else "sqlite"

    @property
    def worker_count(self) -> int:
        """The gunicorn workers `airlock serve` starts: ``workers``, or for 0
        two per CPU core this process may use, between 2 and 8."""
        if self.workers:
            return self.workers
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not Linux, or a sandbox that refuses the call
            cores = os.cpu_count() or 1
        return max(2, min(8, 2 * cores))

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
        if self.timestamp_refresh_before >= self.timestamp_lifetime:
            raise SettingsError(f"timestamp_refresh_before ({self.timestamp_refresh_before}) must be below "
                                f"timestamp_lifetime ({self.timestamp_lifetime}), or every refresh re-signs")
        if self.database_url and not re.fullmatch(r"postgres(ql)?://[^\s]+", self.database_url):
            scheme = self.database_url.partition(":")[0][:20]  # never echo the rest: it may hold a password
            raise SettingsError(f"database_url ({scheme!r}...) is neither empty (the SQLite file HOME/airlock.db) "
                                "nor postgresql://USER@HOST:PORT/DBNAME")
        if self.workers < 0:
            raise SettingsError("workers must be 0 (two per CPU core) or more")
        for name in ("threads", "header_timeout", "max_bundle_bytes", "max_bundle_files", "max_upload_bytes",
                     "checkin_interval", "enrollment_max_skew", "clock_max_ahead_days", "timestamp_lifetime",
                     "timestamp_refresh_before", "maintenance_interval", "rollout_check_interval",
                     "metrics_raw_retention", "metrics_hourly_retention", "metrics_daily_retention"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1")
        for name in ("checkin_jitter", "health_min_storage_free_bytes", "health_min_mem_free_bytes",
                     "health_max_reboots_per_day"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must be 0 or more")
        if not (self.metrics_raw_retention <= self.metrics_hourly_retention <= self.metrics_daily_retention):
            raise SettingsError("metrics retention must grow: metrics_raw_retention <= metrics_hourly_retention "
                                "<= metrics_daily_retention")
        if self.grace_period < 0:
            raise SettingsError("grace_period must be 0 or more seconds")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"log_level {self.log_level!r} is not DEBUG, INFO, WARNING or ERROR")
        self._validate_mdns()
        self._validate_reports()
        self._validate_front()
        if self.export_incident_window < 0:
            raise SettingsError("export_incident_window must be 0 or more seconds")
        self._validate_delivery()
        return self

    def _validate_delivery(self) -> None:
        if not 0 <= self.download_max_concurrent <= 10_000:
            raise SettingsError("download_max_concurrent must be 0 (no cap) to 10000")
        if self.download_max_bytes_per_second < 0 or 0 < self.download_max_bytes_per_second < 1024:
            raise SettingsError("download_max_bytes_per_second must be 0 (no cap) or at least 1024")
        if self.download_max_bytes_per_second and not self.download_max_concurrent:
            raise SettingsError("download_max_bytes_per_second is shared among download_max_concurrent downloads: "
                                "set download_max_concurrent too")
        if not 1 <= self.download_retry_after <= 3600:
            raise SettingsError("download_retry_after must be 1 to 3600 seconds")
        if self.alert_sweep_interval < 1 or self.alert_metadata_expiry_warning < 0:
            raise SettingsError("alert_sweep_interval must be at least 1 and alert_metadata_expiry_warning 0 or more")

    @property
    def mdns_interface_list(self) -> list[str]:
        """The IPv4 addresses mDNS may use."""
        return [a.strip() for a in self.mdns_interfaces.split(",") if a.strip()]

    @property
    def mdns_extra_type_list(self) -> list[str]:
        """The extra service types, fully qualified (``_opcua-tcp._tcp.local.``)."""
        out = []
        for t in (t.strip() for t in self.mdns_extra_types.split(",")):
            if t:
                full = t.rstrip(".").removesuffix(".local") + ".local."
                if full not in out:
                    out.append(full)
        return out

    def _validate_mdns(self) -> None:
        if self.mdns_enabled not in (0, 1):
            raise SettingsError("mdns_enabled must be 0 or 1")
        addresses = self.mdns_interface_list
        if not addresses or len(addresses) > 16:
            raise SettingsError("mdns_interfaces must name 1 to 16 IPv4 addresses, comma-separated")
        for a in addresses:
            try:
                ip = ipaddress.IPv4Address(a)
            except ValueError:
                raise SettingsError(f"mdns_interfaces: {a!r} is not an IPv4 address") from None
            if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
                # 0.0.0.0 would mean every interface, the management port's too
                raise SettingsError(f"mdns_interfaces: {a} is not one interface's address")
        for given in (t.strip() for t in self.mdns_extra_types.split(",")):
            if given and not _SERVICE_TYPE.match(given.rstrip(".").removesuffix(".local") + ".local."):
                raise SettingsError(f"mdns_extra_types: {given!r} is not a service type like _opcua-tcp._tcp")
        if len(self.mdns_extra_type_list) > 16:
            raise SettingsError("mdns_extra_types may name at most 16 service types")
        if self.mdns_gone_after < 1:
            raise SettingsError("mdns_gone_after must be at least 1 second")

    def _validate_front(self) -> None:
        if self.behind_proxy not in (0, 1):
            raise SettingsError("behind_proxy must be 0 or 1")
        if self.behind_proxy:
            host = self.bind.rpartition(":")[0].strip("[]")
            try:
                loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise SettingsError(f"behind_proxy = 1 trusts X-Forwarded-Proto, so the app must be reachable from "
                                    f"the local nginx only: bind to 127.0.0.1:PORT, not {self.bind}")
        if not 0 < self.tls_port < 65536:
            raise SettingsError(f"tls_port {self.tls_port} is not a port (1-65535)")

    @property
    def report_url_base(self) -> str:
        """Where QR labels point: ``public_url``, or http://<bind>."""
        return (self.public_url or f"http://{self.bind}").rstrip("/")

    def _validate_reports(self) -> None:
        if self.public_url and not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/-]*)?",
                                                self.public_url):
            raise SettingsError(f"public_url {self.public_url!r} is not like http://HOST[:PORT][/PATH]")
        for name in ("report_rate_per_hour", "report_form_rate_per_hour", "report_device_storage_bytes"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1")
        if not 0 <= self.report_max_attachment_bytes <= 8 * 1024 * 1024:
            raise SettingsError("report_max_attachment_bytes must be 0 to 8388608 (8 MiB)")


SETTINGS = {f.name: f for f in dataclasses.fields(Settings)}


def shown(settings: Settings, name: str) -> str:
    """A setting's value to print: a password in ``database_url`` as ***."""
    value = str(getattr(settings, name))
    if name == "database_url":
        value = re.sub(r"^(\w+://[^:/@]*):[^@/]*@", r"\1:***@", value)
    return value

# AIRLOCK_* variables that are not settings of the appliance, so that every
# other one can be checked: a misspelt setting must not be silently ignored.
ENVIRONMENT_NOT_SETTINGS = {
    "AIRLOCK_SIGN_PASSPHRASE": "airlock-sign's key passphrase",
    "AIRLOCK_DEMO_DIR": "the scratch folder of `make demo`",
    "AIRLOCK_TEST_CACHE": "the test suite's download cache",
    # what airlock-agent hands its install hook (docs/agent.md)
    "AIRLOCK_TARGET": "the agent's install hook: target path",
    "AIRLOCK_VERSION": "the agent's install hook: version",
    "AIRLOCK_RELEASE_ID": "the agent's install hook: release id",
    "AIRLOCK_REPOSITORY": "the agent's install hook: repository",
}
# airlock-agent's settings (agent/config.py checks those)
AGENT_PREFIX = "AIRLOCK_AGENT_"


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse an ``AIRLOCK_*`` variable that names no setting, as an unknown
    key in airlock.toml is refused, naming the nearest setting."""
    known = {f"AIRLOCK_{name.upper()}" for name in SETTINGS}
    for variable in sorted(environ):
        if (not variable.startswith("AIRLOCK_") or variable in known or variable in ENVIRONMENT_NOT_SETTINGS
                or variable.startswith(AGENT_PREFIX)):
            continue
        shown = variable if variable.isprintable() and len(variable) <= 64 else repr(variable[:64])
        near = _nearest(variable.removeprefix("AIRLOCK_").lower(), SETTINGS)
        hint = f"did you mean AIRLOCK_{near.upper()}? " if near else ""
        raise SettingsError(f"environment: {shown} is not a setting; {hint}unset it "
                            "(settings are listed by `airlock settings` and in docs/operator-guide.md)")


def _coerce(name: str, value, source: str):
    kind = SETTINGS[name].type
    try:
        if isinstance(value, (list, dict)):
            raise ValueError
        if kind in ("Path", Path):
            return Path(value)
        if kind in ("int", int):
            if isinstance(value, (bool, float)):
                raise ValueError
            return int(value)
        return str(value)
    except (TypeError, ValueError):
        what = "a whole number" if kind in ("int", int) else f"a valid {kind}"
        raise SettingsError(f"{source}: {name} = {repr(value)[:80]} is not {what}") from None


def _nearest(name: str, candidates) -> str | None:
    """The candidate most like ``name``, if any is alike."""
    near = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return near[0] if near else None


def _read_toml(path: Path) -> dict:
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from None
    values = {}
    for key, value in data.items():
        if key == "home":
            raise SettingsError(f"{path}: home cannot be set in the file that lives in it; use --home or AIRLOCK_HOME")
        if key not in SETTINGS:
            near = _nearest(key, SETTINGS)
            hint = f"did you mean {near}? " if near else ""
            raise SettingsError(f"{path}: unknown setting {key!r}; {hint}see `airlock settings` or "
                                "docs/operator-guide.md")
        values[key] = _coerce(key, value, str(path))
    return values


def load_settings(home: str | Path | None = None, overrides: dict | None = None,
                  environ: Mapping[str, str] | None = None, system_toml: Path = SYSTEM_TOML) -> Settings:
    """Build validated settings: defaults < airlock.toml < AIRLOCK_* < overrides.

    The file is ``HOME/airlock.toml``, or ``system_toml`` when the home has none."""
    environ = os.environ if environ is None else environ
    check_environment(environ)
    if home is not None and not str(home).strip():
        raise SettingsError("--home is empty: give the appliance's folder (default /var/lib/airlock)")
    if home is None and "AIRLOCK_HOME" in environ and not environ["AIRLOCK_HOME"].strip():
        raise SettingsError("AIRLOCK_HOME is set but empty: give the appliance's folder, or unset it for "
                            "/var/lib/airlock")
    home_path = Path(home or environ.get("AIRLOCK_HOME") or DEFAULT_HOME)
    if home_path.exists() and not home_path.is_dir():
        raise SettingsError(f"the appliance home {home_path} is a file, not a folder: give the appliance's folder")
    values: dict = {"home": home_path}
    for toml_path in (home_path / "airlock.toml", system_toml):
        if toml_path.exists():
            values.update(_read_toml(toml_path))
            break
    for name in SETTINGS:
        env = environ.get(f"AIRLOCK_{name.upper()}")
        if env is not None and name != "home":
            values[name] = _coerce(name, env, f"AIRLOCK_{name.upper()}")
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, value, f"--{key.replace('_', '-')}")
    return Settings(**values).validate()
