"""The appliance's certificate: what `airlock tls create` makes, what
`airlock tls import` accepts and refuses (changing nothing), and the
settings that put the app behind the TLS front."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance import tls
from server.settings import SettingsError, load_settings


@pytest.fixture
def settings(tmp_path):
    (tmp_path / "home").mkdir()
    return load_settings(tmp_path / "home", environ={})


def test_create_makes_a_p256_self_signed_certificate_with_the_names(settings):
    info = tls.create_self_signed(settings, ["airlock.plant.local", "10.20.0.5"], days=30)
    cert = x509.load_pem_x509_certificate((settings.home / "tls" / "cert.pem").read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp256r1"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["airlock.plant.local"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.20.0.5")]
    assert cert.issuer == cert.subject and info.self_signed
    assert 29 < (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 31
    assert info.fingerprint == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    key_mode = stat.S_IMODE((settings.home / "tls" / "key.pem").stat().st_mode)
    assert key_mode == 0o600
    assert tls.current(settings) == info


@pytest.mark.parametrize("names, message", [
    ([], "at least one host name"),
    (["has space"], "neither a host name nor an IP address"),
    (["-bad.example"], "neither a host name nor an IP address"),
])
def test_create_refuses_bad_names_and_makes_nothing(settings, names, message):
    with pytest.raises(tls.TlsError, match=message):
        tls.create_self_signed(settings, names)
    assert tls.current(settings) is None


def test_create_keeps_an_existing_certificate_unless_told(settings):
    first = tls.create_self_signed(settings, ["a.example"])
    with pytest.raises(tls.TlsError, match="--replace"):
        tls.create_self_signed(settings, ["b.example"])
    assert tls.current(settings) == first
    second = tls.create_self_signed(settings, ["b.example"], replace=True)
    assert second.fingerprint != first.fingerprint and second.names == ["b.example"]


def _pair(tmp_path, *, days=30, start_days=-1, encrypt=False, other_key=False):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plant-it.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now + datetime.timedelta(days=start_days))
            .not_valid_after(now + datetime.timedelta(days=days)).sign(key, hashes.SHA256()))
    if other_key:
        key = ec.generate_private_key(ec.SECP256R1())
    encryption = (serialization.BestAvailableEncryption(b"secret") if encrypt
                  else serialization.NoEncryption())
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.TraditionalOpenSSL, encryption))
    return tmp_path / "c.pem", tmp_path / "k.pem", cert


def test_import_takes_plant_its_pair(settings, tmp_path):
    cert_file, key_file, cert = _pair(tmp_path)
    info = tls.import_pair(settings, cert_file, key_file)
    assert info.fingerprint == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert stat.S_IMODE((settings.home / "tls" / "key.pem").stat().st_mode) == 0o600
    assert b"ENCRYPTED" not in (settings.home / "tls" / "key.pem").read_bytes()


@pytest.mark.parametrize("kind, message", [
    ({"other_key": True}, "is not the key of the certificate"),
    ({"encrypt": True}, "is encrypted"),
    ({"days": -1, "start_days": -10}, "expired"),
    ({"start_days": 5}, "valid only from"),
])
def test_import_refuses_a_pair_that_cannot_serve_and_changes_nothing(settings, tmp_path, kind, message):
    before = tls.create_self_signed(settings, ["kept.example"])
    cert_file, key_file, _ = _pair(tmp_path, **kind)
    with pytest.raises(tls.TlsError, match=message):
        tls.import_pair(settings, cert_file, key_file, replace=True)
    assert tls.current(settings) == before


def test_no_certificate_without_a_home(tmp_path):
    with pytest.raises(tls.TlsError, match="run `airlock init` first"):
        tls.create_self_signed(load_settings(tmp_path / "none", environ={}), ["a.example"])


def test_behind_proxy_needs_a_loopback_bind(tmp_path):
    assert load_settings(tmp_path, {"behind_proxy": 1, "bind": "127.0.0.1:8080"}, environ={}).behind_proxy == 1
    with pytest.raises(SettingsError, match="bind to 127.0.0.1:PORT"):
        load_settings(tmp_path, {"behind_proxy": 1, "bind": "0.0.0.0:8080"}, environ={})


@pytest.mark.parametrize("behind_proxy, secure", [(0, False), (1, True)])
def test_forwarded_proto_is_trusted_only_behind_the_proxy(home, behind_proxy, secure):
    from server import create_app

    app = create_app(load_settings(home, {"behind_proxy": behind_proxy}, environ={}))
    response = app.test_client().get("/", headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 200
    assert ("Secure" in response.headers["Set-Cookie"]) is secure


def test_status_shows_the_pin_or_its_absence(home):
    from appliance.status import gather, render

    assert "tls       none: device tokens cross the LAN in clear" in render(gather(load_settings(home, environ={})))
    settings = load_settings(home, environ={})
    info = tls.create_self_signed(settings, ["airlock.test"], days=10)
    report = gather(settings)
    assert report.tls is not None and report.tls.fingerprint == info.fingerprint and 9 < report.tls.days_left <= 10
    assert f"tls       sha256 {info.fingerprint} (devices pin it) self-signed" in render(report)


def test_certificate_changes_are_audited_and_init_makes_one(tmp_path):
    import json

    from tests.conftest import run_airlock

    home = tmp_path / "audited"
    r = run_airlock(home, "init", "--tls-name", "10.20.0.5", "--tls-name", "airlock.test")
    assert r.code == 0 and "made a TLS certificate for airlock.test, 10.20.0.5" in r.out, r.err
    first = json.loads(run_airlock(home, "tls", "show", "--json").out)["fingerprint"]
    r = run_airlock(home, "init", "--tls-name", "other.test")  # again: the certificate is kept
    assert r.code == 0 and f"TLS certificate kept: sha256 {first}" in r.out
    assert run_airlock(home, "tls", "create", "--name", "new.test", "--replace").code == 0
    second = json.loads(run_airlock(home, "tls", "show", "--json").out)["fingerprint"]
    listed = run_airlock(home, "audit", "list").out
    assert "tls.create" in listed and first in listed and second in listed
    assert run_airlock(home, "audit", "verify").code == 0


def test_a_bad_tls_name_at_init_makes_nothing(tmp_path):
    from tests.conftest import run_airlock

    r = run_airlock(tmp_path / "never", "init", "--tls-name", "bad name")
    assert r.code != 0 and "neither a host name nor an IP address" in r.err
    assert not (tmp_path / "never").exists()
