"""Waves of a rollout: parsing an operator's wave list, and which wave a
device is in.  Pure functions, no database.

A wave is either a group (``group:TAG``: the devices with that tag) or a
cumulative percentage (``25%``: the devices whose bucket is below 25).  A
device's bucket is a number in [0, 100) from the SHA-256 of the rollout id
and the device id, so it never changes during a rollout (a device stays in
its wave across restarts and re-enrollments) and differs from one rollout
to the next (the same devices are not always first).  A device is in the
first wave that takes it; one that no wave takes waits for the rollout to
complete, when the release is offered to its whole scope.
"""

from __future__ import annotations

import hashlib
import re

from server.rollouts.exceptions import RolloutArgumentError as RolloutError

MAX_WAVES = 20
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PERCENT = re.compile(r"^(\d{1,3}(?:\.\d{1,2})?)%?$")


def parse_waves(specs: list[str]) -> list[dict]:
    """``["group:line3", "10%", "100%"]`` -> ``[{"group": "line3"}, {"percent": 10.0}, {"percent": 100.0}]``."""
    if not specs:
        raise RolloutError("give the waves, for example `--wave 10% --wave 50% --wave 100%` or `--wave group:line3`")
    if len(specs) > MAX_WAVES:
        raise RolloutError(f"{len(specs)} waves: a rollout has at most {MAX_WAVES}")
    waves: list[dict] = []
    last = 0.0
    for spec in specs:
        spec = spec.strip()
        if spec.startswith("group:"):
            tag = spec[len("group:"):]
            if not _TAG.fullmatch(tag):
                raise RolloutError(f"wave {spec!r}: {tag!r} is not a group tag (letters, digits, '.', '_', '-')")
            waves.append({"group": tag})
            continue
        m = _PERCENT.fullmatch(spec)
        if not m:
            raise RolloutError(f"wave {spec!r} is neither a percentage (`10%`) nor a group (`group:TAG`)")
        percent = float(m.group(1))
        if not 0 < percent <= 100:
            raise RolloutError(f"wave {spec!r}: a percentage is above 0 and at most 100")
        if percent <= last:
            raise RolloutError(f"wave {spec!r}: percentages are cumulative, so each is larger than the one before "
                               f"({last:g}%)")
        last = percent
        waves.append({"percent": percent})
    return waves


def describe(wave: dict) -> str:
    return f"group {wave['group']}" if "group" in wave else f"{wave['percent']:g}%"


def bucket(rollout_id: int, device_id: str) -> float:
    """The device's place in [0, 100) for this rollout."""
    digest = hashlib.sha256(f"airlock-rollout:{rollout_id}:{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


def wave_of(waves: list[dict], rollout_id: int, device_id: str, tags: set[str]) -> int | None:
    """The 1-based wave the device is in, None when no wave takes it."""
    place = None
    for number, wave in enumerate(waves, 1):
        if "group" in wave:
            if wave["group"] in tags:
                return number
        else:
            if place is None:
                place = bucket(rollout_id, device_id)
            if place < wave["percent"]:
                return number
    return None
