"""Token buckets: a global byte-rate limit (curl's ``--limit-rate``) and per-host request rates.

A bucket holds up to `burst` tokens and refills continuously at `rate` tokens per second.
`take` never refuses: it spends the tokens at once, letting the balance go negative, and
tells the caller how long to sleep until the balance is back to zero. A caller that sleeps
as told is therefore held to exactly `rate` on average after the first burst, whatever its
chunk sizes, and a chunk larger than the whole bucket simply waits longer.

The clock is the caller's (a monotonic time in seconds); this module never reads one.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from typing import Protocol

from streamer.errors import UsageError

__all__ = ["BURST_SECONDS", "MIN_BURST", "HostLimiter", "Pacer", "TokenBucket", "burst_for"]

# A quarter of a second's worth may go at once (but at least 64 KiB, one socket read or so),
# so the average holds from the first second on whatever the chunk size.
BURST_SECONDS = 0.25
MIN_BURST = 1 << 16


def burst_for(rate: float) -> int:
    """The bytes a `rate` bytes/s limit lets go at once: its bucket's size, and the largest
    slice an upload sends before it waits (large enough to keep the waits few)."""
    return max(int(_positive("rate", rate) * BURST_SECONDS), MIN_BURST)


class Pacer(Protocol):
    """A byte-rate limit as a sender sees it: await the pacer with the count about to go, at
    most `slice` bytes (it sleeps while the bucket is in debt), then send them."""

    @property
    def slice(self) -> int: ...

    def __call__(self, n: int) -> Awaitable[None]: ...


def _positive(name: str, value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{name} must be a positive finite number: {value}")
    return float(value)


class TokenBucket:
    """`rate` tokens per second, up to `burst` saved; starts full at `now`."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = _positive("rate", rate)
        self.burst = _positive("burst", burst)
        self._tokens = self.burst  # may go negative: the debt of the last take
        self._last = float(now)

    def _refill(self, now: float) -> None:
        # A clock that steps back counts as no time passing, and the bucket then measures from
        # the new reading. Keeping the old reading instead would starve the bucket until the
        # clock caught up: an hour's stall after an hour's step back.
        elapsed = max(0.0, now - self._last)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._last = now

    def tokens(self, now: float) -> float:
        """The balance at `now`: up to `burst`, negative while an earlier take is unpaid."""
        self._refill(now)
        return self._tokens

    def take(self, n: float, now: float) -> float:
        """Spend `n` tokens at `now`; return the seconds to wait before going on (>= 0).

        The wait is the time the refill needs to bring the balance back to zero, so it also
        covers debt left by earlier takes (other callers sharing the bucket).
        """
        if not (n >= 0 and math.isfinite(n)):
            raise UsageError(f"cannot take a negative or non-finite number of tokens: {n}")
        self._refill(now)
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class HostLimiter:
    """One `TokenBucket` per host, for "at most `rate` requests per second to any host".

    A full bucket behaves exactly like a new one, so buckets of idle hosts are dropped once
    the table has doubled since the last sweep: memory follows the busy hosts only.
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = _positive("rate", rate)
        self.burst = _positive("burst", burst)
        self._buckets: dict[str, TokenBucket] = {}
        self._sweep_at = 64

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, host: str, now: float, n: float = 1.0) -> float:
        """Spend `n` requests' worth for `host` (case-insensitive); return seconds to wait."""
        key = host.lower()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._sweep_at:
                self._sweep(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(n, now)

    def _sweep(self, now: float) -> None:
        full = [host for host, b in self._buckets.items() if b.tokens(now) >= self.burst]
        for host in full:
            del self._buckets[host]
        self._sweep_at = max(64, 2 * len(self._buckets))
