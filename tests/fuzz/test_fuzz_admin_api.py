"""Property-based tests of the admin API's read endpoints against the
OpenAPI document the app serves: for any query string (values drawn from
each parameter's schema, hostile text, unknown names, repeats), every
answer is a status the document lists for that operation, never a 5xx, and
its JSON matches the documented schema (checked with jsonschema, not the
server's own validator).  In CI it runs briefly; `make fuzz` runs it long."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from server import create_app
from server.settings import load_settings
from tests.bench.devices_bench import pad_inventory
from tests.conftest import run_airlock
from tests.fuzz import test_fuzz_bundle  # noqa: F401  (registers and loads the hypothesis profiles)

PASSWORD = "fuzzing admin password"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"ada:{PASSWORD}".encode()).decode()}
HOSTILE = st.sampled_from(["", " ", "-1", "0", "1e3", "999999999999999999999", "\x00", "\u202e", "\x1b[2J",
                           "x" * 2000, "é", "%", "'; DROP TABLE device; --", "null", "[]", "a\nb", "\ud800"])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root: Path = tmp_path_factory.mktemp("fuzz-admin")
    home = root / "home"
    (root / "pw").write_text(PASSWORD + "\n")
    assert run_airlock(home, "init", "--admin", "ada", "--password-file", root / "pw").code == 0
    pad_inventory(home / "airlock.db", 300)
    app = create_app(load_settings(home, environ={}))
    client = app.test_client()
    spec = client.get("/api/v1/openapi.json").json
    assert client.get("/api/v1/admin/users", headers=AUTH).status_code == 200
    return client, spec


def value_for(schema: dict):
    if "enum" in schema:
        valid = st.sampled_from([str(v) for v in schema["enum"]])
    elif schema.get("type") == "integer":
        valid = st.integers(schema.get("minimum", 0), schema.get("maximum", 2**31)).map(str)
    else:
        valid = st.from_regex(schema["pattern"], fullmatch=True) if "pattern" in schema else st.text(max_size=20)
        if "maxLength" in schema:
            valid = valid.filter(lambda s, n=schema["maxLength"]: len(s) <= n)
    return st.one_of(valid, valid, valid, HOSTILE, st.text(max_size=30))  # mostly valid: reach the services


@st.composite
def requests(draw, spec):
    path = draw(st.sampled_from(sorted(p for p, ops in spec["paths"].items() if "get" in ops and "admin" in p)))
    op = spec["paths"][path]["get"]
    pairs = []
    for param in op.get("parameters", []):
        if draw(st.integers(0, 2)) == 0:
            pairs += [(param["name"], draw(value_for(param["schema"])))] * draw(st.sampled_from([1, 1, 1, 2]))
    if draw(st.integers(0, 9)) == 0:
        pairs.append((draw(st.sampled_from(["x", "limit", "page", "PAGE", "state[]", ""])), draw(HOSTILE)))
    return path, pairs


def check(spec, path: str, response) -> None:
    op = spec["paths"][path]["get"]
    status = response.status_code
    assert status < 500, response.get_data(as_text=True)[:300]
    answer = op["responses"].get(str(status))
    assert answer is not None, f"GET {path} answered {status}, which the document does not list"
    schema = {**answer["content"]["application/json"]["schema"], "components": spec["components"]}
    Draft202012Validator(schema).validate(response.json)


@given(data=st.data())
def test_any_query_gets_a_documented_answer(served, data):
    client, spec = served
    path, pairs = data.draw(requests(spec))
    query = [(k, v.encode("utf-8", "surrogatepass").decode("utf-8", "replace")) for k, v in pairs]
    response = client.get("/api/v1" + path, query_string=query, headers=AUTH)
    check(spec, path, response)
