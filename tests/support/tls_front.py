"""Debian's nginx as the appliance's TLS front, configured from the docs
themselves: docs/nginx-airlock-site.conf with its install paths pointed at
the test's home, snippet, ports and `airlock serve` (nothing else changed),
inside a minimal ``http { }`` of our own (``daemon off;``, a temp prefix)."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "docs" / "nginx-airlock-site.conf"
SNIPPET = ROOT / "docs" / "nginx-airlock.conf"

OUTER = """daemon off;
{user}
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    types {{ application/json json; text/html html; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {site};
}}
"""


@dataclass(frozen=True)
class Front:
    http: str  # http://127.0.0.1:PORT: TUF files only
    https: str  # https://127.0.0.1:PORT: everything
    prefix: Path


def site_config(home: Path, app: str, http_port: int, https_port: int, host: str = "127.0.0.1") -> str:
    """docs/nginx-airlock-site.conf for this home, app address and ports."""
    text = SITE.read_text()
    replacements = {
        "/etc/nginx/snippets/airlock-repos.conf": str(SNIPPET),
        "listen 80;": f"listen {host}:{http_port};",
        "listen 443 ssl;": f"listen {host}:{https_port} ssl;",
        "server 127.0.0.1:8080;": f"server {app};",
    }
    for old, new in replacements.items():
        assert old in text, f"docs/nginx-airlock-site.conf no longer holds {old!r}: update tests/support/tls_front.py"
        text = text.replace(old, new)
    text = "\n".join(line for line in text.splitlines() if "listen [::]" not in line)  # no IPv6 here
    snippet_home = "/var/lib/airlock"
    return text.replace(snippet_home, str(home))


def pinned_context() -> ssl.SSLContext:
    """A client context that accepts any certificate: tests compare its fingerprint themselves."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@contextmanager
def tls_front(home: Path, app: str, prefix: Path, *, http_port: int, https_port: int, workers: int = 1,
              host: str = "127.0.0.1", timeout: float = 15.0) -> Iterator[Front]:
    """nginx in front of ``app`` (HOST:PORT of `airlock serve`), serving
    ``home``'s tree; the snippet's /var/lib/airlock is the home (the snippet
    is copied with that one path changed)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(binary).exists(), "nginx is needed for this test: `make test` installs it (tests/prereqs.sh)"
    prefix.mkdir(parents=True, exist_ok=True)
    snippet = prefix / "airlock-repos.conf"
    snippet.write_text(SNIPPET.read_text().replace("/var/lib/airlock", str(home)))
    site = prefix / "site.conf"
    site.write_text(site_config(home, app, http_port, https_port, host).replace(str(SNIPPET), str(snippet)))
    conf = prefix / "nginx.conf"
    # as root, nginx's workers would run as nobody, who cannot enter the test's 0700 temp folders
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(OUTER.format(user=user, workers=workers, prefix=prefix, site=site))
    log = open(prefix / "stderr.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    front = Front(f"http://{host}:{http_port}", f"https://{host}:{https_port}", prefix)

    def logs() -> str:
        return " ".join(p.read_text() for p in (prefix / "stderr.log", prefix / "error.log") if p.exists())

    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {logs()}")
            try:
                with urllib.request.urlopen(front.https + "/healthz", timeout=2, context=pinned_context()) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not answer on {front.https}: {logs()}")
            time.sleep(0.05)
        yield front
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
