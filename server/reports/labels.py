"""QR labels: a per-device random key in the report URL, and the form's
anti-forgery tokens.

The label key is what proves that someone stood in front of the device (or
at least saw its label): only its SHA-256 is stored, so the database alone
does not let anyone file reports.  Printing a new label for a device
replaces its key, and the old label stops working at once.

The form's anti-forgery token is an HMAC, under a secret kept in
``HOME/state/form-secret``, of the device, its label key's hash and the time
the form was served.  A page on another site cannot read it, so it cannot
make a tablet's browser post a report; a replaced label's old forms stop
working too.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import secrets
from pathlib import Path
from urllib.parse import quote

from server import audit
from server.clock import iso, now_unix, utcnow
from server.devices._common import token_hash
from server.devices.models import Device
from server.devices.writes import writing
from server.models import database
from server.reports.exceptions import FormExpiredError, InvalidRequestError, NotFoundError
from server.reports.models import DeviceLabel
from server.reports.records import Label
from server.settings import Settings
from signing.durable import write_atomic

LABEL_KEY_BYTES = 18  # 144 bits, 24 URL-safe characters
FORM_TOKEN_TTL = 4 * 3600  # seconds a served form may be submitted
_SECRET_BYTES = 32


def report_url_base(settings: Settings) -> str:
    """The appliance's URL as plant tablets reach it; refuses a bind to every
    interface without ``public_url``, which would print a useless URL."""
    if not settings.public_url:
        host = settings.bind.rpartition(":")[0].strip("[]")
        try:
            unspecified = ipaddress.ip_address(host).is_unspecified
        except ValueError:
            unspecified = False
        if unspecified:
            raise InvalidRequestError(f"bind {settings.bind} listens on every interface: set public_url to the "
                                      "address plant tablets reach the appliance at (e.g. http://10.20.0.5:8080)")
    return settings.report_url_base


def report_url(base: str, device_id: str, label_key: str) -> str:
    return f"{base}/report/{quote(device_id, safe=':')}?k={label_key}"


def issue_labels(settings: Settings, device_ids: list[str], operator: str) -> list[Label]:
    """New label keys for ``device_ids`` (each replaces the device's previous
    label), or, with no ids, for every accepted device that has no label yet."""
    base = report_url_base(settings)
    with writing(database):
        if device_ids:
            rows = []
            for device_id in dict.fromkeys(device_ids):
                row = Device.get_or_none(Device.device_id == device_id)
                if row is None:
                    raise NotFoundError(f"no device {device_id!r} has enrolled: see `airlock devices list`")
                if row.state == "decommissioned":
                    raise InvalidRequestError(f"device {device_id!r} is decommissioned: it gets no label")
                rows.append(row)
        else:
            labelled = DeviceLabel.select(DeviceLabel.device)
            rows = list(Device.select().where((Device.state == "accepted") & Device.id.not_in(labelled))
                        .order_by(Device.device_id))
        labels = []
        stamp = iso(utcnow())
        for row in rows:
            key = secrets.token_urlsafe(LABEL_KEY_BYTES)
            (DeviceLabel.insert(device=row.id, key_hash=token_hash(key), created_at=stamp, created_by=operator)
             .on_conflict(conflict_target=[DeviceLabel.device],
                          update={DeviceLabel.key_hash: token_hash(key), DeviceLabel.created_at: stamp,
                                  DeviceLabel.created_by: operator})
             .execute())
            labels.append(Label(row.device_id, row.hardware, report_url(base, row.device_id, key)))
            audit.record(operator, "device.label", row.device_id, {})  # the device's earlier label stops working
    return labels


# anti-forgery tokens for the form -------------------------------------------------------

def form_secret(state_dir: Path) -> bytes:
    """This appliance's form secret, made on first use (safe between workers)."""
    path = state_dir / "form-secret"
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another worker made it first: theirs wins
        write_atomic(path, secrets.token_hex(_SECRET_BYTES).encode(), mode=0o600, overwrite=False)
    return bytes.fromhex(path.read_text().strip())


def _mac(secret: bytes, device_id: str, key_hash: str, issued: int) -> str:
    message = f"report-form|{device_id}|{key_hash}|{issued}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def form_token(secret: bytes, device_id: str, key_hash: str, *, now: int | None = None) -> str:
    issued = now_unix() if now is None else now
    return f"{issued}.{_mac(secret, device_id, key_hash, issued)}"


def check_form_token(secret: bytes, device_id: str, key_hash: str, token: str | None, *,
                     now: int | None = None) -> None:
    now = now_unix() if now is None else now
    issued, _, mac = (token or "").partition(".")
    if not issued.isdigit() or len(issued) > 12 or not hmac.compare_digest(
            mac.encode(), _mac(secret, device_id, key_hash, int(issued)).encode()):
        raise FormExpiredError("this form was not served by this appliance for this label: scan the label again")
    if not 0 <= now - int(issued) <= FORM_TOKEN_TTL:
        raise FormExpiredError("this form is too old: scan the label again and fill it in anew")


__all__ = ["check_form_token", "form_secret", "form_token", "issue_labels", "report_url", "report_url_base"]
