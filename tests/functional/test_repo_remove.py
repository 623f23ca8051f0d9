"""``airlock repo remove``: a mistaken pin can be undone; a repository that
bundles were imported into goes only when archived explicitly, and then
devices stop finding it at ``/repos/NAME/`` while its tree is kept."""

import json
import urllib.error
import urllib.request

import pytest
from tuf.api.exceptions import DownloadError
from tuf.ngclient import Updater

from tests.conftest import pin, tree_state
from tests.support.server import airlock_server


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def audit_actions(airlock) -> list[dict]:
    r = airlock("audit", "list", "--json")
    assert r.code == 0, r.err
    return [json.loads(line) for line in r.out.splitlines()]


def imported(airlock, sim, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("fw/plc-x-1.0.0.bin", b"firmware" * 1000, version="1.0.0")
    sim.publish()
    r = airlock("import", sim.write_bundle(tmp_path / "usb"))
    assert r.code == 0, r.err


def test_a_mistaken_pin_is_removed_and_audited(airlock, sim, home, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    r = airlock("repo", "remove", "acme")
    assert r.code == 0, r.err
    assert "removed repository acme" in r.out
    assert airlock("repo", "list", "--json").out.strip() == "[]"
    assert not (home / "public/repos/acme").exists()
    assert not (home / "archive").exists()  # it held only the root the officer pinned
    last = audit_actions(airlock)[-1]
    assert (last["action"], last["subject"]) == ("repository.remove", "acme")
    assert last["details"]["imports"] == 0 and last["details"]["archived_to"] is None
    assert airlock("audit", "verify").code == 0
    assert pin(airlock, sim, tmp_path).code == 0  # the name is free again


def test_remove_is_refused_once_anything_was_imported(airlock, sim, home, tmp_path):
    imported(airlock, sim, tmp_path)
    before, records = tree_state(home), len(audit_actions(airlock))
    r = airlock("repo", "remove", "acme")
    assert r.code == 1
    line = r.err.strip()
    assert line.startswith("airlock: error: ") and "\n" not in line
    assert "1 accepted import" in line and "airlock repo remove acme --archive" in line and "nothing changed" in line
    assert tree_state(home) == before
    assert len(audit_actions(airlock)) == records


def test_unknown_repository_is_refused(airlock, home):
    r = airlock("repo", "remove", "nope")
    assert r.code == 1 and "no repository named 'nope' is pinned" in r.err


def test_archive_takes_it_out_of_service_and_keeps_the_tree(airlock, sim, home, tmp_path):
    imported(airlock, sim, tmp_path)
    served = (home / "public/repos/acme/metadata/timestamp.json").read_bytes()
    (tmp_path / "device").mkdir()
    with airlock_server(home) as base:
        assert get(f"{base}/repos/acme/metadata/timestamp.json") == (200, served)
        r = airlock("repo", "remove", "acme", "--archive")
        assert r.code == 0, r.err
        assert get(f"{base}/repos/acme/metadata/timestamp.json")[0] == 404
        assert get(f"{base}/repos/acme/metadata/1.root.json")[0] == 404
        device = Updater(metadata_dir=str(tmp_path / "device"), metadata_base_url=f"{base}/repos/acme/metadata/",
                         target_base_url=f"{base}/repos/acme/targets/", bootstrap=sim.first_root())
        with pytest.raises(DownloadError):
            device.refresh()
        status, body = get(f"{base}/healthz")
        assert status == 200 and json.loads(body)["repositories"] == {}
    archived = list((home / "archive/repos").iterdir())
    assert len(archived) == 1 and archived[0].name.startswith("acme-")
    assert (archived[0] / "metadata/timestamp.json").read_bytes() == served
    assert str(archived[0]) in r.out
    assert not (home / "public/repos/acme").exists()
    assert airlock("repo", "list", "--json").out.strip() == "[]"
    last = audit_actions(airlock)[-1]
    assert last["action"] == "repository.remove" and last["details"]["archived_to"] == str(archived[0])
    assert airlock("audit", "verify").code == 0
    r = airlock("import", sim.write_bundle(tmp_path / "usb2"))
    assert r.code == 1 and "not pinned" in r.err  # the bundle needs a pin again


def test_archive_is_refused_while_a_release_of_it_is_offered(airlock, sim, home, tmp_path):
    imported(airlock, sim, tmp_path)
    r = airlock("releases", "approve", "acme", "fw/plc-x-1.0.0.bin", "--hardware", "plc-x")
    assert r.code == 0, r.err
    before = tree_state(home)
    r = airlock("repo", "remove", "acme", "--archive")
    assert r.code == 1 and "withdraw them first" in r.err and "nothing changed" in r.err
    assert tree_state(home) == before and not (home / "archive").exists()
    assert airlock("releases", "withdraw", "1").code == 0
    assert airlock("repo", "remove", "acme", "--archive").code == 0


def test_a_name_pinned_again_starts_a_new_history(airlock, sim, home, tmp_path):
    """After an archive, the name is another repository: the earlier one's
    imports are not in its history and do not keep it from being removed."""
    from tests.support.simulator import RepoSim

    imported(airlock, sim, tmp_path)
    assert airlock("repo", "remove", "acme", "--archive").code == 0
    other = RepoSim("acme")  # another vendor root under the same name
    (tmp_path / "again").mkdir()
    assert pin(airlock, other, tmp_path / "again").code == 0
    shown = json.loads(airlock("repo", "show", "acme", "--json").out)
    assert shown["imports"] == []
    r = airlock("repo", "remove", "acme")  # nothing was imported into this pin
    assert r.code == 0, r.err
    assert airlock("audit", "verify").code == 0
