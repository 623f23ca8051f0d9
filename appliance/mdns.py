"""The appliance's mDNS: advertise ``_airlock._tcp``, browse for devices
(``_airlock-device._tcp``) and the extra service types in the settings, and
record what answers through :mod:`server.discovery.services`.

It runs as its own process (``airlock mdns``, or supervised by ``airlock
serve`` through :mod:`appliance.mdns_supervisor`), never inside gunicorn:
zeroconf's threads must not exist when gunicorn forks its workers.

It uses only the interfaces named in ``mdns_interfaces``: it joins the mDNS
group and sends only there, and its listening socket takes no multicast
that arrives on any other interface (``IP_MULTICAST_ALL`` off), so the
appliance neither talks nor listens on its management port.

Liveness: zeroconf's cache keeps a record for its TTL (75 minutes for a
PTR), so a device that dies without a goodbye would look present for that
long.  Instead, every answer heard refreshes ``last_seen``; every
``probe_every`` seconds the process asks each browsed type again without
known answers (so every responder answers), and marks gone what has not
answered for ``mdns_gone_after`` seconds.  A goodbye marks gone at once.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import queue
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass

from zeroconf import (
    BadTypeInNameException,
    DNSAddress,
    DNSOutgoing,
    DNSQuestion,
    DNSService,
    DNSText,
    IPVersion,
    RecordUpdateListener,
    ServiceBrowser,
    ServiceInfo,
    ServiceListener,
    Zeroconf,
)
from zeroconf.const import (
    _CLASS_IN,
    _FLAGS_QR_QUERY,
    _TYPE_A,
    _TYPE_PTR,
    _TYPE_SRV,
    _TYPE_TXT,
)

from server import bind_database
from server.db import check_schema
from server.discovery import services
from server.discovery.services import APPLIANCE_TYPE, DEVICE_TYPE, SeenService
from server.settings import Settings, SettingsError, load_settings

logger = logging.getLogger(__name__)

API_PATH = "/api/v1"
REPOS_PATH = "/repos/"
RESOLVE_TIMEOUT = 1500  # ms to resolve one announced service
FLUSH_EVERY = 1.0  # seconds between writes of "heard from" times
MAX_PENDING = 1000  # services announced but not yet resolved
RETRIES_PER_PROBE = 10  # of those, resolved again at each probe
MAX_HEARD = 20_000  # distinct names remembered between two flushes
MAX_EVENTS = 5000  # browser events waiting to be handled
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)  # Linux


@dataclass(frozen=True)
class MdnsConfig:
    interfaces: list[str]  # IPv4 addresses
    browse_types: list[str]  # fully qualified service types
    appliance_id: str
    http_port: int
    http_addresses: list[str]  # where devices reach the HTTP server
    gone_after: float  # seconds
    probe_every: float  # seconds
    tls: str | None = None  # SHA-256 of the certificate nginx serves (hex); None: plain HTTP


def config_from_settings(settings: Settings) -> MdnsConfig:
    from appliance.setup import appliance_id
    from appliance.tls import current as current_tls

    ident = appliance_id(settings)
    if not ident:
        raise SettingsError(f"{settings.home} has no appliance id: run `airlock init` first")
    host, _, port = settings.bind.rpartition(":")
    interfaces = settings.mdns_interface_list
    try:
        bound = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        bound = None
    if bound is None or bound.is_unspecified or bound.version != 4:
        http_addresses = interfaces  # serving on every address: advertise the mDNS ones
    else:
        http_addresses = [str(bound)]
        if str(bound) not in interfaces:
            logger.warning("serving on %s, which is not an mDNS interface (%s): devices that find the "
                           "appliance by mDNS may not reach it", bound, ", ".join(interfaces))
    tls = current_tls(settings)
    if tls is not None:
        # nginx serves HTTPS on every address; the app itself listens on loopback
        port, http_addresses = str(settings.tls_port), interfaces
    types = [DEVICE_TYPE] + [t for t in settings.mdns_extra_type_list if t.lower() != DEVICE_TYPE]
    gone_after = float(settings.mdns_gone_after)
    return MdnsConfig(interfaces=interfaces, browse_types=types, appliance_id=ident, http_port=int(port),
                      http_addresses=http_addresses, gone_after=gone_after,
                      probe_every=max(1.0, min(gone_after / 3, 120.0)),
                      tls=tls.fingerprint if tls is not None else None)


def _dns_label(text: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63]
    return label or "airlock"


def appliance_service_info(config: MdnsConfig) -> ServiceInfo:
    label = _dns_label(config.appliance_id)
    properties = {"api": API_PATH, "repos": REPOS_PATH, "id": config.appliance_id}
    if config.tls:
        properties["tls"] = config.tls  # devices pin it and speak HTTPS to this port
    return ServiceInfo(
        APPLIANCE_TYPE, f"{label}.{APPLIANCE_TYPE}", port=config.http_port,
        properties=properties,
        server=f"{label}.local.", addresses=[socket.inet_aton(a) for a in config.http_addresses],
    )


def open_zeroconf(interfaces: list[str]) -> Zeroconf:
    """Zeroconf on exactly these IPv4 interfaces."""
    try:
        zc = Zeroconf(interfaces=list(interfaces), ip_version=IPVersion.V4Only)
    except OSError as exc:
        raise SettingsError(f"mdns_interfaces {', '.join(interfaces)}: cannot use it for mDNS "
                            f"({exc.strerror or exc}); is it an address of this machine?") from None
    # zeroconf's listening socket is bound to 0.0.0.0:5353; by Linux's
    # default it would also take mDNS arriving on interfaces where another
    # program joined the group.  Only the groups it joined itself, please.
    restricted = 0
    for reader in getattr(zc.engine, "readers", []):
        sock = getattr(reader, "sock", None)
        if sock is not None and sock.family == socket.AF_INET:  # an asyncio TransportSocket
            try:
                sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
                restricted += 1
            except OSError as exc:
                logger.warning("cannot restrict an mDNS socket to its interfaces: %s", exc)
    if not restricted:
        logger.warning("could not restrict mDNS reception to %s: this zeroconf version hides its sockets",
                       ", ".join(interfaces))
    return zc


class _Watch(ServiceListener, RecordUpdateListener):
    """Collects what zeroconf hears.  Its methods run on zeroconf's threads
    and only queue work for :class:`Discovery`, which does every write."""

    def __init__(self, types: list[str]):
        super().__init__()
        self.types = {t.lower(): t for t in types}
        self.events: queue.Queue = queue.Queue(maxsize=MAX_EVENTS)
        self._lock = threading.Lock()
        self._heard: set[tuple[str, str]] = set()

    def _put(self, event: tuple[str, str, str]) -> None:
        with contextlib.suppress(queue.Full):  # a flood of announcements: the next probe catches up
            self.events.put_nowait(event)

    def add_service(self, zc, type_, name):
        self._put(("seen", type_, name))

    update_service = add_service

    def remove_service(self, zc, type_, name):
        self._put(("gone", type_, name))

    def _type_of(self, name: str) -> str | None:
        _, _, rest = name.partition(".")
        while rest:
            if rest.lower() in self.types:
                return self.types[rest.lower()]
            _, _, rest = rest.partition(".")
        return None

    def async_update_records(self, zc, now, records) -> None:
        heard = []
        for update in records:
            record = update.new
            if record.ttl == 0:  # a goodbye: the browser reports the removal
                continue
            if record.type == _TYPE_PTR and record.name.lower() in self.types:
                heard.append((self.types[record.name.lower()], record.alias))
            elif record.type in (_TYPE_SRV, _TYPE_TXT):
                service_type = self._type_of(record.name)
                if service_type:
                    heard.append((service_type, record.name))
        if heard:
            with self._lock:
                if len(self._heard) < MAX_HEARD:
                    self._heard.update(heard)

    def take_heard(self) -> set[tuple[str, str]]:
        with self._lock:
            heard, self._heard = self._heard, set()
        return heard


class Discovery:
    """Advertise the appliance and keep the discovered table current."""

    def __init__(self, config: MdnsConfig):
        self.config = config
        self.watch = _Watch(config.browse_types)
        self.pending: set[tuple[str, str]] = set()  # announced, not resolved yet
        self.recorded: set[tuple[str, str]] = set()  # resolved and stored by this process
        self.zc: Zeroconf | None = None

    @property
    def _zeroconf(self) -> Zeroconf:
        assert self.zc is not None, "used only while run() runs"
        return self.zc

    def run(self, stop: threading.Event) -> None:
        c = self.config
        self.zc = zc = open_zeroconf(c.interfaces)
        browser = listening = None
        try:
            info = appliance_service_info(c)
            zc.register_service(info, allow_name_change=True)
            logger.info("advertising %s on %s port %d (id %s, %s); browsing %s on %s", info.name,
                        ", ".join(c.http_addresses), c.http_port, c.appliance_id,
                        f"tls {c.tls}" if c.tls else "plain http", ", ".join(c.browse_types), ", ".join(c.interfaces))
            zc.add_listener(self.watch, None)
            listening = True
            browser = ServiceBrowser(zc, c.browse_types, listener=self.watch)
            self._loop(stop)
        finally:
            if browser is not None:
                browser.cancel()
            if listening:
                zc.remove_listener(self.watch)
            zc.unregister_all_services()  # goodbyes, so peers forget the appliance at once
            zc.close()

    def _loop(self, stop: threading.Event) -> None:
        next_flush = next_probe = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            try:
                event = self.watch.events.get(timeout=max(0.0, min(next_flush, next_probe, now + 0.5) - now))
            except queue.Empty:
                event = None
            # Nothing a peer sends, and no passing database error, may stop discovery.
            try:
                if event is not None:
                    kind, type_, name = event
                    if kind == "seen":
                        self._resolve(type_, name)
                    else:
                        self._forget(type_, name)
                now = time.monotonic()
                if now >= next_flush:
                    next_flush = now + FLUSH_EVERY
                    heard = self.watch.take_heard()
                    if heard:
                        services.touch_seen(heard)
                        # heard of, but never resolved here (an event dropped in a flood): resolve it
                        for key in heard - self.recorded:
                            if len(self.pending) < MAX_PENDING:
                                self.pending.add(key)
                if now >= next_probe:
                    next_probe = now + self.config.probe_every
                    self._probe()
            except Exception as exc:
                logger.warning("discovery: %s: %s", type(exc).__name__, exc,
                               exc_info=logger.isEnabledFor(logging.DEBUG))

    def _resolve(self, type_: str, name: str) -> None:
        seen = self._lookup(type_, name)
        if seen is None:
            if len(self.pending) < MAX_PENDING:
                self.pending.add((type_, name))
            logger.debug("could not resolve %r yet", name)
            return
        self.pending.discard((type_, name))
        if services.record_seen(seen):
            if len(self.recorded) >= 2 * services.MAX_ENTRIES:
                self.recorded.clear()
            self.recorded.add((type_, name))
            logger.debug("seen %r at %s:%s", name, seen.addresses, seen.port)

    def _lookup(self, type_: str, name: str) -> SeenService | None:
        try:
            info = ServiceInfo(type_, name)
        except BadTypeInNameException:
            # A name zeroconf will not query for (control characters, say):
            # take what its announcement put in the cache; it is escaped on storing.
            return self._from_cache(type_, name)
        if not info.request(self._zeroconf, RESOLVE_TIMEOUT):
            return None
        return SeenService(service_type=type_, name=name, host=info.server or "",
                           addresses=tuple(info.parsed_addresses(IPVersion.V4Only)), port=info.port,
                           txt=info.text or b"")

    def _from_cache(self, type_: str, name: str) -> SeenService | None:
        cache = self._zeroconf.cache
        srv = cache.get_by_details(name, _TYPE_SRV, _CLASS_IN)
        if not isinstance(srv, DNSService):  # None, or not cached
            return None
        txt = cache.get_by_details(name, _TYPE_TXT, _CLASS_IN)
        addresses = tuple(socket.inet_ntoa(r.address) for r in cache.get_all_by_details(srv.server, _TYPE_A, _CLASS_IN)
                          if isinstance(r, DNSAddress) and len(r.address) == 4)
        return SeenService(service_type=type_, name=name, host=srv.server, addresses=addresses, port=srv.port,
                           txt=txt.text if isinstance(txt, DNSText) else b"")

    def _forget(self, type_: str, name: str) -> None:
        self.pending.discard((type_, name))
        if services.mark_gone(type_, name):
            logger.info("gone (goodbye): %r", name)

    def _probe(self) -> None:
        """Ask every browsed type afresh, with no known answers, so every
        responder answers; retry what did not resolve; sweep the silent."""
        out = DNSOutgoing(_FLAGS_QR_QUERY)
        for service_type in self.config.browse_types:
            out.add_question(DNSQuestion(service_type, _TYPE_PTR, _CLASS_IN))
        self._zeroconf.send(out)
        for type_, name in list(self.pending)[:RETRIES_PER_PROBE]:
            self._resolve(type_, name)
        gone = services.sweep_gone(self.config.gone_after)
        if gone:
            logger.info("%d discovered service(s) stopped answering: marked gone", gone)


def run(settings: Settings, stop: threading.Event | None = None) -> None:
    """Advertise and browse until ``stop`` is set, or SIGTERM/SIGINT."""
    config = config_from_settings(settings)
    db = bind_database(settings)
    check_schema(db)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: stop.set())
    try:
        Discovery(config).run(stop)
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m appliance.mdns [--home DIR] [--bind HOST:PORT] [--supervise]``"""
    parser = argparse.ArgumentParser(prog="python -m appliance.mdns", description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", default=None)
    parser.add_argument("--bind", default=None, help="HOST:PORT of the HTTP server to advertise")
    parser.add_argument("--supervise", action="store_true",
                        help="run the mDNS process as a child and restart it when it dies")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.home, {"bind": args.bind})
    except SettingsError as exc:
        print(f"airlock mdns: error: {exc}", file=sys.stderr)
        return 2
    from appliance.logs import stderr_handler

    logging.basicConfig(level=settings.log_level.upper(), handlers=[stderr_handler()])
    if args.supervise:
        from appliance.mdns_supervisor import supervise

        return supervise(settings)
    try:
        run(settings)
    except Exception as exc:
        logger.error("mDNS stopped: %s", exc, exc_info=logger.isEnabledFor(logging.DEBUG))
        return 1
    return 0


if __name__ == "__main__":
    from appliance.mdns import (
        main as module_main,  # so loggers are named appliance.mdns, not __main__
    )

    sys.exit(module_main())
