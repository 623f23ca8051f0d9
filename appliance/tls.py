"""The appliance's TLS certificate: made at ``airlock init`` (self-signed,
ECDSA P-256) or given by plant IT, kept in ``HOME/tls/``, served by nginx
(docs/nginx-airlock-site.conf) and pinned by devices.

Devices do not validate the certificate against a CA: they pin the SHA-256
of its DER bytes, which the appliance advertises in its mDNS TXT record
(``tls=<hex>``) or which plant IT configures on the device.  So a
self-signed certificate is as good as a CA-issued one for devices; a
browser on the console will ask its user to accept it once.

The key is written owner-only (0600); nginx's master process reads it as
root when it starts.  Replacing the certificate changes its fingerprint:
devices that learned the old one by mDNS learn the new one at their next
discovery, devices configured with a fingerprint need the new one.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.clock import now_unix
from server.settings import Settings
from signing.durable import write_atomic
from signing.exceptions import AirlockError

TLS_DIR = "tls"  # inside the home
CERT_FILE = "cert.pem"  # the certificate, then any chain plant IT gave
KEY_FILE = "key.pem"  # PKCS#8, unencrypted (nginx starts unattended), mode 0600
DEFAULT_DAYS = 5 * 365  # validity of a certificate made here; devices pin it, they do not check dates
MAX_DAYS = 20 * 365
MAX_NAMES = 32
MAX_PEM_BYTES = 256 * 1024
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")


class TlsError(AirlockError):
    """A certificate or key that cannot be used, or a name that cannot go in one."""


@dataclass(frozen=True)
class TlsInfo:
    """What ``airlock tls show`` prints and mDNS advertises."""

    fingerprint: str  # SHA-256 of the DER certificate, lowercase hex
    subject: str
    names: list[str]  # subject alternative names: host names and IP addresses
    not_before: int  # unix seconds
    not_after: int  # unix seconds
    self_signed: bool
    cert_path: str
    key_path: str


def tls_dir(settings: Settings) -> Path:
    return settings.home / TLS_DIR


def fingerprint(cert: x509.Certificate) -> str:
    """The pin: SHA-256 of the certificate's DER encoding, lowercase hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _info(cert: x509.Certificate, cert_path: Path, key_path: Path) -> TlsInfo:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    return TlsInfo(
        fingerprint=fingerprint(cert), subject=cert.subject.rfc4514_string(), names=names,
        not_before=int(cert.not_valid_before_utc.timestamp()), not_after=int(cert.not_valid_after_utc.timestamp()),
        self_signed=cert.issuer == cert.subject, cert_path=str(cert_path), key_path=str(key_path),
    )


def current(settings: Settings) -> TlsInfo | None:
    """The configured certificate, or None when the appliance has none
    (then it serves plain HTTP and advertises no ``tls``)."""
    folder = tls_dir(settings)
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    if not cert_path.exists():
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes()[:MAX_PEM_BYTES])
    except (OSError, ValueError) as exc:
        raise TlsError(f"{cert_path} cannot be read as a PEM certificate ({exc}): replace it with "
                       "`airlock tls create --replace` or `airlock tls import --replace`") from None
    return _info(cert, cert_path, key_path)


def parse_names(names: list[str]) -> list[x509.GeneralName]:
    """Host names and IP addresses for the certificate's SAN."""
    if not names:
        raise TlsError("name the appliance: give at least one host name or IP address devices and browsers use "
                       "(e.g. --tls-name airlock.plant.local --tls-name 10.20.0.5)")
    if len(names) > MAX_NAMES:
        raise TlsError(f"at most {MAX_NAMES} names fit in the certificate")
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        if not _HOSTNAME.match(name):
            raise TlsError(f"{name[:100]!r} is neither a host name nor an IP address")
        out.append(x509.DNSName(name.rstrip(".").lower()))
    return out


def _refuse_existing(settings: Settings, replace: bool) -> None:
    if not settings.home.is_dir():
        raise TlsError(f"no appliance home at {settings.home}: run `airlock init` first, or point --home (or "
                       "AIRLOCK_HOME) at the appliance's folder")
    existing = current(settings) if (tls_dir(settings) / CERT_FILE).exists() else None
    if existing is not None and not replace:
        raise TlsError(f"the appliance has a certificate already (sha256 {existing.fingerprint}); give --replace "
                       "to replace it (devices configured with its fingerprint will need the new one)")


def _write(settings: Settings, cert_pem: bytes, key_pem: bytes) -> None:
    folder = tls_dir(settings)
    folder.mkdir(mode=0o750, exist_ok=True)
    # the key first: a certificate without its key is never left in place
    write_atomic(folder / KEY_FILE, key_pem, mode=0o600)
    write_atomic(folder / CERT_FILE, cert_pem, mode=0o644)


def create_self_signed(settings: Settings, names: list[str], days: int = DEFAULT_DAYS,
                       replace: bool = False) -> TlsInfo:
    """Make an ECDSA P-256 key and a self-signed certificate for ``names``."""
    general = parse_names(names)
    if not 1 <= days <= MAX_DAYS:
        raise TlsError(f"--days must be 1 to {MAX_DAYS}")
    _refuse_existing(settings, replace)
    key = ec.generate_private_key(ec.SECP256R1())
    first = names[0].rstrip(".")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first[:64]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Airlock appliance")])
    start = datetime.datetime.fromtimestamp(now_unix() - 3600, datetime.UTC)  # an hour of clock skew
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(general), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write(settings, cert.public_bytes(serialization.Encoding.PEM), key_pem)
    return _info(cert, tls_dir(settings) / CERT_FILE, tls_dir(settings) / KEY_FILE)


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read the {what} {path}: {exc.strerror}") from None
    if len(data) > MAX_PEM_BYTES:
        raise TlsError(f"the {what} {path} is larger than {MAX_PEM_BYTES} bytes: give the PEM file")
    return data


def import_pair(settings: Settings, cert_file: Path, key_file: Path, replace: bool = False) -> TlsInfo:
    """Take plant IT's certificate (PEM, the server's first, then any chain)
    and its unencrypted key, after checking that they belong together and
    that the certificate is valid now."""
    cert_pem, key_pem = _read(cert_file, "certificate"), _read(key_file, "key")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TlsError(f"{cert_file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TlsError(f"{key_file} is encrypted: nginx starts unattended and cannot ask for a passphrase; "
                       f"decrypt it (openssl pkey -in KEY -out PLAIN.pem) and import that") from None
    except ValueError:
        raise TlsError(f"{key_file} holds no PEM private key") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise TlsError(f"{key_file}: a {type(key).__name__} cannot serve TLS here: use an ECDSA or RSA key")
    cert = chain[0]
    if cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
            != key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo):
        raise TlsError(f"{key_file} is not the key of the certificate in {cert_file}: give the matching pair")
    now = now_unix()
    if cert.not_valid_after_utc.timestamp() <= now:
        raise TlsError(f"the certificate in {cert_file} expired on {cert.not_valid_after_utc:%Y-%m-%d}: "
                       "ask plant IT for a current one")
    if cert.not_valid_before_utc.timestamp() > now + 86400:
        raise TlsError(f"the certificate in {cert_file} is valid only from {cert.not_valid_before_utc:%Y-%m-%d}: "
                       "check this machine's clock, or ask for a current one")
    _refuse_existing(settings, replace)
    plain_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    full_chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    _write(settings, full_chain, plain_key)
    return _info(cert, tls_dir(settings) / CERT_FILE, tls_dir(settings) / KEY_FILE)
