"""A round's typed outcome, from real HTTP answers (a scripted server on
loopback), and the one table that maps outcomes and errors to exit codes."""

from __future__ import annotations

import pytest

from agent.cli import EXIT_FOR_ERROR, ExitCode, exit_code_for, exit_code_for_round
from agent.config import AgentConfig
from agent.device import Agent
from agent.exceptions import (
    AgentError,
    ApiError,
    ConfigError,
    DeviceRefusedError,
    NotAcceptedError,
    SpoolFullError,
    StateError,
    TokenRefusedError,
    UnreachableError,
    UpdateError,
    UsageError,
)
from agent.outcomes import CycleResult, Enrollment, UpdateOutcome
from tests.support.server import free_port
from tests.unit.agent.conftest import scripted_server

ENROLL_OK = (200, {"state": "accepted", "token": "t" * 43, "checkin_interval": 120, "jitter": 10})
CHECKIN_OK = (200, {"update": None, "checkin_interval": 120, "jitter": 10})


def agent(tmp_path, url: str) -> Agent:
    return Agent(AgentConfig(state_dir=tmp_path / "state", appliance_url=url, device_id="o-1", hardware="plc-x",
                             firmware="1.0.0", request_timeout=5).validate())


@pytest.mark.parametrize(("result", "code"), [
    (CycleResult(Enrollment.ACCEPTED, checked_in=True), ExitCode.OK),
    (CycleResult(Enrollment.ACCEPTED, True, UpdateOutcome.INSTALLED, 3), ExitCode.OK),
    (CycleResult(Enrollment.ACCEPTED, True, UpdateOutcome.GAVE_UP, 3), ExitCode.OK),
    (CycleResult(Enrollment.ACCEPTED, True, UpdateOutcome.REBOOT_PENDING, 3), ExitCode.OK),
    (CycleResult(Enrollment.ACCEPTED, True, UpdateOutcome.FAILED, 3, reports_left=1), ExitCode.FAILED),
    (CycleResult(Enrollment.ACCEPTED, True, UpdateOutcome.UNREACHABLE, 3), ExitCode.UNREACHABLE),
    (CycleResult(Enrollment.ACCEPTED, True, reports_left=2), ExitCode.UNREACHABLE),
    (CycleResult(Enrollment.ACCEPTED, errors=["appliance answered 500 internal"]), ExitCode.FAILED),
    (CycleResult(Enrollment.PENDING, reports_left=1), ExitCode.PENDING),
    (CycleResult(Enrollment.REFUSED, reports_left=1), ExitCode.REFUSED),
    (CycleResult(Enrollment.UNREACHABLE), ExitCode.UNREACHABLE),
])
def test_a_rounds_outcome_maps_to_one_exit_code(result, code):
    assert exit_code_for_round(result) is code


@pytest.mark.parametrize(("error", "code"), [
    (UsageError("x"), ExitCode.USAGE), (ConfigError("x"), ExitCode.USAGE),
    (NotAcceptedError("x"), ExitCode.PENDING), (DeviceRefusedError("x"), ExitCode.REFUSED),
    (UnreachableError("x"), ExitCode.UNREACHABLE), (ApiError(500, "internal", "x"), ExitCode.FAILED),
    (StateError("x"), ExitCode.FAILED), (UpdateError("x"), ExitCode.FAILED), (SpoolFullError("x"), ExitCode.FAILED),
    (TokenRefusedError("x"), ExitCode.FAILED), (OSError("disk"), ExitCode.FAILED),
])
def test_each_error_maps_to_one_exit_code(error, code):
    assert exit_code_for(error) is code


def test_every_mapped_error_is_an_agent_error():
    assert all(issubclass(cls, AgentError) for cls in EXIT_FOR_ERROR)


def test_an_accepted_round(tmp_path):
    with scripted_server([ENROLL_OK, CHECKIN_OK]) as server:
        a = agent(tmp_path, server.url)
        result = a.cycle()
    assert (result.state, result.checked_in, result.update, result.errors) == (Enrollment.ACCEPTED, True, None, [])
    assert (result.interval, result.jitter) == (120.0, 10.0)
    assert [r["path"] for r in server.requests] == ["/api/v1/enroll", "/api/v1/checkin"]
    assert server.requests[1]["authorization"] == "Bearer " + "t" * 43
    assert (a.state.enrollment, a.state.token) == ("accepted", "t" * 43)


def test_a_refused_token_enrolls_again_at_once(tmp_path):
    with scripted_server([ENROLL_OK, (401, {"error": "unauthorized"}), ENROLL_OK, CHECKIN_OK]) as server:
        result = agent(tmp_path, server.url).cycle()
    assert result.state is Enrollment.ACCEPTED and result.checked_in
    assert [r["path"].rsplit("/", 1)[1] for r in server.requests] == ["enroll", "checkin", "enroll", "checkin"]


def test_pending_and_refused_rounds(tmp_path):
    with scripted_server([(202, {"state": "pending", "checkin_interval": 60, "jitter": 5}),
                          (403, {"error": "forbidden", "state": "rejected", "message": "not ours\x1b[2J"})]) as server:
        a = agent(tmp_path, server.url)
        pending = a.cycle()
        refused = a.cycle()
    assert (pending.state, pending.interval, a.state.checkin_interval) == (Enrollment.PENDING, 60.0, 60.0)
    assert refused.state is Enrollment.REFUSED and a.state.enrollment == "rejected" and a.token is None
    assert "not ours" in refused.errors[0] and "\x1b" not in refused.errors[0]  # a device's terminal stays clean
    assert exit_code_for_round(pending) is ExitCode.PENDING and exit_code_for_round(refused) is ExitCode.REFUSED


def test_an_appliance_that_is_down(tmp_path):
    result = agent(tmp_path, f"http://127.0.0.1:{free_port()}").cycle()
    assert (result.state, result.checked_in) == (Enrollment.UNREACHABLE, False)
    assert "did not answer POST /api/v1/enroll" in result.errors[0]
    assert exit_code_for_round(result) is ExitCode.UNREACHABLE


def test_an_error_answer_is_a_failed_round_not_a_crash(tmp_path):
    with scripted_server([ENROLL_OK, (500, {"error": "internal", "message": "boom"})]) as server:
        result = agent(tmp_path, server.url).cycle()
    assert result.state is Enrollment.ACCEPTED and not result.checked_in
    assert result.errors == ["appliance answered 500 internal: boom"]
    assert exit_code_for_round(result) is ExitCode.FAILED


def test_text_for_a_report_log_or_terminal_has_no_control_characters():
    from agent.updates import reason_text

    text = "flash\x1b[2J busy\x9b31m \u202eevil\u2069\nline two\t!"
    assert reason_text(text) == "flash [2J busy 31m  evil line two !"
    assert reason_text("\x00\x85") == "unknown" and len(reason_text("x" * 5000)) == 1000
