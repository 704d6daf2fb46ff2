"""The load shapes `steady`, `spike` and `soak` as pure stage plans.

Locust's `LoadTestShape.tick()` asks, every second, how many users there should be and how fast
to get there, or None to stop. The answer depends only on the run time, so it lives here, apart
from Locust (which patches the standard library when imported): the locustfile wraps a plan in a
`LoadTestShape`, and unit tests call `tick` directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.load.profiles import Profile

SPIKE_START = 1 / 3
SPIKE_END = 2 / 3


@dataclass(frozen=True)
class Stage:
    """Until `until_s` seconds of run time, hold `users`, spawning `spawn_rate` users a second."""

    until_s: float
    users: int
    spawn_rate: float


def tick(stages: Sequence[Stage], run_time_s: float) -> tuple[int, float] | None:
    """(users, spawn rate) at `run_time_s`, or None once the last stage is over."""
    for stage in stages:
        if run_time_s < stage.until_s:
            return stage.users, stage.spawn_rate
    return None


def steady(profile: Profile) -> tuple[Stage, ...]:
    """Ramp up to `users` and hold them for the whole duration (the soak is a long steady)."""
    return (Stage(profile.duration_s, profile.users, profile.spawn_rate),)


def spike(profile: Profile) -> tuple[Stage, ...]:
    """The base load for the first third, `spike_factor` times it (reached within a second or
    two) for the second, and back to the base for the last third: does the backlog drain?"""
    peak = max(profile.users + 1, round(profile.users * profile.spike_factor))
    burst = float(max(profile.spawn_rate, peak - profile.users))
    return (
        Stage(profile.duration_s * SPIKE_START, profile.users, profile.spawn_rate),
        Stage(profile.duration_s * SPIKE_END, peak, burst),
        Stage(profile.duration_s, profile.users, burst),
    )


PLANS = {"steady": steady, "spike": spike, "soak": steady}


def stages_for(profile: Profile) -> tuple[Stage, ...]:
    return PLANS[profile.name](profile)
