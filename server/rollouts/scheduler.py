"""Per worker: look (at most every ``rollout_check_interval`` s, from a
check-in) whether the rollouts' gates are due for evaluation, and if this
worker claims the turn in the database, evaluate them in a thread, never
in the request itself (``server.background``)."""

from __future__ import annotations

from server.background import ClaimedJob
from server.clock import now_unix
from server.rollouts.services import claim, evaluate
from server.settings import Settings


class RolloutScheduler(ClaimedJob):
    def __init__(self, settings: Settings):
        super().__init__(settings.rollout_check_interval, "airlock-rollout-gates", "evaluating the rollouts",
                         lambda: claim(settings, now_unix()), lambda: evaluate(settings))
