"""mDNS on a device: find the appliance, and advertise the device.

Only zeroconf and the standard library, as on a device.  The appliance
advertises ``_airlock._tcp.local.`` with TXT ``api`` (``/api/v1``), ``repos``
(``/repos/``), ``id`` and, when it serves TLS, ``tls`` (the SHA-256 of its
certificate, which the device pins: it then speaks HTTPS to the port); a
device advertises ``_airlock-device._tcp.local.``
with TXT ``id``, ``hw`` (hardware model) and ``fw`` (firmware version).

Whatever answers mDNS is untrusted: a forged appliance can at most point a
device at a server whose updates the device's TUF client will refuse.  So
answers are only checked for sanity (sizes, paths, printable id) here.
``interfaces`` are the IPv4 addresses to use (default: loopback only; give
the device's LAN address), or ``"all"`` for every interface.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from zeroconf import (
    InterfaceChoice,
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceListener,
    Zeroconf,
)

APPLIANCE_TYPE = "_airlock._tcp.local."
DEVICE_TYPE = "_airlock-device._tcp.local."
DEFAULT_INTERFACES = ("127.0.0.1",)
RESOLVE_TIMEOUT = 1500  # ms
MAX_APPLIANCES = 32
_IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)  # Linux
_PRINTABLE = re.compile(r"^[\x21-\x7e]{1,128}$")
_PATH = re.compile(r"^/[A-Za-z0-9._~/-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ApplianceInfo:
    url: str  # http(s)://ADDRESS:PORT, no trailing slash
    id: str
    api: str  # path, e.g. /api/v1
    repos: str  # path, e.g. /repos/
    tls: str | None = None  # SHA-256 of the certificate to pin (hex): the url is https

    @property
    def api_url(self) -> str:
        return self.url + self.api

    @property
    def repos_url(self) -> str:
        return self.url + self.repos


def _interface_list(interfaces: Sequence[str] | str) -> list[str] | None:
    """IPv4 addresses, or None for every interface."""
    if interfaces == "all":
        return None
    if isinstance(interfaces, str):
        interfaces = interfaces.split(",")
    out = [i.strip() for i in interfaces if i.strip()]
    if not out:
        raise ValueError("name at least one interface address (or 'all')")
    return out


def _zeroconf(interfaces: Sequence[str] | str) -> Zeroconf:
    chosen = _interface_list(interfaces)
    if chosen is None:
        return Zeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only)
    zc = Zeroconf(interfaces=chosen, ip_version=IPVersion.V4Only)
    # Linux hands a socket bound to 0.0.0.0:5353 the mDNS arriving on any
    # interface where some program joined the group; take only our own.
    for reader in getattr(zc.engine, "readers", []):
        sock = getattr(reader, "sock", None)
        if sock is not None and sock.family == socket.AF_INET:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
    return zc


def _text(value: bytes | None) -> str | None:
    if value is None or len(value) > 255:
        return None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return None


def _appliance_from(info: ServiceInfo) -> ApplianceInfo | None:
    """An appliance from a resolved answer, or None if it does not look like one."""
    try:
        props = info.properties or {}
    except Exception:  # noqa: BLE001 - malformed TXT from the network
        return None
    ident, api, repos, tls = (_text(props.get(k)) for k in (b"id", b"api", b"repos", b"tls"))
    addresses = info.parsed_addresses(IPVersion.V4Only)
    if not (ident and _PRINTABLE.match(ident) and api and _PATH.match(api) and repos and _PATH.match(repos)):
        return None
    if not addresses or not info.port:
        return None
    if b"tls" in props and not (tls and _SHA256.match(tls)):
        return None  # a tls key that is not a fingerprint: never fall back to plain http
    scheme = "https" if tls else "http"
    return ApplianceInfo(url=f"{scheme}://{addresses[0]}:{info.port}", id=ident, api=api.rstrip("/"), repos=repos,
                         tls=tls or None)


class _Found(ServiceListener):
    def __init__(self) -> None:
        self.names: list[str] = []
        self.event = threading.Event()

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        if name not in self.names and len(self.names) < MAX_APPLIANCES:
            self.names.append(name)
            self.event.set()

    update_service = add_service

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        pass


def find_appliance(timeout: float = 5.0, interfaces: Sequence[str] | str = DEFAULT_INTERFACES,
                   limit: int | None = None) -> list[ApplianceInfo]:
    """Browse for appliances for up to ``timeout`` seconds (or until ``limit``
    are found) and return them, resolved, in the order they answered."""
    deadline = time.monotonic() + timeout
    zc = _zeroconf(interfaces)
    found = _Found()
    browser = ServiceBrowser(zc, APPLIANCE_TYPE, listener=found)
    result: dict[str, ApplianceInfo] = {}
    try:
        while True:
            for name in list(found.names):
                if name in result:
                    continue
                info = ServiceInfo(APPLIANCE_TYPE, name)
                wait = max(0.1, min(RESOLVE_TIMEOUT / 1000, deadline - time.monotonic()))
                if info.request(zc, int(wait * 1000)):
                    appliance = _appliance_from(info)
                    if appliance is not None:
                        result[name] = appliance
            if limit is not None and len(result) >= limit:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            found.event.clear()
            found.event.wait(min(left, 0.25))
    finally:
        browser.cancel()
        zc.close()
    return list(result.values())[:limit]


def _label(text: str) -> str:
    label = re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-")[:63]
    return label or "device"


class DeviceAdvertisement:
    """A registered ``_airlock-device`` service; ``close()`` says goodbye."""

    def __init__(self, zc: Zeroconf, info: ServiceInfo):
        self._zc: Zeroconf | None = zc
        self.info = info

    @property
    def name(self) -> str:
        return self.info.name

    def update(self, *, fw: str | None = None, hw: str | None = None) -> None:
        """Announce a new firmware version (after an update) or model."""
        if self._zc is None:
            return  # closed: said goodbye already
        props = {k.decode(): (v or b"").decode() for k, v in self.info.properties.items()}
        if fw is not None:
            props["fw"] = fw
        if hw is not None:
            props["hw"] = hw
        _check_txt(props)
        info = ServiceInfo(self.info.type, self.info.name, port=self.info.port, properties=props,
                           server=self.info.server, addresses=self.info.addresses)
        self._zc.update_service(info)
        self.info = info

    def close(self) -> None:
        if self._zc is None:
            return
        try:
            self._zc.unregister_service(self.info)
        finally:
            self._zc.close()
            self._zc = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_txt(props: dict[str, str]) -> None:
    for key, value in props.items():
        if len(key.encode()) + 1 + len(value.encode()) > 255:
            raise ValueError(f"TXT {key}={value!r} is longer than 255 bytes")


def advertise_device(device_id: str, hw: str, fw: str, port: int,
                     interfaces: Sequence[str] | str = DEFAULT_INTERFACES,
                     addresses: Sequence[str] | None = None) -> DeviceAdvertisement:
    """Register ``_airlock-device._tcp.local.`` (TXT id, hw, fw) until
    ``close()``.  Blocks about 2 s while mDNS probes that the name is free;
    a name already taken gets a suffix.  ``addresses`` default to the
    interfaces' addresses."""
    props = {"id": device_id, "hw": hw, "fw": fw}
    _check_txt(props)
    if addresses is None:
        addresses = _interface_list(interfaces)
        if addresses is None:
            raise ValueError("give the addresses to advertise when using every interface")
    label = _label(device_id)
    info = ServiceInfo(DEVICE_TYPE, f"{label}.{DEVICE_TYPE}", port=port, properties=props,
                       server=f"{label.lower()}.local.", addresses=[socket.inet_aton(a) for a in addresses])
    zc = _zeroconf(interfaces)
    try:
        zc.register_service(info, allow_name_change=True)
    except BaseException:
        zc.close()
        raise
    return DeviceAdvertisement(zc, info)
