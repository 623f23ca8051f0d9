"""Helpers shared by the benchmarks: a scratch folder under /tmp, the
``airlock`` CLI in a subprocess, tools installed with apt-get, the page cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
_STARTED = time.monotonic()


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the results."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


class Scratch:
    """A temporary folder under /tmp, removed on exit (also on error)."""

    def __init__(self, prefix: str = "airlock-bench-"):
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def airlock(home: Path, *args: str, timeout: float = 120.0) -> str:
    """Run ``airlock --home HOME ARGS`` in a subprocess; its stdout, or an error."""
    cmd = [sys.executable, "-m", "appliance.cli", "--home", str(home), *map(str, args)]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"`airlock {' '.join(map(str, args))}` failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def new_home(home: Path, repo: str, root: bytes) -> Path:
    """A fresh appliance home with ``repo`` pinned to ``root``."""
    airlock(home, "init")
    root_file = home.parent / f"{home.name}-{repo}-root.json"
    root_file.write_bytes(root)
    airlock(home, "repo", "add", repo, "--root", str(root_file), "--fingerprint", hashlib.sha256(root).hexdigest())
    return home


def which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin")


def ensure_tools(tools: dict[str, str]) -> dict[str, str]:
    """``{binary: debian package}``: install what is missing with apt-get
    (non-interactive); returns ``{binary: path}``."""
    missing = sorted({pkg for binary, pkg in tools.items() if which(binary) is None})
    if missing:
        if os.geteuid() != 0:
            raise RuntimeError(f"missing {', '.join(missing)}: run `sudo apt-get install -y {' '.join(missing)}`")
        log(f"installing {' '.join(missing)} with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
            r = subprocess.run(cmd, check=False, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=900)
            if r.returncode != 0:
                raise RuntimeError(f"`{' '.join(cmd)}` failed: {r.stderr.strip()[-500:]}")
    paths = {binary: which(binary) for binary in tools}
    if None in paths.values():
        raise RuntimeError(f"still missing after apt-get: {[b for b, p in paths.items() if p is None]}")
    return paths


def drop_page_cache() -> bool:
    """``sync; echo 3 > /proc/sys/vm/drop_caches``; False where not permitted
    (containers)."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        return False
    return True


def read_through(paths: list[Path]) -> None:
    """Read files once so that they sit in the page cache."""
    buf = bytearray(8 << 20)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def serve_cpu_seconds(base: str) -> float:
    """CPU seconds (user + system) used so far by the `airlock serve` bound
    to ``base`` (http://127.0.0.1:PORT): its master and every worker, found
    by the bind address on their command line (workers are forks)."""
    bind = base.split("://", 1)[1].encode()
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            if b"serve" not in argv or bind not in argv:
                continue
            fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def user_cpu_seconds(user: str) -> float:
    """CPU seconds used so far by the processes of ``user`` (a private
    PostgreSQL cluster's server runs as ``postgres``), with what their
    exited children used (the backends of closed connections)."""
    import pwd

    uid = pwd.getpwnam(user).pw_uid
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")
