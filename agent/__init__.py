"""The reference device agent (`airlock-agent`) and the fleet simulator.

A device has only what it needs: the standard library, cryptography,
python-tuf (with urllib3) and zeroconf.  Nothing here imports the server,
the appliance, Flask, peewee or click.  Only ``agent/_http.py`` speaks
HTTP; the state is one ``AgentState``; a round ends in typed outcomes
(``agent.outcomes``) or one of the errors below.
"""

from agent.config import AgentConfig, load_config
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
from agent.state import AgentState

__all__ = [
    "AgentConfig",
    "AgentError",
    "AgentState",
    "ApiError",
    "ConfigError",
    "CycleResult",
    "DeviceRefusedError",
    "Enrollment",
    "NotAcceptedError",
    "SpoolFullError",
    "StateError",
    "TokenRefusedError",
    "UnreachableError",
    "UpdateError",
    "UpdateOutcome",
    "UsageError",
    "load_config",
]
