"""The reference device agent (`airlock-agent`) and the fleet simulator.

A device has only what it needs: the standard library, cryptography,
python-tuf (with urllib3) and zeroconf.  Nothing here imports the server,
the appliance, Flask, peewee or click.
"""

from agent.config import AgentConfig, load_config
from agent.exceptions import (
    AgentError,
    ApiError,
    ConfigError,
    DeviceRefusedError,
    NotAcceptedError,
    TokenRefusedError,
    UnreachableError,
    UpdateError,
)

__all__ = [
    "AgentConfig",
    "AgentError",
    "ApiError",
    "ConfigError",
    "DeviceRefusedError",
    "NotAcceptedError",
    "TokenRefusedError",
    "UnreachableError",
    "UpdateError",
    "load_config",
]
