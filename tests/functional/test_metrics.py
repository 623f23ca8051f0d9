"""`/metrics` on a real `airlock serve`: Prometheus text that an independent
parser (prometheus_client's) reads, with figures that match the appliance."""

import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from tuf.api.metadata import Metadata

from tests.conftest import pin
from tests.support.server import airlock_server


def test_metrics_are_prometheus_text_with_real_figures(airlock, sim, home, tmp_path):
    pin(airlock, sim, tmp_path)
    sim.add_target("fw/a.bin", b"A")
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb")).code == 0
    assert airlock("import", tmp_path / "no-stick").code == 1
    with airlock_server(home) as base, urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    imports = {s.labels["status"]: s.value for s in families["airlock_imports"].samples}
    assert imports == {"accepted": 1, "refused": 1}
    versions = {s.labels["role"]: s.value for s in families["airlock_repository_role_version"].samples
                if s.labels["repository"] == "acme"}
    assert versions["timestamp"] == sim.timestamp.signed.version
    assert versions["targets"] == sim.targets.signed.version
    expiry = Metadata.from_bytes(sim.metadata["timestamp.json"]).signed.expires.timestamp()
    assert {s.value for s in families["airlock_repository_role_expiry_seconds"].samples
            if s.labels["role"] == "timestamp"} == {int(expiry)}
    assert [s.value for s in families["airlock_devices_online"].samples] == [0]


def test_metrics_count_exports_downloads_and_devices_by_health_flag(airlock, sim, home, tmp_path):
    """Exports written, target files the app served (count and bytes, across
    workers and a restart), and accepted devices by health flag."""
    from tests.functional.devices.client import ApiClient, SimDevice

    pin(airlock, sim, tmp_path)
    firmware = b"F" * 5000
    sim.add_target("fw/b.bin", firmware)
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb")).code == 0
    (tmp_path / "stick").mkdir()
    r = airlock("export", tmp_path / "stick")
    assert r.code == 0, r.err
    [target] = (home / "public" / "repos" / "acme").glob("**/targets/fw/*.b.bin")
    url_path = "/repos/acme/targets/fw/" + target.name

    def scrape(base: str) -> dict:
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
            return {f.name: f for f in text_string_to_metric_families(r.read().decode())}

    def value(families: dict, name: str, **labels) -> float:
        """A counter's value (prometheus_client names the family without _total)."""
        return sum(s.value for s in families[name].samples if all(s.labels.get(k) == v for k, v in labels.items()))

    with airlock_server(home, workers=2, threads=4) as base:
        for _ in range(3):
            with urllib.request.urlopen(base + url_path, timeout=10) as r:
                assert r.read() == firmware
        api = ApiClient(base)
        hot, cool = SimDevice("metrics-hot"), SimDevice("metrics-cool")
        for dev in (hot, cool):
            assert api.post("/api/v1/enroll", dev.enrollment()).status == 202
            assert airlock("devices", "accept", dev.device_id).code == 0
            dev.token = api.post("/api/v1/enroll", dev.enrollment()).json["token"]
        assert api.post("/api/v1/checkin", {"firmware": "1.0.0", "metrics": {"cpu_temp_c": 99, "mem_free_bytes": 1}},
                        hot.auth()).status == 200
        assert api.post("/api/v1/checkin", {"firmware": "1.0.0", "metrics": {"cpu_temp_c": 40}},
                        cool.auth()).status == 200
        families = scrape(base)
    assert value(families, "airlock_exports") == 1
    [written] = [f for f in (tmp_path / "stick").rglob("*") if f.is_file()]
    assert value(families, "airlock_export_bytes") == written.stat().st_size
    assert value(families, "airlock_downloads", repository="acme") == 3
    assert value(families, "airlock_download_bytes", repository="acme") == 3 * len(firmware)
    flags = {s.labels["flag"]: s.value for s in families["airlock_devices_flagged"].samples}
    assert flags == {"hot": 1, "low_memory": 1, "low_storage": 0, "rebooting_often": 0, "errors_rising": 0,
                     "unverified_firmware": 0}
    # a restart keeps the counts (the earlier run's files are folded, not lost)
    with airlock_server(home, workers=1, threads=4) as base:
        with urllib.request.urlopen(base + url_path, timeout=10) as r:
            assert r.read() == firmware
        families = scrape(base)
    assert value(families, "airlock_downloads", repository="acme") == 4
