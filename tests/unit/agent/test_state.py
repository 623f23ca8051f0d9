"""The agent's state: one typed object, loaded once, saved atomically, and
able to read a state folder written by the agent before it was typed."""

from __future__ import annotations

import json
import stat

import pytest

from agent.config import AgentConfig
from agent.device import Agent
from agent.exceptions import StateError
from agent.state import AgentState, PendingInstall, StateStore

# STATE/state.json as the agent wrote it before AgentState (write_json: indent=1, sort_keys),
# after an enrollment, a check-in with an offer, a failed install, an install waiting for its reboot
TODAYS_STATE = {
    "attempts": {"7": 2},
    "checkin_interval": 300.0,
    "enrolled_at": "2026-11-20T08:00:00Z",
    "enrollment": "accepted",
    "error_counters": {"install_failures": 2, "report_send_failures": 1},
    "firmware": "1.1.0",
    "jitter": 60.0,
    "last_checkin": "2026-11-30T23:55:00Z",
    "last_failure": "install hook exited 3: flash busy",
    "last_update_offer": {"release_id": 9, "repository": "acme", "target_path": "plc-x/fw-2.0.0.bin",
                          "version": "2.0.0", "metadata_url": "/repos/acme/metadata/",
                          "targets_url": "/repos/acme/targets/"},
    "pending_install": {"boot_id": "6c1f-old-boot", "release_id": 9, "version": "2.0.0"},
}
TOKEN = "tok_" + "A" * 39


def write_todays_folder(folder):
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / "state.json").write_text(json.dumps(TODAYS_STATE, indent=1, sort_keys=True) + "\n")
    (folder / "token").write_text(TOKEN)


def test_a_state_folder_written_by_todays_agent_loads_typed(tmp_path):
    write_todays_folder(tmp_path)
    state = StateStore(tmp_path).load()
    assert state.token == TOKEN and state.enrollment == "accepted"
    assert state.attempts == {7: 2}  # release ids are ints now, keys of JSON are strings
    assert state.pending_install == PendingInstall(release_id=9, version="2.0.0", boot_id="6c1f-old-boot")
    assert (state.checkin_interval, state.jitter, state.firmware) == (300.0, 60.0, "1.1.0")
    assert state.error_counters == {"install_failures": 2, "report_send_failures": 1}
    assert state.last_update_offer["release_id"] == 9 and state.extra == {}


def test_saving_writes_the_same_document_back(tmp_path):
    """An older agent (a downgrade) reads what this one writes."""
    write_todays_folder(tmp_path)
    store = StateStore(tmp_path)
    store.save(store.load())
    assert json.loads((tmp_path / "state.json").read_text()) == TODAYS_STATE
    assert (tmp_path / "token").read_text() == TOKEN


def test_keys_it_does_not_know_are_kept(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"enrollment": "pending", "tls_pin": "ab" * 32}))
    store = StateStore(tmp_path)
    state = store.load()
    state.enrollment = "accepted"
    store.save(state)
    assert json.loads((tmp_path / "state.json").read_text())["tls_pin"] == "ab" * 32


def test_save_is_atomic_private_and_writes_the_token_only_when_it_changes(tmp_path):
    store = StateStore(tmp_path)
    state = store.load()
    assert state == AgentState() and not (tmp_path / "state.json").exists()
    state.token, state.enrollment = TOKEN, "accepted"
    state.count_error("install_failures")
    store.save(state)
    for name in ("state.json", "token"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "token"]  # no temporary file left
    token_inode = (tmp_path / "token").stat().st_ino
    state.count_error("install_failures")
    store.save(state)
    assert (tmp_path / "token").stat().st_ino == token_inode  # not rewritten
    assert StateStore(tmp_path).load().error_counters == {"install_failures": 2}
    state.token = None
    store.save(state)
    assert not (tmp_path / "token").exists()


@pytest.mark.parametrize(("document", "named"), [
    ("{half a file", "is not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"attempts": {"seven": 1}}', "attempts has a bad key 'seven'"),
    ('{"attempts": {"7": -1}}', "not a count"),
    ('{"checkin_interval": "soon"}', "checkin_interval"),
    ('{"pending_install": {"version": "2.0.0"}}', "pending_install is malformed"),
    ('{"enrollment": 3}', "enrollment is int"),
])
def test_a_malformed_state_file_is_one_clear_error_that_says_what_to_do(tmp_path, document, named):
    (tmp_path / "state.json").write_text(document)
    with pytest.raises(StateError, match="move it away") as caught:
        StateStore(tmp_path).load()
    assert named in str(caught.value) and "\n" not in str(caught.value)
    assert (tmp_path / "state.json").read_text() == document  # nothing changed


def config(tmp_path) -> AgentConfig:
    return AgentConfig(state_dir=tmp_path / "state", appliance_url="http://127.0.0.1:1", device_id="u-1",
                       hardware="plc-x", firmware="1.0.0").validate()


def test_the_agent_reads_its_state_once(tmp_path):
    cfg = config(tmp_path)
    write_todays_folder(cfg.state_dir)
    agent = Agent(cfg)
    assert agent.token == TOKEN and agent.firmware() == "1.1.0"
    (cfg.state_dir / "state.json").write_text("{}")  # another writer: not read behind the agent's back
    (cfg.state_dir / "token").unlink()
    assert agent.token == TOKEN and agent.firmware() == "1.1.0" and agent.state.attempts == {7: 2}
