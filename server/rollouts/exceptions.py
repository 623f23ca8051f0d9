"""The rollouts' errors: each knows its HTTP status and stable code."""

from signing.exceptions import AirlockError


class RolloutError(AirlockError):
    """A rollout cannot do what was asked in its current state."""

    status = 409
    code = "conflict"


class RolloutArgumentError(RolloutError):
    """An argument (waves, thresholds, durations) is malformed; nothing changed."""

    status = 400
    code = "invalid_request"


class RolloutNotFoundError(RolloutError):
    """No rollout (or release) with that id."""

    status = 404
    code = "not_found"
