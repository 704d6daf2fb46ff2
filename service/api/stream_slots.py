"""How many event streams one client may hold open at once, and until when each may stay open.

A client is its bearer token when the API has `API_TOKENS` (a digest of it: the token itself is
never kept), else its address. Every stream ends at its deadline (`STREAM_MAX_SECONDS` after it
opened), so the earliest deadline of a full client is when a slot surely frees: its Retry-After.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field

from starlette.requests import Request


class StreamsExhausted(Exception):
    """The client already holds its maximum of streams; one frees within `retry_after_s`."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(f"at most {limit} concurrent streams per client")
        self.limit = limit
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class StreamSlot:
    """One open stream of one client; `release` is idempotent (called wherever the stream ends)."""

    client: str
    deadline: float
    _slots: StreamSlots = field(repr=False)

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def release(self) -> None:
        self._slots.release(self)


class StreamSlots:
    def __init__(self, per_client: int, lifetime_s: float) -> None:
        self._per_client = per_client
        self._lifetime_s = lifetime_s
        self._held: dict[str, set[StreamSlot]] = {}

    def take(self, client: str) -> StreamSlot:
        """A slot for a new stream, or StreamsExhausted when the client holds `per_client` already."""
        held = self._held.setdefault(client, set())
        if len(held) >= self._per_client:
            earliest = min(slot.deadline for slot in held)
            wait = max(1, math.ceil(earliest - time.monotonic()))
            raise StreamsExhausted(self._per_client, wait)
        slot = StreamSlot(client, time.monotonic() + self._lifetime_s, self)
        held.add(slot)
        return slot

    def release(self, slot: StreamSlot) -> None:
        held = self._held.get(slot.client)
        if held is None:
            return
        held.discard(slot)
        if not held:
            del self._held[slot.client]

    def held(self, client: str) -> int:
        return len(self._held.get(client, ()))


def client_of(request: Request, *, by_token: bool) -> str:
    """With `by_token` (auth is on, so the token was checked) the token's digest, else the address:
    without auth any made-up token would open a fresh allowance."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if by_token and scheme.lower() == "bearer" and token.strip():
        return "token:" + hashlib.sha256(token.strip().encode()).hexdigest()[:32]
    host = request.client.host if request.client else "unknown"
    return f"address:{host}"
