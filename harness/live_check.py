"""The check of a live deployment: let it settle (bounded), snapshot it, run every invariant.

The checker itself is pure; this is the one place that joins it to real stores, so the per-test
fixture, `harness check` and the gate all judge a deployment the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.checker import Expectations, Verdict, check_all
from harness.history import History
from harness.observe.rabbitmq import vhost_of
from harness.observe.settle import wait_until_settled
from harness.stack.base import StackEndpoints
from harness.state import Settled

DEFAULT_SETTLE_S = 30.0
_ANY_WAITING = Expectations()


@dataclass(frozen=True)
class LiveCheck:
    verdict: Verdict
    settled: Settled


async def check_deployment(
    endpoints: StackEndpoints,
    history: History,
    expect: Expectations = _ANY_WAITING,
    *,
    settle_timeout_s: float = DEFAULT_SETTLE_S,
) -> LiveCheck:
    """Waits until nothing is in flight (or the deadline), then checks the final snapshot.

    Not settling is no error here: whatever is still moving shows up as invariant 1 or 9.
    """
    settled = await wait_until_settled(
        endpoints.postgres_dsn,
        endpoints.management_url,
        timeout_s=settle_timeout_s,
        vhost=vhost_of(endpoints.amqp_url),
        amqp_url=endpoints.amqp_url,
        still_running=expect.still_running,
    )
    return LiveCheck(check_all(history, settled.snapshot, expect), settled)
