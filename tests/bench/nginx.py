"""Debian's nginx serving a folder on a free loopback port, from a
generated config in a temporary prefix (``daemon off;``, no access log)."""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path

from tests.support.server import free_port, wait_until_answers

CONFIG = """\
daemon off;
{user}
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    types {{ application/json json; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


@contextmanager
def nginx_server(nginx: str, root: Path, prefix: Path, *, workers: int = 2, probe: str = "/", timeout: float = 15.0):
    """Serve ``root``; yields the base URL; stops nginx on exit."""
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # As root, nginx's workers would run as nobody, who cannot enter a 0700 temp folder.
    user = "user root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(CONFIG.format(user=user, workers=workers, prefix=prefix, port=port, root=root))
    log = open(prefix / "stderr.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(proc, base + probe, what="nginx", timeout=timeout, interval=0.05,
                           log=lambda: " ".join(p.read_text() for p in (prefix / "stderr.log", prefix / "error.log")
                                                if p.exists()))
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the master and its own workers
            proc.wait()
        log.close()
