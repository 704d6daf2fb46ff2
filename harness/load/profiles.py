"""Load profiles: how many users, how fast they come, how long they stay, and what jobs they send.

A profile is plain data, read by both sides of the process boundary: `harness load` (which never
imports Locust) and the locustfile (which runs under gevent). The harness hands the chosen profile
and its overrides to the Locust processes through the environment (`to_env`/`from_env`), so
every worker of a distributed run drives the same workload.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

PROFILE_ENV = "LOAD_PROFILE"
USERS_ENV = "LOAD_USERS"
SPAWN_RATE_ENV = "LOAD_SPAWN_RATE"
DURATION_ENV = "LOAD_DURATION"
SHAPE_ENV = "LOAD_SHAPE"
REPO_URL_ENV = "LOAD_REPO_URL"
TOKEN_ENV = "LOAD_API_TOKEN"
JOB_MS_ENV = "LOAD_JOB_MS"


@dataclass(frozen=True)
class Profile:
    """One workload. Each user starts a job every `pace_s` seconds (Locust's `constant_pacing`)
    and follows it to the end, so the offered rate is about `users / pace_s` jobs per second.

    `outcomes`: the share of `simulate` jobs per behaviour (`success`, `retryable` fails once then
    succeeds, `terminal` fails at once, `exhaust` fails past MAX_RETRIES into the DLQ).
    `task_weights`: how often an iteration is each kind (`job`, `cancel`, `resume`, `repository`,
    `operate`: replay the DLQ, at most every `replay_every_s`).
    `spike_factor`: the spike profile's step, as a multiple of `users`.
    """

    name: str
    users: int
    spawn_rate: float
    duration_s: float
    pace_s: float = 1.0
    job_ms: tuple[int, int] = (20, 200)
    outcomes: Mapping[str, float] = field(
        default_factory=lambda: {"success": 0.9, "retryable": 0.05, "terminal": 0.03, "exhaust": 0.02}
    )
    task_weights: Mapping[str, int] = field(
        default_factory=lambda: {"job": 20, "cancel": 1, "resume": 1, "repository": 1, "operate": 1}
    )
    replay_every_s: float = 10.0
    spike_factor: float = 1.0
    follow_timeout_s: float = 60.0

    @property
    def offered_rate(self) -> float:
        """Jobs per second the users offer when the service keeps up."""
        return self.users / self.pace_s

    def with_overrides(
        self,
        *,
        users: int | None = None,
        spawn_rate: float | None = None,
        duration_s: float | None = None,
        job_ms: tuple[int, int] | None = None,
    ) -> Profile:
        return replace(
            self,
            users=self.users if users is None else users,
            spawn_rate=self.spawn_rate if spawn_rate is None else spawn_rate,
            duration_s=self.duration_s if duration_s is None else duration_s,
            job_ms=self.job_ms if job_ms is None else job_ms,
        )

    def to_env(self) -> dict[str, str]:
        return {
            PROFILE_ENV: self.name,
            USERS_ENV: str(self.users),
            SPAWN_RATE_ENV: str(self.spawn_rate),
            DURATION_ENV: str(self.duration_s),
            JOB_MS_ENV: f"{self.job_ms[0]}-{self.job_ms[1]}",
        }


PROFILES: dict[str, Profile] = {
    "steady": Profile("steady", users=10, spawn_rate=5, duration_s=60),
    "spike": Profile("spike", users=5, spawn_rate=5, duration_s=90, spike_factor=4.0),
    "soak": Profile("soak", users=8, spawn_rate=2, duration_s=1800, replay_every_s=60),
}


def profile_named(name: str) -> Profile:
    """The profile called `name`; a ValueError listing the choices for any other name."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown load profile {name!r}: choose one of {', '.join(PROFILES)}") from None


def from_env(environ: Mapping[str, str] = os.environ) -> Profile:
    """The profile `harness load` chose (steady when none did: a plain `locust -f` run)."""
    profile = profile_named(environ.get(PROFILE_ENV) or "steady")

    def number(key: str) -> float | None:
        return float(environ[key]) if environ.get(key) else None

    users = number(USERS_ENV)
    return profile.with_overrides(
        users=int(users) if users is not None else None,
        spawn_rate=number(SPAWN_RATE_ENV),
        duration_s=number(DURATION_ENV),
        job_ms=parse_job_ms(environ[JOB_MS_ENV]) if environ.get(JOB_MS_ENV) else None,
    )


def parse_job_ms(text: str) -> tuple[int, int]:
    """`MIN-MAX` milliseconds of a simulate job (`50` alone: always 50); ValueError otherwise."""
    low, _, high = text.partition("-")
    try:
        bounds = (int(low), int(high or low))
    except ValueError:
        raise ValueError(f"job duration {text!r}: expected MIN-MAX milliseconds, e.g. 20-200") from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise ValueError(f"job duration {text!r}: expected 0 <= MIN <= MAX")
    return bounds
