"""What each toxic does to the bytes of one link, as arithmetic (pure, no I/O).

The link (connection.py) asks these functions how long to hold a chunk, how to cut it and how
fast to send it; timers (timeout, reset_peer) and closing (slow_close, limit_data) are the
link's own business because they act on sockets.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from chaos.proxy.model import Toxic

PACE_SLICE_S = 0.02
"""A bandwidth-limited chunk leaves in pieces of this much time's worth, so the rate is smooth."""


def first_of(toxics: Sequence[Toxic], toxic_type: str) -> Toxic | None:
    return next((toxic for toxic in toxics if toxic.type == toxic_type), None)


def latency_s(toxics: Sequence[Toxic], rng: random.Random) -> float:
    """The delay a chunk read now gets: the sum over latency toxics of latency +/- jitter (ms)."""
    total_ms = 0.0
    for toxic in toxics:
        if toxic.type == "latency":
            jitter = toxic.attr("jitter")
            total_ms += toxic.attr("latency") + (rng.uniform(-jitter, jitter) if jitter else 0.0)
    return max(total_ms, 0.0) / 1000.0


def bandwidth_bytes_per_s(toxics: Sequence[Toxic]) -> float | None:
    """The tightest bandwidth limit (KB/s as 1000 bytes/s, like Toxiproxy); None when unlimited."""
    rates = [toxic.attr("rate") for toxic in toxics if toxic.type == "bandwidth" and toxic.attr("rate") > 0]
    return min(rates) * 1000.0 if rates else None


def slice_sizes(total: int, average: int, variation: int, rng: random.Random) -> Iterator[int]:
    """Sizes that cut `total` bytes into packets of about `average` (+/- `variation`) bytes."""
    if average <= 0:
        yield total
        return
    left = total
    while left > 0:
        size = average + (rng.randint(-variation, variation) if variation else 0)
        size = min(max(size, 1), left)
        left -= size
        yield size


def pace_sizes(total: int, bytes_per_s: float) -> Iterator[int]:
    """Sizes that cut `total` bytes into pieces of PACE_SLICE_S worth at the given rate."""
    piece = max(1, int(bytes_per_s * PACE_SLICE_S))
    for start in range(0, total, piece):
        yield min(piece, total - start)


def limit_remaining(toxic: Toxic, sent: int) -> int:
    """Bytes the link may still send under a limit_data toxic after `sent` bytes went through it."""
    return max(toxic.attr("bytes") - sent, 0)
