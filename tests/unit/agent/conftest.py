"""A scripted HTTP server on loopback for the agent's unit tests: it answers
each request with the next (status, JSON) of its script and records what it
was sent.  Real sockets, real HTTP: the agent's client is never mocked."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Scripted:
    url: str
    answers: list[tuple[int, dict]]
    requests: list[dict] = field(default_factory=list)  # {"path", "body", "authorization"}


@contextmanager
def scripted_server(answers: list[tuple[int, dict]],
                    on_request: Callable[[dict], None] | None = None) -> Iterator[Scripted]:
    """Answers in order; a request past the end gets 599 (the test then fails on it).
    ``on_request(request)`` runs before each answer (another process acting meanwhile)."""
    script = Scripted("", list(answers))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            length = min(int(self.headers.get("Content-Length", "0")), 4 << 20)
            body = json.loads(self.rfile.read(length) or b"null")
            with lock:
                script.requests.append({"path": self.path, "body": body,
                                        "authorization": self.headers.get("Authorization")})
                status, answer = script.answers.pop(0) if script.answers else (599, {"error": "unscripted"})
            if on_request is not None:
                on_request(script.requests[-1])
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    script.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield script
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
