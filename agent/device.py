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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import metrics
from agent._files import ensure_dir, write_atomic
from agent._http import ApiClient, Connections, Latencies, ResumingFetcher
from agent.config import VERSION, AgentConfig
from agent.exceptions import (
    ApiError,
    ConfigError,
    DeviceRefusedError,
    NotAcceptedError,
    TokenRefusedError,
    UnreachableError,
    UpdateError,
    UsageError,
)
from agent.identity import enrollment_request, load_or_create_key, utc_now
from agent.outcomes import DEFAULT_INTERVAL, DEFAULT_JITTER, CycleResult, Enrollment, UpdateOutcome
from agent.spool import FlushResult, Spool
from agent.state import AgentState, PendingInstall, StateStore
from agent.updates import HOOK_REBOOT, Offer, fetch_verified, reason_text, run_hook

if TYPE_CHECKING:
    from agent.mdns import ApplianceInfo, DeviceAdvertisement

logger = logging.getLogger(__name__)
MAX_ATTACHMENT_BYTES = 1024 * 1024  # bytes read from one attachment file; the appliance's limit is its own
UNREACHABLE_RETRY = 30.0  # seconds, at most, between tries while the appliance is away


class Agent:
    def __init__(self, config: AgentConfig, *, connections: Connections | None = None,
                 latencies: Latencies | None = None):
        self.config = config
        self.state_dir = ensure_dir(config.state_dir)
        self.state_dir.chmod(0o700)
        self.key = load_or_create_key(self.state_dir)
        self.store = StateStore(self.state_dir)
        self.state: AgentState = self.store.load()
        self.spool = Spool(self.state_dir / "spool")
        self.connections = connections or Connections()
        if config.tls_fingerprint:
            self.connections.set_pin(config.tls_fingerprint)
            if self.state.appliance_tls != config.tls_fingerprint:
                # remembered: this device never sends its token in clear again
                self.state.appliance_tls = config.tls_fingerprint
                self._save()
        self.latencies = latencies
        self.fetcher = ResumingFetcher(config.request_timeout, self.connections)
        self._base_url = config.appliance_url or None
        self._client: ApiClient | None = None
        # called with the new version after an install, e.g. to update the mDNS advertisement
        self.on_firmware_change: Callable[[str], None] | None = None

    # state ---------------------------------------------------------------
    def _save(self) -> None:
        self.store.save(self.state)

    def _count_error(self, name: str) -> None:
        self.state.count_error(name)
        self._save()

    @property
    def token(self) -> str | None:
        return self.state.token

    def _lose_token(self, enrollment: str) -> None:
        self.state.token = None
        self.state.enrollment = enrollment
        self._save()

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
        return self.state.firmware or self.config.firmware

    def _record_firmware(self, version: str) -> None:
        if self.config.firmware_file is not None:
            try:
                current = self.config.firmware_file.read_text().strip()
            except OSError:
                current = None
            if current != version:
                write_atomic(self.config.firmware_file, f"{version}\n".encode(), 0o644)
        self.state.firmware = version
        self._save()
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
            self._base_url = self._use_discovered(found[0])
            logger.info("found appliance %s at %s by mDNS%s", found[0].id, found[0].url,
                        f", pinning its certificate sha256 {self.connections.pin}" if self.connections.pin else "")
        return self._base_url

    def _use_discovered(self, found: ApplianceInfo) -> str:
        """The URL of an appliance found by mDNS, with its certificate pinned.
        A configured ``tls_fingerprint`` wins over the advertised one; a
        device that used TLS before refuses an answer that offers plain http."""
        known = self.config.tls_fingerprint or self.state.appliance_tls
        if found.tls is None:
            if known:
                raise UnreachableError(
                    f"the appliance that answered mDNS at {found.url} offers plain http, but this device talks to "
                    f"its appliance over TLS (sha256 {known}): not using it; check the appliance's certificate "
                    "(`airlock tls show`) and nginx")
            return found.url
        pin = self.config.tls_fingerprint or found.tls
        if not self.config.tls_fingerprint and self.state.appliance_tls and self.state.appliance_tls != pin:
            # anyone on the LAN can answer mDNS: a certificate other than the
            # remembered one is not the appliance until plant IT says so
            raise UnreachableError(
                f"the appliance that answered mDNS at {found.url} presents certificate sha256 {pin}, not the one "
                f"this device pinned (sha256 {self.state.appliance_tls}): not using it; if plant IT replaced the "
                "certificate, set tls_fingerprint to the new one (`airlock tls show`)")
        self.connections.set_pin(pin)
        if self.state.appliance_tls != pin:
            self.state.appliance_tls = pin
            self._save()
        return found.url

    def client(self) -> ApiClient:
        if self._client is None:
            base = self.base_url()
            self._client = ApiClient(base, self.config.request_timeout, self.connections, self.latencies,
                                     require_tls=bool(self.config.tls_fingerprint or self.state.appliance_tls))
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

    def _note_interval(self, answer: dict[str, Any]) -> None:
        """Keep the check-in interval and jitter the appliance answered."""
        try:
            interval = float(answer.get("checkin_interval", self.state.checkin_interval or DEFAULT_INTERVAL))
            jitter = float(answer.get("jitter", self.state.jitter or DEFAULT_JITTER))
        except (TypeError, ValueError):
            return  # a malformed answer keeps what we had
        if interval >= 0 and jitter >= 0:
            self.state.checkin_interval, self.state.jitter = interval, jitter

    def enroll(self) -> dict[str, Any]:
        """Send a signed enrollment; keep the token once accepted.  Raises
        NotAcceptedError while pending, DeviceRefusedError when refused."""
        timestamp = None
        for _ in range(2):
            body = enrollment_request(self.key, self.config.device_id, self.config.hardware, self.firmware(),
                                      self._enrollment_token(), timestamp)
            status, answer = self.client().post("/api/v1/enroll", body, secret=bool(body.get("enrollment_token")))
            if status == 400 and answer.get("error") == "clock_skew" and answer.get("server_time"):
                # a device without a real-time clock takes the appliance's time
                logger.warning("clock is off; signing with the appliance's time %s", answer["server_time"])
                timestamp = answer["server_time"]
                continue
            break
        if status == 200 and isinstance(answer.get("token"), str) and answer["token"]:
            self._note_interval(answer)
            self.state.token = answer["token"]
            self.state.enrollment, self.state.enrolled_at = "accepted", utc_now()
            self._save()
            logger.info("enrolled as %s: accepted", self.config.device_id)
            return answer
        if status == 202:
            self._note_interval(answer)
            self.state.enrollment = "pending"
            self._save()
            raise NotAcceptedError(f"{self.config.device_id} is pending: plant IT must accept it "
                                   f"(airlock devices accept {self.config.device_id})")
        if status == 403:
            refused = answer.get("state")
            self._lose_token(refused if isinstance(refused, str) and refused.isidentifier() else "refused")
            raise DeviceRefusedError(f"the appliance refuses {self.config.device_id}: "
                                     f"{reason_text(str(answer.get('message')), 300)}")
        raise ApiError(status, answer.get("error", "?"), answer.get("message", ""), answer)

    def enroll_waiting(self, wait: float, poll: float | None = None) -> dict[str, Any]:
        """Enroll, polling while pending for at most ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self.enroll()
            except NotAcceptedError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                time.sleep(min(left, poll or self.state.checkin_interval or DEFAULT_INTERVAL))

    # check-ins and updates -------------------------------------------------
    def collect_metrics(self) -> dict[str, Any]:
        """This check-in's health metrics (the simulator adds its faults here)."""
        return metrics.collect(self.state_dir, self.config.reset_reason_file, self.config.metrics_file,
                               self.state.error_counters)

    def install(self, path: Path, offer: Offer) -> tuple[int, str]:
        """Run the install hook on a verified file: (exit code, output).
        Without a hook, recording the version is the install."""
        if not self.config.install_hook:
            return 0, ""
        return run_hook(self.config.install_hook, path, offer, self.config.install_timeout)

    def fetch(self, offer: Offer) -> Path:
        """Download the offered target and verify it with TUF; raises UpdateError."""
        return fetch_verified(self.base_url(), offer, self.state_dir / "tuf" / offer.repository,
                              self.state_dir / "downloads", self._root_bytes(), self.config.hardware, self.fetcher)

    def checkin(self) -> dict[str, Any]:
        token = self.token
        if token is None:
            raise TokenRefusedError("no token yet: enroll first")
        body = {"firmware": self.firmware(), "metrics": self.collect_metrics()}
        status, answer = self.client().post("/api/v1/checkin", body, token)
        if status == 401:
            self._lose_token("token_refused")
            raise TokenRefusedError("the appliance refused the token: enrolling again")
        if status != 200:
            raise ApiError(status, answer.get("error", "?"), answer.get("message", ""), answer)
        self._note_interval(answer)
        offer = answer.get("update")
        self.state.last_checkin = utc_now()
        self.state.last_update_offer = offer if isinstance(offer, dict) else None
        self._save()
        return answer

    def checkin_enrolling(self) -> dict[str, Any]:
        """Enroll if there is no token, send the spool, check in; a refused
        token means enroll again at once, once."""
        for attempt in (1, 2):
            try:
                if self.token is None:
                    self.enroll()
                self.flush()
                return self.checkin()
            except TokenRefusedError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def report(self, release_id: int, step: str, reason: str | None = None) -> None:
        """Spool a report, then try to send everything spooled."""
        body = {"report_id": str(uuid.uuid4()), "release_id": release_id, "step": step, "at": utc_now()}
        if reason:
            body["reason"] = reason_text(reason)
        self.spool.add("/api/v1/updates", body)
        logger.info("report release %d: %s%s", release_id, step, f" ({body['reason']})" if reason else "")
        self.flush()

    def error_report(self, kind: str, severity: str, message: str, attachments: Sequence[Path] = ()) -> Path:
        """Spool an error report (crash, error, watchdog reset, log) with
        attachment files, then try to send everything spooled.  The report
        keeps its ``report_id`` in the spool, so a resend is stored once."""
        files = []
        for path in attachments:
            with open(path, "rb") as f:
                data = f.read(MAX_ATTACHMENT_BYTES + 1)
            if len(data) > MAX_ATTACHMENT_BYTES:
                raise UsageError(f"attachment {path} is larger than {MAX_ATTACHMENT_BYTES} bytes: "
                                 "send an excerpt (the appliance sets its own, usually smaller, limit)")
            files.append({"name": Path(path).name[:128], "content": base64.b64encode(data).decode()})
        body: dict[str, Any] = {"report_id": str(uuid.uuid4()), "kind": kind, "severity": severity,
                "message": reason_text(message, limit=4000), "firmware": self.firmware(), "occurred_at": utc_now()}
        if files:
            body["attachments"] = files
        entry = self.spool.add("/api/v1/reports", body)
        logger.info("error report %s (%s, %s) spooled", body["report_id"], kind, severity)
        return entry

    def flush(self) -> FlushResult | None:
        """Send what is spooled; None when there is no token to send it with."""
        token = self.token
        if token is None:
            return None
        try:
            result = self.spool.flush(self.client(), token)
        except TokenRefusedError:
            self._lose_token("token_refused")
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

    def take_update(self, offer: Offer) -> UpdateOutcome:
        """Fetch, verify, install and report ``offer``.  Raises
        UnreachableError when the appliance goes away mid-way (a download
        is kept for resuming)."""
        rid = offer.release_id
        if self.state.attempts.get(rid, 0) >= self.config.max_install_attempts:
            logger.info("release %d failed %d times: not trying again", rid, self.state.attempts[rid])
            return UpdateOutcome.GAVE_UP
        if self.config.repository and offer.repository != self.config.repository:
            return self._failed(rid, f"offered repository {offer.repository!r}, but this device trusts only "
                                     f"{self.config.repository!r}")
        self.report(rid, "downloading")
        started = time.monotonic()
        try:
            path = self.fetch(offer)
        except UpdateError as exc:
            self._count_error("update_verify_failures")
            return self._failed(rid, str(exc))
        if self.latencies is not None:
            self.latencies.add("download", time.monotonic() - started)
        logger.info("verified %s (%d bytes) with TUF", offer.target_path, path.stat().st_size)
        self.report(rid, "installing")
        try:
            code, output = self.install(path, offer)
        finally:
            path.unlink(missing_ok=True)  # the hook has copied what it needs; storage is scarce
        if code == 0:
            self._record_firmware(offer.version)
            self.report(rid, "success")
            return UpdateOutcome.INSTALLED
        if code == HOOK_REBOOT:
            metrics.plan_reboot(self.state_dir)
            self.state.pending_install = PendingInstall(rid, offer.version, metrics.boot_id())
            self._save()
            logger.info("release %d installed; waiting for the reboot", rid)
            return UpdateOutcome.REBOOT_PENDING
        self._count_error("install_failures")
        return self._failed(rid, f"install hook exited {code}: {output.strip()}")

    def _failed(self, release_id: int, reason: str) -> UpdateOutcome:
        self.state.attempts[release_id] = self.state.attempts.get(release_id, 0) + 1
        self.state.last_failure = reason_text(reason, 300)
        self._save()
        logger.error("release %d failed: %s", release_id, reason_text(reason))
        self.report(release_id, "failure", reason)
        return UpdateOutcome.FAILED

    def _resolve_pending_install(self) -> None:
        """After the reboot an install asked for: report it, and whether the
        device now runs the new version."""
        pending = self.state.pending_install
        if pending is None or pending.boot_id == metrics.boot_id():
            return
        rid, version = pending.release_id, pending.version
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
        self.state.pending_install = None
        self._save()

    # one round -----------------------------------------------------------
    def cycle(self) -> CycleResult:
        result = CycleResult(interval=self.state.checkin_interval or DEFAULT_INTERVAL,
                             jitter=self.state.jitter if self.state.jitter is not None else DEFAULT_JITTER)
        try:
            self._resolve_pending_install()
            for attempt in (1, 2):  # a refused token: enroll again at once, once
                try:
                    if self.token is None:
                        self.enroll()
                    result.state = Enrollment.ACCEPTED
                    self.flush()
                    answer = self.checkin()
                    result.checked_in = True
                    break
                except TokenRefusedError:
                    if attempt == 2:
                        raise
            result.interval = self.state.checkin_interval or result.interval
            result.jitter = self.state.jitter if self.state.jitter is not None else result.jitter
            if answer.get("update"):
                offer = Offer.from_answer(answer["update"])
                result.release_id = offer.release_id
                pending = self.state.pending_install
                if pending is not None and pending.release_id == offer.release_id:
                    result.update = UpdateOutcome.REBOOT_PENDING  # the appliance learns after the reboot
                else:
                    result.update = self.take_update(offer)
                if result.update is UpdateOutcome.INSTALLED:
                    self.checkin()  # tell the appliance the new version at once
        except NotAcceptedError as exc:
            result.state = Enrollment.PENDING
            result.errors.append(str(exc))
            result.interval = self.state.checkin_interval or result.interval
        except DeviceRefusedError as exc:
            result.state = Enrollment.REFUSED
            result.errors.append(str(exc))
        except UnreachableError as exc:
            if not result.checked_in:
                result.state = Enrollment.UNREACHABLE
            if result.release_id is not None and result.update is None:
                result.update = UpdateOutcome.UNREACHABLE
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
                jitter = self.state.jitter if self.state.jitter is not None else DEFAULT_JITTER
                stop.wait(random.uniform(0, min(jitter, self.config.checkin_interval or jitter)))
            while True:
                result = self.cycle()
                if once or stop.is_set():
                    return result
                interval = self.config.checkin_interval or result.interval
                if result.state is Enrollment.UNREACHABLE or result.reports_left:
                    interval = min(interval, UNREACHABLE_RETRY)
                if stop.wait(interval + random.uniform(0, result.jitter if not self.config.checkin_interval else 0)):
                    return result
        finally:
            if advert is not None:
                advert.close()

    def _advertise(self) -> DeviceAdvertisement | None:
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
