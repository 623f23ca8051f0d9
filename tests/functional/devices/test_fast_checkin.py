"""Plain check-ins answered outside Flask (appliance/fast_checkin.py) against
a real `airlock serve`: the same status, headers and JSON as the Flask view
and the app's error handlers, for answered and refused check-ins alike;
stored like any other; pipelined requests behind one answered in order;
anything not plain still answered by Flask."""

from __future__ import annotations

import json
import socket
import time

import pytest

from appliance.fast_checkin import parse_checkin
from tests.functional.devices.client import SimDevice
from tests.functional.devices.test_device_api import enroll_accepted
from tests.functional.test_fast_metadata import Reader
from tests.support import homedb

SLOW = ("X-Take-The-View", "1")  # a header the fast path does not know: Flask answers


def checkin_bytes(base: str, body: bytes, headers: list[tuple[str, str]]) -> bytes:
    """A whole check-in request, as a device sends it."""
    host = base.removeprefix("http://")
    lines = ["POST /api/v1/checkin HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers),
             f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def raw_checkin(sock: socket.socket, base: str, body: bytes, headers: list[tuple[str, str]]) -> None:
    sock.sendall(checkin_bytes(base, body, headers))


def ask(base: str, body: bytes, headers: list[tuple[str, str]]) -> tuple[int, list[tuple[str, str]], bytes]:
    """One check-in on its own connection: (status, headers, body); the
    headers start with the status line itself, as ("status-line", line)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        raw_checkin(s, base, body, headers)
        reader = Reader(s)
        while b"\r\n" not in reader.buf:
            reader._more()
        status_line = reader.buf.split(b"\r\n", 1)[0].decode("latin-1")
        status, headers_read, answer = reader.response("POST")
        return status, [("status-line", status_line), *headers_read], answer


def comparable(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() not in ("date", "x-request-id")]


def log_line(home, request_id: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log = (home / "serve.log").read_text()
        line = next((line for line in log.splitlines() if f"request_id={request_id}" in line), None)
        if line is not None:
            return line
        assert time.monotonic() < deadline, f"no log line for {request_id}"
        time.sleep(0.05)


def checkins_of(home, device_id: str) -> tuple[int, str | None]:
    con = homedb.connect(home)
    try:
        return con.execute("SELECT checkins, last_address FROM device WHERE device_id = ?", (device_id,)).fetchone()
    finally:
        con.close()


CASES = {
    "answered": (None, b'{"firmware": "1.0.0", "metrics": {"cpu_temp_c": 40}}', "application/json"),
    "no token": ("", b'{"firmware": "1.0.0"}', "application/json"),
    "unknown token": ("Bearer " + "x" * 43, b'{"firmware": "1.0.0"}', "application/json"),
    "not json": (None, b'{"firmware": ', "application/json"),
    "invalid": (None, b'{"metrics": {}}', "application/json"),
    "media type": (None, b'{"firmware": "1.0.0"}', "text/plain"),
    "charset": (None, b'{"firmware": "1.0.0"}', "application/json; charset=utf-8"),
    # deeper than server.devices.schema.MAX_DEPTH: refused before parsing, not by Python's recursion limit
    **{f"deep {n}": (None, b'{"firmware": "1.0.0", "metrics": {"x": ' + b"[" * n + b"]" * n + b"}}", "application/json")
       for n in (40, 960)},
}


@pytest.mark.parametrize("case", CASES)
def test_the_same_answers_as_the_view(appliance, case):
    api = appliance.client()
    dev = enroll_accepted(appliance, api, SimDevice(f"fast-same-{list(CASES).index(case)}"))
    authorization, body, content_type = CASES[case]
    auth = dev.auth()["Authorization"] if authorization is None else authorization
    base_headers = [("Content-Type", content_type), ("Accept", "application/json")]
    if auth:
        base_headers.append(("Authorization", auth))
    fast = ask(appliance.base, body, [*base_headers, ("X-Request-Id", f"fast-{case.replace(' ', '-')}-01")])
    view = ask(appliance.base, body, [*base_headers, SLOW, ("X-Request-Id", f"view-{case.replace(' ', '-')}-01")])
    assert fast[0] == view[0]
    assert comparable(fast[1]) == comparable(view[1])
    assert fast[2] == view[2]
    assert fast[0] == (200 if case in ("answered", "charset") else 401 if "token" in case
                       else 415 if case == "media type" else 400), fast
    fast_line = log_line(appliance.home, f"fast-{case.replace(' ', '-')}-01") if fast[0] != 200 else None
    if fast_line is not None:  # refusals are logged at INFO: the line names the path that answered
        view_line = log_line(appliance.home, f"view-{case.replace(' ', '-')}-01")
        assert "via=fast" in fast_line and "via=" not in view_line
        assert "level=info" in fast_line and f"status={fast[0]}" in fast_line
    if fast[0] == 200:
        assert set(json.loads(fast[2])) == {"checkin_interval", "jitter", "update"}
        assert checkins_of(appliance.home, dev.device_id) == (2, "127.0.0.1")  # both stored, with the address


def test_an_update_offer_is_the_same_too(appliance):
    """A device on an old version is offered the approved release: the
    answer with its update object is the view's, byte for byte."""
    api = appliance.client()
    dev = enroll_accepted(appliance, api, SimDevice("fast-offer-1", firmware="1.0.0"))
    r = appliance.airlock("releases", "approve", "acme", "plc-x/fw-2.0.0.bin", "--hardware", "plc-x")
    assert r.code == 0, r.err
    release_id = int(r.out.split()[1].rstrip(":"))
    try:
        headers = [("Content-Type", "application/json"), ("Authorization", dev.auth()["Authorization"])]
        body = b'{"firmware": "1.0.0", "metrics": {}}'
        fast, view = ask(appliance.base, body, headers), ask(appliance.base, body, [*headers, SLOW])
        assert fast[0] == view[0] == 200
        assert json.loads(fast[2])["update"]["version"] == "2.0.0"
        assert fast[2] == view[2] and comparable(fast[1]) == comparable(view[1])
    finally:
        assert appliance.airlock("releases", "withdraw", str(release_id)).code == 0


def test_pipelined_requests_behind_a_fast_checkin_are_answered_in_order(appliance):
    api = appliance.client()
    dev = enroll_accepted(appliance, api, SimDevice("fast-pipe-1"))
    host, port = appliance.base.removeprefix("http://").split(":")
    request = checkin_bytes(appliance.base, b'{"firmware": "1.0.0", "metrics": {"boot_count": 1}}',
                            [("Content-Type", "application/json"), ("Authorization", dev.auth()["Authorization"])])
    health = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request + request + health + request)  # one write: the worker reads them together
        reader = Reader(s)
        answers = [reader.response("POST"), reader.response("POST"), reader.response("GET"), reader.response("POST")]
    assert [a[0] for a in answers] == [200, 200, 200, 200]
    assert b'"checkin_interval"' in answers[0][2] and b'"checkin_interval"' in answers[3][2]
    assert b"checkin_interval" not in answers[2][2]
    assert checkins_of(appliance.home, dev.device_id)[0] == 3


def test_a_request_that_is_not_plain_is_still_answered_by_the_view(appliance):
    api = appliance.client()
    dev = enroll_accepted(appliance, api, SimDevice("fast-plain-1"))
    body = b'{"firmware": "1.0.0", "metrics": {}}'
    headers = [("Content-Type", "application/json"), ("Authorization", dev.auth()["Authorization"])]
    for extra in ([("Connection", "close")], [SLOW], [("Authorization", "Bearer twice")]):
        status, _, answer = ask(appliance.base, body, [*headers, *extra])
        assert (status, "checkin_interval" in answer.decode()) == ((401, False) if extra[0][1] == "Bearer twice"
                                                                    else (200, True)), extra
    assert checkins_of(appliance.home, dev.device_id)[0] == 2


@pytest.mark.parametrize(("head", "plain"), [
    (b"POST /api/v1/checkin HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n", True),
    (b"POST /api/v1/checkin HTTP/1.0\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n", False),
    (b"POST /api/v1/checkin?x=1 HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n", False),
    (b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 3\r\n\r\n", False),  # not the body's length
    (b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", False),
    (b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", False),
    (b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n", False),
    (b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\nCookie: a=b\r\n\r\n", False),
    (b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\nX-Forwarded-For: 10.0.0.9\r\n\r\n", False),
    (b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\nHost : a\r\n\r\n", False),
    (b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\nContent-Type: application/json; x=y\r\n\r\n", False),
    (b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\nUser-Agent: \xff\r\n\r\n", False),
    (b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\n", False),  # no blank line
])
def test_what_is_plain(head, plain):
    assert (parse_checkin(head, b"{}") is not None) is plain


def test_behind_a_proxy_the_forwarded_address_is_the_devices():
    head = (b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\nX-Forwarded-For: 10.0.0.9\r\n"
            b"X-Forwarded-Proto: https\r\nAuthorization: Bearer abc\r\n\r\n")
    req = parse_checkin(head, b"{}", behind_proxy=True)
    assert req is not None and req.forwarded_for == "10.0.0.9" and req.token == "abc"
    listed = head.replace(b"10.0.0.9", b"10.0.0.9, 10.0.0.1")
    assert parse_checkin(listed, b"{}", behind_proxy=True) is None  # ProxyFix picks from a list


def test_bytes_before_the_request_line_are_judged_as_gunicorn_judges_them(appliance):
    """gunicorn takes one CRLF before a request line and refuses more (or a
    bare LF) with a 400: the fast path leaves those to it, so they are
    refused and store nothing, as before."""
    api = appliance.client()
    dev = enroll_accepted(appliance, api, SimDevice("fast-lead-1"))
    host, port = appliance.base.removeprefix("http://").split(":")
    request = checkin_bytes(appliance.base, b'{"firmware": "1.0.0", "metrics": {}}',
                            [("Content-Type", "application/json"), ("Authorization", dev.auth()["Authorization"])])
    for lead, status in ((b"\r\n", 200), (b"", 200), (b"\r\n\r\n", 400), (b"\n", 400)):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(lead + request)
            assert Reader(s).response("POST")[0] == status, lead
    assert checkins_of(appliance.home, dev.device_id)[0] == 2


def test_answered_checkins_take_the_fast_path_with_the_proxys_address(appliance, monkeypatch):
    """A second `airlock serve` on the same home, at DEBUG and behind a
    proxy: an answered check-in's line says it took the fast path, and the
    device's address is the one X-Forwarded-For gives (as Werkzeug's
    ProxyFix reads it), not the proxy's."""
    from tests.support.server import airlock_server

    api = appliance.client()
    dev = enroll_accepted(appliance, api, SimDevice("fast-proxy-1"))
    monkeypatch.setenv("AIRLOCK_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("AIRLOCK_BEHIND_PROXY", "1")
    with airlock_server(appliance.home, workers=1, threads=4, log_name="serve-proxy.log") as base:
        headers = [("Content-Type", "application/json"), ("Authorization", dev.auth()["Authorization"]),
                   ("X-Forwarded-For", "10.20.30.40"), ("X-Forwarded-Proto", "https"),
                   ("X-Request-Id", "fast-proxy-answered-01")]
        status, _, answer = ask(base, b'{"firmware": "1.0.0", "metrics": {}}', headers)
        assert status == 200, answer
        deadline = time.monotonic() + 10
        while "fast-proxy-answered-01" not in (log := (appliance.home / "serve-proxy.log").read_text()):
            assert time.monotonic() < deadline, "no log line for the check-in"
            time.sleep(0.05)
    line = next(line for line in log.splitlines() if "request_id=fast-proxy-answered-01" in line)
    assert "level=debug" in line and "via=fast" in line and "remote=10.20.30.40" in line
    assert checkins_of(appliance.home, dev.device_id) == (1, "10.20.30.40")
