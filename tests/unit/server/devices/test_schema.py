"""The OpenAPI document and the request validator built on it: the server's
validator must agree with an independent JSON Schema implementation."""

from __future__ import annotations

import json

import jsonschema
import pytest

from server.devices.exceptions import InvalidRequestError
from server.devices.schema import MAX_DEPTH, SchemaValidator, loads_strict
from server.devices.views import SPEC, VALIDATOR
from tests.functional.devices.client import SimDevice


def test_the_document_is_openapi_3_1_with_valid_schemas():
    assert SPEC["openapi"].startswith("3.1")
    for schema in SPEC["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            assert op["responses"], f"{method} {path} documents no responses"
            for status, answer in op["responses"].items():
                if op["operationId"] == "download_export" and status == "200":
                    assert list(answer["content"]) == ["application/octet-stream"]  # the one file download
                    continue
                assert "application/json" in answer["content"], f"{method} {path} {status} is not JSON"


def _checkin(**metrics):
    return {"firmware": "1.2.0", "metrics": metrics}


GOOD = {
    "CheckinRequest": [
        {"firmware": "1.2.0"},
        _checkin(uptime_s=5, boot_count=1, last_reset_reason="power-on", cpu_temp_c=41.5, mem_free_bytes=1,
                 storage_free_bytes=2, error_counters={"crc": 3}, gauges={"fan.rpm": -3.5}),
        _checkin(cpu_temp_c=40),
        {"firmware": "2.0.0-rc.1+build.5", "metrics": {}},
    ],
    "UpdateReportRequest": [
        {"report_id": "0b6f0a2e-8d1c-4f0e-9b7a-2b1a3c4d5e6f", "release_id": 1, "step": "failure",
         "reason": "hash mismatch", "at": "2026-11-01T10:00:00+01:00"},
    ],
    "AdminDecisionRequest": [{}, {"reason": "ok"}, {"new_key": True, "key_fingerprint": "a" * 64}],
}
BAD = {
    "CheckinRequest": [
        {},  # firmware required
        {"firmware": "1.2"},
        {"firmware": "1.2.0", "extra": 1},
        _checkin(uptime_s=-1),
        _checkin(uptime_s=1.5),
        _checkin(uptime_s="5"),
        _checkin(uptime_s=True),
        _checkin(cpu_temp_c=1000),
        _checkin(gauges={"bad name": 1}),
        _checkin(gauges={f"g{i}": 1 for i in range(65)}),
        _checkin(error_counters={"e": -1}),
        _checkin(last_reset_reason="line\nbreak"),
        _checkin(gauges={"g": "1"}),
        _checkin(unknown=1),
        {"firmware": "1.2.0\n"},
    ],
    "UpdateReportRequest": [
        {"report_id": "x", "release_id": 1, "step": "success", "at": "2026-11-01T10:00:00Z"},
        {"report_id": "0b6f0a2e-8d1c-4f0e-9b7a-2b1a3c4d5e6f", "release_id": 1, "step": "done",
         "at": "2026-11-01T10:00:00Z"},
        {"report_id": "0b6f0a2e-8d1c-4f0e-9b7a-2b1a3c4d5e6f", "release_id": 0, "step": "success",
         "at": "2026-11-01T10:00:00Z"},
        {"report_id": "0b6f0a2e-8d1c-4f0e-9b7a-2b1a3c4d5e6f", "release_id": 1, "step": "failure",
         "reason": "\x07", "at": "2026-11-01T10:00:00Z"},
        *({"report_id": "0b6f0a2e-8d1c-4f0e-9b7a-2b1a3c4d5e6f", "release_id": 1, "step": "failure",
           "reason": f"bad{ch}text", "at": "2026-11-01T10:00:00Z"}
          for ch in ("\x9b", "\x85", "\u202e", "\u2066", "\u200b", "\u2028", "\ufeff", "\t", "\ud800")),
    ],
    "AdminDecisionRequest": [{"reason": "x" * 501}, {"new_key": "yes"}, {"key_fingerprint": "A" * 64}],
}


def _cases(table):
    return [(name, doc) for name, docs in table.items() for doc in docs]


def _jsonschema_ok(name, doc) -> bool:
    schema = {"$ref": f"#/components/schemas/{name}", "components": SPEC["components"]}
    return jsonschema.Draft202012Validator(schema).is_valid(doc)


@pytest.mark.parametrize("name, doc", _cases(GOOD))
def test_valid_requests_pass_both_validators(name, doc):
    assert _jsonschema_ok(name, doc)
    VALIDATOR.validate(doc, {"$ref": f"#/components/schemas/{name}"})


@pytest.mark.parametrize("name, doc", _cases(BAD))
def test_invalid_requests_fail_our_validator(name, doc):
    with pytest.raises(InvalidRequestError) as info:
        VALIDATOR.validate(doc, {"$ref": f"#/components/schemas/{name}"})
    assert "openapi.json" in str(info.value)
    if name == "CheckinRequest" and doc == {"firmware": "1.2.0\n"}:
        return  # Python's `$` is laxer than ECMA's: our validator anchors with \Z, jsonschema does not
    assert not _jsonschema_ok(name, doc), "the document is laxer than the server"


def test_a_signed_enrollment_is_valid():
    doc = SimDevice("dev-1").enrollment(enrollment_token="tok-12345678")
    assert _jsonschema_ok("EnrollRequest", doc)
    VALIDATOR.validate(doc, {"$ref": "#/components/schemas/EnrollRequest"})


def test_integral_floats_become_ints():
    out = VALIDATOR.validate({"firmware": "1.0.0", "metrics": {"uptime_s": 5.0}},
                             {"$ref": "#/components/schemas/CheckinRequest"})
    assert out["metrics"]["uptime_s"] == 5 and isinstance(out["metrics"]["uptime_s"], int)


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1, "a": 2}', b"\xff", b"[" * 20000,
                                 b"{", b""])
def test_strict_json_refuses(raw):
    with pytest.raises(InvalidRequestError):
        loads_strict(raw)


def test_nesting_is_capped_before_parsing_and_brackets_in_strings_do_not_count():
    def nested(levels: int) -> bytes:  # an object holding arrays: ``levels`` in all
        return b'{"a": ' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"

    deepest = loads_strict(nested(MAX_DEPTH))["a"]
    for _ in range(MAX_DEPTH - 2):
        deepest = deepest[0]
    assert deepest == []
    for levels in (MAX_DEPTH + 1, 950, 20000):
        with pytest.raises(InvalidRequestError, match=f"more than {MAX_DEPTH} deep"):
            loads_strict(nested(levels))
    # an unterminated string after the brackets, then quotes and backslashes to the end (a string
    # pattern retried from each quote took seconds on 16 KiB of this): refused, by its depth
    with pytest.raises(InvalidRequestError, match="deep"):
        loads_strict(b"[" * (MAX_DEPTH + 1) + b'"\\' * 8000)
    with pytest.raises(InvalidRequestError, match="not valid JSON"):  # shallow: json.loads' own answer
        loads_strict(b'{"a": "' + b"\\" * 999 + b"[" * (MAX_DEPTH + 1))
    tricky = {"a": "[" * 500 + '\\"' + "{" * 500, "b": [[{"c": "]]]"}]], "d": '\\'}
    assert loads_strict(json.dumps(tricky).encode()) == tricky


def test_unsupported_schema_keywords_are_a_programming_error():
    with pytest.raises(AssertionError):
        SchemaValidator({}).validate(1, {"multipleOf": 2})
