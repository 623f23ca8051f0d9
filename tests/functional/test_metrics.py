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
