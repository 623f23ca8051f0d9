"""``timestamp.json`` polls through the TLS front (nginx from
docs/nginx-airlock-site.conf, HTTPS, keep-alive connections) next to bare
nginx serving the same ``HOME/public`` tree with the same certificate (a
``root`` and a ``listen ... ssl``, nothing else).  The aim: the front keeps
at least 0.9x of bare nginx's requests per second, so its locations and
headers cost polls little.  A second row puts the front next to bare nginx
over plain http: the price of TLS itself, which on this 2-core machine wrk
pays too (its decryption shares the cores with nginx)."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tests.bench.common import airlock, ensure_tools, log
from tests.bench.nginx import nginx_server
from tests.bench.serve_bench import PATH, WORKERS, _published_home
from tests.bench.wrk import WrkResult, run_wrk
from tests.support.server import airlock_server, free_port
from tests.support.tls_front import pinned_context, tls_front

AIM_RATIO = 0.9
WARMUP_SECONDS = 2


def _measure(wrk: str, url: str, expected: bytes, connections: int, seconds: int,
             context: ssl.SSLContext | None = None) -> WrkResult:
    with urllib.request.urlopen(url, timeout=5, context=context) as r:
        if r.read() != expected:
            raise RuntimeError(f"{url} does not serve the published bytes")
    run_wrk(wrk, url, threads=2, connections=connections, seconds=WARMUP_SECONDS)
    result = run_wrk(wrk, url, threads=2, connections=connections, seconds=seconds)
    log(f"  {result.requests_per_second:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
        f"{result.errors} errors")
    return result


BARE_TLS = """daemon off;
{user}
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    types {{ application/json json; }}
    sendfile on;
    keepalive_requests 100000;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {home}/tls/cert.pem;
        ssl_certificate_key {home}/tls/key.pem;
        root {home}/public;
    }}
}}
"""


@contextmanager
def bare_tls_nginx(nginx: str, home: Path, prefix: Path, workers: int):
    """nginx with only a root and the appliance's certificate; yields its https base URL."""
    prefix.mkdir(parents=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(BARE_TLS.format(user="user root;" if os.geteuid() == 0 else "", workers=workers,
                                    prefix=prefix, port=port, home=home))
    proc = subprocess.Popen([nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)],
                            stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"https://127.0.0.1:{port}"
    try:
        for _ in range(300):  # up to 15 s
            try:
                with urllib.request.urlopen(base + PATH, timeout=1, context=pinned_context()):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("nginx (bare, TLS) exited") from None
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run(scratch: Path, *, seconds: int, connections: int) -> list[tuple[str, str, str, str, str]]:
    tools = ensure_tools({"nginx": "nginx", "wrk": "wrk"})
    home = _published_home(scratch / "tls")
    airlock(home, "tls", "create", "--name", "127.0.0.1")
    expected = (home / "public" / PATH.lstrip("/")).read_bytes()

    log(f"nginx bare, plain http, {WORKERS} workers: wrk {seconds} s")
    with nginx_server(tools["nginx"], home / "public", scratch / "tls" / "bare", workers=WORKERS, probe=PATH) as base:
        bare = _measure(tools["wrk"], base + PATH, expected, connections, seconds)

    log(f"nginx bare, https, same certificate, {WORKERS} workers: wrk {seconds} s")
    with bare_tls_nginx(tools["nginx"], home, scratch / "tls" / "bare-tls", WORKERS) as base:
        bare_tls = _measure(tools["wrk"], base + PATH, expected, connections, seconds, pinned_context())

    log(f"TLS front (docs/nginx-airlock-site.conf), https, {WORKERS} workers: wrk {seconds} s")
    (home / "airlock.toml").write_text("behind_proxy = 1\n")
    with airlock_server(home, workers=1, threads=8) as app, \
            tls_front(home, app.removeprefix("http://"), scratch / "tls" / "front", http_port=free_port(),
                      https_port=free_port(), workers=WORKERS) as front:
        tls = _measure(tools["wrk"], front.https + PATH, expected, connections, seconds, pinned_context())

    ratio = tls.requests_per_second / bare_tls.requests_per_second
    verdict = "ok" if ratio >= AIM_RATIO and tls.errors == 0 else "MISSED"
    return [
        ("timestamp.json via TLS front, https keep-alive (req/s)", f"{tls.requests_per_second:,.0f}",
         f"{bare_tls.requests_per_second:,.0f} bare nginx https", f"{ratio:.2f}", f">= {AIM_RATIO} {verdict}"),
        ("timestamp.json via TLS front p99 (ms)", f"{tls.p99_ms:.2f}", f"{bare_tls.p99_ms:.2f} bare nginx https",
         f"{tls.p99_ms / bare_tls.p99_ms:.1f}", ""),
        ("timestamp.json via TLS front vs plain http (req/s)", f"{tls.requests_per_second:,.0f}",
         f"{bare.requests_per_second:,.0f} bare nginx http",
         f"{tls.requests_per_second / bare.requests_per_second:.2f}", "(the cost of TLS)"),
    ]
