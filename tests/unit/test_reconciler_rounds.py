"""A reconciler round, with a fake pool: PENDING and RETRYING are looked at only for task types
whose job queue holds no ready message (a task may just be waiting in line), and a round another
reconciler holds the lock for does nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

import asyncpg
import pytest

from service.config import Settings
from service.reconciler import Reconciler

pytestmark = pytest.mark.unit


@dataclass
class FakeConnection:
    locked_elsewhere: bool = False
    queries: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return not self.locked_elsewhere

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        self.queries.append((query, args))
        return []

    def transaction(self) -> FakeConnection:
        return self

    def acquire(self) -> FakeConnection:
        return self

    async def __aenter__(self) -> FakeConnection:
        return self

    async def __aexit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        return None


def types_looked_at(conn: FakeConnection, status: str) -> list[str]:
    return [args[2] for query, args in conn.queries if f"t.status = '{status}'" in query][0]


async def test_busy_queues_keep_their_tasks_out_of_the_round() -> None:
    depths = {"ast.simulate.q": 7, "ast.initialize.repo.q": 0, "ast.initialize.impact.q": 0}

    async def ready(queue: str) -> int:
        return depths[queue]

    conn = FakeConnection()
    assert await Reconciler(Settings(), ready).run_once(cast("asyncpg.Pool[Any]", conn)) == []
    idle = ["initialize_impact_analysis", "initialize_repository"]
    for status in ("PENDING", "RETRYING"):
        assert sorted(types_looked_at(conn, status)) == idle
    assert any("'IN_PROGRESS'" in query for query, _ in conn.queries), "stale leases do not wait"


async def test_without_a_broker_to_ask_every_type_is_looked_at() -> None:
    conn = FakeConnection()
    await Reconciler(Settings()).run_once(cast("asyncpg.Pool[Any]", conn))
    assert len(types_looked_at(conn, "PENDING")) == 3


async def test_a_round_someone_else_holds_does_nothing() -> None:
    conn = FakeConnection(locked_elsewhere=True)
    assert await Reconciler(Settings()).run_once(cast("asyncpg.Pool[Any]", conn)) == []
    assert conn.queries == []
