"""The metadata poll path (appliance/fast_metadata.py) against a real
`airlock serve`: the same bytes and headers as the Flask view, ETag and
304, Range, HEAD, 404s, traversal refused, a new import visible at the very
next poll, and polls answered while every thread is busy."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import pin
from tests.support.server import airlock_server

BIG = 24 * 1024 * 1024  # bytes: a download that fills the loopback buffers and holds its thread


class Reader:
    """Responses read one at a time from a socket, however the bytes arrive."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, b""

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"connection closed after {self.buf[:200]!r}"
        self.buf += chunk

    def response(self, method: str = "GET") -> tuple[int, list[tuple[str, str]], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
        length = int({k.lower(): v for k, v in headers}.get("content-length", "0"))
        if method == "HEAD" or status == 304:
            length = 0
        while len(self.buf) < length:
            self._more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body


_readers: dict[int, Reader] = {}


def _read_response(sock: socket.socket, method: str = "GET") -> tuple[int, list[tuple[str, str]], bytes]:
    reader = _readers.get(id(sock))
    if reader is None or reader.sock is not sock:
        reader = _readers[id(sock)] = Reader(sock)
    return reader.response(method)


def ask(base: str, path: str, headers: dict[str, str] | None = None, method: str = "GET",
        sock: socket.socket | None = None) -> tuple[int, dict[str, str], bytes, list[tuple[str, str]]]:
    """One raw HTTP/1.1 request (on ``sock`` when given, kept alive)."""
    host, port = base.removeprefix("http://").split(":")
    own = sock is None
    s = sock or socket.create_connection((host, int(port)), timeout=10)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status, raw, body = _read_response(s, method)
        return status, {k.lower(): v for k, v in raw}, body, raw
    finally:
        if own:
            _readers.pop(id(s), None)
            s.close()


def _without_date(raw: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers but the two that differ on every answer: the date and the
    request id (each answer has its own, test_each_poll_has_its_own_request_id)."""
    return [(k, v) for k, v in raw if k.lower() not in ("date", "x-request-id")]


def slow(path: str) -> str:
    """The same file by a path only the view answers ("%2E" for the last
    dot: gunicorn decodes it, the fast path never takes an encoded path)."""
    head, dot, tail = path.rpartition(".")
    return f"{head}%2E{tail}"


@pytest.fixture
def published(airlock, sim, home, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.rotate("root")
    sim.add_target("fw/small.bin", b"\xa5" * 1000, version="1.0.0")
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb")).code == 0
    return sim


def test_same_answers_as_the_view(published, home):
    sim = published
    with airlock_server(home, workers=1, threads=4) as base:
        names = sorted(p.name for p in (home / "public/repos/acme/metadata").iterdir())
        assert {"timestamp.json", "2.root.json"} <= set(names) and any("snapshot" in n for n in names)
        for name in names:
            path = f"/repos/acme/metadata/{name}"
            for method in ("GET", "HEAD"):
                status, headers, body, raw = ask(base, path, method=method)
                s_status, _, s_body, s_raw = ask(base, slow(path), method=method)
                assert (status, s_status) == (200, 200), name
                assert _without_date(raw) == _without_date(s_raw), name
                expected = (home / "public/repos/acme/metadata" / name).read_bytes()
                assert body == s_body == (expected if method == "GET" else b"")
            # ETag: the fast path's 304 is the view's 304
            etag = headers["etag"]
            status, _, body, raw = ask(base, path, {"If-None-Match": etag})
            s_status, _, _, s_raw = ask(base, slow(path), {"If-None-Match": etag})
            assert status == s_status == 304 and body == b""
            assert _without_date(raw) == _without_date(s_raw)
            # another tag, a weak one, a list: the view judges them, as before
            assert ask(base, path, {"If-None-Match": '"other"'})[0] == 200
            assert ask(base, path, {"If-None-Match": f"W/{etag}"})[0] == 304
            assert ask(base, path, {"If-None-Match": f'"other", {etag}'})[0] == 304

        ts = sim.metadata["timestamp.json"]
        path = "/repos/acme/metadata/timestamp.json"
        status, headers, body, _ = ask(base, path, {"Range": "bytes=10-19"})
        assert status == 206 and body == ts[10:20] and headers["content-range"] == f"bytes 10-19/{len(ts)}"
        status, _, body, raw = ask(base, path, {"Range": f"bytes={len(ts) + 5}-"})
        s_status, _, s_body, s_raw = ask(base, slow(path), {"Range": f"bytes={len(ts) + 5}-"})
        assert status == s_status == 416 and body == s_body and _without_date(raw) == _without_date(s_raw)
        assert "x-content-type-options" in {k.lower() for k, _ in ask(base, path)[3]}

        # 404s: missing files, repositories, names that are no metadata names, traversal
        for missing in ("/repos/acme/metadata/3.root.json", "/repos/nope/metadata/1.root.json",
                        "/repos/acme/metadata/.hidden.json", "/repos/acme/metadata/..%2F..%2Fairlock.db",
                        "/repos/acme/metadata/../../../airlock.db", "/repos/acme/metadata/x.json.tmp",
                        "/repos/acme/metadata/_generations"):
            status, _, body, raw = ask(base, missing)
            assert status == 404, missing
            assert b"airlock.db" not in body and b"SQLite" not in body
        status, _, body, raw = ask(base, "/repos/acme/metadata/3.root.json")
        s_status, _, s_body, s_raw = ask(base, slow("/repos/acme/metadata/3.root.json"))
        assert status == s_status == 404 and body == s_body and _without_date(raw) == _without_date(s_raw)
        # other methods and bodies go to the view
        status, headers, _, _ = ask(base, path, method="POST", headers={"Content-Length": "0"})
        assert status == 405 and "GET" in headers["allow"]
        log = (home / "serve.log").read_text()
        assert "level=error" not in log and "level=critical" not in log and " exc=" not in log, log


def test_each_poll_has_its_own_request_id(published, home):
    """A cached answer never replays the id of the request that filled it."""
    with airlock_server(home, workers=1, threads=2) as base:
        path = "/repos/acme/metadata/timestamp.json"
        ids = []
        for _ in range(3):
            status, headers, _, raw = ask(base, path)
            assert status == 200 and [k.lower() for k, _ in raw].count("x-request-id") == 1
            ids.append(headers["x-request-id"])
        status, headers, _, _ = ask(base, path, {"If-None-Match": headers["etag"]})
        assert status == 304
        ids.append(headers["x-request-id"])
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids) and len(set(ids)) == len(ids), ids


def test_kept_alive_and_pipelined(published, home):
    sim = published
    ts = sim.metadata["timestamp.json"]
    with airlock_server(home, workers=1, threads=2) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            for _ in range(3):  # fast, slow, fast on one connection
                assert ask(base, "/repos/acme/metadata/timestamp.json", sock=s)[2] == ts
                assert ask(base, "/healthz", sock=s)[0] == 200
            # three requests in one write: three answers, in order
            one = f"GET /repos/acme/metadata/timestamp.json HTTP/1.1\r\nHost: {host}\r\n\r\n"
            two = f"GET /repos/acme/metadata/2.root.json HTTP/1.1\r\nHost: {host}\r\n\r\n"
            s.sendall((one + two + one).encode())
            assert _read_response(s)[2] == ts
            assert _read_response(s)[2] == sim.metadata["2.root.json"]
            assert _read_response(s)[2] == ts
        # Connection: close is honoured (the view closes)
        with socket.create_connection((host, int(port)), timeout=10) as s:
            status, headers, _, _ = ask(base, "/repos/acme/metadata/timestamp.json", {"Connection": "close"}, sock=s)
            assert status == 200 and headers["connection"] == "close"
            assert s.recv(10) == b""


def test_new_import_visible_at_once(published, home, airlock, tmp_path):
    sim = published
    path = "/repos/acme/metadata/timestamp.json"
    with airlock_server(home, workers=2, threads=2) as base:
        host, port = base.removeprefix("http://").split(":")
        conns = [socket.create_connection((host, int(port)), timeout=10) for _ in range(6)]
        try:
            for round_ in range(3):
                for s in conns:  # every worker has the current file cached
                    status, headers, body, _ = ask(base, path, sock=s)
                    assert body == sim.metadata["timestamp.json"]
                    assert ask(base, "/repos/acme/metadata/3.root.json", sock=s)[0] == (404 if round_ == 0 else 200)
                old_etag = headers["etag"]
                sim.rotate("root") if round_ == 0 else None
                sim.add_target(f"fw/next-{round_}.bin", f"next {round_}".encode(), version=f"1.{round_ + 1}.0")
                sim.publish()
                r = airlock("import", sim.write_bundle(tmp_path / f"usb-{round_}"))
                assert r.code == 0, r.err
                for s in conns:  # the very next poll, on every connection, sees the new bytes
                    status, headers, body, _ = ask(base, path, sock=s)
                    assert status == 200 and body == sim.metadata["timestamp.json"]
                    assert headers["etag"] != old_etag
                    assert ask(base, path, {"If-None-Match": old_etag}, sock=s)[0] == 200
        finally:
            for s in conns:
                s.close()


def test_polls_answered_while_every_thread_is_busy(published, home, airlock, tmp_path):
    """The poll path needs no thread: with the worker's only thread held by a
    download that nobody reads, polls are still answered (the view is not)."""
    sim = published
    sim.add_target("fw/big.bin", b"\xa5" * BIG, version="1.1.0")
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb-big")).code == 0
    target = next(Path(home / "public/repos/acme/targets/fw").glob("*.big.bin"))
    with airlock_server(home, workers=1, threads=1) as base:
        host, port = base.removeprefix("http://").split(":")
        ask(base, "/repos/acme/metadata/timestamp.json")  # cached
        kept = socket.create_connection((host, int(port)), timeout=3)
        assert ask(base, "/healthz", sock=kept)[0] == 200  # answered by the thread, then kept alive
        hog = socket.socket()
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.connect((host, int(port)))
        try:
            hog.sendall(f"GET /repos/acme/targets/fw/{target.name} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            time.sleep(1.0)  # the thread now blocks writing the download
            with socket.create_connection((host, int(port)), timeout=3) as s:
                s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                with pytest.raises(TimeoutError):
                    s.settimeout(1.0)
                    s.recv(100)  # no thread for the view
            for _ in range(20):
                status, _, body, _ = ask(base, "/repos/acme/metadata/timestamp.json")
                assert status == 200 and body == sim.metadata["timestamp.json"]
            assert ask(base, "/repos/acme/metadata/9.root.json")[0] == 404
            # a connection kept alive after a request a thread answered: its next poll needs no thread either
            assert ask(base, "/repos/acme/metadata/timestamp.json", sock=kept)[2] == sim.metadata["timestamp.json"]
        finally:
            hog.close()
            kept.close()


def test_requests_the_fast_path_leaves_to_gunicorn(published, home):
    """Other forms of the same request are answered as gunicorn and the view
    always answered them: malformed ones with gunicorn's 400."""
    with airlock_server(home, workers=1, threads=2) as base:
        host, port = base.removeprefix("http://").split(":")
        line = b"GET /repos/acme/metadata/timestamp.json HTTP/1.1\r\nHost: a\r\n"
        for raw, expected in ((b"GET /repos/acme/metadata/timestamp.json HTTP/1.0\r\n\r\n", 200),
                              (b"GET /repos/acme/metadata/timestamp.json?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", 200),
                              (b"GET //repos/acme/metadata/timestamp.json HTTP/1.1\r\nHost: a\r\n\r\n", 200),
                              (line + b"X: \x01\r\n\r\n", 400), (line + b"Host: b\r\n\r\n", 400),
                              (line + b" Fold: x\r\n\r\n", 400)):
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(raw)
                data = b""
                s.settimeout(5)
                while True:
                    chunk = s.recv(65536)
                    if not chunk or b"\r\n\r\n" in data + chunk:
                        data += chunk
                        break
                    data += chunk
            status = int(re.match(rb"HTTP/1\.[01] (\d+)", data).group(1))  # type: ignore[union-attr]
            assert status == expected, (raw, data[:200])


def test_bytes_before_the_request_line_are_judged_as_gunicorn_judges_them(published, home):
    """One CRLF before a poll's request line is taken; more, or a bare LF,
    gunicorn refuses with a 400, and the fast path leaves them to it."""
    with airlock_server(home, workers=1, threads=4) as base:
        host, port = base.removeprefix("http://").split(":")
        poll = f"GET /repos/acme/metadata/timestamp.json HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        for lead, status in ((b"", 200), (b"\r\n", 200), (b"\r\n\r\n", 400), (b"\n", 400)):
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(lead + poll)
                assert Reader(s).response()[0] == status, lead
