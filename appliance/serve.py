"""``airlock serve``: gunicorn with threaded workers.

gthread workers keep a slow firmware download on one thread while the
worker's other threads answer metadata polls; sync workers would block (and
kill long downloads at their timeout).  The app is built in each worker
after the fork, and the arbiter closes the models' database (which the
start-up reconciliation used) before it forks, so no database connection
crosses a fork.

The listening socket is bound here, before anything is announced (the
"serving on" line, mDNS), and handed to gunicorn as ``fd://N``: an address
in use is one refusal line and nothing started, where gunicorn alone would
retry five times after mDNS had already advertised the address.
"""

from __future__ import annotations

import errno
import logging
import socket

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from appliance.export import run_export
from appliance.import_job import start_job
from appliance.importer import reconcile_if_idle
from appliance.logs import KeyValueFormatter
from appliance.mdns_supervisor import start_supervised
from server import close_models_database, create_app
from server.alerts.sweep import Sweeper
from server.settings import Settings
from signing.exceptions import AirlockError

logger = logging.getLogger(__name__)

LISTEN_BACKLOG = 2048  # connections the kernel queues before gunicorn accepts them (gunicorn's default)


class ServeError(AirlockError):
    """``airlock serve`` cannot start."""


def listen(bind: str) -> socket.socket:
    """A socket listening on ``bind`` (HOST:PORT, validated by the settings),
    or a :class:`ServeError` that says why not and what to do."""
    host, _, port = bind.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise ServeError(f"cannot listen on {bind}: {host!r} is not a known address ({e.strerror}): give --bind "
                         "(or the bind setting) an IP address of this machine") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            reason = (f"the address is already in use: stop what listens there (`ss -ltnp 'sport = :{port}'` names "
                      "it), or give --bind (or the bind setting) another port")
        elif e.errno == errno.EADDRNOTAVAIL:
            reason = f"{host} is not an address of this machine: give --bind (or the bind setting) one of its addresses"
        elif e.errno == errno.EACCES:
            reason = ("permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE; give --bind (or the "
                      "bind setting) a port from 1024 up")
        else:
            reason = e.strerror or str(e)
        raise ServeError(f"cannot listen on {bind}: {reason}") from None
    return sock


class KeyValueGunicornLog(GunicornLogger):
    """gunicorn's own lines (workers booting, a worker killed) as key=value
    lines like every other, on stderr (no access log: the app logs each
    request with its id, server/requestlog.py)."""

    def _set_handler(self, log, output, fmt, stream=None):
        super()._set_handler(log, output, KeyValueFormatter(timestamps=False), stream)


class AirlockServer(BaseApplication):
    def __init__(self, settings: Settings, listener: socket.socket):
        self.settings = settings
        self.listener_fd = listener.detach()  # gunicorn takes it over (and closes it)
        super().__init__()

    def load_config(self):
        s = self.settings
        for key, value in {
            "bind": [f"fd://{self.listener_fd}"],
            "workers": s.worker_count,
            # gthread, with a deadline for the header block (see serve_worker.py)
            "worker_class": "appliance.serve_worker.HeaderDeadlineWorker",
            "threads": s.threads,
            "timeout": 60,  # s without a heartbeat, not a cap on a download
            "graceful_timeout": 30,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "logger_class": "appliance.serve.KeyValueGunicornLog",
            "loglevel": s.log_level.lower(),
            "proc_name": "airlock",
            "preload_app": False,
            # gunicorn >= 24 opens a control socket under $HOME by default: an
            # appliance service has no business writing there
            "control_socket_disable": True,
            # alerts no request reports (devices gone silent, expiring metadata): one worker sweeps at a time
            "post_worker_init": lambda _worker: Sweeper(s).start(),
            # gunicorn would take X-Forwarded-Proto from any loopback client on
            # its own; only the behind_proxy setting decides (server/__init__.py)
            "forwarded_allow_ips": "",
        }.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self):
        return create_app(self.settings, import_runner=start_job, export_runner=run_export)


def serve(settings: Settings) -> None:
    # The service logs at the `log_level` setting (the CLI's other commands
    # keep to warnings); gunicorn's workers inherit it.
    logging.getLogger().setLevel(settings.log_level.upper())
    # Fail here, with one line, rather than in every worker.
    create_app(settings)
    # Bound before anything is changed or announced: a refusal leaves nothing started.
    listener = listen(settings.bind)
    # An import cut short by a crash or power loss: repair its record and
    # leftovers before devices are served (skipped while an import runs).
    repaired = reconcile_if_idle(settings)
    if repaired:
        logger.warning("start-up reconciliation: removed %d leftovers, recorded imports %s",
                       len(repaired.removed), repaired.recorded)
    # the download counts of earlier runs, folded before any worker writes its own
    from server.downloads import fold

    fold(settings)
    # mDNS runs in its own supervised process, started before gunicorn forks
    # (zeroconf's threads must never be in a forked worker).
    mdns = start_supervised(settings)
    # one key=value line, like every other this service writes (journald keeps them)
    logger.info("airlock serving on http://%s/ (home %s); gunicorn workers: %d, threads per worker: %d",
                settings.bind, settings.home, settings.worker_count, settings.threads,
                extra={"kv": {"event": "serving", "bind": settings.bind, "home": str(settings.home),
                              "workers": settings.worker_count, "threads": settings.threads}})
    # No database connection crosses the fork: reconciliation above used the
    # models' connection.  Two workers sharing one inherited PostgreSQL
    # connection read each other's answers (a worker then failed to boot, and
    # gunicorn stopped the whole server); SQLite says never to use a
    # connection across a fork (a child holds none of its parent's locks).
    close_models_database()
    try:
        AirlockServer(settings, listener).run()
    finally:
        if mdns is not None:
            mdns.stop()
