"""The published tree is plain files: Debian's nginx, with the snippet from
docs/nginx-airlock.conf, serves it to python-tuf's ngclient as it is, and
devices refreshing during imports never see a mix of old and new."""

import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tuf.ngclient import Updater

from tests.conftest import pin
from tests.support.server import airlock_server, free_port

SNIPPET = Path(__file__).resolve().parents[2] / "docs" / "nginx-airlock.conf"


@pytest.fixture
def nginx(home, tmp_path):
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.fail("nginx is needed for this test: `make test` installs it (tests/prereqs.sh)")
    port = free_port()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    snippet = SNIPPET.read_text().replace("/var/lib/airlock", str(home))
    conf = prefix / "nginx.conf"
    # pytest's temporary folders are private to root: let the worker read them
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(f"""
{user} daemon off; worker_processes 1; pid {prefix}/nginx.pid; error_log {prefix}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off; client_body_temp_path {prefix}/tmp; proxy_temp_path {prefix}/tmp;
    fastcgi_temp_path {prefix}/tmp; uwsgi_temp_path {prefix}/tmp; scgi_temp_path {prefix}/tmp;
    server {{ listen 127.0.0.1:{port}; {snippet} }}
}}""")
    proc = subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf)], stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/", timeout=1)
        except urllib.error.HTTPError:
            break
        except OSError:
            time.sleep(0.05)
    yield base
    proc.terminate()
    proc.wait(timeout=10)


def updater(base, sim, tmp_path, name="device"):
    meta = tmp_path / name / "meta"
    dl = tmp_path / name / "dl"
    meta.mkdir(parents=True, exist_ok=True)
    dl.mkdir(parents=True, exist_ok=True)
    return Updater(metadata_dir=str(meta), metadata_base_url=f"{base}/repos/acme/metadata/",
                   target_base_url=f"{base}/repos/acme/targets/", target_dir=str(dl), bootstrap=sim.first_root())


def test_nginx_serves_the_published_tree(airlock, sim, home, tmp_path, nginx):
    pin(airlock, sim, tmp_path)
    sim.rotate("root")
    sim.add_target("fw/a.bin", b"A" * 4096)
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb")).code == 0
    u = updater(nginx, sim, tmp_path)
    u.refresh()
    info = u.get_targetinfo("fw/a.bin")
    assert open(u.download_target(info), "rb").read() == b"A" * 4096
    with urllib.request.urlopen(f"{nginx}/repos/acme/metadata/timestamp.json") as r:
        assert r.headers["Cache-Control"] == "no-cache"
    for path in ("/repos/acme/metadata/9.root.json", "/repos/acme/_generations/", "/repos/acme/metadata/"):
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(nginx + path)
        assert exc.value.code == 404, path


def test_devices_refreshing_during_imports_never_fail(airlock, sim, home, tmp_path):
    pin(airlock, sim, tmp_path)
    sim.add_target("fw/0.bin", b"0" * 2048)
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb0")).code == 0
    failures, refreshes = [], []
    stop = threading.Event()

    with airlock_server(home, threads=8) as base:
        def device(n: int) -> None:
            i = 0
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline and i < 500:
                i += 1
                try:
                    u = updater(base, sim, tmp_path, f"dev{n}-{i}")
                    u.refresh()
                    assert u.get_targetinfo("fw/0.bin") is not None
                    refreshes.append(1)
                except Exception as exc:  # noqa: BLE001 - counted, reported below
                    failures.append(repr(exc))

        threads = [threading.Thread(target=device, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for k in range(1, 6):
            sim.add_target(f"fw/{k}.bin", bytes([k]) * 2048)
            sim.publish()
            r = airlock("import", sim.write_bundle(tmp_path / f"usb{k}"))
            assert r.code == 0, r.err
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(timeout=70)
    assert not failures, failures[:3]
    assert len(refreshes) >= 5
