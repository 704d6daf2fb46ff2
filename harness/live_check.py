"""The check of a live deployment: let it settle (bounded), snapshot it, run every invariant.

The checker itself is pure; this is the one place that joins it to real stores, so the per-test
fixture, `harness check` and the gate all judge a deployment the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from harness.checker import Expectations, Verdict, check_all
from harness.history import History
from harness.snapshot import Settled, wait_until_settled
from harness.stack.base import StackEndpoints

DEFAULT_SETTLE_S = 30.0
_ANY_WAITING = Expectations()


def vhost_of(amqp_url: str) -> str:
    """The AMQP URL's vhost, as the management API names it: an empty path is the default `/`."""
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


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
