"""Recovery measured from the sampler's time series of terminal tasks (pure, unit-tested).

Steady state is the completion rate before any fault; recovery is the time from a fault's heal
to the first window in which completions run at 90% of that rate again; for faults the system
should ride through, the time from the fault's start to the first completion after it.
"""

from __future__ import annotations

from collections.abc import Sequence

Point = tuple[float, int]  # (wall time, terminal tasks so far)
RECOVERED_SHARE = 0.9
WINDOW_S = 2.0


def rate_between(points: Sequence[Point], start: float, end: float) -> float | None:
    """Completions per second between the samples nearest `start` and `end` (None: too few)."""
    inside = [p for p in points if start <= p[0] <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def recovery_s(
    points: Sequence[Point],
    heal_at: float,
    steady: float,
    share: float = RECOVERED_SHARE,
    window_s: float = WINDOW_S,
) -> float | None:
    """Seconds from `heal_at` to the start of the first window (of `window_s`) whose completion rate
    is at least `share` of `steady`; None when it never gets there within the points."""
    if steady <= 0:
        return 0.0
    for index, (t, done) in enumerate(points):
        if t < heal_at:
            continue
        later = next((p for p in points[index + 1 :] if p[0] >= t + window_s), None)
        if later is None:
            return None
        if (later[1] - done) / (later[0] - t) >= share * steady:
            return max(0.0, t - heal_at)
    return None


def first_completion_s(points: Sequence[Point], fault_at: float) -> float | None:
    """Seconds from `fault_at` to the first sample that counts more terminal tasks than at the start."""
    before = [p for p in points if p[0] <= fault_at]
    base = before[-1][1] if before else 0
    for t, done in points:
        if t > fault_at and done > base:
            return t - fault_at
    return None
