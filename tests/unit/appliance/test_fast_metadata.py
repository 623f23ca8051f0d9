"""The poll path's parts in one process (appliance/fast_metadata.py): which
requests it takes, and its cache against a real published tree and the
real Flask app (tests/functional/test_fast_metadata.py runs it in gunicorn)."""

from __future__ import annotations

import pytest

from appliance import fast_metadata
from appliance.fast_metadata import MetadataFastPath, parse_plain
from server import create_app
from server.settings import load_settings
from tests.conftest import pin

PLAIN = b"GET /repos/acme/metadata/timestamp.json HTTP/1.1\r\nHost: 10.0.0.5:8080\r\nAccept: */*\r\n"


def test_plain_requests_are_taken():
    req = parse_plain(PLAIN + b"\r\n")
    assert req is not None and (req.method, req.path, req.filename, req.host) == (
        b"GET", "/repos/acme/metadata/timestamp.json", "timestamp.json", "10.0.0.5:8080")
    head = parse_plain(b"HEAD /repos/acme/metadata/3.root.json HTTP/1.1\r\nConnection: keep-alive\r\n"
                       b'If-None-Match: "a-b-c"\r\n\r\n')
    assert head is not None and head.method == b"HEAD" and head.if_none_match == '"a-b-c"'
    assert parse_plain(b"GET /repos/acme/metadata/2.targets.json HTTP/1.1\r\n\r\n") is not None


@pytest.mark.parametrize("head", [
    PLAIN + b"Range: bytes=0-1\r\n\r\n",
    PLAIN + b"If-Modified-Since: Tue, 01 Dec 2026 06:00:00 GMT\r\n\r\n",
    PLAIN + b"Cookie: airlock_session=x\r\n\r\n",
    PLAIN + b"X-Forwarded-Proto: https\r\n\r\n",
    PLAIN + b"Content-Length: 0\r\n\r\n",
    PLAIN + b"Transfer-Encoding: chunked\r\n\r\n",
    PLAIN + b"Connection: close\r\n\r\n",
    PLAIN + b"Host: again\r\n\r\n",
    PLAIN + b" folded\r\n\r\n",
    PLAIN + b"Bad Name: x\r\n\r\n",
    PLAIN + b"X: \x01\r\n\r\n",
    PLAIN + b"Accept: " + b"a" * 5000 + b"\r\n\r\n",
    PLAIN,  # incomplete
    b"GET /repos/acme/metadata/timestamp.json HTTP/1.0\r\n\r\n",
    b"GET /repos/acme/metadata/timestamp.json?x HTTP/1.1\r\n\r\n",
    b"GET /repos/acme/metadata/timestamp%2Ejson HTTP/1.1\r\n\r\n",
    b"GET /repos/acme/metadata/../../airlock.db HTTP/1.1\r\n\r\n",
    b"GET /repos/acme/metadata/.timestamp.json HTTP/1.1\r\n\r\n",
    b"GET /repos/acme/metadata/timestamp.json.tmp HTTP/1.1\r\n\r\n",
    b"GET /repos/Acme/metadata/timestamp.json HTTP/1.1\r\n\r\n",
    b"GET /repos/acme/targets/fw.bin HTTP/1.1\r\n\r\n",
    b"POST /repos/acme/metadata/timestamp.json HTTP/1.1\r\n\r\n",
    b"get /repos/acme/metadata/timestamp.json HTTP/1.1\r\n\r\n",
])
def test_everything_else_goes_the_slow_way(head):
    assert parse_plain(head) is None


@pytest.fixture
def fast(airlock, sim, home, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("fw/a.bin", b"a" * 100, version="1.0.0")
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb1")).code == 0
    app = create_app(load_settings(home=home))
    return MetadataFastPath(home / "public", app, ("127.0.0.1", 8080))


def _split(response: bytes) -> tuple[bytes, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return lines[0].encode(), dict(line.split(": ", 1) for line in lines[1:]), body


def test_answers_from_the_cache_until_the_file_changes(fast, sim, airlock, home, tmp_path):
    req = parse_plain(PLAIN + b"\r\n")
    assert req is not None
    status, headers, body = _split(fast.answer(req) or b"")
    assert status == b"HTTP/1.1 200 OK" and body == sim.metadata["timestamp.json"]
    assert headers["Content-Length"] == str(len(body)) and headers["Cache-Control"] == "no-cache"
    assert headers["Connection"] == "keep-alive" and headers["X-Content-Type-Options"] == "nosniff"
    assert (fast.fills, fast.hits) == (1, 0)
    assert _split(fast.answer(req) or b"")[2] == body
    assert (fast.fills, fast.hits) == (1, 1)

    etag = headers["ETag"]
    cond = parse_plain(PLAIN + b"If-None-Match: " + etag.encode() + b"\r\n\r\n")
    assert cond is not None
    status, headers304, body304 = _split(fast.answer(cond) or b"")
    assert status == b"HTTP/1.1 304 NOT MODIFIED" and body304 == b"" and headers304["ETag"] == etag
    head = parse_plain(PLAIN.replace(b"GET", b"HEAD", 1) + b"\r\n")
    assert head is not None
    status, head_headers, head_body = _split(fast.answer(head) or b"")
    assert head_body == b"" and head_headers["Content-Length"] == str(len(body))

    sim.add_target("fw/b.bin", b"b" * 100, version="1.1.0")
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb2")).code == 0
    status, headers, new_body = _split(fast.answer(req) or b"")
    assert new_body == sim.metadata["timestamp.json"] != body and headers["ETag"] != etag
    assert fast.fills == 2
    assert fast.answer(cond) is None  # the old tag: the view decides (200)


def test_a_missing_file_is_a_404_until_it_is_published(fast, sim, airlock, tmp_path):
    req = parse_plain(b"GET /repos/acme/metadata/2.root.json HTTP/1.1\r\n\r\n")
    assert req is not None
    status, headers, body = _split(fast.answer(req) or b"")
    assert status == b"HTTP/1.1 404 NOT FOUND" and headers["Content-Type"].startswith("text/html")
    assert _split(fast.answer(req) or b"")[0].endswith(b"404 NOT FOUND") and fast.hits == 1
    sim.rotate("root")
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb2")).code == 0
    status, _, body = _split(fast.answer(req) or b"")
    assert status == b"HTTP/1.1 200 OK" and body == sim.metadata["2.root.json"]
    nope = parse_plain(b"GET /repos/nope/metadata/1.root.json HTTP/1.1\r\n\r\n")
    assert nope is not None and _split(fast.answer(nope) or b"")[0].endswith(b"404 NOT FOUND")


def test_the_cache_stays_within_its_bounds(fast, monkeypatch):
    monkeypatch.setattr(fast_metadata, "MAX_ENTRIES", 3)
    for n in range(2, 12):
        req = parse_plain(f"GET /repos/acme/metadata/{n}.root.json HTTP/1.1\r\n\r\n".encode())
        assert req is not None and fast.answer(req) is not None
    assert len(fast.cache) == 3
    req = parse_plain(PLAIN + b"\r\n")
    assert req is not None and fast.answer(req) is not None
    monkeypatch.setattr(fast_metadata, "MAX_MISSING", 2)  # a scan of names nobody published: the view answers
    fast.cache.clear()
    fast.missing = fast.cached_bytes = 0
    answers = [fast.answer(parse_plain(f"GET /repos/acme/metadata/{n}.x.json HTTP/1.1\r\n\r\n".encode()))  # type: ignore[arg-type]
               for n in range(2, 6)]
    assert [a is not None for a in answers] == [True, True, False, False] and fast.missing == 2
    assert fast.answer(req) is not None  # the published file is still cached
    monkeypatch.setattr(fast_metadata, "MAX_FILE_BYTES", 10)  # timestamp.json is larger: the view answers each time
    fast.cache.clear()
    assert fast.answer(req) is None and not fast.cache


def test_warm_up_fills_what_every_device_asks_first(fast, sim):
    assert fast.warm_up() == 3  # timestamp.json, root.json, 2.root.json (a 404)
    assert fast.fills == 3 and fast.hits == 0
    for name in ("timestamp.json", "root.json", "2.root.json"):
        req = parse_plain(f"GET /repos/acme/metadata/{name} HTTP/1.1\r\n\r\n".encode())
        assert req is not None and fast.answer(req) is not None
    assert fast.fills == 3 and fast.hits == 3
