"""Property-based tests of the admin API's state changes against the
OpenAPI document the app serves: for every documented POST under /admin,
path parameters and JSON bodies are drawn from the document's own schemas
(:func:`from_schema` below: the JSON Schema subset the document uses),
mostly valid, sometimes hostile, and sent with an
admin's or an auditor's HTTP Basic credentials.  Every answer must be a
status the document lists for that operation, never a 5xx, with JSON that
matches the documented schema (jsonschema, independent of the server's
validator).  Bounded in CI (the "ci" profile); `make fuzz` runs it long."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from appliance.export import run_export
from server import create_app
from server.settings import load_settings
from tests.conftest import run_airlock
from tests.fuzz import test_fuzz_bundle  # noqa: F401  (registers and loads the hypothesis profiles)
from tests.support.simulator import RepoSim

PASSWORDS = {"ada": "fuzzing admin password", "aude": "fuzzing auditor password", "kim": "fuzzing second admin"}
HOSTILE_JSON = st.sampled_from([b"", b"{", b"[]", b"null", b'{"username": null}', b"\xff\xfe", b'{"a":1}' * 3000,
                                b'{"username": "\\u202e", "role": "admin"}'])
PARAM = re.compile(r"\{([a-z_]+)\}")


def auth(name: str) -> dict:
    raw = f"{name}:{PASSWORDS[name]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An appliance with a pinned, imported repository (so releases can be
    approved), a second admin the changes may touch, and an auditor."""
    root: Path = tmp_path_factory.mktemp("fuzz-changes")
    home = root / "home"
    for name in PASSWORDS:
        (root / name).write_text(PASSWORDS[name] + "\n")
    assert run_airlock(home, "init", "--admin", "ada", "--password-file", root / "ada").code == 0
    for name, role in (("aude", "auditor"), ("kim", "admin")):
        assert run_airlock(home, "users", "add", name, "--role", role, "--password-file", root / name).code == 0
    sim = RepoSim("acme")
    (root / "root.json").write_bytes(sim.first_root())
    assert run_airlock(home, "repo", "add", "acme", "--root", root / "root.json", "--fingerprint",
                       hashlib.sha256(sim.first_root()).hexdigest()).code == 0
    sim.add_target("fw/plc-x-2.0.0.bin", b"two" * 100, version="2.0.0")
    sim.publish()
    assert run_airlock(home, "import", sim.write_bundle(root / "usb")).code == 0
    # exports really run; no import runner: an upload's job fails at once (the import itself: tests/functional)
    app = create_app(load_settings(home, environ={}), export_runner=run_export)
    client = app.test_client()
    spec = client.get("/api/v1/openapi.json").json
    return client, spec


def inline(schema, components: dict, depth: int = 0):
    """``schema`` with every local $ref replaced by what it points to."""
    assert depth < 20, "recursive schema"
    if isinstance(schema, dict):
        if "$ref" in schema:
            target = components[schema["$ref"].rsplit("/", 1)[1]]
            return inline(target, components, depth + 1)
        return {k: inline(v, components, depth + 1) for k, v in schema.items()}
    if isinstance(schema, list):
        return [inline(v, components, depth + 1) for v in schema]
    return schema


def from_schema(schema: dict) -> st.SearchStrategy:
    """Values valid against ``schema`` (inlined: no $ref), for the subset of
    JSON Schema the document uses: objects with properties, required and
    additionalProperties false; strings with enum, pattern and lengths;
    integers with bounds; booleans; type lists with null."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of(*[from_schema({**schema, "type": k}) for k in kind])
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**31)), schema.get("maximum", 2**31))
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength", 80)
        text = st.from_regex(schema["pattern"], fullmatch=True) if "pattern" in schema else st.text(max_size=high)
        return text.filter(lambda v: low <= len(v) <= high)
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v) for k, v in properties.items() if k in required},
            optional={k: from_schema(v) for k, v in properties.items() if k not in required})
    return st.just(None)


def operations(spec) -> list[tuple[str, dict]]:
    return sorted((path, ops["post"]) for path, ops in spec["paths"].items() if "post" in ops and "/admin" in path)


@st.composite
def calls(draw, spec):
    components = spec["components"]["schemas"]
    path, op = draw(st.sampled_from(operations(spec)))
    url = path
    for param in op.get("parameters", []):
        schema = copy.deepcopy(param["schema"])
        if param["in"] == "path":
            value = draw(st.one_of(from_schema(schema), st.sampled_from(["0", "1", "x", "%2F", "99999999999"])))
            url = url.replace("{" + param["name"] + "}", str(value).replace("/", "%2F") or "x")
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        schema = inline(content["application/json"]["schema"], components)
        body = draw(st.one_of(from_schema(schema).map(lambda v: json.dumps(v).encode()),
                              from_schema(schema).map(lambda v: json.dumps(v).encode()), HOSTILE_JSON))
        kind = draw(st.sampled_from(["application/json"] * 5 + ["text/plain"]))
    elif "application/octet-stream" in content:
        body, kind = draw(st.binary(max_size=600)), "application/octet-stream"
    else:
        body, kind = b"", "application/json"
    who = draw(st.sampled_from(["ada", "ada", "ada", "aude"]))
    assert not PARAM.search(url), url
    return path, url, body, kind, who


def check(spec, path: str, response) -> None:
    op = spec["paths"][path]["post"]
    status = response.status_code
    assert status < 500, response.get_data(as_text=True)[:300]
    answer = op["responses"].get(str(status))
    assert answer is not None, f"POST {path} answered {status}, which the document does not list: " \
                               f"{response.get_data(as_text=True)[:300]}"
    schema = {**answer["content"]["application/json"]["schema"], "components": spec["components"]}
    Draft202012Validator(schema).validate(response.json)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(data=st.data())
def test_any_change_gets_a_documented_answer(served, data):
    client, spec = served
    path, url, body, kind, who = data.draw(calls(spec))
    response = client.post("/api/v1" + url, data=body, headers={**auth(who), "Content-Type": kind})
    check(spec, path, response)
    if who == "aude":  # refused (403), or no such route at all (404): never changed anything
        assert response.status_code in (403, 404), response.get_data(as_text=True)[:300]


def test_every_documented_change_is_drawn(served):
    client, spec = served
    assert {p for p, _ in operations(spec)} >= {
        "/admin/users", "/admin/users/role", "/admin/users/disable", "/admin/users/password", "/admin/releases",
        "/admin/releases/{release_id}/withdraw", "/admin/imports", "/admin/devices/{device_id}/accept"}
