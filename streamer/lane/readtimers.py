"""The read timers of one raw exchange (`bulkbody.BodyConnection`), worded as the engine's.

Three clocks on reads, as `http.stream.Stream` keeps them: the idle (read) timeout between
two reads, the total deadline of the transfer, and the stall window (curl's --speed-limit
over --speed-time, `core.stall`). One timer at a time, re-armed when it fires rather than
on every read: a read only notes its time (`last`) and, with a stall window, its size.
While the reader paces itself (--limit-rate: `pause` to `resume`) only the total deadline
runs: the idle timer and the stall window judge the peer, never our own waits
(`core.stall.OwnWaits`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass

from ..core.stall import OwnWaits, StallMonitor
from ..errors import StreamerError, TransferTimeout


@dataclass(frozen=True)
class Watch:
    """The timers of one exchange, in seconds (None: none); `deadline` is a loop.time()."""

    connect: float | None = None
    idle: float | None = None
    total: float | None = None
    deadline: float | None = None
    speed_limit: float | None = None
    speed_time: float = 30.0


class ReadTimers:
    """Calls `fail` with the timeout (or TooSlowError) that ran out while reads were awaited."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        url: str,
        watch: Watch,
        *,
        fail: Callable[[BaseException], None],
        received: Callable[[], int],
    ) -> None:
        self.loop, self.url, self.watch = loop, url, watch
        self._fail, self._received = fail, received
        self.last = 0.0  # loop.time() of the last read
        self.stall: StallMonitor | None = None
        self.waits = OwnWaits()  # the stall window's clock is `waits.clock`
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start the timers for the next wait (the head, or the body: as the engine, a stall
        window of its own for each)."""
        w = self.watch
        self.last = now = self.loop.time()
        if w.speed_limit is not None:
            start = self.waits.clock(now)
            self.stall = StallMonitor(w.speed_limit, w.speed_time, start, url=self.url)
        self.stop()
        self._arm(now)

    def fed(self, nbytes: int) -> bool:
        """Count a read of `nbytes` in the stall window; False when that made it fail."""
        assert self.stall is not None
        try:
            self.stall.feed(nbytes, self.waits.clock(self.last))
        except StreamerError as exc:
            self._fail(exc)
            return False
        return True

    def pause(self) -> None:
        """Our own pacing begins (the reader stopped reading): the deadline alone runs."""
        now = self.loop.time()
        self.waits.begin(now)
        self.stop()
        self._arm(now)

    def resume(self) -> None:
        """Our own pacing is over: the idle time and the stall window run on from now."""
        now = self.loop.time()
        self.waits.end(now)
        self.last = now
        self.stop()
        self._arm(now)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, now: float) -> None:
        w, when, ours = self.watch, math.inf, self.waits.waiting
        if w.idle is not None and not ours:
            when = self.last + w.idle
        if w.deadline is not None:
            when = min(when, w.deadline)
        if self.stall is not None and not ours:
            when = min(when, now + self.stall.deadline(self.waits.clock(now)))
        if when != math.inf:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now, w, received = self.loop.time(), self.watch, self._received()
        after = f" after {received} bytes" if received else ""
        if w.deadline is not None and now >= w.deadline:
            total = "" if w.total is None else f" ({w.total:g} s)"
            message = f"timed out: total timeout{total} for the transfer{after}"
            self._fail(TransferTimeout(message, url=self.url))
        elif self.waits.waiting:
            self._arm(now)
        elif w.idle is not None and now - self.last >= w.idle:
            message = f"timed out: read timeout ({w.idle:g} s), no data from the server{after}"
            self._fail(TransferTimeout(message, url=self.url))
        else:
            try:
                if self.stall is not None:
                    self.stall.check(self.waits.clock(now))
            except StreamerError as exc:
                self._fail(exc)
                return
            self._arm(now)


__all__ = ["ReadTimers", "Watch"]
