"""`airlock serve` logs one key=value line per event on stderr (what
journald keeps): read from a real serve subprocess and parsed, every line,
with a strict parser.  Requests carry a request id, taken from a valid
X-Request-Id or made up, and returned in the answer; hostile paths and ids
cannot break a line or fake a field."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

from tests.conftest import run_airlock
from tests.support.server import airlock_server

FIELD = r'([a-z_]+)=("(?:[^"\\]|\\.)*"|[^\s"]+)'
LINE = re.compile(rf"^{FIELD}(?: {FIELD})*$")


def parse(line: str) -> dict[str, str]:
    """A key=value line as a dict (quotes and escapes undone for \\" and \\\\ only); AssertionError if malformed."""
    assert LINE.match(line), f"not a key=value line: {line!r}"
    out = {}
    for key, value in re.findall(FIELD, line):
        if value.startswith('"'):
            value = re.sub(r'\\(["\\])', r"\1", value[1:-1])
        assert key not in out, f"field {key} twice in {line!r}"
        out[key] = value
    return out


def fetch(url: str, **headers) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def test_serve_logs_key_value_lines_with_request_ids(home):
    with airlock_server(home) as base:
        status, headers = fetch(base + "/healthz", **{"X-Request-Id": "device-7f3a-0001"})
        assert status == 200 and headers["X-Request-Id"] == "device-7f3a-0001"
        status, headers = fetch(base + "/healthz", **{"X-Request-Id": 'x" status=999 forged="1'})
        assert status == 200 and re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-Id"])
        replaced = headers["X-Request-Id"]
        status, headers = fetch(base + "/healthz", **{"X-Request-Id": "a" * 65})
        assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-Id"])
        status, headers = fetch(base + "/api/v1/no%1b%5b31m%22%20status%3D200%20x%3D%0Aend")
        assert status == 404
        hostile_id = headers["X-Request-Id"]
        status, headers = fetch(base + "/api/v1/checkin")  # refused by the permission check: still logged
        assert status in (400, 401, 405) and "X-Request-Id" in headers
    lines = (home / "serve.log").read_text().splitlines()
    assert lines
    records = [parse(line) for line in lines]  # every line, gunicorn's own included
    assert {"level", "logger", "msg", "pid"} <= set(records[0])
    assert any(r.get("event") == "serving" and r["bind"].startswith("127.0.0.1:") for r in records)
    assert any(r["logger"].startswith("gunicorn") for r in records)
    requests = {r["request_id"]: r for r in records if r["logger"] == "server.requests"}
    assert requests["device-7f3a-0001"]["path"] == "/healthz" and requests["device-7f3a-0001"]["status"] == "200"
    assert replaced in requests and "forged" not in requests[replaced]
    assert all(r.get("status") != "999" for r in records)
    hostile = requests[hostile_id]
    # the escape sequence, the quote and the line break are escaped, inside one field
    assert hostile["path"] == '/api/v1/no\\x1b[31m" status=200 x=\\x0aend' and hostile["status"] == "404"
    assert "\x1b" not in (home / "serve.log").read_text()


def test_cli_commands_log_key_value_lines_to_the_home(home, tmp_path):
    r = run_airlock(home, "import", tmp_path / "no-such-bundle")
    assert r.code != 0
    log = (home / "log" / "airlock.log").read_text().splitlines()
    assert log and all(parse(line) for line in log)
    assert all({"ts", "level", "logger", "msg"} <= set(parse(line)) for line in log)
