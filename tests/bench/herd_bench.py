"""The herd: every device comes back within a minute after a power cut.

A fleet of ``devices`` (default 50,000) is enrolled first, all but a share
``new_share`` of it (default 5%): those are devices installed during the
outage, which enroll when they come up.  The others are as their check-ins
before the cut left them (their address, their metrics, one boot fewer).
Then the appliance goes through a power cut (``airlock serve`` stopped and
started again, so every connection and cache is gone) and every device
arrives at a random moment within ``window`` seconds (default 60): each
opens its own connection, enrolls where it has no token, checks in once,
and polls the metadata as a TUF client does (the next root version, a 404,
then ``timestamp.json``).

The devices are one Node process (``herd_client.mjs``: one event loop, an
open loop that keeps each device's arrival time however slowly the server
answers), so the load generator costs little of the two cores.  Enrollment
bodies are signed beforehand (real Ed25519 keys).

Reported: p50/p99 of check-ins, enrollments and polls; every 5xx and socket
error; and the check-ins lost: those answered 200 minus those the
appliance stored, counted after the herd from ``/metrics``
(``airlock_device_checkins_total``, a sum over the device table), and on
SQLite also straight from the database file.

``database_url`` runs the appliance on another database (through
``AIRLOCK_DATABASE_URL``, where the engine supports it); the counts come from
``/metrics`` then.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import shutil
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from appliance.serve_worker import DEVICE_THREADS
from server.settings import Settings
from tests.bench.common import Scratch, airlock, log, new_home, serve_cpu_seconds, user_cpu_seconds
from tests.bench.devices_bench import CHECKIN_BODY, percentile
from tests.functional.devices.client import SimDevice
from tests.support.server import airlock_server
from tests.support.simulator import RepoSim

DEFAULTS = Settings()
WORKERS, THREADS = DEFAULTS.worker_count, DEFAULTS.threads
DEVICES = 50_000
WINDOW = 60.0  # seconds within which every device comes back
ENGINES = ("sqlite", "postgresql")  # what `--only herd` runs the herd on, one after the other
NEW_SHARE = 0.05  # of the fleet: devices that enroll during the herd
AIM_P99_MS = 1000.0
REPO = "herd"
CLIENT = Path(__file__).with_name("herd_client.mjs")
CLIENT_NICE = -10  # the devices' process priority, where permitted
TOKEN = "herd-commissioning-" + secrets.token_hex(8)


@dataclass
class HerdFigures:
    devices: int
    new: int
    window: float
    seconds: float  # from the first arrival to the last answer
    latencies: dict[str, list[float]]
    statuses: dict[str, dict[str, int]]
    errors: list[str]
    answered_checkins: int
    stored_checkins: int
    stored_checkins_sqlite: int | None
    enroll_seconds: float  # writing the enrolled fleet beforehand
    load: tuple[float, float]  # the machine's 1-minute load average before and after the herd
    timeline: list[list[float]] = field(default_factory=list)  # [arrival ms, check-in ms] per device
    cpu: tuple[float, float, float] = (0.0, 0.0, 0.0)  # CPU seconds during the herd: `airlock serve`, the
    # devices' client, the PostgreSQL server (0 on SQLite, which runs inside `airlock serve`)
    client_loop_delay: tuple[float, float] = (0.0, 0.0)  # the devices' client's event loop, late by (ms): p99, max

    def by_tenth(self) -> list[float]:
        """Check-in p50 (ms) of the devices arriving in each tenth of the
        window: flat when the appliance keeps up, growing when a backlog builds."""
        tenths: list[list[float]] = [[] for _ in range(10)]
        for at, ms in self.timeline:
            tenths[min(9, int(at / (self.window * 100)))].append(ms)
        return [percentile(t, 50) for t in tenths]
    notes: list[str] = field(default_factory=list)

    def p(self, kind: str, q: float) -> float:
        return percentile(self.latencies.get(kind, []), q)

    @property
    def server_errors(self) -> int:
        return sum(n for kinds in self.statuses.values() for s, n in kinds.items() if int(s) >= 500)

    @property
    def lost(self) -> int:
        """Check-ins answered 200 that are not stored (never negative: a
        check-in stored after its device gave up waiting is stored, not lost)."""
        stored = self.stored_checkins if self.stored_checkins_sqlite is None \
            else min(self.stored_checkins, self.stored_checkins_sqlite)
        return max(0, self.answered_checkins - stored)

    @property
    def ok(self) -> bool:
        return (self.server_errors == 0 and not self.errors and self.lost == 0
                and self.p("checkin", 99) < AIM_P99_MS)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is needed for the herd's devices: `make test` installs it (tests/prereqs.sh)")
    return node


def _client_priority() -> None:
    """In the client's process: run ahead of the appliance and anything else
    on the machine where allowed (root), so that on a busy machine its clock
    readings and timeouts stay prompt and it is not what limits the herd."""
    with suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, CLIENT_NICE)


def _run_client(plan: dict, scratch: Path, name: str, timeout: float) -> dict:
    (scratch / f"{name}.json").write_text(json.dumps(plan))
    with open(scratch / f"{name}.out", "wb") as out, open(scratch / f"{name}.err", "wb") as err:
        r = subprocess.run([_node(), str(CLIENT), str(scratch / f"{name}.json")], stdout=out, stderr=err,
                           timeout=timeout, stdin=subprocess.DEVNULL, preexec_fn=_client_priority)
    if r.returncode != 0:
        raise RuntimeError(f"the herd client failed ({r.returncode}): {(scratch / f'{name}.err').read_text()[-2000:]}")
    return json.loads((scratch / f"{name}.out").read_text())


def _database_cpu(database_url: str | None) -> float:
    """The PostgreSQL server's CPU seconds so far, when it runs here as the
    ``postgres`` user (the bench's own cluster); 0 otherwise."""
    if not database_url:
        return 0.0
    try:
        return user_cpu_seconds("postgres")
    except KeyError:  # no such user: a server elsewhere
        return 0.0


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def cpu_rows(f: HerdFigures) -> list[tuple[str, str, str, str, str]]:
    """What the herd cost the machine: CPU per device of the appliance and
    of the client that plays the devices (on the same cores), and the cores
    the herd's arrival rate needs at that cost."""
    serve, client, db = (1000 * c / f.devices for c in f.cpu)
    rate = f.devices / f.window
    cores = os.cpu_count() or 1
    need = rate * (serve + client + db) / 1000
    return [
        ("  CPU per device: airlock serve / PostgreSQL / the devices' client (ms)",
         f"{serve:.2f} / {db:.2f} / {client:.2f}", f"{f.cpu[0]:.0f} s / {f.cpu[2]:.0f} s / {f.cpu[1]:.0f} s in all",
         "", ""),
        (f"  cores needed at {rate:,.0f} devices/s (all three, at that cost)", f"{need:.2f}", f"{cores} cores",
         f"{need / cores:.2f}", ""),
    ]


DRAIN = 300.0  # seconds the counts wait for an overloaded appliance to work off requests its devices gave up on


def stored_checkins(base: str) -> int:
    """``airlock_device_checkins_total`` from ``/metrics``.  After a herd
    that overloaded it, the appliance still works off requests whose devices
    gave up waiting (and may answer 503 meanwhile): asked again, within
    ``DRAIN`` seconds."""
    deadline = time.monotonic() + DRAIN
    while True:
        try:
            with urllib.request.urlopen(base + "/metrics", timeout=30) as r:
                text = r.read().decode()
            break
        except (OSError, urllib.error.URLError) as exc:  # HTTPError (a 503) and timeouts included
            if time.monotonic() > deadline:
                raise RuntimeError(f"/metrics did not answer within {DRAIN:.0f} s after the herd: {exc}") from None
            log(f"herd: /metrics not answered yet ({exc}); the appliance is working off its backlog")
            time.sleep(5)
    m = re.search(r"^airlock_device_checkins_total (\d+)", text, re.MULTILINE)
    if m is None:
        raise RuntimeError("/metrics has no airlock_device_checkins_total")
    return int(m.group(1))


def _sqlite_checkins(db: Path) -> int:
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT COALESCE(SUM(checkins), 0) FROM device").fetchone()[0]
    finally:
        con.close()


def _published_home(scratch: Path) -> tuple[Path, list[str]]:
    """A home with a published repository (root v2, so that a poll asks for
    3.root.json, a 404, as TUF clients do) and an auto-accept rule."""
    sim = RepoSim(REPO)
    home = new_home(scratch / "home", REPO, sim.first_root())
    sim.rotate("root")
    sim.add_target("fw/plc-x-1.1.0.bin", b"firmware" * 1024, version="1.1.0")
    sim.publish()
    airlock(home, "import", str(sim.write_bundle(scratch / "usb")))
    (scratch / "token").write_text(TOKEN)
    airlock(home, "devices", "auto-accept", "add", "--hardware", "plc-x", "--token-file", str(scratch / "token"))
    return home, [f"/repos/{REPO}/metadata/3.root.json", f"/repos/{REPO}/metadata/timestamp.json"]


@contextmanager
def _database(database_url: str | None) -> Iterator[None]:
    """Every `airlock` the herd runs (init, import, serve) on ``database_url``
    (``AIRLOCK_DATABASE_URL``), if given."""
    saved = os.environ.get("AIRLOCK_DATABASE_URL")
    if database_url:
        os.environ["AIRLOCK_DATABASE_URL"] = database_url
    try:
        yield
    finally:
        if database_url:
            if saved is None:
                os.environ.pop("AIRLOCK_DATABASE_URL", None)
            else:
                os.environ["AIRLOCK_DATABASE_URL"] = saved


def _enrolled_fleet(home: Path, count: int, database_url: str | None) -> list[str]:
    """``count`` accepted devices, each with an active key and a bearer
    token, inserted as enrollment and their check-ins before the power cut
    left them (on whatever database the settings name); their tokens.
    Each had checked in an interval before the cut, from the address it
    comes back from, with the metrics it comes back with but one boot
    fewer (the cut rebooted it)."""
    from server import bind_database
    from server.devices._common import new_token
    from server.devices.models import Device, DeviceKey
    from server.settings import load_settings

    environ = dict(os.environ, **({"AIRLOCK_DATABASE_URL": database_url} if database_url else {}))
    db = bind_database(load_settings(home=home, environ=environ))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    metrics = json.loads(CHECKIN_BODY)["metrics"]
    before = json.dumps({**metrics, "boot_count": metrics["boot_count"] - 1}, separators=(",", ":"), sort_keys=True)
    last_seen = int(time.time()) - DEFAULTS.checkin_interval
    tokens = []
    try:
        for start in range(0, count, 2000):
            devices, digests = [], []
            for i in range(start, min(count, start + 2000)):
                token, digest = new_token()
                tokens.append(token)
                digests.append(digest)
                devices.append({"device_id": f"herd-{i:06d}", "hardware": "plc-x", "firmware": "1.0.0",
                                "state": "accepted", "state_reason": "auto-accepted by rule 1",
                                "state_changed_at": stamp, "state_changed_by": "rule 1", "token_hash": digest,
                                "token_issued_at": stamp, "enrolled_at": stamp, "last_enroll_at": stamp,
                                "last_seen": last_seen, "last_address": "127.0.0.1", "checkins": 1,
                                "metrics": before})
            with db.atomic():
                Device.insert_many(devices).execute()
                ids = dict(Device.select(Device.token_hash, Device.id).where(Device.token_hash.in_(digests)).tuples())
                DeviceKey.insert_many([{"device": ids[d], "public_key": SimDevice("k").public_key, "state": "active",
                                        "created_at": stamp} for d in digests]).execute()
    finally:
        db.close()
    return tokens


def _enrollments(prefix: str, count: int) -> list[dict]:
    return [SimDevice(f"{prefix}-{i:06d}").enrollment(enrollment_token=TOKEN) for i in range(count)]


def run(scratch: Path, *, devices: int = DEVICES, window: float = WINDOW, new_share: float = NEW_SHARE,
        database_url: str | None = None, seed: int | None = None) -> HerdFigures:
    """The herd against a fresh home (on ``database_url``, else its SQLite file)."""
    with _database(database_url):
        return _run(scratch, devices=devices, window=window, new_share=new_share, database_url=database_url,
                    seed=seed)


def _run(scratch: Path, *, devices: int, window: float, new_share: float, database_url: str | None,
         seed: int | None) -> HerdFigures:
    rng = random.Random(seed)
    new = max(1, int(devices * new_share)) if new_share > 0 else 0
    known = devices - new
    home, polls = _published_home(scratch)
    log(f"herd: signing {new:,} enrollments")
    newcomers = _enrollments("new", new)

    log(f"herd: {known:,} devices enrolled before the power cut (written through the server's models)")
    t0 = time.monotonic()
    tokens = _enrolled_fleet(home, known, database_url)
    enroll_seconds = time.monotonic() - t0
    base_sqlite = None if database_url else _sqlite_checkins(home / "airlock.db")
    # the power cut: every process, connection and cache is gone; the database and the tree stay
    plan_devices = [{"token": t} for t in tokens] + [{"enroll": body} for body in newcomers]
    rng.shuffle(plan_devices)
    for d in plan_devices:
        d["at"] = round(rng.uniform(0, window * 1000), 1)
    with airlock_server(home, workers=None, threads=None, timeout=60) as base:
        before = stored_checkins(base)
        load_before = os.getloadavg()[0]
        cpu_before, client_before, db_before = serve_cpu_seconds(base), _children_cpu(), _database_cpu(database_url)
        log(f"herd: {devices:,} devices ({new:,} new) come back within {window:.0f} s "
            f"({WORKERS} workers x {THREADS} threads, check-ins and enrollments on {DEVICE_THREADS} of their own)")
        result = _run_client({"base": base, "checkin_body": CHECKIN_BODY, "polls": polls,
                              "timeout_ms": 30000, "deadline_ms": (window + 240) * 1000,
                              "devices": plan_devices}, scratch, "herd",
                             timeout=window + 300)
        cpu = (serve_cpu_seconds(base) - cpu_before, _children_cpu() - client_before,
               _database_cpu(database_url) - db_before)
        try:
            stored = stored_checkins(base) - before
        except RuntimeError as exc:  # the appliance stopped answering: say what its log says
            lines = (home / "serve.log").read_text(errors="replace").splitlines()
            raise RuntimeError(f"{exc}; the end of `airlock serve`'s log:\n" + "\n".join(lines[-40:])) from None
        load_after = os.getloadavg()[0]
    sqlite_stored = None if base_sqlite is None else _sqlite_checkins(home / "airlock.db") - base_sqlite
    answered = result["statuses"]["checkin"].get("200", 0)
    figures = HerdFigures(devices, new, window, result["seconds"], result["latencies"], result["statuses"],
                          result["errors"], answered, stored, sqlite_stored, enroll_seconds, (load_before, load_after),
                          result["timeline"], cpu=cpu,
                          client_loop_delay=(result["loop_delay_ms"]["p99"], result["loop_delay_ms"]["max"]))
    log(f"  check-in p50 {figures.p('checkin', 50):.1f} ms p99 {figures.p('checkin', 99):.1f} ms; "
        f"enroll p99 {figures.p('enroll', 99):.1f} ms; poll p99 {figures.p('poll', 99):.1f} ms; "
        f"{figures.server_errors} 5xx, {len(figures.errors)} errors; {answered} check-ins answered, {stored} stored")
    return figures


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def rows(f: HerdFigures, engine: str) -> list[tuple[str, str, str, str, str]]:
    """Rows ``(measure, airlock, reference, ratio, aim)`` for the benchmark table."""
    return [
        (f"herd ({engine}): {f.devices:,} devices back within {f.window:.0f} s, check-in p50/p99 (ms)",
         f"{f.p('checkin', 50):.1f} / {f.p('checkin', 99):.1f}", f"{len(f.latencies['checkin']):,} check-ins",
         "", f"p99 < {AIM_P99_MS:.0f} {_verdict(f.p('checkin', 99) < AIM_P99_MS)}"),
        (f"  enroll ({f.new:,} new devices) p50/p99 (ms)", f"{f.p('enroll', 50):.1f} / {f.p('enroll', 99):.1f}",
         "", "", ""),
        ("  metadata polls (next root 404, timestamp.json) p50/p99 (ms)",
         f"{f.p('poll', 50):.1f} / {f.p('poll', 99):.1f}", f"{len(f.latencies['poll']):,} polls", "", ""),
        ("  check-ins answered 200 / stored (lost)", f"{f.answered_checkins:,} / {f.stored_checkins:,} ({f.lost})",
         "" if f.stored_checkins_sqlite is None else f"{f.stored_checkins_sqlite:,} in the db file", "",
         _verdict(f.lost == 0)),
        ("  5xx answers; socket errors and timeouts", f"{f.server_errors}; {len(f.errors)}",
         f"done in {f.seconds:.0f} s", "", _verdict(f.server_errors == 0 and not f.errors)),
        ("  check-in p50 by tenth of the window (ms)", " ".join(f"{ms:.0f}" for ms in f.by_tenth()), "", "", ""),
        ("  the devices' client: its event loop late by p99 / max (ms)",
         f"{f.client_loop_delay[0]:.0f} / {f.client_loop_delay[1]:.0f}", "", "", ""),
        ("  machine load average (1 min) before / after the herd", f"{f.load[0]:.1f} / {f.load[1]:.1f}",
         f"{os.cpu_count()} cores", "", ""),
        *cpu_rows(f),
    ]


def run_herd_bench(*, devices: int = DEVICES, window: float = WINDOW, database_url: str | None = None,
                   engines: tuple[str, ...] = ENGINES) -> list[tuple[str, str, str, str, str]]:
    """The herd on each of ``engines`` ("sqlite": the home's file;
    "postgresql": a private cluster on loopback, durable, started for the
    run), or on ``database_url`` alone when it is given."""
    rows_out: list[tuple[str, str, str, str, str]] = []
    if database_url:
        with Scratch("airlock-bench-herd-") as scratch:
            return rows(run(scratch, devices=devices, window=window, database_url=database_url),
                        database_url.split(":", 1)[0])
    for engine in engines:
        if engine == "sqlite":
            with Scratch("airlock-bench-herd-") as scratch:
                rows_out += rows(run(scratch, devices=devices, window=window), "SQLite")
        elif engine == "postgresql":
            from tests.support.postgres import DURABLE_OPTIONS, Cluster

            log("herd: starting a PostgreSQL cluster on loopback (durable settings)")
            cluster = Cluster(DURABLE_OPTIONS).start()
            try:
                url = cluster.new_database(migrated=False)
                with Scratch("airlock-bench-herd-") as scratch:
                    rows_out += rows(run(scratch, devices=devices, window=window, database_url=url), "PostgreSQL")
            finally:
                cluster.stop()
        else:
            raise ValueError(f"unknown herd engine {engine!r}: sqlite or postgresql")
    return rows_out
