"""``airlock serve``: gunicorn with threaded workers.

gthread workers keep a slow firmware download on one thread while the
worker's other threads answer metadata polls; sync workers would block (and
kill long downloads at their timeout).  The app is built in each worker
after the fork, so no database connection crosses a fork.
"""

from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication

from appliance.importer import reconcile_if_idle
from appliance.mdns_supervisor import start_supervised
from server import create_app
from server.settings import Settings

logger = logging.getLogger(__name__)


class AirlockServer(BaseApplication):
    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__()

    def load_config(self):
        s = self.settings
        for key, value in {
            "bind": [s.bind],
            "workers": s.worker_count,
            # gthread, with a deadline for the header block (see serve_worker.py)
            "worker_class": "appliance.serve_worker.HeaderDeadlineWorker",
            "threads": s.threads,
            "timeout": 60,  # s without a heartbeat, not a cap on a download
            "graceful_timeout": 30,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": s.log_level.lower(),
            "proc_name": "airlock",
            "preload_app": False,
            # gunicorn >= 24 opens a control socket under $HOME by default: an
            # appliance service has no business writing there
            "control_socket_disable": True,
        }.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self):
        return create_app(self.settings)


def serve(settings: Settings) -> None:
    # The service logs at the `log_level` setting (the CLI's other commands
    # keep to warnings); gunicorn's workers inherit it.
    logging.getLogger().setLevel(settings.log_level.upper())
    # Fail here, with one line, rather than in every worker.
    create_app(settings)
    # An import cut short by a crash or power loss: repair its record and
    # leftovers before devices are served (skipped while an import runs).
    repaired = reconcile_if_idle(settings)
    if repaired:
        logger.warning("start-up reconciliation: removed %d leftovers, recorded imports %s",
                       len(repaired.removed), repaired.recorded)
    # mDNS runs in its own supervised process, started before gunicorn forks
    # (zeroconf's threads must never be in a forked worker).
    mdns = start_supervised(settings)
    logger.info("serving on %s; gunicorn workers: %d, threads per worker: %d", settings.bind, settings.worker_count,
                settings.threads)
    try:
        AirlockServer(settings).run()
    finally:
        if mdns is not None:
            mdns.stop()
