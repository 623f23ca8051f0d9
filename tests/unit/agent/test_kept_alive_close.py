"""A kept-alive connection the appliance closes just as the agent sends a
request on it (its keep-alive timeout and the request crossing): the agent
sends the request again on a new connection, and only then.

A CI run lost one check-in of a 2,000-device rollout this way
("did not answer POST /api/v1/checkin: ProtocolError").  The server here is
a plain socket on loopback that plays the race exactly: it answers the
first request on a connection and keeps it alive, then closes it when the
next request arrives, with a FIN after reading it or a reset with it
unread; the connections after that answer every request."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from tuf.api import exceptions as tuf_errors

from agent._http import ApiClient, Connections, ResumingFetcher
from agent.exceptions import UnreachableError

ANSWER = b'{"ok": true}'
WAIT = 10.0  # seconds any socket call in the test server waits at most


def _read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        body += chunk
    return head


def _answer(sock: socket.socket) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                 b"Connection: keep-alive\r\n\r\n%s" % (len(ANSWER), ANSWER))


class RacingServer:
    """Connection 1: answers ``answered`` requests, then closes as the next
    one arrives (``how``: "fin" after reading it, "reset" with it unread).
    Every later connection answers all its requests, unless
    ``close_new`` also has them closed unanswered."""

    def __init__(self, how: str, answered: int = 1, close_new: bool = False):
        self.how, self.answered, self.close_new = how, answered, close_new
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(WAIT)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[list[bytes]] = []  # per connection, the request heads it received
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.requests.append([])
            threading.Thread(target=self._serve, args=(sock, len(self.requests) - 1), daemon=True).start()

    def _serve(self, sock: socket.socket, index: int) -> None:
        sock.settimeout(WAIT)
        seen = self.requests[index]
        racing = index == 0 or self.close_new
        try:
            while True:
                if racing and len(seen) == (self.answered if index == 0 else 0):
                    if self.how == "reset":
                        sock.recv(1, socket.MSG_PEEK)  # the request is here, and stays unread
                        seen.append(b"(unread)")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    else:
                        seen.append(_read_request(sock))
                    return
                head = _read_request(sock)
                if not head:
                    return
                seen.append(head)
                _answer(sock)
        except OSError:
            return
        finally:
            sock.close()

    def __enter__(self) -> RacingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (a close alone does not)
        self.listener.close()
        self.thread.join(WAIT)


@contextmanager
def racing(how: str, **kwargs) -> Iterator[RacingServer]:
    with RacingServer(how, **kwargs) as server:
        yield server


@pytest.mark.parametrize("how", ["fin", "reset"])
def test_a_checkin_on_a_kept_alive_connection_closed_under_it_is_sent_again_on_a_new_one(how):
    with racing(how) as server:
        client = ApiClient(server.url, timeout=WAIT, connections=Connections(maxsize=1))
        assert client.post("/api/v1/checkin", {"n": 1}, "token") == (200, {"ok": True})
        assert client.post("/api/v1/checkin", {"n": 2}, "token") == (200, {"ok": True})
        assert [len(seen) for seen in server.requests] == [2, 1]
        assert server.requests[1][0].startswith(b"POST /api/v1/checkin ")


@pytest.mark.parametrize("how", ["fin", "reset"])
def test_a_metadata_poll_on_a_kept_alive_connection_closed_under_it_is_sent_again(how):
    with racing(how) as server:
        fetcher = ResumingFetcher(timeout=WAIT, connections=Connections(maxsize=1))
        assert b"".join(fetcher.fetch(server.url + "/repo/1.root.json")) == ANSWER
        assert b"".join(fetcher.fetch(server.url + "/repo/timestamp.json")) == ANSWER
        assert [len(seen) for seen in server.requests] == [2, 1]


def test_a_new_connection_closed_without_an_answer_is_not_tried_again():
    """That is an appliance that does not answer (a worker killed while it
    handled the request, say): the device tries at its next check-in."""
    with racing("fin", answered=0, close_new=True) as server:
        client = ApiClient(server.url, timeout=WAIT, connections=Connections(maxsize=4))
        with pytest.raises(UnreachableError, match="did not answer POST /api/v1/checkin"):
            client.post("/api/v1/checkin", {"n": 1}, "token")
        assert [len(seen) for seen in server.requests] == [1]


def test_every_kept_alive_connection_closed_under_it_ends_on_a_new_one_that_is_not_tried_again():
    """A server (or proxy) that closes every connection at its second
    request: the request is sent once on the kept-alive connection, once
    on a new one, and that failure stands."""
    with racing("fin", close_new=True) as server:
        client = ApiClient(server.url, timeout=WAIT, connections=Connections(maxsize=1))
        assert client.post("/api/v1/checkin", {"n": 1}, "token")[0] == 200
        with pytest.raises(UnreachableError):
            client.post("/api/v1/checkin", {"n": 2}, "token")
        assert [len(seen) for seen in server.requests] == [2, 1]


def test_a_timeout_on_a_kept_alive_connection_is_not_tried_again():
    """No answer within the timeout is a slow appliance, not a crossed
    close: the request may be under way there."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    heads: list[bytes] = []

    def serve() -> None:
        sock, _ = listener.accept()
        sock.settimeout(WAIT)
        with sock:
            heads.append(_read_request(sock))
            _answer(sock)
            heads.append(_read_request(sock))  # and no answer: the client times out
            sock.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        client = ApiClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=2.0,
                           connections=Connections(maxsize=1))
        assert client.post("/api/v1/checkin", {"n": 1}, "token")[0] == 200
        with pytest.raises(UnreachableError, match="ReadTimeoutError"):
            client.post("/api/v1/checkin", {"n": 2}, "token")
        thread.join(WAIT)
        assert len(heads) == 2
    finally:
        listener.close()


def test_the_fetcher_still_reports_a_new_connection_closed_without_an_answer():
    with racing("fin", answered=0, close_new=True) as server:
        fetcher = ResumingFetcher(timeout=WAIT, connections=Connections(maxsize=1))
        with pytest.raises(tuf_errors.DownloadError) as raised:
            b"".join(fetcher.fetch(server.url + "/repo/timestamp.json"))
        assert not isinstance(raised.value, tuf_errors.SlowRetrievalError)
        assert [len(seen) for seen in server.requests] == [1]
