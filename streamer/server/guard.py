"""Slowloris defence for the built-in server: a deadline for the request head, and a cap on
connections that have not sent one.

A client can hold a connection open for ever by sending its request head a byte at a time
(or not at all); aiohttp waits for the head without a limit. `HeadGuard` wraps each
connection's protocol: a connection must deliver a complete head (through the empty line,
RFC 9112 2.1) within `head_timeout` seconds, and at most `max_pending` connections may be
waiting for theirs; a new one past the cap closes the oldest waiting one, so idle
connections can never lock a normal request out.

The guard times the first head of a connection; a later head on a kept-alive connection is
bounded by aiohttp's keep-alive timeout, which `running_server` sets to the same value (aiohttp
closes a connection whose next request is not complete when that time runs out).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["DEFAULT_HEAD_TIMEOUT", "DEFAULT_MAX_PENDING", "HeadGuard"]

DEFAULT_HEAD_TIMEOUT = 20.0  # seconds (Apache's RequestReadTimeout starts at 20 s for heads)
DEFAULT_MAX_PENDING = 64


class HeadGuard:
    """The connections still waiting for a complete head, oldest first."""

    def __init__(self, head_timeout: float, max_pending: int) -> None:
        self.head_timeout = head_timeout
        self.max_pending = max(1, max_pending)
        self._pending: OrderedDict[_Guarded, None] = OrderedDict()

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory wrapping each protocol `inner` makes."""
        return lambda: _Guarded(self, inner())

    def _add(self, conn: _Guarded) -> None:
        self._pending[conn] = None
        while len(self._pending) > self.max_pending:
            oldest, _ = self._pending.popitem(last=False)
            oldest.drop()

    def _discard(self, conn: _Guarded) -> None:
        self._pending.pop(conn, None)


class _Guarded(asyncio.Protocol):
    """Pass everything to aiohttp's protocol; watch the bytes only until the head is in."""

    def __init__(self, guard: HeadGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes seen, so an end of head split across reads is found
        self._waiting = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._guard.head_timeout, self.drop)
        self._guard._add(self)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._waiting:
            seen = self._tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:  # bare LF: RFC 9112 2.2 allows it
                self._headed()
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def _headed(self) -> None:
        self._waiting = False
        self._tail = b""
        self._guard._discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def drop(self) -> None:
        """Close a connection that has not sent its head in time, or to make room."""
        self._guard._discard(self)
        if self._waiting and self._transport is not None and not self._transport.is_closing():
            transport = self._transport
            assert isinstance(transport, asyncio.WriteTransport)
            transport.abort()

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headed()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()
