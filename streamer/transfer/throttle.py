"""A byte-rate limit for one transfer (curl's ``--limit-rate``): a token bucket and a clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ..core.ratelimit import TokenBucket

Throttle = Callable[[int], Awaitable[None]]

# A quarter of a second's worth may go at once (but at least 64 KiB, one socket read or so),
# so the average holds from the first second on whatever the chunk size.
_BURST_SECONDS = 0.25
_MIN_BURST = 1 << 16


def rate_throttle(rate: float) -> Throttle:
    """An awaitable that, called with each chunk's size, keeps the average at `rate` bytes/s.

    One throttle may be shared by several streams (the segments of a --split download): the
    bucket's debt makes them take turns, so the limit is for the file, not per connection.
    """
    bucket = TokenBucket(rate, max(rate * _BURST_SECONDS, _MIN_BURST), time.monotonic())

    async def throttle(n: int) -> None:
        wait = bucket.take(n, time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)

    return throttle


__all__ = ["Throttle", "rate_throttle"]
