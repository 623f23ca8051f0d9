"""The reference for the poll path: a plain Flask app serving the published
metadata with ``send_from_directory``, under the same gunicorn settings as
``airlock serve`` (workers, threads, keepalive, timeouts).

``flask_reference(public, worker_class=...)`` runs it on a free loopback
port; the app itself is :data:`app` (``tests.bench.flask_reference:app``),
serving ``$BENCH_PUBLIC_DIR/repos/<name>/metadata/<file>``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask, send_from_directory

from tests.support.server import free_port, wait_until_answers

app = Flask(__name__, static_folder=None)
PUBLIC = Path(os.environ.get("BENCH_PUBLIC_DIR", "/nonexistent"))


@app.get("/repos/<name>/metadata/<path:filename>")
def metadata(name: str, filename: str):
    return send_from_directory(PUBLIC / "repos" / name / "metadata", filename)


@contextmanager
def flask_reference(public: Path, log: Path, *, workers: int, threads: int, worker_class: str,
                    probe: str) -> Iterator[str]:
    """gunicorn running :data:`app` with ``airlock serve``'s settings
    (appliance/serve.py) and ``worker_class``; yields its base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
           "--threads", str(threads), "--worker-class", worker_class, "--timeout", "60", "--graceful-timeout", "30",
           "--keep-alive", "5", "--log-level", "warning", "--no-control-socket", "tests.bench.flask_reference:app"]
    env = dict(os.environ, BENCH_PUBLIC_DIR=str(public))
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=Path(__file__).resolve().parents[2])
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(proc, base + probe, what="the Flask reference", timeout=30, log=log.read_text)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
