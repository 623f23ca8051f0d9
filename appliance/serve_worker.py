"""gunicorn's gthread worker, with a deadline for a request's header block.

gunicorn's gthread worker hands every accepted connection to a thread, and
that thread then blocks until the request line and headers have arrived: a
client that sends half a request line (or, for its first five seconds,
nothing) and waits holds the thread until it closes.  Sixty such connections
from any host on the LAN kept an `airlock serve` of 1 x 4 threads from
answering anything (tests/functional/test_slow_clients.py).

This worker reads the header block itself, without a thread: an accepted
(or kept-alive) connection waits in the worker's poller, non-blocking, and
collects what arrives until the blank line that ends the headers, and then
a body of up to ``MAX_BODY_BYTES`` announced by ``Content-Length`` (a
check-in, an enrollment).  Only then does it go to a thread, with those
bytes handed to gunicorn's parser.  A connection whose header block (and
small body) is not complete ``header_timeout`` seconds after it was
accepted (or became readable again after a kept-alive request) is closed,
however it trickles; one whose header block grows past
``MAX_HEADER_BYTES`` gets a 431 answer and is closed.  Memory stays bounded:
at most ``worker_connections`` connections per worker, each holding at most
``MAX_HEADER_BYTES + MAX_BODY_BYTES``.

Larger or chunked bodies, and requests that ask for ``100 Continue``, are
read by the thread as gunicorn does it: such a body that stalls still holds
its thread (docs/hostile-cases.md).

Check-ins and enrollments whose body has arrived run on a pool of their own,
at most ``DEVICE_THREADS`` threads per worker; everything else (downloads,
the console, the rest of the API) on gunicorn's pool of ``threads``.  After
a power cut the whole fleet checks in at once.  On the shared pool, a
backlog of a second woke up to ``threads`` request threads per worker, and
the backlog then drained slowly or not at all (likely because the woken
threads take turns at the worker's GIL between their database calls): in 5
of 12 runs of the 50,000-device herd the check-in p99 went past a second,
once to 4 s for the last 35 s (docs/benchmarks.md).  With a pool of 32 the
backlog waits in the pool's queue and drains (7 runs of 7).  And no number of downloads
can take the threads the devices check in on, nor a herd those of the
downloads and the console.

TLS connections (none today: `airlock serve` speaks plain HTTP) go to a
thread as gunicorn does it, since their bytes are records, not headers; so
would HTTP/2 cleartext with prior knowledge, which gunicorn reads from the
socket itself (off: `http_protocols` stays gunicorn's default, HTTP/1 only).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import selectors
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

from appliance.fast_checkin import CheckinFastPath
from appliance.fast_metadata import MetadataFastPath, parse_plain
from server.requestlog import CHECKIN_PATH

logger = logging.getLogger(__name__)

DEFAULT_HEADER_TIMEOUT = 10.0  # seconds, when the app carries no settings
MAX_HEADER_BYTES = 32 * 1024  # bytes of request line and headers; gunicorn's own limits are checked after
MAX_BODY_BYTES = 16 * 1024  # bytes of a Content-Length body read before a thread is given
STOP_LINGER = 2.0  # seconds a stopping worker still waits for a header block already under way
NOTIFY_EVERY = 1.0  # seconds between heartbeats to the arbiter (whose timeout is 60 s)
DEVICE_THREADS = 32  # per worker, at most `threads`: the pool that runs check-ins and enrollments
# request lines whose requests run on the devices' pool (when their whole body has arrived)
DEVICE_REQUESTS = (f"POST {CHECKIN_PATH} ".encode(), b"POST /api/v1/enroll ")
FD_HEADROOM = 32  # file descriptors left for SQLite and files when the connections have used up the rest
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_UNSET = object()  # the fast path, before it is built
_SENDING = object()  # a fast answer still being sent
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")


class HeaderScanner:
    """Finds where a request's header block ends in a buffer that grows,
    looking at each byte about once (a client trickling one byte at a time
    must not make the worker rescan what it already saw)."""

    def __init__(self) -> None:
        self.start: int | None = None  # where the request line starts, past empty lines (RFC 9112 allows one)
        self.scanned = 0  # bytes already looked at

    def end(self, head: bytes | bytearray) -> int | None:
        """The offset just past the blank line that ends the header block,
        or None while it is incomplete."""
        if self.start is None:
            i = self.scanned
            while i < len(head) and head[i] in b"\r\n":
                i += 1
            self.scanned = i
            if i == len(head):
                return None
            self.start = i
        found = head.find(b"\r\n\r\n", max(self.start, self.scanned - 3))
        if found < 0:
            self.scanned = len(head)
            return None
        return found + 4


def header_end(head: bytes | bytearray) -> int | None:
    """Where the header block in ``head`` ends (just past the blank line), or None."""
    return HeaderScanner().end(head)


def header_complete(head: bytes | bytearray) -> bool:
    """True when ``head`` holds a whole request line and header block."""
    return header_end(head) is not None


def plain_start(head: bytes | bytearray, start: int) -> bool:
    """True when what comes before the request line at ``start`` is nothing
    or one CRLF: all gunicorn's parser accepts there (more, or a bare LF, it
    refuses with a 400, and so must the fast paths, by leaving it to it)."""
    return start == 0 or (start == 2 and head[:2] == b"\r\n")


def small_body_length(header: bytes) -> int:
    """The bytes of body to read with ``header`` (a complete header block)
    before a thread takes the request: its ``Content-Length`` when that is
    one plain number up to ``MAX_BODY_BYTES`` and nothing else bears on the
    body; otherwise 0, and the thread reads the body (gunicorn judges a
    malformed one)."""
    lengths = []
    for line in header.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        name = name.strip().lower()
        if not sep:
            continue
        if name in (b"transfer-encoding", b"expect"):  # chunked, or waiting for "100 Continue"
            return 0
        if name == b"content-length":
            lengths.append(value.strip())
    if len(lengths) != 1 or not lengths[0].isdigit() or len(lengths[0]) > 9:
        return 0
    length = int(lengths[0])
    return length if length <= MAX_BODY_BYTES else 0


def _send_timeout(conn: TConn, seconds: float) -> None:
    """Let a blocking send on ``conn`` wait at most ``seconds`` (0: for
    ever) for the client to take some of it; then it fails and the
    connection is closed.  A client that pipelines requests and never reads
    its answers would otherwise hold a thread of the devices' pool for good
    once its socket's buffers are full.  ``SO_SNDTIMEO``, not a Python
    socket timeout: gunicorn sets its sockets blocking again itself."""
    if getattr(conn, "send_timeout", 0) == seconds:
        return
    whole = int(seconds)
    with contextlib.suppress(OSError):  # a connection closed meanwhile: nothing to send on
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                             struct.pack("ll", whole, int((seconds - whole) * 1_000_000)))
        conn.send_timeout = seconds


def _bytes_waiting(sock: socket.socket) -> bool:
    """True when bytes from the client wait unread on ``sock`` (plain TCP)."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:  # nothing yet (EAGAIN), or a broken connection: gunicorn closes it
        return False


class HeaderDeadlineWorker(ThreadWorker):
    """A gthread worker that gives a connection a thread only once its
    header block has arrived, and closes it when that takes too long."""

    worker_connections: int  # gunicorn's, lowered when file descriptors run out

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = getattr(self.app, "settings", None)
        self.header_timeout = float(getattr(settings, "header_timeout", DEFAULT_HEADER_TIMEOUT))  # seconds
        # connection -> monotonic deadline; insertion order is deadline order
        # (every deadline is its start plus the same timeout)
        self.awaiting_headers: dict[TConn, float] = {}
        self.fast: MetadataFastPath | None | object = _UNSET  # built on first use, after the app is loaded
        self.checkin: CheckinFastPath | None | object = _UNSET  # likewise, in a request thread
        self.checkin_lock = threading.Lock()
        self.stop_linger_set = False
        self.notified = float("-inf")  # monotonic time of the last heartbeat
        self.device_pool: ThreadPoolExecutor | None = None  # started in run(), after the fork

    def notify(self) -> None:
        """The heartbeat the arbiter watches (a syscall on a temporary file):
        gunicorn's loop sends it at every turn, one per request under load;
        once a second is plenty for the arbiter's 60 s timeout."""
        now = time.monotonic()
        if now - self.notified >= NOTIFY_EVERY:
            self.notified = now
            super().notify()

    def accept(self, listener: Any) -> None:
        """gunicorn's accept, except that running out of file descriptors
        lowers this worker's connection limit instead of killing the worker
        (and every download and check-in it is serving)."""
        try:
            super().accept(listener)
        except OSError as e:
            if e.errno not in _OUT_OF_FDS:
                raise
            limit = max(1, self.nr_conns - FD_HEADROOM)
            if limit < self.worker_connections:
                logger.warning("out of file descriptors (%s) at %d connections: this worker now holds at most %d "
                               "(raise the service's LimitNOFILE to hold more)", errno.errorcode.get(e.errno, e.errno),
                               self.nr_conns, limit)
                self.worker_connections = limit  # gunicorn's loop stops accepting until some close
                self.max_keepalived = max(0, limit - self.cfg.threads)

    # Every way into a thread (accepted, kept-alive and readable again,
    # pipelined bytes left over) comes through here.
    def enqueue_req(self, conn: TConn) -> None:
        if self.cfg.is_ssl or conn.is_http2:
            super().enqueue_req(conn)
            return
        # bytes of the next request a kept-alive connection already sent
        early = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        self._collect(conn, early)

    def _collect(self, conn: TConn, early: bytes) -> None:
        """Start reading a request whose first bytes are ``early``."""
        conn.header = bytearray(early)
        conn.header_scanner = HeaderScanner()
        conn.header_needs = None  # total bytes to collect, once the header block is complete
        if self._collected(conn):
            self._dispatch(conn)
            return
        conn.sock.setblocking(False)
        self.awaiting_headers[conn] = time.monotonic() + self.header_timeout
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_header_bytes, conn))

    def on_client_socket_readable(self, conn: TConn, client: Any) -> None:
        # A kept-alive connection with a new request coming: read its header
        # block here too, and read what is there at once (the socket stays
        # registered, its callback switched: no poller round trip).
        self.keepalived_conns.remove(conn)
        if self.cfg.is_ssl or conn.is_http2:
            self.poller.unregister(client)
            self.enqueue_req(conn)
            return
        early = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        conn.header = bytearray(early)
        conn.header_scanner = HeaderScanner()
        conn.header_needs = None
        if self._collected(conn):  # a whole request already read ahead
            self.poller.unregister(client)
            self._dispatch(conn)
            return
        self.awaiting_headers[conn] = time.monotonic() + self.header_timeout
        self.poller.modify(client, selectors.EVENT_READ, partial(self._on_header_bytes, conn))
        self._on_header_bytes(conn, client)

    def _on_header_bytes(self, conn: TConn, _sock: Any) -> None:
        limit = conn.header_needs if conn.header_needs is not None else MAX_HEADER_BYTES
        try:
            chunk = conn.sock.recv(max(1, limit - len(conn.header)))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close_awaiting(conn)
            return
        if not chunk:  # the client went away
            self._close_awaiting(conn)
            return
        conn.header += chunk
        if self._collected(conn):
            del self.awaiting_headers[conn]
            self.poller.unregister(conn.sock)
            self._dispatch(conn)
        elif conn.header_needs is None and len(conn.header) >= MAX_HEADER_BYTES:
            with contextlib.suppress(OSError):
                conn.sock.send(_TOO_LARGE)
            self._close_awaiting(conn)

    @staticmethod
    def _collected(conn: TConn) -> bool:
        """True once the header block and any small body have arrived."""
        if conn.header_needs is None:
            end = conn.header_scanner.end(conn.header)
            if end is None:
                return False
            conn.header_end = end
            conn.header_needs = end + small_body_length(bytes(conn.header[:end]))
        return len(conn.header) >= conn.header_needs

    def _dispatch(self, conn: TConn) -> None:
        """Answer a plain metadata poll here, or hand the request to a thread."""
        while True:
            rest = self._answer_fast(conn)
            if rest is None:
                break
            if not isinstance(rest, bytes):  # still sending
                return
            if not self._next_request(conn, rest):
                return
        conn.data_ready = True  # gunicorn's worker must not wait for data again
        if self.device_pool is not None and self._for_devices(conn):
            _send_timeout(conn, self.header_timeout)
            future = self.device_pool.submit(self.handle, conn)
            future.add_done_callback(lambda done: self.method_queue.defer(self.finish_request, conn, done))
            return
        _send_timeout(conn, 0)  # a download may stall longer, and holds one of gunicorn's threads
        super().enqueue_req(conn)

    def _for_devices(self, conn: TConn) -> bool:
        """True for a check-in or an enrollment whose header block and whole
        body have arrived: on the devices' pool a thread never waits for a
        client to send (and waits ``header_timeout`` at most for it to take
        its answer: ``_send_timeout``)."""
        if self.cfg.is_ssl or conn.is_http2 or conn.header_needs is None \
                or conn.header_needs <= getattr(conn, "header_end", conn.header_needs):
            return False
        return conn.header.startswith(DEVICE_REQUESTS, conn.header_scanner.start or 0)

    def run(self) -> None:
        """Warm the poll path's cache before the first connection (after a
        power cut the whole fleet polls in the first seconds)."""
        fast = self._fast_path()
        if fast is not None:
            try:
                fast.warm_up()
            except Exception:  # noqa: BLE001 - polls fill the cache themselves then
                logger.exception("warming the metadata cache failed: polls fill it as they come")
        self.device_pool = ThreadPoolExecutor(max_workers=max(1, min(DEVICE_THREADS, self.cfg.threads)),
                                              thread_name_prefix="airlock-device")
        try:
            super().run()
        finally:
            self.device_pool.shutdown(wait=False, cancel_futures=True)

    def handle_quit(self, sig: Any, frame: Any) -> None:
        if self.device_pool is not None:
            self.device_pool.shutdown(wait=False, cancel_futures=True)
        super().handle_quit(sig, frame)

    # the fast path for metadata polls (appliance/fast_metadata.py) ------------
    def _fast_path(self) -> MetadataFastPath | None:
        if self.fast is _UNSET:
            settings = getattr(self.app, "settings", None)
            public_dir = getattr(settings, "public_dir", None)
            server = self.sockets[0].getsockname() if self.sockets else None
            self.fast = MetadataFastPath(public_dir, self.wsgi, server) if public_dir is not None else None
        return self.fast  # type: ignore[return-value]

    def _answer_fast(self, conn: TConn) -> bytes | object | None:
        """Send the answer to a plain metadata poll from the cache: the bytes
        after the request (the start of the next one), or ``_SENDING`` while
        a large answer is still being sent, or None: a thread must answer."""
        if self.cfg.is_ssl or not self.alive or not self.cfg.keepalive or conn.header_needs is None \
                or len(self.keepalived_conns) >= self.max_keepalived or self.nr + 1 >= self.max_requests:
            return None
        fast = self._fast_path()
        if fast is None:
            return None
        start = conn.header_scanner.start or 0
        if not plain_start(conn.header, start):
            return None
        req = parse_plain(bytes(conn.header[start:conn.header_needs]))
        if req is None:
            return None
        try:
            response = fast.answer(req, conn.client)
        except Exception:  # noqa: BLE001 - the view answers instead, and says what went wrong
            logger.exception("the metadata fast path failed on %s: the view answers it", req.path)
            return None
        if response is None:
            return None
        self.nr += 1
        rest = bytes(conn.header[conn.header_needs:])
        conn.header = bytearray()
        view = memoryview(response)
        if conn.sock.getblocking():  # a thread answered its last request
            conn.sock.setblocking(False)
        try:
            view = view[conn.sock.send(view):]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.nr_conns -= 1
            conn.close()
            return _SENDING
        if view:  # a full send buffer: the rest when the socket is writable, within the header deadline
            self.awaiting_headers[conn] = time.monotonic() + self.header_timeout
            self.poller.register(conn.sock, selectors.EVENT_WRITE, partial(self._on_writable, conn, view, rest))
            return _SENDING
        return rest

    def _on_writable(self, conn: TConn, view: memoryview, rest: bytes, _sock: Any) -> None:
        try:
            view = view[conn.sock.send(view):]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close_awaiting(conn)
            return
        if view:
            self.poller.modify(conn.sock, selectors.EVENT_WRITE, partial(self._on_writable, conn, view, rest))
            return
        del self.awaiting_headers[conn]
        self.poller.unregister(conn.sock)
        if self._next_request(conn, rest):
            self._dispatch(conn)

    def _next_request(self, conn: TConn, early: bytes) -> bool:
        """After a fast answer: True when ``early`` already holds the next
        whole request (dispatch it); otherwise the connection waits, kept
        alive (nothing sent yet) or collecting its header block."""
        if not early:
            conn.set_timeout()
            self.keepalived_conns.append(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))
            return False
        conn.header = bytearray(early)
        conn.header_scanner = HeaderScanner()
        conn.header_needs = None
        if self._collected(conn):
            return True
        self.awaiting_headers[conn] = time.monotonic() + self.header_timeout
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_header_bytes, conn))
        return False

    def _close_awaiting(self, conn: TConn) -> None:
        self.awaiting_headers.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    def murder_keepalived(self, force: bool = False) -> None:
        """gunicorn's, except that a kept-alive connection whose request
        arrived after the poller's last look is answered, not closed with
        the request unread (the client would see a reset and no answer):
        under load a turn of the loop takes milliseconds, and a request can
        arrive on a connection in the turn its keep-alive time runs out."""
        if not force and not self.cfg.is_ssl:
            now = time.monotonic()
            arrived = [conn for conn in itertools.takewhile(lambda c: c.timeout <= now, self.keepalived_conns)
                       if _bytes_waiting(conn.sock)]
            for conn in arrived:
                self.on_client_socket_readable(conn, conn.sock)
        super().murder_keepalived(force)

    def murder_pending(self) -> None:
        """Also close the connections whose header block is late (called by
        gunicorn's loop at least once a second, stopping or not)."""
        super().murder_pending()
        now = time.monotonic()
        if not self.alive and not self.stop_linger_set:
            # Stopping: idle connections must not hold the restart up for
            # their whole header_timeout (gunicorn waits for every connection)
            self.stop_linger_set = True
            for conn, deadline in self.awaiting_headers.items():
                self.awaiting_headers[conn] = min(deadline, now + STOP_LINGER)  # order kept
        late = []
        for conn, deadline in self.awaiting_headers.items():
            if deadline > now:
                break
            late.append(conn)
        for conn in late:
            logger.debug("closed a connection from %s: no complete request header within %g s",
                         conn.client, self.header_timeout)
            self._close_awaiting(conn)

    def handle(self, conn: TConn) -> Any:
        """In the thread: answer a plain check-in, or give gunicorn's parser
        the header bytes read so far."""
        header = getattr(conn, "header", b"")
        if header:
            conn.header = bytearray()
            conn.sock.setblocking(True)
            conn.init()
            answered = self._answer_checkin(conn, header)
            if answered is not None:
                return answered
            conn.parser.unreader.unread(bytes(header))
        return super().handle(conn)

    def handle_request(self, req: Any, conn: TConn) -> Any:
        """gunicorn's, except that an answer the client did not take within
        ``header_timeout`` (``_send_timeout``: a request on the devices'
        pool) closes the connection with a debug line, not an error's
        traceback: a client could make those as fast as it is cut."""
        try:
            return super().handle_request(req, conn)
        except BlockingIOError:  # a blocking send timed out: only SO_SNDTIMEO makes that
            logger.debug("closed a connection from %s: it did not take its answer within %g s", conn.client,
                         self.header_timeout)
            return False

    # the fast path for check-ins (appliance/fast_checkin.py) ------------------
    def _checkin_path(self) -> CheckinFastPath | None:
        if self.checkin is _UNSET:
            with self.checkin_lock:  # threads: one build
                if self.checkin is _UNSET:
                    extensions = getattr(self.wsgi, "extensions", None)
                    settings = getattr(self.app, "settings", None)
                    self.checkin = (CheckinFastPath(self.wsgi, behind_proxy=bool(getattr(settings, "behind_proxy",
                                                                                            False)))
                                    if isinstance(extensions, dict) and "airlock.devices" in extensions else None)
        return self.checkin  # type: ignore[return-value]

    def _answer_checkin(self, conn: TConn, header: bytes | bytearray) -> bool | None:
        """In the thread: answer a plain check-in in ``header`` (the header
        block and its whole body) and return whether the connection stays
        open; or None before anything is done: gunicorn and Flask answer."""
        end = getattr(conn, "header_end", None)
        if self.cfg.is_ssl or conn.is_http2 or end is None or conn.header_needs is None or not self.alive \
                or not self.cfg.keepalive or len(self.keepalived_conns) >= self.max_keepalived \
                or self.nr + 1 >= self.max_requests:
            return None
        fast = self._checkin_path()
        if fast is None:
            return None
        start = conn.header_scanner.start or 0
        if not plain_start(header, start):
            return None
        req = fast.parse(bytes(header[start:end]), bytes(header[end:conn.header_needs]))
        if req is None:
            return None
        self.nr += 1
        try:
            response = fast.answer(req, conn.client[0] if isinstance(conn.client, tuple) else None)
        except Exception:  # noqa: BLE001 - the check-in may be stored: never answer it twice, never 500 it
            logger.exception("answering a check-in from %s failed after it was handled: connection closed",
                             conn.client)
            return False
        try:
            conn.sock.sendall(response)
        except OSError:
            return False  # the device went away: gunicorn closes the connection
        rest = bytes(header[conn.header_needs:])
        if rest:  # the next request, pipelined: gunicorn hands it back to enqueue_req
            conn.parser.unreader.unread(rest)
        return True

