"""A small HTTP client that behaves like a browser towards the console: it
keeps cookies (honouring Path and Max-Age=0), never follows redirects on its
own, and finds a page's CSRF token.  Standard library only."""

from __future__ import annotations

import http.client
import re
import uuid
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    text: str

    @property
    def csrf(self) -> str:
        m = CSRF.search(self.text)
        assert m, f"no CSRF token on this page:\n{self.text[:500]}"
        return m.group(1)

    def cookies(self) -> list[str]:
        return self.headers.get_all("Set-Cookie") or []


@dataclass
class Browser:
    base: str
    jar: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, form: dict | None = None, headers: dict | None = None,
                body: bytes | None = None) -> Answer:
        parts = urlsplit(self.base)
        con = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            sent = dict(headers or {})
            if self.jar:
                sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
            if form is not None:
                body = urlencode(form).encode()
                sent["Content-Type"] = "application/x-www-form-urlencoded"
            con.request(method, path, body=body, headers=sent)
            response = con.getresponse()
            answer = Answer(response.status, response.headers, response.read().decode("utf-8", "replace"))
        finally:
            con.close()
        for line in answer.cookies():
            cookie = SimpleCookie()
            cookie.load(line)
            for name, morsel in cookie.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.jar.pop(name, None)
                else:
                    self.jar[name] = morsel.value
        return answer

    def get(self, path: str, **kw) -> Answer:
        return self.request("GET", path, **kw)

    def post(self, path: str, form: dict, **kw) -> Answer:
        return self.request("POST", path, form=form, **kw)

    def upload(self, path: str, fields: dict, name: str, filename: str, data: bytes, **kw) -> Answer:
        """A multipart/form-data POST, as a browser's file input sends it."""
        boundary = "----airlock-test-" + uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                 for k, v in fields.items()]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers = {**kw.pop("headers", {}), "Content-Type": f"multipart/form-data; boundary={boundary}"}
        return self.request("POST", path, headers=headers, body=body, **kw)

    def login(self, username: str, password: str) -> Answer:
        page = self.get("/")
        return self.post("/login", {"username": username, "password": password, "csrf": page.csrf})
