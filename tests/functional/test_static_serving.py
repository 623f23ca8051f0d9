"""The published tree is plain files: Debian's nginx, with the snippet from
docs/nginx-airlock.conf, serves it to python-tuf's ngclient as it is, a root
rotation reaches a device that probed for the next root before it existed,
and devices refreshing during imports never see a mix of old and new.

nginx runs as the operator guide says: the snippet included as it is (not
copied) from the docs, with the appliance's home at /var/lib/airlock (a bind
mount in a private mount namespace), the appliance writing its tree under the
service's umask 0027, and nginx's worker a user of its own (www-data) that
reaches the tree through the appliance's group only (here root's group, as
the tests run the appliance as root)."""

import contextlib
import json
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

from tests.conftest import pin, run_airlock
from tests.support.server import airlock_server, free_port

SNIPPET = Path(__file__).resolve().parents[2] / "docs" / "nginx-airlock.conf"
SERVICE_UMASK = 0o027  # systemd/airlock.service
YEAR = 31536000  # seconds


@pytest.fixture
def service_home(tmp_path):
    """An appliance home made by `airlock init` under the service's umask;
    the umask stays for the test's imports."""
    old = os.umask(SERVICE_UMASK)
    try:
        h = tmp_path / "service-home"
        r = run_airlock(h, "init")
        assert r.code == 0, r.err
        yield h
    finally:
        os.umask(old)


@contextlib.contextmanager
def nginx_serving(home: Path, prefix: Path, *, worker_group: str):
    """Debian's nginx on a free loopback port, its worker running as www-data
    with ``worker_group``, including docs/nginx-airlock.conf in its server
    block, with ``home`` seen at /var/lib/airlock."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(binary).exists(), "nginx is needed for this test: `make test` installs it (tests/prereqs.sh)"
    assert shutil.which("unshare"), "unshare (util-linux) is needed for this test"
    assert os.geteuid() == 0, "this test needs root: nginx's worker switches to www-data, /var/lib/airlock is a mount"
    port = free_port()
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
user www-data {worker_group}; daemon off; worker_processes 1; pid {prefix}/nginx.pid; error_log {prefix}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off; client_body_temp_path {prefix}/tmp; proxy_temp_path {prefix}/tmp;
    fastcgi_temp_path {prefix}/tmp; uwsgi_temp_path {prefix}/tmp; scgi_temp_path {prefix}/tmp;
    server {{ listen 127.0.0.1:{port}; include {SNIPPET}; }}
}}""")
    # /var/lib is a private tmpfs in nginx's own mount namespace: the machine's is untouched
    script = ('mount -t tmpfs -o mode=755 tmpfs /var/lib && mkdir /var/lib/airlock && '
              'mount --bind "$1" /var/lib/airlock && exec "$2" -e "$3/error.log" -p "$3" -c "$4"')
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                             str(home), binary, str(prefix), str(conf)], stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        assert proc.poll() is None, f"nginx exited: {proc.stderr.read().decode()}"
        try:
            urllib.request.urlopen(base + "/repos/", timeout=1)
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            assert time.monotonic() < deadline, "nginx did not answer"
            time.sleep(0.05)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def nginx(service_home, tmp_path):
    with nginx_serving(service_home, tmp_path / "nginx", worker_group="root") as base:
        yield base


def fetch(url: str) -> tuple[int, dict]:
    """(status, headers) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def updater(base, sim, tmp_path, name="device"):
    meta = tmp_path / name / "meta"
    dl = tmp_path / name / "dl"
    meta.mkdir(parents=True, exist_ok=True)
    dl.mkdir(parents=True, exist_ok=True)
    return Updater(metadata_dir=str(meta), metadata_base_url=f"{base}/repos/acme/metadata/",
                   target_base_url=f"{base}/repos/acme/targets/", target_dir=str(dl), bootstrap=sim.first_root())


def import_bundle(home: Path, sim, media: Path) -> None:
    r = run_airlock(home, "import", sim.write_bundle(media))
    assert r.code == 0, r.err


def test_nginx_serves_the_published_tree(sim, service_home, tmp_path, nginx):
    assert pin(lambda *a: run_airlock(service_home, *a), sim, tmp_path).code == 0
    sim.rotate("root")
    sim.add_target("fw/a.bin", b"A" * 4096)
    sim.publish()
    import_bundle(service_home, sim, tmp_path / "usb")
    u = updater(nginx, sim, tmp_path)
    u.refresh()
    info = u.get_targetinfo("fw/a.bin")
    assert Path(u.download_target(info)).read_bytes() == b"A" * 4096

    meta = f"{nginx}/repos/acme/metadata"
    for url in (f"{meta}/timestamp.json", f"{meta}/root.json"):
        status, headers = fetch(url)
        assert status == 200 and headers["Cache-Control"] == "no-cache", url
    snapshot = next(p.name for p in (service_home / "public/repos/acme/metadata").iterdir()
                    if p.name.endswith(".snapshot.json"))
    for url in (f"{meta}/2.root.json", f"{meta}/{snapshot}",
                f"{nginx}/repos/acme/targets/fw/{info.hashes['sha256']}.a.bin"):
        status, headers = fetch(url)
        assert status == 200 and headers["Cache-Control"] == f"public, max-age={YEAR}, immutable", url
    for path in ("/repos/acme/metadata/9.root.json", "/repos/acme/metadata/9.snapshot.json",
                 "/repos/acme/targets/fw/0000.a.bin", "/repos/acme/_generations/", "/repos/acme/metadata/",
                 "/repos/acme/", "/repos/nope/metadata/timestamp.json"):
        status, headers = fetch(nginx + path)
        assert status == 404, path
        assert headers.get("Cache-Control") == "no-store", (path, headers)


def test_a_root_rotation_reaches_a_device_that_probed_for_it_through_nginx(sim, service_home, tmp_path, nginx):
    assert pin(lambda *a: run_airlock(service_home, *a), sim, tmp_path).code == 0
    sim.add_target("fw/a.bin", b"A" * 1024)
    sim.publish()
    import_bundle(service_home, sim, tmp_path / "usb1")

    # the device refreshes: it asks for 2.root.json, which does not exist yet
    u = updater(nginx, sim, tmp_path)
    u.refresh()
    status, headers = fetch(f"{nginx}/repos/acme/metadata/2.root.json")
    assert status == 404
    caching = headers.get("Cache-Control", "")
    assert "immutable" not in caching and "max-age" not in caching and "public" not in caching, caching
    assert caching == "no-store"
    assert "Expires" not in headers

    sim.rotate("root")  # root version 2
    sim.rotate("timestamp")  # root version 3, with a new timestamp key
    sim.publish()
    import_bundle(service_home, sim, tmp_path / "usb2")

    # the same device, from its cache: it walks 2.root.json and 3.root.json
    meta = tmp_path / "device" / "meta"
    again = Updater(metadata_dir=str(meta), metadata_base_url=f"{nginx}/repos/acme/metadata/",
                    target_base_url=f"{nginx}/repos/acme/targets/", target_dir=str(tmp_path / "device" / "dl"),
                    bootstrap=None)
    again.refresh()
    assert json.loads((meta / "root.json").read_bytes())["signed"]["version"] == 3
    assert again.get_targetinfo("fw/a.bin") is not None


def test_without_the_appliances_group_nginx_answers_nothing(sim, service_home, tmp_path):
    """Why the operator guide's group step is needed: the home is 0750 and
    the tree 0750/0640, so a worker outside the group gets 404 for everything."""
    assert pin(lambda *a: run_airlock(service_home, *a), sim, tmp_path).code == 0
    sim.publish()
    import_bundle(service_home, sim, tmp_path / "usb")
    assert oct(service_home.stat().st_mode & 0o777) == "0o750"
    with nginx_serving(service_home, tmp_path / "nginx", worker_group="www-data") as base:
        assert fetch(f"{base}/repos/acme/metadata/timestamp.json")[0] == 404
        assert fetch(f"{base}/repos/acme/metadata/1.root.json")[0] == 404
    assert "Permission denied" in (tmp_path / "nginx" / "error.log").read_text()


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
