"""``make demo``: a vendor, a USB stick and an appliance, on one machine.

Runs the very commands a vendor and plant IT would type (each is printed
before it runs), in the scratch folder ``./demo``: ``airlock-sign`` builds
and signs a repository and writes a bundle; ``airlock`` is initialised, the
root pinned by fingerprint, the bundle imported; then ``airlock serve``
listens on 127.0.0.1 until Ctrl-C.  While it serves, ``demo/.lock`` is
held, and a second ``make demo`` is refused instead of wiping the folder
from under the server.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

SCRATCH = Path(os.environ.get("AIRLOCK_DEMO_DIR", "demo")).resolve()
BIN = Path(sys.executable).parent
LOCK = ".lock"  # held while a demo runs from SCRATCH

FETCH_SCRIPT = '''"""Fetch and verify a target like a device would, with python-tuf."""
import sys
from pathlib import Path
from tuf.ngclient import Updater

base, target = sys.argv[1], sys.argv[2]
here = Path(__file__).parent
meta, out = here / "device" / "metadata", here / "device" / "downloads"
meta.mkdir(parents=True, exist_ok=True)
out.mkdir(parents=True, exist_ok=True)
updater = Updater(metadata_dir=str(meta), metadata_base_url=f"{base}/repos/acme/metadata/",
                  target_base_url=f"{base}/repos/acme/targets/", target_dir=str(out),
                  bootstrap=(here / "vendor/published/metadata/1.root.json").read_bytes())
updater.refresh()
info = updater.get_targetinfo(target)
if info is None:
    sys.exit(f"no target {target}")
path = updater.find_cached_target(info) or updater.download_target(info)
print(f"verified {target}: {info.length} bytes, {info.custom} -> {path}")
'''


def run(*args: str | Path, capture: bool = False) -> str:
    shown = " ".join(shlex.quote(str(a)) for a in args).replace(str(SCRATCH), "demo")
    print(f"$ {shown}", flush=True)
    proc = subprocess.run([str(a) for a in args], text=True, capture_output=capture)
    if proc.returncode != 0:
        if capture:
            sys.stderr.write(proc.stderr)
        sys.exit(f"demo: step failed: {shown}")
    if capture:
        print(proc.stdout, end="")
    return proc.stdout if capture else ""


def free_port(preferred: int = 8080) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def hold_scratch_lock() -> int:
    """Lock ``demo/.lock`` for as long as this demo
    (and the `airlock serve` it becomes) runs, or exit naming the demo that
    holds it: wiping the folder would pull the keys and home from under a
    running server."""
    SCRATCH.mkdir(exist_ok=True)
    fd = os.open(SCRATCH / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        sys.exit(f"demo: a demo is already running from {SCRATCH} (pid {holder or '?'}): stop it (Ctrl-C) first, "
                 f"or run this one elsewhere with AIRLOCK_DEMO_DIR=OTHER_FOLDER make demo")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    os.set_inheritable(fd, True)  # `airlock serve` (exec'd below) keeps holding it
    return fd


def main() -> None:
    hold_scratch_lock()
    for old in SCRATCH.iterdir():  # the last demo's, all but the lock
        if old.name != LOCK:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
    sign, airlock = BIN / "airlock-sign", BIN / "airlock"
    secret = SCRATCH / "passphrase"
    secret.write_text("demo vendor passphrase\n")
    secret.chmod(0o600)
    admin_pw = SCRATCH / "admin-password"
    admin_pw.write_text("demo-admin-password\n")
    admin_pw.chmod(0o600)
    vendor, usb, home = SCRATCH / "vendor", SCRATCH / "usb", SCRATCH / "home"
    firmware = SCRATCH / "firmware"
    firmware.mkdir()
    (firmware / "plc-x-1.2.0.bin").write_bytes(os.urandom(256 * 1024))
    (firmware / "gateway-3.1.0.bin").write_bytes(os.urandom(128 * 1024))

    print("\n== the vendor, on an offline workstation ==")
    pf = ("--passphrase-file", secret)
    run(sign, "init", vendor, "--name", "acme", "--keys", "root=3", "--threshold", "root=2", *pf)
    run(sign, "delegate", vendor, "plc-x", "--paths", "plc-x/*", *pf)
    run(sign, "add-target", vendor, firmware / "plc-x-1.2.0.bin", "--path", "plc-x/plc-x-1.2.0.bin",
        "--hardware", "plc-x", "--version", "1.2.0", "--role", "plc-x")
    run(sign, "add-target", vendor, firmware / "gateway-3.1.0.bin", "--path", "gateway/gateway-3.1.0.bin",
        "--hardware", "gw-100", "--version", "3.1.0")
    run(sign, "publish", vendor, "--keys-dir", vendor / "keys", *pf)
    run(sign, "bundle", vendor, usb)
    root = vendor / "published" / "metadata" / "1.root.json"
    fingerprint = run(sign, "fingerprint", root, capture=True).split()[0]
    run(sign, "verify", usb / "airlock", "--root", f"acme={root}")

    print("\n== plant IT and the security officer, on the appliance ==")
    h = ("--home", home)
    run(airlock, *h, "init", "--admin", "admin", "--password-file", admin_pw)
    run(airlock, *h, "repo", "add", "acme", "--root", root, "--fingerprint", fingerprint)
    run(airlock, *h, "import", usb)
    run(airlock, *h, "repo", "show", "acme")

    (SCRATCH / "fetch.py").write_text(FETCH_SCRIPT)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bin_dir = BIN.relative_to(Path.cwd()) if BIN.is_relative_to(Path.cwd()) else BIN
    print(f"""
== serving on {base}/ (Ctrl-C stops) ==
In another terminal, fetch and verify firmware as a device would (python-tuf):
    {bin_dir}/python demo/fetch.py {base} plc-x/plc-x-1.2.0.bin
or look at the files a TUF client fetches:
    curl -s {base}/repos/acme/metadata/timestamp.json
    curl -s {base}/healthz
""", flush=True)
    os.execv(str(airlock), [str(airlock), "--home", str(home), "serve", "--bind", f"127.0.0.1:{port}"])


if __name__ == "__main__":
    main()
