"""Minimum-speed detection, like curl's ``--speed-limit`` with ``--speed-time``.

A read timeout alone never catches a server that drips one byte every few seconds: each read
completes in time, so aiohttp's ``sock_read`` never fires, yet the download never finishes.
`StallMonitor` instead judges the average speed over the most recent `window` seconds.

Memory stays flat whatever the number of reads: bytes are summed into buckets of window/16
seconds kept in a deque, each remembering when its last byte arrived, and a bucket is dropped
one window after that. So every byte counts for at least a full window (the exact rule) and
at most window + window/16: the bucketing only ever errs in the transfer's favour and never
aborts a transfer that the exact rule would let run. Reads spaced a bucket or more apart
are judged exactly.

`OwnWaits` is the one place that says which seconds were our own pacing: a transfer held to
--limit-rate waits for its throttle, and those waits are taken off the window's clock, so the
window judges the peer, never us (curl counts them, and so aborts its own throttled transfer
when --limit-rate is below --speed-limit; streamer does not). Every path, download or upload,
feeds its window `OwnWaits.clock(now)` instead of `now`.

The clock is the caller's (a monotonic time in seconds); this module never reads one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable

from streamer.errors import TooSlowError, UsageError

BUCKETS_PER_WINDOW = 16

# Slack for float rounding when `check(now + deadline(now))` recomputes a boundary that
# `deadline` derived by subtraction: a billionth of the window is far below any real clock.
_EPSILON = 1e-9


class StallMonitor:
    """Raise `TooSlowError` when fewer than `min_speed` bytes/s arrived over the last window."""

    def __init__(self, min_speed: float, window: float, start: float, url: str = "") -> None:
        if not min_speed > 0 or math.isinf(min_speed):
            raise UsageError(f"minimum speed must be a positive number of bytes/s: {min_speed}")
        if not window > 0 or math.isinf(window):
            raise UsageError(f"speed window must be a positive number of seconds: {window}")
        self.min_speed = float(min_speed)
        self.window = float(window)
        self.start = float(start)
        self.url = url
        self._width = self.window / BUCKETS_PER_WINDOW
        self._eps = self.window * _EPSILON
        # (bucket index since start, time of its last byte, bytes in it), oldest first.
        self._buckets: deque[tuple[int, float, int]] = deque()
        self._in_window = 0  # sum of the byte counts in _buckets

    @property
    def _needed(self) -> float:
        """Bytes that must have arrived within one window to be fast enough."""
        return self.min_speed * self.window

    def _prune(self, now: float) -> None:
        """Drop buckets whose last byte is a full window old (bytes in (now - window, now])."""
        while self._buckets and now + self._eps >= self._buckets[0][1] + self.window:
            self._in_window -= self._buckets.popleft()[2]

    def feed(self, n: int, now: float) -> None:
        """Record `n` bytes received at `now`, then judge the speed as `check` does."""
        if n < 0:
            raise UsageError(f"cannot feed a negative byte count: {n}")
        index = max(0, math.floor((now - self.start) / self._width))
        if self._buckets and index <= self._buckets[-1][0]:
            # Same bucket, or a clock that stepped back: add to the newest bucket so the
            # deque stays ordered (and bounded) whatever times the caller passes.
            last_index, last_time, last_bytes = self._buckets[-1]
            self._buckets[-1] = (last_index, max(last_time, now), last_bytes + n)
        else:
            self._buckets.append((index, now, n))
        self._in_window += n
        self.check(now)

    def check(self, now: float) -> None:
        """Raise `TooSlowError` if the last window was too slow (never before one full window)."""
        self._prune(now)
        if now + self._eps < self.start + self.window:
            return  # a transfer is never judged on less than a full window
        if self._in_window < self._needed:
            speed = self._in_window / self.window
            raise TooSlowError(
                f"transfer too slow: {speed:.1f} bytes/s over the last {self.window:g} s, "
                f"below the minimum of {self.min_speed:g} bytes/s",
                url=self.url,
            )

    def deadline(self, now: float) -> float:
        """Seconds from `now` until `check` raises if no more bytes arrive (>= 0).

        Meant as the timeout of the next read: if it expires with no data, `check` fails.
        """
        self._prune(now)
        earliest = max(now, self.start + self.window)
        remaining = self._in_window
        if remaining < self._needed:
            return max(0.0, earliest - now)
        # Buckets drop out oldest first; find the first drop that leaves too few bytes.
        for _index, last_time, count in self._buckets:
            remaining -= count
            if remaining < self._needed:
                return max(last_time + self.window, earliest) - now
        # Unreachable: with every bucket gone `remaining` is 0, below the positive need.
        raise AssertionError("stall deadline not found")  # pragma: no cover


class OwnWaits:
    """The seconds one transfer spent waiting for its own throttle, so far and now.

    `clock(now)` is `now` less those seconds: a stall window fed that clock stands still
    while we pace ourselves and runs while we wait for the peer. A wait begun while one is
    on (two pieces paid at once) is part of it; the total deadline (--max-time) keeps the
    real clock: it bounds the transfer, our pacing included.
    """

    def __init__(self) -> None:
        self.total = 0.0  # seconds of the waits that have ended
        self._since: float | None = None  # when the wait in progress began

    @property
    def waiting(self) -> bool:
        return self._since is not None

    def begin(self, now: float) -> None:
        if self._since is None:
            self._since = now

    def end(self, now: float) -> None:
        if self._since is not None:
            self.total += max(0.0, now - self._since)
            self._since = None

    def clock(self, now: float) -> float:
        """The stall window's time at `now`: the real time without our own waits."""
        ongoing = 0.0 if self._since is None else max(0.0, now - self._since)
        return now - self.total - ongoing

    async def pay(
        self, throttle: Callable[[int], Awaitable[None]], n: int, now: Callable[[], float]
    ) -> None:
        """Await `throttle(n)` (`n` bytes paid for), counting the wait as our own."""
        self.begin(now())
        try:
            await throttle(n)
        finally:
            self.end(now())
