"""The TLS front end to end: `airlock tls create` makes the certificate,
Debian's nginx (configured from docs/nginx-airlock-site.conf) serves the
TUF tree and proxies the API and console to a real `airlock serve` behind
it, and `airlock-agent` enrolls, checks in and installs an update over
HTTPS with the certificate pinned.  A wrong pin is refused before anything
is sent; the token never crosses plain http.  (The mDNS path, where the
agent learns the pin from the TXT record, runs in a private network
namespace: tests/functional/test_mdns.py.)"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import ssl
import threading
import urllib.error
import urllib.request

import pytest

from tests.functional.agent.conftest import TARGETS, Site, make_home, target_path
from tests.support.netns import run_in_netns
from tests.support.server import airlock_server, free_port
from tests.support.tls_front import pinned_context, tls_front

EXIT_PENDING, EXIT_UNREACHABLE, EXIT_FAILED = 3, 75, 1


class Front:
    def __init__(self, site: Site, http: str, https: str, app: str, fingerprint: str):
        self.site, self.http, self.https, self.app, self.fingerprint = site, http, https, app, fingerprint


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    home, sim = make_home(root)
    r = Site(root, home, "", sim).airlock("tls", "create", "--name", "127.0.0.1", "--name", "airlock.test")
    assert r.code == 0, r.err
    fingerprint = json.loads(Site(root, home, "", sim).airlock("tls", "show", "--json").out)["fingerprint"]
    (home / "airlock.toml").write_text("behind_proxy = 1\n")
    with contextlib.ExitStack() as stack:
        app = stack.enter_context(airlock_server(home, workers=2, threads=8))
        nginx = stack.enter_context(tls_front(home, app.removeprefix("http://"), root / "nginx",
                                              http_port=free_port(), https_port=free_port()))
        yield Front(Site(root, home, nginx.https, sim), nginx.http, nginx.https, app, fingerprint)


def get(url: str, **headers) -> tuple[int, dict, bytes]:
    """(status, headers, body), redirects not followed, any certificate accepted."""
    request = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=pinned_context()),
                                         _NoRedirect())
    try:
        with opener.open(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_nginx_serves_the_tree_over_https_with_the_generated_certificate(front):
    published = (front.site.home / "public" / "repos" / "acme" / "metadata" / "timestamp.json").read_bytes()
    status, headers, body = get(front.https + "/repos/acme/metadata/timestamp.json")
    assert status == 200 and body == published
    host, port = front.https.removeprefix("https://").split(":")
    der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((host, int(port))))
    assert hashlib.sha256(der).hexdigest() == front.fingerprint
    # TUF files stay available in clear, for clients that only speak http
    status, _, body = get(front.http + "/repos/acme/metadata/timestamp.json")
    assert status == 200 and body == published


def test_plain_http_refuses_the_api_and_sends_the_console_to_https(front):
    status, headers, body = get(front.http + "/api/v1/checkin", Authorization="Bearer not-sent-on")
    assert status == 403 and json.loads(body)["error"] == "https_required"
    for path in ("/", "/login", "/metrics", "/healthz"):
        status, headers, _ = get(front.http + path)
        assert status == 301 and headers["Location"].startswith("https://"), path


def test_the_app_behind_the_front_knows_requests_came_over_https(front):
    status, headers, _ = get(front.https + "/")
    assert status == 200
    cookie = headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie
    # straight to gunicorn (no nginx, no X-Forwarded-Proto): not secure, so no Secure flag
    status, headers, _ = get(front.app + "/")
    assert status == 200 and "Secure" not in headers["Set-Cookie"]
    for path in ("/metrics", "/healthz"):
        assert get(front.https + path)[0] == 200, path


def test_the_app_sees_the_clients_address_not_a_forged_one(front):
    # through nginx, a forged X-Forwarded-For is replaced by the real peer (loopback here), and the
    # request id is nginx's own $request_id, so nginx's logs and the app's join
    forged = get(front.https + "/healthz", **{"X-Forwarded-For": "203.0.113.66", "X-Request-Id": "client-id-1"})
    assert forged[0] == 200 and re.fullmatch(r"[0-9a-f]{32}", forged[1]["X-Request-Id"])
    nginx_id = forged[1]["X-Request-Id"]
    # straight to the app (only nginx can, in service), the header is taken as nginx's
    direct = get(front.app + "/healthz", **{"X-Forwarded-For": "198.51.100.7", "X-Request-Id": "direct-xff-1"})
    assert direct[0] == 200
    log = (front.site.home / "serve.log").read_text()
    [via_nginx] = [line for line in log.splitlines() if f"request_id={nginx_id}" in line]
    [via_app] = [line for line in log.splitlines() if "request_id=direct-xff-1" in line]
    assert "remote=127.0.0.1" in via_nginx and "203.0.113.66" not in via_nginx
    assert "remote=198.51.100.7" in via_app


def test_agent_enrolls_checks_in_and_updates_over_https_with_a_configured_pin(front):
    site = front.site
    device = site.device("tls-1", "plc-b", tls_fingerprint=front.fingerprint.upper())  # as people copy it
    r = device.agent("enroll")
    assert r.returncode == EXIT_PENDING, r.stderr
    assert site.airlock("devices", "accept", "tls-1").code == 0
    assert device.agent("run", "--once").returncode == 0
    release_id = site.approve("plc-b")
    r = device.agent("run", "--once")
    assert r.returncode == 0, r.stderr
    assert f"release {release_id}: installed" in r.stdout
    [run] = device.hook_runs()
    assert run["sha256"] == hashlib.sha256(TARGETS["plc-b"]).hexdigest() and run["target"] == target_path("plc-b")
    shown = site.show("tls-1")
    assert shown["summary"]["state"] == "accepted" and shown["checkins"] >= 2
    status = json.loads(device.agent("status", "--json").stdout)
    assert status["tls_pin"] == front.fingerprint


def test_a_wrong_pin_is_refused_before_anything_is_sent(front):
    site = front.site
    device = site.device("tls-wrong", "plc-b", tls_fingerprint="ab" * 32)
    r = device.agent("enroll")
    assert r.returncode == EXIT_UNREACHABLE, r.stderr
    assert "not the pinned one" in r.stderr and "ab" * 32 in r.stderr
    assert site.airlock("devices", "show", "tls-wrong").code != 0  # the appliance never heard of it


def test_an_http_url_with_a_pin_is_a_configuration_error(front):
    device = front.site.device("tls-http", "plc-b", tls_fingerprint=front.fingerprint,
                               appliance_url=front.http)
    r = device.agent("enroll")
    assert r.returncode == 2, r.stderr  # usage
    assert "use https://" in r.stderr


class Listener:
    """A plain TCP server that records every byte sent to it."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.received = b""
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.settimeout(2)
            try:
                while chunk := conn.recv(65536):
                    self.received += chunk
            except OSError:
                pass
            conn.close()

    def close(self):
        self.sock.close()


def test_the_token_never_crosses_plain_http_once_the_device_used_tls(front):
    site = front.site
    device = site.device("tls-2", "plc-b", tls_fingerprint=front.fingerprint)
    assert device.agent("enroll").returncode == EXIT_PENDING
    assert site.airlock("devices", "accept", "tls-2").code == 0
    assert device.agent("run", "--once").returncode == 0
    token = (device.state_dir / "token").read_text().strip()
    assert token
    # the device is then pointed at a plain-http address (a mistake, or an attacker's redirect)
    listener = Listener()
    try:
        text = device.config.read_text()
        text = "\n".join(line for line in text.splitlines()
                         if not line.startswith(("appliance_url", "tls_fingerprint")))
        device.config.write_text(text + f'\nappliance_url = "{listener.url}"\n')
        r = device.agent("run", "--once")
        assert r.returncode != 0
        assert "refusing to send a device token" in r.stderr and "plain http" in r.stderr
        assert listener.connections == 0 and token.encode() not in listener.received
    finally:
        listener.close()


def test_tls_commands_refuse_bad_input_and_change_nothing(front, tmp_path):
    site = front.site
    before = (site.home / "tls" / "cert.pem").read_bytes()
    r = site.airlock("tls", "create", "--name", "127.0.0.1")
    assert r.code != 0 and "--replace" in r.err
    r = site.airlock("tls", "create", "--name", "bad name!", "--replace")
    assert r.code != 0 and "neither a host name nor an IP address" in r.err
    (tmp_path / "c.pem").write_text("not a certificate")
    (tmp_path / "k.pem").write_text("not a key")
    r = site.airlock("tls", "import", "--cert", tmp_path / "c.pem", "--key", tmp_path / "k.pem", "--replace")
    assert r.code != 0 and "no PEM certificate" in r.err
    assert (site.home / "tls" / "cert.pem").read_bytes() == before
    assert ssl.PEM_cert_to_DER_cert(before.decode()) is not None


@pytest.mark.slow
def test_agent_pins_the_certificate_it_learns_by_mdns(tmp_path_factory):
    """In a private network namespace: `airlock serve` advertises tls= and
    nginx's port; the agent, with no URL and no fingerprint configured,
    finds it, pins it, and enrolls, checks in and installs over HTTPS."""
    root = tmp_path_factory.mktemp("tls-mdns")
    home, sim = make_home(root)
    site = Site(root, home, "", sim)
    assert site.airlock("tls", "create", "--name", "127.0.0.1").code == 0
    fingerprint = json.loads(site.airlock("tls", "show", "--json").out)["fingerprint"]
    https_port = free_port()
    (home / "airlock.toml").write_text(f'behind_proxy = 1\ntls_port = {https_port}\nmdns_interfaces = "127.0.0.1"\n')
    release = site.approve("plc-x")
    device = site.device("tls-mdns", "plc-x", appliance_url="", mdns_enabled=True, mdns_interfaces="127.0.0.1",
                         mdns_timeout=10.0)
    (work := root / "work").mkdir()
    result = run_in_netns("tls", {"home": str(home), "work": str(work), "app_port": free_port(),
                                  "http_port": free_port(), "https_port": https_port,
                                  "agent_config": str(device.config), "state_dir": str(device.state_dir),
                                  "hook_out": str(device.hook_out), "device": "tls-mdns"}, timeout=240)
    [seen] = result["zeroconf"]
    assert seen["port"] == https_port and seen["txt"]["tls"] == fingerprint, result["log"]
    code, err = result["enroll"]
    assert code == EXIT_PENDING, err
    assert "pinning its certificate sha256 " + fingerprint in err
    assert result["accept"] == 0
    code, out, err = result["run"]
    assert code == 0, err
    assert f"release {release}: installed" in out
    assert result["pinned"] == fingerprint
    [run] = device.hook_runs()
    assert run["sha256"] == hashlib.sha256(TARGETS["plc-x"]).hexdigest()
