"""One device's agent: enrollment, check-ins, updates and reports.

``Agent.cycle()`` is one round (flush the spool, enroll if needed, check in,
take an offered update, report); ``Agent.run()`` repeats it on the interval
the appliance answers, with its jitter.  The simulator drives many Agents
in one process."""

from __future__ import annotations

import base64

import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import urllib3

from agent import metrics
from agent._files import ensure_dir, read_json, write_atomic, write_json
from agent._http import ApiClient, Latencies
from agent.config import VERSION, AgentConfig
from agent.exceptions import (
    ApiError,
    ConfigError,
    DeviceRefusedError,
    NotAcceptedError,
    TokenRefusedError,
    UnreachableError,
    UpdateError,
)
from agent.fetcher import ResumingFetcher
from agent.identity import enrollment_request, load_or_create_key, utc_now
from agent.spool import Spool
from agent.updates import HOOK_REBOOT, Offer, fetch_verified, reason_text, run_hook

logger = logging.getLogger(__name__)
MAX_ATTACHMENT_BYTES = 1024 * 1024  # bytes read from one attachment file; the appliance's limit is its own
DEFAULT_INTERVAL, DEFAULT_JITTER = 300.0, 60.0  # seconds, until the appliance says otherwise
UNREACHABLE_RETRY = 30.0  # seconds, at most, between tries while the appliance is away


@dataclass
class CycleResult:
    state: str = "unknown"  # accepted, pending, refused, unreachable
    checked_in: bool = False
    update: str | None = None  # installed, reboot_pending, failed, gave_up, unreachable
    release_id: int | None = None
    reports_left: int = 0
    interval: float = DEFAULT_INTERVAL
    jitter: float = DEFAULT_JITTER
    errors: list[str] = field(default_factory=list)


class Agent:
    def __init__(self, config: AgentConfig, *, pool: urllib3.PoolManager | None = None,
                 latencies: Latencies | None = None):
        self.config = config
        self.state_dir = ensure_dir(config.state_dir)
        self.state_dir.chmod(0o700)
        self.key = load_or_create_key(self.state_dir)
        self.spool = Spool(self.state_dir / "spool")
        self.pool = pool or urllib3.PoolManager(maxsize=4, retries=False)
        self.latencies = latencies
        self.fetcher = ResumingFetcher(config.request_timeout, self.pool)
        self._base_url = config.appliance_url or None
        self._client: ApiClient | None = None
        self.on_firmware_change = None  # callback(version), e.g. to update the mDNS advertisement

    # state ---------------------------------------------------------------
    @property
    def _state_path(self) -> Path:
        return self.state_dir / "state.json"

    def state(self) -> dict:
        return read_json(self._state_path, {})

    def _save_state(self, **changes) -> dict:
        state = self.state()
        state.update(changes)
        write_json(self._state_path, state)
        return state

    def _count_error(self, name: str) -> None:
        state = self.state()
        counters = state.get("error_counters", {})
        counters[name] = counters.get(name, 0) + 1
        self._save_state(error_counters=counters)

    @property
    def token(self) -> str | None:
        try:
            return (self.state_dir / "token").read_text().strip() or None
        except FileNotFoundError:
            return None

    def _set_token(self, token: str | None) -> None:
        path = self.state_dir / "token"
        if token is None:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, token.encode(), 0o600)

    def firmware(self) -> str:
        """The version running now: the firmware file, else the version
        the agent recorded after an install, else the configured one."""
        if self.config.firmware_file is not None:
            try:
                text = self.config.firmware_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read firmware_file {self.config.firmware_file}: {exc.strerror}") from None
            if not VERSION.match(text):
                raise ConfigError(f"firmware_file {self.config.firmware_file} holds {text[:40]!r}, not X.Y.Z")
            return text
        return self.state().get("firmware") or self.config.firmware

    def _record_firmware(self, version: str) -> None:
        if self.config.firmware_file is not None:
            try:
                current = self.config.firmware_file.read_text().strip()
            except OSError:
                current = None
            if current != version:
                write_atomic(self.config.firmware_file, f"{version}\n".encode(), 0o644)
        self._save_state(firmware=version)
        if self.on_firmware_change is not None:
            self.on_firmware_change(version)

    # the appliance ---------------------------------------------------------
    def base_url(self) -> str:
        if self._base_url is None:
            from agent.mdns import find_appliance  # zeroconf only when discovering

            found = find_appliance(timeout=self.config.mdns_timeout,
                                   interfaces=",".join(self.config.mdns_interfaces), limit=1)
            if not found:
                raise UnreachableError("no appliance answered mDNS (_airlock._tcp.local.)")
            self._base_url = found[0].url
            logger.info("found appliance %s at %s by mDNS", found[0].id, found[0].url)
        return self._base_url

    def client(self) -> ApiClient:
        if self._client is None:
            self._client = ApiClient(self.base_url(), self.config.request_timeout, self.pool, self.latencies)
        return self._client

    def _forget_appliance(self) -> None:
        """After the appliance stops answering, discover it again (mDNS only)."""
        if not self.config.appliance_url:
            self._base_url = None
            self._client = None

    # enrollment ------------------------------------------------------------
    def _enrollment_token(self) -> str | None:
        path = self.config.enrollment_token_file
        if path is None:
            return None
        try:
            return path.read_text().strip() or None
        except OSError as exc:
            raise ConfigError(f"cannot read enrollment_token_file {path}: {exc.strerror}") from None

    def enroll(self) -> dict:
        """Send a signed enrollment; keep the token once accepted.  Raises
        NotAcceptedError while pending, DeviceRefusedError when refused."""
        timestamp = None
        for _ in range(2):
            body = enrollment_request(self.key, self.config.device_id, self.config.hardware, self.firmware(),
                                      self._enrollment_token(), timestamp)
            status, answer = self.client().post("/api/v1/enroll", body)
            if status == 400 and answer.get("error") == "clock_skew" and answer.get("server_time"):
                # a device without a real-time clock takes the appliance's time
                logger.warning("clock is off; signing with the appliance's time %s", answer["server_time"])
                timestamp = answer["server_time"]
                continue
            break
        interval = float(answer.get("checkin_interval", DEFAULT_INTERVAL))
        jitter = float(answer.get("jitter", DEFAULT_JITTER))
        if status == 200 and answer.get("token"):
            self._set_token(answer["token"])
            self._save_state(enrollment="accepted", checkin_interval=interval, jitter=jitter,
                             enrolled_at=utc_now())
            logger.info("enrolled as %s: accepted", self.config.device_id)
            return answer
        if status == 202:
            self._save_state(enrollment="pending", checkin_interval=interval, jitter=jitter)
            raise NotAcceptedError(f"{self.config.device_id} is pending: plant IT must accept it "
                                   f"(airlock devices accept {self.config.device_id})")
        if status == 403:
            self._set_token(None)
            self._save_state(enrollment=answer.get("state", "refused"))
            raise DeviceRefusedError(f"the appliance refuses {self.config.device_id}: {answer.get('message')}")
        raise ApiError(status, answer.get("error", "?"), answer.get("message", ""), answer)

    def enroll_waiting(self, wait: float, poll: float | None = None) -> dict:
        """Enroll, polling while pending for at most ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self.enroll()
            except NotAcceptedError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                time.sleep(min(left, poll or self.state().get("checkin_interval", DEFAULT_INTERVAL)))

    # check-ins and updates -------------------------------------------------
    def checkin(self) -> dict:
        token = self.token
        if token is None:
            raise TokenRefusedError("no token yet: enroll first")
        counters = self.state().get("error_counters", {})
        body = {"firmware": self.firmware(),
                "metrics": metrics.collect(self.state_dir, self.config.reset_reason_file,
                                           self.config.metrics_file, counters)}
        status, answer = self.client().post("/api/v1/checkin", body, token)
        if status == 401:
            self._set_token(None)
            self._save_state(enrollment="token_refused")
            raise TokenRefusedError("the appliance refused the token: enrolling again")
        if status != 200:
            raise ApiError(status, answer.get("error", "?"), answer.get("message", ""), answer)
        self._save_state(checkin_interval=float(answer.get("checkin_interval", DEFAULT_INTERVAL)),
                         jitter=float(answer.get("jitter", DEFAULT_JITTER)), last_checkin=utc_now(),
                         last_update_offer=answer.get("update"))
        return answer

    def report(self, release_id: int, step: str, reason: str | None = None) -> None:
        """Spool a report, then try to send everything spooled."""
        body = {"report_id": str(uuid.uuid4()), "release_id": release_id, "step": step, "at": utc_now()}
        if reason:
            body["reason"] = reason_text(reason)
        self.spool.add("/api/v1/updates", body)
        logger.info("report release %d: %s%s", release_id, step, f" ({body['reason']})" if reason else "")
        self.flush()

    def error_report(self, kind: str, severity: str, message: str, attachments: list[Path] = ()) -> Path:
        """Spool an error report (crash, error, watchdog reset, log) with
        attachment files, then try to send everything spooled.  The report
        keeps its ``report_id`` in the spool, so a resend is stored once."""
        files = []
        for path in attachments:
            with open(path, "rb") as f:
                data = f.read(MAX_ATTACHMENT_BYTES + 1)
            if len(data) > MAX_ATTACHMENT_BYTES:
                raise ValueError(f"attachment {path} is larger than {MAX_ATTACHMENT_BYTES} bytes: "
                                 "send an excerpt (the appliance sets its own, usually smaller, limit)")
            files.append({"name": Path(path).name[:128], "content": base64.b64encode(data).decode()})
        body = {"report_id": str(uuid.uuid4()), "kind": kind, "severity": severity,
                "message": reason_text(message, limit=4000), "firmware": self.firmware(), "occurred_at": utc_now()}
        if files:
            body["attachments"] = files
        entry = self.spool.add("/api/v1/reports", body)
        logger.info("error report %s (%s, %s) spooled", body["report_id"], kind, severity)
        return entry

    def flush(self):
        token = self.token
        if token is None:
            return None
        try:
            result = self.spool.flush(self.client(), token)
        except TokenRefusedError:
            self._set_token(None)
            self._save_state(enrollment="token_refused")
            raise
        if result.unreachable:
            self._count_error("report_send_failures")
        return result

    def _root_bytes(self) -> bytes | None:
        if self.config.root_file is None:
            return None
        try:
            return self.config.root_file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read root_file {self.config.root_file}: {exc.strerror}") from None

    def take_update(self, offer: Offer) -> str:
        """Fetch, verify, install and report ``offer``; returns the outcome."""
        rid = offer.release_id
        attempts = self.state().get("attempts", {})
        if attempts.get(str(rid), 0) >= self.config.max_install_attempts:
            logger.info("release %d failed %d times: not trying again", rid, attempts[str(rid)])
            return "gave_up"
        if self.config.repository and offer.repository != self.config.repository:
            return self._failed(rid, f"offered repository {offer.repository!r}, but this device trusts only "
                                     f"{self.config.repository!r}")
        self.report(rid, "downloading")
        started = time.monotonic()
        try:
            path = fetch_verified(self.base_url(), offer, self.state_dir / "tuf" / offer.repository,
                                  self.state_dir / "downloads", self._root_bytes(), self.config.hardware,
                                  self.fetcher)
        except UpdateError as exc:
            self._count_error("update_verify_failures")
            return self._failed(rid, str(exc))
        if self.latencies is not None:
            self.latencies.add("download", time.monotonic() - started)
        logger.info("verified %s (%d bytes) with TUF", offer.target_path, path.stat().st_size)
        self.report(rid, "installing")
        try:
            if not self.config.install_hook:
                code, output = 0, ""  # nothing to run: recording the version is the install
            else:
                code, output = run_hook(self.config.install_hook, path, offer, self.config.install_timeout)
        finally:
            path.unlink(missing_ok=True)  # the hook has copied what it needs; storage is scarce
        if code == 0:
            self._record_firmware(offer.version)
            self.report(rid, "success")
            return "installed"
        if code == HOOK_REBOOT:
            metrics.plan_reboot(self.state_dir)
            self._save_state(pending_install={"release_id": rid, "version": offer.version,
                                              "boot_id": metrics.boot_id()})
            logger.info("release %d installed; waiting for the reboot", rid)
            return "reboot_pending"
        self._count_error("install_failures")
        return self._failed(rid, f"install hook exited {code}: {output.strip()}")

    def _failed(self, release_id: int, reason: str) -> str:
        attempts = self.state().get("attempts", {})
        attempts[str(release_id)] = attempts.get(str(release_id), 0) + 1
        self._save_state(attempts=attempts, last_failure=reason_text(reason, 300))
        logger.error("release %d failed: %s", release_id, reason)
        self.report(release_id, "failure", reason)
        return "failed"

    def _resolve_pending_install(self) -> None:
        """After the reboot an install asked for: report it, and whether the
        device now runs the new version."""
        pending = self.state().get("pending_install")
        if not pending or pending.get("boot_id") == metrics.boot_id():
            return
        rid, version = pending["release_id"], pending["version"]
        self.spool.add("/api/v1/updates", {"report_id": str(uuid.uuid4()), "release_id": rid,
                                           "step": "rebooted", "at": utc_now()})
        running = self.firmware()
        if running == version or self.config.firmware_file is None:
            self._record_firmware(version)
            self.spool.add("/api/v1/updates", {"report_id": str(uuid.uuid4()), "release_id": rid,
                                               "step": "success", "at": utc_now()})
        else:
            self.spool.add("/api/v1/updates", {"report_id": str(uuid.uuid4()), "release_id": rid,
                                               "step": "failure", "at": utc_now(),
                                               "reason": f"after the reboot the device runs {running}, not {version}"})
        self._save_state(pending_install=None)

    # one round -----------------------------------------------------------
    def cycle(self) -> CycleResult:
        result = CycleResult()
        state = self.state()
        result.interval = float(state.get("checkin_interval", DEFAULT_INTERVAL))
        result.jitter = float(state.get("jitter", DEFAULT_JITTER))
        try:
            self._resolve_pending_install()
            for attempt in (1, 2):  # a refused token: enroll again at once, once
                try:
                    if self.token is None:
                        self.enroll()
                    result.state = "accepted"
                    self.flush()
                    answer = self.checkin()
                    result.checked_in = True
                    break
                except TokenRefusedError:
                    if attempt == 2:
                        raise
            result.interval = float(answer.get("checkin_interval", result.interval))
            result.jitter = float(answer.get("jitter", result.jitter))
            pending = self.state().get("pending_install") or {}
            if answer.get("update"):
                offer = Offer.from_answer(answer["update"])
                result.release_id = offer.release_id
                if pending.get("release_id") == offer.release_id:
                    result.update = "reboot_pending"  # installed; the appliance learns after the reboot
                else:
                    result.update = self.take_update(offer)
                if result.update == "installed":
                    self.checkin()  # tell the appliance the new version at once
        except NotAcceptedError as exc:
            result.state = "pending"
            result.errors.append(str(exc))
            state = self.state()
            result.interval = float(state.get("checkin_interval", result.interval))
        except DeviceRefusedError as exc:
            result.state = "refused"
            result.errors.append(str(exc))
        except UnreachableError as exc:
            if result.state == "unknown" or not result.checked_in:
                result.state = "unreachable"
            if result.release_id is not None and result.update is None:
                result.update = "unreachable"
            result.errors.append(str(exc))
            logger.warning("%s", exc)
            self._forget_appliance()
        except (ApiError, TokenRefusedError, UpdateError) as exc:
            result.errors.append(str(exc))
            logger.error("%s", exc)
        result.reports_left = len(self.spool)
        return result

    def run(self, stop: threading.Event, once: bool = False) -> CycleResult:
        """Cycle until ``stop`` is set (or once).  The first check-in after a
        start waits a random 0..jitter, so a plant's devices do not all
        arrive together after a power cut."""
        advert = self._advertise()
        try:
            if not once:
                jitter = float(self.state().get("jitter", DEFAULT_JITTER))
                stop.wait(random.uniform(0, min(jitter, self.config.checkin_interval or jitter)))
            while True:
                result = self.cycle()
                if once or stop.is_set():
                    return result
                interval = self.config.checkin_interval or result.interval
                if result.state == "unreachable" or result.reports_left:
                    interval = min(interval, UNREACHABLE_RETRY)
                if stop.wait(interval + random.uniform(0, result.jitter if not self.config.checkin_interval else 0)):
                    return result
        finally:
            if advert is not None:
                advert.close()

    def _advertise(self):
        if not self.config.mdns_enabled:
            return None
        from agent.mdns import advertise_device

        try:
            advert = advertise_device(self.config.device_id, self.config.hardware, self.firmware(),
                                      self.config.mdns_port, interfaces=",".join(self.config.mdns_interfaces))
        except (OSError, ValueError) as exc:
            logger.warning("cannot advertise by mDNS: %s", exc)
            return None
        self.on_firmware_change = lambda version: advert.update(fw=version)
        return advert
