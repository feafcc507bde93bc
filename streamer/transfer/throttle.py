"""A byte-rate limit for one transfer (curl's ``--limit-rate``): a token bucket and a clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ..core.ratelimit import TokenBucket, burst_for

Throttle = Callable[[int], Awaitable[None]]


class RateThrottle:
    """An awaitable that, called with each chunk's size, keeps the average at `rate` bytes/s.

    One throttle may be shared by several streams (the segments of a --split download, the
    parts of an S3 upload, the PATCHes of a tus upload): the bucket's debt makes them take
    turns, so the limit is for the file, not per connection. An upload sends at most `slice`
    bytes between two calls (a `core.ratelimit.Pacer`), so no send outruns the bucket.
    """

    def __init__(self, rate: float) -> None:
        self.slice = burst_for(rate)
        self._bucket = TokenBucket(rate, self.slice, time.monotonic())

    async def __call__(self, n: int) -> None:
        wait = self._bucket.take(n, time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)


def rate_throttle(rate: float | None) -> RateThrottle | None:
    """The throttle of one transfer held to `rate` bytes/s (see `RateThrottle`); None for
    no limit. One per download or upload, shared by all its streams and requests."""
    return None if rate is None else RateThrottle(rate)


__all__ = ["RateThrottle", "Throttle", "rate_throttle"]
