"""A fleet of simulated devices in one process, for demos, tests and
benchmarks.  Each is a real ``Agent`` with its own key, token, spool and
TUF cache under a temporary folder: it enrolls, checks in, takes an offered
update (fetched and verified with python-tuf; the install only records the
version) and reports.  Bounded in count and in time.

Faults, to play a bad release against the appliance's rollout gates: a
chosen share of the devices fails its install (``fail_install``), or
installs and then reboot-loops (``reboot_loop``: each later check-in reports
more boots), optionally only for one version (``fault_version``).  Which
devices is fixed by their index, so repeated runs over the same
``state_dir`` pick the same ones."""

from __future__ import annotations

import heapq
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent._files import read_json, write_json
from agent._http import Connections, Latencies
from agent.config import AgentConfig
from agent.device import Agent
from agent.exceptions import UsageError
from agent.outcomes import CycleResult, Enrollment, UpdateOutcome
from agent.updates import Offer

if TYPE_CHECKING:
    from typing import Any

MAX_DEVICES = 10_000
MAX_DURATION = 86_400.0  # seconds
UNTIL_EVERY = 1.0  # seconds between looks at SimSettings.until
LOOP_BOOTS = 5  # boots a reboot-looping device adds before each check-in
FAULTS_FILE = "sim-faults.json"


def chosen(index: int, percent: float) -> bool:
    """Is device ``index`` among the ``percent`` chosen?  Exactly that share
    of every hundred consecutive indexes, spread over them."""
    return (index * 19) % 100 < percent


class SimAgent(Agent):
    """An Agent whose install may fail, or that reboot-loops after one."""

    def __init__(self, config: AgentConfig, *, fails: bool, loops: bool, fault_version: str, fetch: bool = True,
                 **kw: Any):
        super().__init__(config, **kw)
        self.fails, self.loops, self.fault_version, self.fetches = fails, loops, fault_version, fetch

    def fetch(self, offer: Offer) -> Path:
        if self.fetches:
            return super().fetch(offer)
        # not downloaded: an empty stand-in the simulated install reads nothing from
        path = self.state_dir / "downloads" / "not-fetched"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        return path

    def _faults(self, offer: Offer) -> bool:
        return not self.fault_version or offer.version == self.fault_version

    def install(self, path: Path, offer: Offer) -> tuple[int, str]:
        if self.fails and self._faults(offer):
            return 1, "simulated install failure"
        code, output = super().install(path, offer)
        if code == 0 and self.loops and self._faults(offer):
            write_json(self.state_dir / FAULTS_FILE, {"looping": True, "extra_boots": 0})
        return code, output

    def collect_metrics(self) -> dict[str, Any]:
        found = super().collect_metrics()
        faults = read_json(self.state_dir / FAULTS_FILE, {})
        if faults.get("looping"):
            faults["extra_boots"] = int(faults.get("extra_boots", 0)) + LOOP_BOOTS
            write_json(self.state_dir / FAULTS_FILE, faults)
            found["boot_count"] = int(found.get("boot_count", 1)) + faults["extra_boots"]
        return found


@dataclass
class SimSettings:
    server: str
    devices: int
    duration: float = 120.0  # seconds: the hard limit
    interval: float = 0.0  # seconds between check-ins; 0: one round per device
    hardware: str = "plc-x"
    firmware: str = "1.0.0"
    enrollment_token_file: Path | None = None
    root_file: Path | None = None
    repository: str = ""
    concurrency: int = 32  # threads
    id_prefix: str = ""
    state_dir: Path | None = None  # default: a temporary folder, removed at the end
    fail_install: float = 0.0  # percent of the devices whose install fails
    reboot_loop: float = 0.0  # percent of the devices that reboot-loop after an install
    fault_version: str = ""  # only installs of this version fault; empty: any
    fetch: bool = True  # False: take offers without downloading them (load tests of the decision path)
    until: Callable[[], bool] | None = None  # (Python API) checked about every second: True ends the run early


@dataclass
class SimSummary:
    devices: int = 0
    seconds: float = 0.0
    enrolled: int = 0
    pending: int = 0
    refused: int = 0
    checked_in: int = 0  # devices that checked in at least once
    checkins: int = 0
    rounds: int = 0
    updated: int = 0
    update_failures: int = 0
    unfinished: int = 0  # devices whose round did not end before the time limit
    errors: list[str] = field(default_factory=list)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    firmware: dict[str, int] = field(default_factory=dict)  # version -> devices running it at the end

    @property
    def ok(self) -> bool:
        return (self.enrolled == self.devices and self.checked_in == self.devices and not self.errors
                and not self.update_failures and not self.unfinished)

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def text(self, server: str) -> str:
        lines = [f"simulated {self.devices} devices against {server} in {self.seconds:.1f} s",
                 (f"  enrolled {self.enrolled}, pending {self.pending}, refused {self.refused}, "
                 f"unfinished {self.unfinished}"),
                 (f"  checked in {self.checked_in} ({self.checkins} check-ins), updated {self.updated}, "
                 f"update failures {self.update_failures}, errors {len(self.errors)}"),
                 "  firmware: " + ", ".join(f"{v} x{n}" for v, n in sorted(self.firmware.items())),
                 f"  {'latency (ms)':<14}{'count':>7}{'p50':>9}{'p99':>9}{'max':>9}"]
        for name, s in self.latency_ms.items():
            lines.append(f"  {name:<14}{int(s['count']):>7}{s['p50']:>9.1f}{s['p99']:>9.1f}{s['max']:>9.1f}")
        lines += [f"  error: {e}" for e in self.errors[:10]]
        return "\n".join(lines)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _latency_table(latencies: Latencies) -> dict[str, dict[str, float]]:
    out = {}
    for name in ("enroll", "checkin", "updates", "download"):
        values = latencies.samples.get(name)
        if values:
            out[name] = {"count": len(values), "p50": statistics.median(values) * 1000,
                         "p99": _percentile(values, 0.99) * 1000, "max": max(values) * 1000}
    return out


def simulate(settings: SimSettings) -> SimSummary:
    if not 1 <= settings.devices <= MAX_DEVICES:
        raise UsageError(f"--devices must be 1..{MAX_DEVICES}")
    if not 0 < settings.duration <= MAX_DURATION:
        raise UsageError(f"--duration must be in (0, {MAX_DURATION:.0f}] seconds")
    for name in ("fail_install", "reboot_loop"):
        if not 0 <= getattr(settings, name) <= 100:
            raise UsageError(f"--{name.replace('_', '-')} must be a percentage from 0 to 100")
    prefix = settings.id_prefix or f"sim-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="airlock-sim-") as tmp:
        root = settings.state_dir or Path(tmp)
        return _run(settings, prefix, root)


def _run(settings: SimSettings, prefix: str, root: Path) -> SimSummary:
    latencies = Latencies()
    concurrency = max(1, min(settings.concurrency, settings.devices))
    connections = Connections(maxsize=concurrency)
    agents = []
    for i in range(settings.devices):
        config = AgentConfig(state_dir=root / f"{prefix}-{i}", appliance_url=settings.server,
                             device_id=f"{prefix}-{i}", hardware=settings.hardware, firmware=settings.firmware,
                             repository=settings.repository, root_file=settings.root_file,
                             enrollment_token_file=settings.enrollment_token_file, request_timeout=30.0,
                             max_install_attempts=1).validate()
        agents.append(SimAgent(config, connections=connections, latencies=latencies,
                               fails=chosen(i, settings.fail_install), loops=chosen(i, settings.reboot_loop),
                               fault_version=settings.fault_version, fetch=settings.fetch))
    summary = SimSummary(devices=settings.devices)
    states: dict[int, Enrollment] = {}
    checked: set[int] = set()
    started = time.monotonic()
    deadline = started + settings.duration
    due = [(started, i) for i in range(settings.devices)]
    heapq.heapify(due)
    running: dict[Future[CycleResult], int] = {}
    next_until = started + UNTIL_EVERY
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sim") as pool_threads:
        while due or running:
            now = time.monotonic()
            if settings.until is not None and now >= next_until:
                next_until = now + UNTIL_EVERY
                if settings.until():
                    deadline = now  # no new rounds; the running ones finish
            while due and due[0][0] <= now and now < deadline:
                _, i = heapq.heappop(due)
                running[pool_threads.submit(agents[i].cycle)] = i
            if now >= deadline:
                due.clear()
                if not running:
                    break
            timeout = max(0.01, min(0.5, (due[0][0] - now) if due else 0.5))
            done, _ = wait(list(running), timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                i = running.pop(future)
                summary.rounds += 1
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - a device's bug must not end the fleet
                    summary.errors.append(f"{agents[i].config.device_id}: {type(exc).__name__}: {exc}")
                    continue
                if result.state is not Enrollment.UNKNOWN:
                    states[i] = result.state
                if result.checked_in:
                    checked.add(i)
                    summary.checkins += 1 + (result.update is UpdateOutcome.INSTALLED)
                if result.update is UpdateOutcome.INSTALLED:
                    summary.updated += 1
                elif result.update in (UpdateOutcome.FAILED, UpdateOutcome.UNREACHABLE):
                    summary.update_failures += 1
                if result.state is Enrollment.UNREACHABLE or (result.errors and result.state is Enrollment.ACCEPTED):
                    summary.errors += [f"{agents[i].config.device_id}: {e}" for e in result.errors]
                if settings.interval > 0 and result.state in (Enrollment.ACCEPTED, Enrollment.PENDING):
                    at = time.monotonic() + settings.interval + random.uniform(0, settings.interval / 10)
                    if at < deadline:
                        heapq.heappush(due, (at, i))
            if time.monotonic() >= deadline + 60:
                break  # requests are bounded by their timeouts; never hang past this
        summary.unfinished = len(running)
    summary.seconds = time.monotonic() - started
    summary.enrolled = sum(1 for s in states.values() if s is Enrollment.ACCEPTED)
    summary.pending = sum(1 for s in states.values() if s is Enrollment.PENDING)
    summary.refused = sum(1 for s in states.values() if s is Enrollment.REFUSED)
    summary.checked_in = len(checked)
    for agent in agents:
        version = agent.firmware()
        summary.firmware[version] = summary.firmware.get(version, 0) + 1
    summary.latency_ms = _latency_table(latencies)
    connections.close()
    return summary
