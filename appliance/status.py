"""``airlock status``: one screen on the appliance's health.

What the database and the published trees say (``server/status.py``), plus
what only the host knows: the appliance id, its clock (UTC; TUF expiry is
judged by it), free disk under the home, and whether ``airlock serve``
answers ``/healthz`` on the configured bind (one request, short timeout).
"""

from __future__ import annotations

import http.client
import json
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from appliance.render import _safe
from appliance.setup import appliance_id
from server.clock import iso, utcnow
from server.settings import Settings
from server.status import ServedStatus, served_status
from server.timekeeping import ClockHealth, clock_health

PROBE_TIMEOUT = 2.0  # seconds
MAX_PROBE_BODY = 16 * 1024  # bytes
LOW_DISK = 1 << 30  # bytes: under this, the disk line says so


@dataclass
class ServeProbe:
    url: str
    answers: bool
    status: int | None
    detail: str


@dataclass
class DiskStatus:
    path: str
    free_bytes: int
    total_bytes: int


@dataclass
class TlsStatus:
    fingerprint: str  # what devices pin
    not_after: str  # ISO 8601 UTC
    days_left: float
    self_signed: bool
    problem: str | None = None  # the certificate cannot be read


@dataclass
class StatusReport:
    appliance_id: str
    home: str
    clock_utc: str
    serve: ServeProbe
    disk: DiskStatus
    served: ServedStatus
    clock: ClockHealth | None = None
    tls: TlsStatus | None = None  # None: no certificate, plain http only

    def to_dict(self) -> dict:
        return asdict(self)


def _probe_host(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", ""):  # noqa: S104 - every interface: ask on loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


def probe_serve(settings: Settings, timeout: float = PROBE_TIMEOUT) -> ServeProbe:
    """GET /healthz on the configured bind, once, with a short timeout."""
    host, port = _probe_host(settings.bind)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/healthz"
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/healthz", headers={"Connection": "close"})
        answer = conn.getresponse()
        body = answer.read(MAX_PROBE_BODY)
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return ServeProbe(url, False, None, f"no answer ({_safe(reason)})")
    finally:
        conn.close()
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or "repositories" not in doc:
        return ServeProbe(url, False, answer.status, f"something else answers there ({answer.status}, not Airlock's "
                                                     "/healthz): check the bind setting")
    if answer.status == 200:
        return ServeProbe(url, True, 200, "healthy")
    problems = doc.get("problems")
    detail = "; ".join(_safe(str(p))[:200] for p in problems[:5]) if isinstance(problems, list) else ""
    return ServeProbe(url, True, answer.status, f"unhealthy: {detail}" if detail else f"answered {answer.status}")


def tls_status(settings: Settings, now: datetime) -> TlsStatus | None:
    from appliance.tls import TlsError, current

    try:
        info = current(settings)
    except TlsError as exc:
        return TlsStatus("", "", 0.0, False, str(exc))
    if info is None:
        return None
    return TlsStatus(info.fingerprint, iso(datetime.fromtimestamp(info.not_after, UTC)),
                     (info.not_after - now.timestamp()) / 86400, info.self_signed)


def gather(settings: Settings, now: datetime | None = None) -> StatusReport:
    now = now or utcnow()
    usage = shutil.disk_usage(settings.home)
    return StatusReport(appliance_id(settings), str(settings.home), iso(now), probe_serve(settings),
                        DiskStatus(str(settings.home), usage.free, usage.total), served_status(settings, now),
                        clock_health(settings, now), tls_status(settings, now))


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"


def render(report: StatusReport) -> str:
    s = report.served
    lines = [f"appliance {report.appliance_id or '(no id: run airlock init)'}  home {report.home}",
             f"clock     {report.clock_utc} (UTC; expiries below are judged by it)"]
    clock = report.clock
    if clock is not None:
        lines.append(f"          NOT TRUSTED: {clock.problem}" if clock.problem else
                     f"          trusted: not before {clock.mark} ({_safe(clock.mark_source)})")
    probe = report.serve
    serving = (f"answers on {probe.url}: {probe.detail}" if probe.answers
               else f"NOT answering on {probe.url}: {probe.detail}; start it (`systemctl start airlock`)")
    lines.append(f"serve     {serving}")
    disk = report.disk
    low = "  LOW: free some space before the next import" if disk.free_bytes < LOW_DISK else ""
    lines.append(f"disk      {_size(disk.free_bytes)} free of {_size(disk.total_bytes)}{low}")
    tls = report.tls
    if tls is None:
        lines.append("tls       none: device tokens cross the LAN in clear (`airlock tls create`; operator guide, TLS)")
    elif tls.problem:
        lines.append(f"tls       PROBLEM: {tls.problem}")
    else:
        expiry = "EXPIRED" if tls.days_left < 0 else f"{tls.days_left:.0f} days left"
        lines.append(f"tls       sha256 {tls.fingerprint} (devices pin it){' self-signed' if tls.self_signed else ''}, "
                     f"valid until {tls.not_after[:10]} ({expiry})")
    lines.append("")
    if not s.repositories:
        lines.append("repositories: none pinned (`airlock repo add`)")
    for repo in s.repositories:
        nxt = repo.next_expiry
        if nxt is None:
            lines.append(f"repository {repo.name}: {repo.state} (import a bundle)")
            continue
        when = (f"expired {abs(nxt.days_left):.1f} days ago" if nxt.days_left < 0
                else f"expires in {nxt.days_left:.1f} days")
        lines.append(f"repository {repo.name}: {repo.state}; first to expire: {nxt.role} v{nxt.version}, {when} "
                     f"({nxt.expires})")
        lines.append(f"    then {repo.when_expired}" if nxt.days_left >= 0 else f"    now {repo.when_expired}")
        lines.append("    " + ", ".join(f"{r.role} v{r.version} {r.days_left:.1f}d" for r in repo.roles))
        stamp = repo.timestamp
        if stamp is not None and stamp.authorized:
            lines.append(f"    timestamp.json v{stamp.version} signed by the {stamp.signed_by}; the appliance re-signs "
                         "it before it expires (`airlock timestamp refresh`, hourly)")
        elif stamp is not None and stamp.warning:
            lines.append(f"    WARNING: {_safe(stamp.warning)}")
    lines.append("")
    by_state = ", ".join(f"{n} {state}" for state, n in s.devices.items()) or "none"
    lines.append(f"devices   {by_state}; {s.devices_online} online"
                 + (f"; {s.unverified_firmware} with unverified firmware" if s.unverified_firmware else ""))
    running = ", ".join(f"{n} {state}" for state, n in s.rollouts.items() if n) or "none"
    lines.append(f"rollouts  {running}")
    for entry in s.halted:
        lines.append(f"    HALTED {_activity(entry, '')}: see `airlock rollouts show`")
    lines.append(f"import    {_activity(s.last_import, 'no import yet')}")
    lines.append(f"export    {_activity(s.last_export, 'no export yet')}")
    lines.append(f"backup    {_activity(s.last_backup, 'no backup yet: `airlock backup DEST`')}")
    return "\n".join(lines)


def _activity(entry, none: str) -> str:
    return f"{entry.at}  {_safe(entry.what)}" if entry else none
