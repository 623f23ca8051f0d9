"""Slow and silent clients cannot stop the plant's updates (issue 8, defect 15).

A real `airlock serve` with one worker of four threads, no front: many more
connections than threads send half a request line, trickle one byte at a time,
send nothing at all, or send a check-in's headers and part of its body.
Metadata polls, a device check-in and /healthz are still answered (each
request with a socket timeout of a few seconds), and the server closes every
slow connection after ``header_timeout``.  Every wait is
bounded; nothing asserts a wall-clock time of the server's own.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import pin
from tests.functional.devices.client import ApiClient, SimDevice
from tests.support.server import airlock_server, free_port, wait_until_answers

TOKEN = "commissioning-sheet-token-4711"
HEADER_TIMEOUT = 4  # seconds, written to the home's airlock.toml
THREADS = 4
SLOW = 60  # half a request line, then silence
SILENT = 60  # connect, send nothing
TRICKLING = 10  # one byte every TRICKLE_EVERY seconds: never a whole header block
STALLED_BODY = 20  # whole header block of a check-in, then part of its body, then silence
TRICKLE_EVERY = 0.3  # seconds
MARGIN = 10  # seconds past the deadline a slow connection may stay open in this test
PROMPT = 5  # seconds a request may take while the slow ones are held


def _connect(port: int, first: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=PROMPT)
    if first:
        s.sendall(first)
    return s


def _enrolled(base: str, name: str) -> SimDevice:
    """A device enrolled through the auto-accept rule for ``TOKEN``, with its token."""
    device = SimDevice(name)
    client = ApiClient(base, timeout=PROMPT)
    r = client.post("/api/v1/enroll", device.enrollment(enrollment_token=TOKEN))
    assert r.status == 200, r.json
    device.token = r.json["token"]
    client.close()
    return device


def _closed_by_server(s: socket.socket, until: float) -> bool:
    """True when the server closed ``s`` (EOF or reset) before ``until``
    (monotonic); False when it was still open then or sent an HTTP answer."""
    s.settimeout(max(0.1, until - time.monotonic()))
    try:
        return s.recv(1024) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_slow_and_silent_connections_neither_starve_polls_nor_stay_open(airlock, sim, home, tmp_path):
    pin(airlock, sim, tmp_path)
    sim.add_target("fw/a.bin", b"A" * 1024)
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb")).code == 0
    (tmp_path / "token").write_text(TOKEN)
    assert airlock("devices", "auto-accept", "add", "--hardware", "plc-x", "--token-file", tmp_path / "token").code == 0
    (home / "airlock.toml").write_text(f"header_timeout = {HEADER_TIMEOUT}\n")

    with airlock_server(home, workers=1, threads=THREADS) as base:
        port = int(base.rsplit(":", 1)[1])
        device = _enrolled(base, "slow-clients-1")

        opened = time.monotonic()
        slow = [_connect(port, b"GET /repos/acme/metadata/timestamp.json HT") for _ in range(SLOW)]
        silent = [_connect(port, b"") for _ in range(SILENT)]
        trickling = [_connect(port, b"G") for _ in range(TRICKLING)]
        stalled = [_connect(port, b"POST /api/v1/checkin HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                                  b"Authorization: Bearer " + device.token.encode() + b"\r\n"
                                  b"Content-Length: 300\r\n\r\n{\"firmware\": ")
                   for _ in range(STALLED_BODY)]
        held = slow + silent + trickling + stalled
        stop = threading.Event()

        def trickle() -> None:
            # bounded: at most (deadline + margin) / TRICKLE_EVERY rounds
            for _ in range(int((HEADER_TIMEOUT + MARGIN) / TRICKLE_EVERY)):
                if stop.wait(TRICKLE_EVERY):
                    return
                for s in trickling:
                    with contextlib.suppress(OSError):  # cut by the server: what the test wants
                        s.send(b"E")

        trickler = threading.Thread(target=trickle)
        trickler.start()
        try:
            # The plant's traffic, while all of them are held open
            for _ in range(3):
                with urllib.request.urlopen(f"{base}/repos/acme/metadata/timestamp.json", timeout=PROMPT) as r:
                    assert r.status == 200
                    assert b'"timestamp"' in r.read()
                with urllib.request.urlopen(f"{base}/healthz", timeout=PROMPT) as r:
                    assert r.status == 200
            client = ApiClient(base, timeout=PROMPT)
            r = client.post("/api/v1/checkin", {"firmware": "1.0.0", "metrics": {"uptime_s": 5}}, device.auth())
            assert r.status == 200, r.json
            client.close()

            # ... and every held connection is closed by the server after the deadline
            until = opened + HEADER_TIMEOUT + MARGIN
            still_open = [i for i, s in enumerate(held) if not _closed_by_server(s, until)]
            assert not still_open, f"{len(still_open)} slow connections still open {HEADER_TIMEOUT + MARGIN} s on"
        finally:
            stop.set()
            trickler.join(timeout=10)
            for s in held:
                s.close()

        # nothing of them is left holding a thread
        with urllib.request.urlopen(f"{base}/healthz", timeout=PROMPT) as r:
            assert r.status == 200


def test_idle_connections_do_not_hold_up_a_stop(home):
    """SIGTERM (systemctl stop or restart): gunicorn waits for every open
    connection, up to its 30 s graceful timeout; connections still sending
    (or not sending) a header block get a short linger, not their whole
    header_timeout."""
    (home / "airlock.toml").write_text("header_timeout = 120\n")
    port = free_port()
    env = dict(os.environ, AIRLOCK_HOME=str(home), AIRLOCK_MDNS_ENABLED="0")
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--bind", f"127.0.0.1:{port}",
                             "--workers", "1", "--threads", "2"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    held = []
    try:
        wait_until_answers(proc, f"http://127.0.0.1:{port}/healthz", what="airlock serve", timeout=30)
        held = [_connect(port, b"GET /healthz HT") for _ in range(10)] + [_connect(port, b"") for _ in range(10)]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=PROMPT) as r:
            assert r.status == 200  # they are all accepted by now
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)  # gunicorn's graceful timeout is 30 s, the header_timeout 120 s
        except subprocess.TimeoutExpired:
            raise AssertionError("airlock serve still waits for idle connections 15 s after SIGTERM") from None
        assert proc.returncode == 0
        assert all(_closed_by_server(s, time.monotonic() + 5) for s in held)
    finally:
        for s in held:
            s.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_running_out_of_file_descriptors_does_not_kill_the_worker(home, tmp_path):
    """Under systemd's default soft limit of 1024 open files, about a thousand
    idle connections made gunicorn's accept() fail with EMFILE, which killed
    the worker and every download and check-in on it.  Here the limit is 128
    and 300 connections wait: the worker lowers its connection limit and
    lives on, and answers again once the idle ones are cut."""
    (home / "airlock.toml").write_text(f"header_timeout = {HEADER_TIMEOUT}\n")
    port = free_port()
    env = dict(os.environ, AIRLOCK_HOME=str(home), AIRLOCK_MDNS_ENABLED="0")
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["sh", "-c", 'ulimit -n 128 && exec "$@"', "sh", sys.executable, "-m", "appliance.cli",
                                 "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    held = []
    try:
        wait_until_answers(proc, f"http://127.0.0.1:{port}/healthz", what="airlock serve", timeout=30,
                           log=log.read_text)
        opened = time.monotonic()
        held = [_connect(port, b"") for _ in range(300)]  # the kernel queues what the worker does not accept
        deadline = opened + 3 * (HEADER_TIMEOUT + MARGIN)  # bounded: the idle ones are cut in rounds
        while "out of file descriptors" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        # every queued connection is accepted in turn and cut after the deadline
        assert all(_closed_by_server(s, deadline) for s in held)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=PROMPT) as r:
            assert r.status == 200
        text = log.read_text()
        assert "Exception in worker process" not in text and text.count("Booting worker") == 1, text[-3000:]
        assert "out of file descriptors (EMFILE)" in text, text[-3000:]  # the limit was reached
    finally:
        for s in held:
            s.close()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_check_ins_and_enrollments_have_threads_of_their_own(airlock, sim, home, tmp_path):
    """Every one of the worker's request threads is held by a request whose
    body stalls (here chunked check-ins, which a thread reads; a download
    to a slow device holds one the same way): /healthz waits for a thread,
    the control that they are all taken.  A check-in and an enrollment whose
    body has arrived still run at once, on the devices' own pool."""
    pin(airlock, sim, tmp_path)
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb")).code == 0
    (tmp_path / "token").write_text(TOKEN)
    assert airlock("devices", "auto-accept", "add", "--hardware", "plc-x", "--token-file", tmp_path / "token").code == 0

    with airlock_server(home, workers=1, threads=THREADS) as base:
        port = int(base.rsplit(":", 1)[1])
        device = _enrolled(base, "own-threads-1")

        held = [_connect(port, b"POST /api/v1/checkin HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                               b"Authorization: Bearer " + device.token.encode() + b"\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"fir")
                for _ in range(THREADS)]
        try:
            # the control: no request thread is free (bounded: one request, 2 s)
            with pytest.raises(TimeoutError):
                urllib.request.urlopen(f"{base}/healthz", timeout=2)
            client = ApiClient(base, timeout=PROMPT)
            r = client.post("/api/v1/checkin", {"firmware": "1.0.0", "metrics": {"uptime_s": 5}}, device.auth())
            assert r.status == 200, r.json
            r = client.post("/api/v1/enroll", SimDevice("own-threads-2").enrollment(enrollment_token=TOKEN))
            assert r.status == 200, r.json
            client.close()
        finally:
            for s in held:
                s.close()
        with urllib.request.urlopen(f"{base}/healthz", timeout=PROMPT) as r:
            assert r.status == 200


def _cut_without_reading(s: socket.socket, until: float) -> bool:
    """True once the server has closed ``s`` (a reset, or its end of the
    stream) before ``until`` (monotonic), found without reading a byte: a
    client that reads would let the server's answers through."""
    poller = select.poll()
    poller.register(s, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    while time.monotonic() < until:
        for _fd, events in poller.poll(max(1, int(1000 * min(0.5, until - time.monotonic())))):
            if events & (select.POLLRDHUP | select.POLLHUP | select.POLLERR):
                return True
    return False


def test_clients_that_never_take_their_answers_are_cut_and_give_the_devices_threads_back(airlock, home, tmp_path):
    """Clients that pipeline check-ins or enrollments and never read the
    answers: once the answers fill their sockets' buffers, the threads
    answering them cannot send.  As many such clients as the devices' pool
    has threads (half of them answered by the check-in fast path, half by
    Flask): the server cuts each within ``header_timeout`` of its send
    making no progress (before, they held the pool's threads for good),
    without an error in its log, and devices check in after."""
    (home / "airlock.toml").write_text(f"header_timeout = {HEADER_TIMEOUT}\n")
    (tmp_path / "token").write_text(TOKEN)
    assert airlock("devices", "auto-accept", "add", "--hardware", "plc-x", "--token-file", tmp_path / "token").code == 0
    requests = [(b"POST /api/v1/checkin HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 2\r\n\r\n{}"),  # no token: a 401 each, kept alive, from the fast path
                (b"POST /api/v1/enroll HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 2\r\n\r\n{}")]  # not an enrollment: a 400 each, kept alive, from Flask
    with airlock_server(home, workers=1, threads=THREADS) as base:
        port = int(base.rsplit(":", 1)[1])
        device = _enrolled(base, "never-reads-1")
        # enough answers to fill the largest send buffer the kernel may give the server's socket, twice
        send_buffer_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
        floods = []
        for request, status in zip(requests, (b"401", b"400"), strict=True):
            with _connect(port, request) as probe:
                answer = probe.recv(1 << 16)
            assert answer.startswith(b"HTTP/1.1 " + status + b" ") and b"keep-alive" in answer.lower(), answer
            floods.append(request * (2 * send_buffer_max // len(answer) + 1))

        hostile = []
        for _ in range(THREADS):  # the devices' pool has min(32, threads) threads
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
            s.connect(("127.0.0.1", port))
            hostile.append(s)

        def flood(s: socket.socket, data: bytes) -> None:
            s.settimeout(3 * (HEADER_TIMEOUT + MARGIN))  # bounded: the server stops reading once it cannot answer
            with contextlib.suppress(OSError):
                s.sendall(data)

        senders = [threading.Thread(target=flood, args=(s, floods[i % 2])) for i, s in enumerate(hostile)]
        for t in senders:
            t.start()
        try:
            until = time.monotonic() + 3 * (HEADER_TIMEOUT + MARGIN)  # filling the buffers takes a while too
            assert all(_cut_without_reading(s, until) for s in hostile), "a client that never reads was not cut"
            client = ApiClient(base, timeout=PROMPT)
            r = client.post("/api/v1/checkin", {"firmware": "1.0.0", "metrics": {"uptime_s": 5}}, device.auth())
            assert r.status == 200, r.json
            client.close()
        finally:
            for s in hostile:
                s.close()
            for t in senders:
                t.join(timeout=3 * (HEADER_TIMEOUT + MARGIN))
    log = (home / "serve.log").read_text()
    assert "Socket error processing request" not in log and "Traceback" not in log, log[-3000:]
