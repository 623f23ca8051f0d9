"""A simulated device and an HTTP client for the device API, for tests and
benchmarks: real Ed25519 keys, real signatures, real HTTP.

``ApiClient`` validates every JSON answer it receives against the OpenAPI
document the server itself serves (with the ``jsonschema`` library, an
implementation independent of the server's own validator), and fails on a
status the document does not list for that operation.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def canonical(fields: dict) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class SimDevice:
    device_id: str
    hardware: str = "plc-x"
    firmware: str = "1.0.0"
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    token: str | None = None

    @property
    def public_key(self) -> str:
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def new_key(self) -> None:
        self.key = Ed25519PrivateKey.generate()

    def enrollment(self, *, enrollment_token: str | None = None, timestamp: str | None = None,
                   sign_with: Ed25519PrivateKey | None = None, **override) -> dict:
        fields = {"device_id": self.device_id, "hardware": self.hardware, "firmware": self.firmware,
                  "public_key": self.public_key, "nonce": secrets.token_hex(16), "timestamp": timestamp or utc_now()}
        if enrollment_token is not None:
            fields["enrollment_token"] = enrollment_token
        fields.update(override)
        signature = (sign_with or self.key).sign(canonical(fields))
        return {**fields, "signature": base64.b64encode(signature).decode()}

    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}


def report(release_id: int, step: str, reason: str | None = None, report_id: str | None = None) -> dict:
    body = {"report_id": report_id or str(uuid.uuid4()), "release_id": release_id, "step": step, "at": utc_now()}
    if reason:
        body["reason"] = reason
    return body


@dataclass
class Response:
    status: int
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


class SpecChecker:
    """Validate an answer against the OpenAPI document (jsonschema 2020-12)."""

    def __init__(self, spec: dict):
        from jsonschema import Draft202012Validator

        self.spec = spec
        self.validators = {}
        self._cls = Draft202012Validator
        self.checked = 0
        self.templates = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p) for p in spec["paths"]]

    def operation(self, method: str, path: str) -> dict | None:
        rel = path.split("?", 1)[0].removeprefix("/api/v1")
        for pattern, template in self.templates:
            if pattern.match(rel):
                return self.spec["paths"][template].get(method.lower())
        return None

    def check(self, method: str, path: str, response: Response) -> None:
        op = self.operation(method, path)
        if op is None:
            schema_ref = "#/components/schemas/Error"  # unknown endpoint: must still be a JSON error
            assert response.status in (404, 405), f"{method} {path}: undocumented endpoint answered {response.status}"
        else:
            answer = op["responses"].get(str(response.status))
            assert answer is not None, (f"{method} {path} answered {response.status}, which the OpenAPI document does "
                                        f"not list: {response.body[:300]!r}")
            schema_ref = answer["content"]["application/json"]["schema"].get("$ref")
        assert response.headers.get("content-type", "").startswith("application/json"), (
            f"{method} {path}: {response.status} is not JSON: {response.headers.get('content-type')}")
        doc = response.json
        if schema_ref:
            schema = {"$ref": schema_ref, "components": self.spec["components"]}
            self._cls(schema).validate(doc)
        self.checked += 1


class ApiClient:
    """One keep-alive HTTP connection to the appliance (one per thread)."""

    def __init__(self, base: str, checker: SpecChecker | None = None, timeout: float = 30.0):
        parts = urlsplit(base)
        self.host, self.port = parts.hostname, parts.port
        self.timeout = timeout
        self.checker = checker
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body=None, headers: dict | None = None, *,
                raw: bytes | None = None, content_type: str = "application/json") -> Response:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        hdrs = {**({"Content-Type": content_type} if data is not None else {}), **(headers or {})}
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                response = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
                break
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                # the server closed an idle keep-alive connection: one fresh try
                self.close()
                if attempt == 2:
                    raise
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        if self.checker is not None and path.startswith("/api/"):
            self.checker.check(method, path, response)
        return response

    def post(self, path: str, body=None, headers: dict | None = None, **kw) -> Response:
        return self.request("POST", path, body, headers, **kw)

    def get(self, path: str, headers: dict | None = None) -> Response:
        return self.request("GET", path, None, headers)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
