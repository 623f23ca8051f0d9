"""When a header block is complete (appliance/serve_worker.py)."""

import threading

import pytest

from appliance.serve_worker import header_complete


@pytest.mark.parametrize("head, complete", [
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", True),
    (b"GET /healthz HTTP/1.1\r\n\r\n", True),
    (b"\r\nGET /healthz HTTP/1.1\r\n\r\n", True),  # an empty line before the request line is allowed
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\n", False),
    (b"GET /healthz HT", False),
    (b"", False),
    (b"\r\n\r\n", False),  # empty lines only: no request yet
    (b"\r\n\r\nGET / HTTP/1.1\r\n", False),
])
def test_header_complete(head, complete):
    assert header_complete(head) is complete
    assert header_complete(bytearray(head)) is complete


def test_a_header_timeout_below_one_second_is_refused():
    from server.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="header_timeout must be at least 1"):
        Settings(header_timeout=0).validate()


@pytest.mark.parametrize("header, length", [
    (b"POST /api/v1/checkin HTTP/1.1\r\nHost: a\r\nContent-Length: 120\r\n\r\n", 120),
    (b"POST / HTTP/1.1\r\ncontent-length:  7 \r\n\r\n", 7),
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0),
    (b"POST / HTTP/1.1\r\nContent-Length: 16385\r\n\r\n", 0),  # past MAX_BODY_BYTES: the thread reads it
    (b"POST / HTTP/1.1\r\nContent-Length: 16384\r\n\r\n", 16384),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 0),  # gunicorn judges these
    (b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 0),
    (b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 0),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", 0),  # waits for our 100
])
def test_small_body_length(header, length):
    from appliance.serve_worker import small_body_length

    assert small_body_length(header) == length


def test_header_end_is_just_past_the_blank_line():
    from appliance.serve_worker import header_end

    head = b"\r\nPOST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nok"
    assert head[header_end(head):] == b"ok"
    assert header_end(b"POST / HTTP/1.1\r\n") is None


def test_the_scanner_finds_the_end_however_the_bytes_arrive():
    from appliance.serve_worker import HeaderScanner

    request = b"\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
    for step in (1, 2, 3, 5, len(request)):
        scanner, head, ends = HeaderScanner(), bytearray(), []
        for i in range(0, len(request), step):
            head += request[i:i + step]
            ends.append(scanner.end(head))
        assert ends[-1] == len(request) and all(e is None for e in ends[:-1]), step


def test_the_heartbeat_is_sent_once_a_second_not_at_every_turn_of_the_loop(monkeypatch):
    """gunicorn's loop calls notify() at every turn (a syscall on the
    worker's temporary file, one per request under load); the arbiter only
    needs one within its 60 s timeout."""
    from appliance import serve_worker

    sent = []
    worker = serve_worker.HeaderDeadlineWorker.__new__(serve_worker.HeaderDeadlineWorker)
    worker.tmp = type("Tmp", (), {"notify": lambda self: sent.append(1)})()
    worker.notified = float("-inf")
    clock = [1000.0]
    monkeypatch.setattr(serve_worker.time, "monotonic", lambda: clock[0])
    for _ in range(100):
        worker.notify()
    assert len(sent) == 1
    clock[0] += serve_worker.NOTIFY_EVERY - 0.01
    worker.notify()
    assert len(sent) == 1
    clock[0] += 0.02
    worker.notify()
    assert len(sent) == 2
    assert serve_worker.NOTIFY_EVERY * 10 < 60  # well within the arbiter's timeout (appliance/serve.py)


@pytest.mark.parametrize("head, plain", [
    (b"POST / HTTP/1.1\r\n\r\n", True),
    (b"\r\nPOST / HTTP/1.1\r\n\r\n", True),  # one CRLF: gunicorn takes it
    (b"\r\n\r\nPOST / HTTP/1.1\r\n\r\n", False),  # more: gunicorn answers 400
    (b"\nPOST / HTTP/1.1\r\n\r\n", False),
    (b"\r\r\nPOST / HTTP/1.1\r\n\r\n", False),
])
def test_only_what_gunicorn_takes_before_a_request_line_goes_the_fast_ways(head, plain):
    from appliance.serve_worker import HeaderScanner, plain_start

    scanner = HeaderScanner()
    assert scanner.end(head) is not None
    assert plain_start(head, scanner.start or 0) is plain


@pytest.mark.parametrize("head, body, devices", [
    (b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\n\r\n", b"{}", True),
    (b"\r\nPOST /api/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\n\r\n", b"{}", True),
    (b"POST /api/v1/enroll HTTP/1.1\r\nContent-Length: 2\r\n\r\n", b"{}", True),
    # the body is not all here (chunked, too large, none announced): a thread reads it, maybe waits
    (b"POST /api/v1/checkin HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"2\r\n{}\r\n0\r\n\r\n", False),
    (b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 99999\r\n\r\n", b"{}", False),
    (b"POST /api/v1/checkin HTTP/1.1\r\n\r\n", b"", False),
    (b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"", False),
    (b"POST /api/v1/checkin HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", b"", False),
    (b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 16384\r\n\r\n", b"x" * 16384, True),
    (b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 16385\r\n\r\n", b"x" * 16385, False),
    (b"POST /api/v1/checkin?x=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n", b"{}", False),
    # anything else
    (b"POST /api/v1/checkins HTTP/1.1\r\nContent-Length: 2\r\n\r\n", b"{}", False),
    (b"POST /api/v1/reports HTTP/1.1\r\nContent-Length: 2\r\n\r\n", b"{}", False),
    (b"GET /api/v1/checkin HTTP/1.1\r\n\r\n", b"", False),
])
def test_which_requests_run_on_the_devices_pool(head, body, devices):
    from types import SimpleNamespace

    from appliance import serve_worker

    worker = serve_worker.HeaderDeadlineWorker.__new__(serve_worker.HeaderDeadlineWorker)
    worker.cfg = SimpleNamespace(is_ssl=False)
    conn = SimpleNamespace(is_http2=False, header=bytearray(head + body), header_scanner=serve_worker.HeaderScanner(),
                           header_needs=None)
    assert worker._collected(conn) or not devices
    assert worker._for_devices(conn) is devices


def test_the_send_limit_is_set_for_the_devices_pool_and_lifted_for_gunicorns():
    """A connection's requests may go to either pool in turn: a check-in's
    thread gives up on a send after ``header_timeout`` without progress
    (SO_SNDTIMEO), a download on the same connection afterwards must not."""
    import socket
    import struct
    import time
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from appliance import serve_worker

    worker = serve_worker.HeaderDeadlineWorker.__new__(serve_worker.HeaderDeadlineWorker)
    worker.cfg = SimpleNamespace(is_ssl=False, keepalive=0)  # no keep-alive: no metadata fast path here
    worker.alive = True
    worker.header_timeout = 4
    worker.method_queue = SimpleNamespace(defer=lambda *args: None)
    ran: list[str] = []
    worker.handle = lambda conn: ran.append(threading.current_thread().name) or True
    worker.device_pool = ThreadPoolExecutor(1, thread_name_prefix="devices")
    worker.tpool = ThreadPoolExecutor(1, thread_name_prefix="gunicorn")
    ours, theirs = socket.socketpair()
    conn = SimpleNamespace(sock=ours, is_http2=False)

    def dispatch(raw: bytes) -> float:
        conn.header, conn.header_scanner, conn.header_needs = bytearray(raw), serve_worker.HeaderScanner(), None
        assert worker._collected(conn)
        count = len(ran)
        worker._dispatch(conn)
        deadline = time.monotonic() + 10
        while len(ran) == count and time.monotonic() < deadline:  # one request at a time, as a connection has
            time.sleep(0.01)
        seconds, micros = struct.unpack("ll", ours.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16))
        return seconds + micros / 1e6

    try:
        assert dispatch(b"POST /api/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}") == 4
        assert dispatch(b"GET /repos/acme/targets/fw.bin HTTP/1.1\r\n\r\n") == 0
        assert dispatch(b"POST /api/v1/enroll HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}") == 4
        worker.device_pool.shutdown(wait=True)
        worker.tpool.shutdown(wait=True)
        assert [name.split("_")[0] for name in ran] == ["devices", "gunicorn", "devices"]
    finally:
        ours.close()
        theirs.close()


def test_a_kept_alive_connection_whose_request_arrived_in_its_last_turn_is_read_not_closed():
    """A request that reaches a kept-alive connection after the poller's
    last look, in the turn of the loop where its keep-alive time runs out,
    is read (gunicorn alone closes the socket with it unread, and the
    client sees a reset and no answer: a CI run lost a check-in so).  A
    connection that sent nothing, or closed, still goes; a stopping worker
    (``force``) still closes them all."""
    import selectors
    import socket
    import time
    from collections import deque
    from types import SimpleNamespace

    from appliance import serve_worker

    worker = serve_worker.HeaderDeadlineWorker.__new__(serve_worker.HeaderDeadlineWorker)
    worker.cfg = SimpleNamespace(is_ssl=False, keepalive=5)
    worker.poller = selectors.DefaultSelector()
    worker.keepalived_conns = deque()
    read: list[str] = []
    closed: list[str] = []

    def readable(conn, _sock):
        worker.keepalived_conns.remove(conn)  # as gunicorn's does, first thing
        read.append(conn.name)

    worker.on_client_socket_readable = readable
    pairs = []
    now = time.monotonic()
    for name, expired, sends in (("request", True, b"POST /api/v1/checkin HTTP/1.1\r\n"), ("idle", True, b""),
                                 ("gone", True, None), ("young", False, b"GET / HTTP/1.1\r\n")):
        server, client = socket.socketpair()
        pairs += [server, client]
        if sends:
            client.sendall(sends)
        elif sends is None:
            client.close()
        conn = SimpleNamespace(name=name, sock=server, timeout=now - 1 if expired else now + 60,
                               close=lambda name=name: closed.append(name))
        worker.poller.register(server, selectors.EVENT_READ)
        worker.keepalived_conns.append(conn)
    worker.nr_conns = len(worker.keepalived_conns)
    try:
        worker.murder_keepalived()
        assert read == ["request"]
        assert closed == ["idle", "gone"]
        assert [c.name for c in worker.keepalived_conns] == ["young"]
        assert worker.nr_conns == 2  # the one read, and the young one

        worker.keepalived_conns.appendleft(SimpleNamespace(name="stopping", sock=pairs[0], timeout=now - 1,
                                                           close=lambda: closed.append("stopping")))
        worker.murder_keepalived(force=True)
        assert read == ["request"] and closed == ["idle", "gone", "stopping", "young"]
    finally:
        for sock in pairs:
            sock.close()
        worker.poller.close()
