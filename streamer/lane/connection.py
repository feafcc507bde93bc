"""The small-file lane: keep-alive HTTP/1.1 GETs on plain asyncio sockets, for bulk runs.

aiohttp's request path costs about a third of a millisecond of Python per request, more than
a 16 KiB transfer itself. For the common bulk case (a GET answered 200 with a small body
framed by Content-Length or by chunks, or with an error status) this lane does the exchange
with one protocol object per connection and hands each body piece straight to a sink (the
partial file). It reads a body only when the caller's size cap allows it; for any other
answer it stops and says so (`Reply.read` False, or `Handoff`), and the full engine asks again.

This module is the error boundary for its own sockets: connection-level failures of an
exchange become `StreamerError`s here; failures to connect at all become `Handoff`, so that
the full engine (and `net.translate`) reports them with its usual precision.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from ..core.http1 import (
    MAX_HEAD,
    ChunkError,
    Dechunker,
    Head,
    Origin,
    head_end,
    parse_head,
    request_head,
    reusable,
)
from ..errors import (
    BodyTruncatedError,
    ConnectionLostError,
    ProtocolError,
    Result,
    TransferTimeout,
)

# Idle keep-alive connections kept at most, over all origins, and for how long (aiohttp's
# default keep-alive is 15 s; servers often close sooner, which `_take` notices).
MAX_IDLE = 100
IDLE_SECONDS = 15.0
# An error status's body is read (and thrown away) to keep the connection when at most this.
DRAIN_MAX = 64 << 10

Sink = Callable[[memoryview], None]


class Handoff(Exception):
    """This exchange is not for the lane; the full engine should ask again."""


@dataclass(frozen=True)
class Reply:
    head: Head
    read: bool  # the body went to the sink, whole (False: not read; status and head only)
    size: int = 0  # body bytes given to the sink
    over: bool = False  # a chunked body went past max_body (and was not read further)


@dataclass(frozen=True)
class Timeouts:
    connect: float | None
    idle: float | None  # between two reads
    total: float | None  # for one exchange


class _Conn(asyncio.Protocol):
    """One connection; at most one exchange at a time, driven by data_received."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[Reply] | None = None
        self._buf = bytearray()
        self._head: Head | None = None
        self._sink: Sink | None = None
        self._max_body = 0
        self._left = 0
        self._dechunk: Dechunker | None = None
        self._over = False
        self._received = 0
        self._any = False  # a byte of the answer has arrived
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timeouts = Timeouts(None, None, None)
        self._deadline: float | None = None
        self._url = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport has Transport's methods without being its subclass.
        self.transport = cast(asyncio.Transport, transport)

    def exchange(
        self, request: bytes, sink: Sink, max_body: int, timeouts: Timeouts, url: str
    ) -> asyncio.Future[Reply]:
        self._waiter = self.loop.create_future()
        self._head, self._sink, self._max_body = None, sink, max_body
        self._left = self._received = 0
        self._dechunk, self._over = None, False
        self._any, self.reusable, self._url = False, False, url
        self._timeouts, self._last = timeouts, self.loop.time()
        self._deadline = None if timeouts.total is None else self._last + timeouts.total
        self._arm()
        assert self.transport is not None
        self.transport.write(request)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        self._last = self.loop.time()
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self._any = True
        if self._dechunk is not None:
            self._chunks(data)
            return
        if self._head is not None:
            self._body(memoryview(data))
            return
        if self._buf:  # a head begun in an earlier read
            self._buf += data
            if head_end(self._buf) < 0:
                if len(self._buf) > MAX_HEAD:
                    self._fail(Handoff("response head too large"))
                return
            data, self._buf = bytes(self._buf), bytearray()
        self._read_head(data)

    def _read_head(self, data: bytes) -> None:
        """The answer's head from `data` (what came so far), the body bytes after it to the
        sink. The common answer's head and body arrive in one read: nothing is copied."""
        start = 0
        while True:
            size = head_end(data, start)
            if size < 0:
                self._buf += data[start:]  # the head so far, until more arrives
                if len(self._buf) > MAX_HEAD:
                    self._fail(Handoff("response head too large"))
                return
            head = parse_head(data, size, start)
            if head is None or head.status == 101:
                self._fail(Handoff("response head not simple"))
                return
            start += size
            if head.status >= 200:
                break  # RFC 9110 15.2: interim 1xx answers precede the final one
        rest = memoryview(data)[start:]
        self._head = head
        if head.status == 200 and head.simple and head.length is not None:
            if head.length > self._max_body:
                self._finish(read=False)
                return
            self._left = head.length
        elif head.status == 200 and head.chunked:
            self._dechunk = Dechunker()
            self._chunks(data[start:])
            return
        elif head.status >= 400 and head.simple and head.length is not None:
            if head.length > DRAIN_MAX:
                self._finish(read=False)
                return
            self._left, self._sink = head.length, None
        else:
            self._finish(read=False)
            return
        self._body(rest)

    def _body(self, data: memoryview) -> None:
        if len(data) > self._left:
            self._finish(read=False)  # more than the declared length: never reuse
            return
        if data:
            self._left -= len(data)
            self._received += len(data)
            if self._sink is not None:
                try:
                    self._sink(data)
                except OSError as exc:
                    self._fail(exc)
                    return
        if self._left == 0:
            head = self._head
            assert head is not None
            self.reusable = reusable(head, 0)
            self._finish(read=self._sink is not None)

    def _chunks(self, data: bytes) -> None:
        """Body bytes of a chunked answer (RFC 9112 7.1), decoded into the sink."""
        assert self._dechunk is not None and self._sink is not None
        try:
            pieces = self._dechunk.feed(data)
        except ChunkError as exc:
            self._fail(ProtocolError(f"malformed chunked body: {exc}", url=self._url))
            return
        size = sum(map(len, pieces))
        if self._received + size > self._max_body:
            self._over = True
            self._finish(read=False)
            return
        self._received += size
        if size:
            # One sink call (one write) per read, not per chunk: a body of one-byte chunks
            # would otherwise cost a system call per byte. The join copies each byte once.
            joined = pieces[0] if len(pieces) == 1 else memoryview(b"".join(pieces))
            try:
                self._sink(joined)
            except OSError as exc:
                self._fail(exc)
                return
        if self._dechunk.done:
            head = self._head
            assert head is not None
            self.reusable = reusable(head, len(self._dechunk.extra))
            self._finish(read=True)

    def _finish(self, *, read: bool) -> None:
        # The timer stays: it finds no exchange when it fires (or re-arms for the next one),
        # which costs less than a timer made and cancelled per exchange.
        if not self.reusable:
            self.close()
        waiter, head = self._waiter, self._head
        if waiter is not None and not waiter.done() and head is not None:
            waiter.set_result(Reply(head, read, self._received, self._over))

    def _fail(self, exc: BaseException) -> None:
        self.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._waiter is None or self._waiter.done():
            return
        if self._draining:
            self._finish(read=False)  # the error status is the answer; its body is not
            return
        self._fail(self._lost_error())

    @property
    def _draining(self) -> bool:
        """Reading (to discard) the body of an error status, whose head is the answer."""
        return self._head is not None and self._sink is None

    def _lost_error(self) -> Exception:
        head = self._head
        if head is not None:
            of = "" if head.length is None else f" of {head.length}"
            return BodyTruncatedError(
                f"body cut short after {self._received} bytes{of}",
                url=self._url,
                received=self._received,
                expected=head.length,
            )
        result = Result.CONNECTION_ERROR if self._any else Result.NO_RESPONSE
        return ConnectionLostError("server closed the connection", url=self._url, result=result)

    def _arm(self) -> None:
        """Make sure a timer fires by the exchange's first idle or total limit: one armed
        earlier (for an earlier exchange) is kept, as it re-arms from the last read."""
        idle, deadline = self._timeouts.idle, self._deadline
        when = None if idle is None else self._last + idle
        if deadline is not None:
            when = deadline if when is None else min(when, deadline)
        if when is None:
            return
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        # Re-armed from the last read rather than on every read: one timer per connection.
        self._timer = None
        if self._waiter is None or self._waiter.done() or self.closed:
            return  # between exchanges: nothing to time
        now, idle = self.loop.time(), self._timeouts.idle
        expired = self._deadline is not None and now >= self._deadline
        if self._draining and (expired or (idle is not None and now - self._last >= idle)):
            self._finish(read=False)  # the error status is the answer; its body is not
        elif expired:
            total = self._timeouts.total
            message = f"timed out: total timeout ({total:g} s) for the transfer"
            self._fail(TransferTimeout(message, url=self._url))
        elif idle is not None and now - self._last >= idle:
            message = f"timed out: read timeout ({idle:g} s), no data from the server"
            self._fail(TransferTimeout(message, url=self._url))
        else:
            self._arm()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def stale(self) -> bool:
        """No byte of the answer came: on a reused connection, the server had closed it."""
        return not self._any

    def close(self) -> None:
        self.reusable = False
        self._stop_timer()
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()


class Lane:
    """Idle keep-alive connections per origin, and one exchange at a time on each."""

    def __init__(self, timeouts: Timeouts, tls: Callable[[], ssl.SSLContext]) -> None:
        self.timeouts = timeouts
        self._tls = tls
        self._context: ssl.SSLContext | None = None
        # Idle connections per origin, least recently used origin first; bounded in number
        # (a manifest over thousands of hosts must not run out of file descriptors) and age.
        self._idle: OrderedDict[Origin, list[_Conn]] = OrderedDict()
        self._idle_count = 0

    async def get(
        self,
        origin: Origin,
        target: str,
        fields: list[tuple[str, str]],
        *,
        sink: Sink,
        max_body: int,
        url: str,
    ) -> Reply:
        """GET `target`; a connection the server closed while idle is replaced once (RFC 9112
        9.3.1: a GET that got no answer may be retried on a new connection)."""
        request = request_head(target, origin.authority, fields)
        for fresh in (False, True):
            conn = None if fresh else self._take(origin)  # the retry: a new connection
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin, url)
            try:
                reply = await conn.exchange(request, sink, max_body, self.timeouts, url)
            except ConnectionLostError:
                if reused and conn.stale:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if conn.reusable:
                self._keep(origin, conn)
            return reply
        raise ConnectionLostError("server closed the connection", url=url)

    def _keep(self, origin: Origin, conn: _Conn) -> None:
        conn.idle_since = conn.loop.time()
        self._idle.setdefault(origin, []).append(conn)
        self._idle.move_to_end(origin)
        self._idle_count += 1
        while self._idle_count > MAX_IDLE:  # close the oldest of the least recent origin
            oldest, conns = next(iter(self._idle.items()))
            conns.pop(0).close()
            self._idle_count -= 1
            if not conns:
                del self._idle[oldest]

    def _take(self, origin: Origin) -> _Conn | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            self._idle_count -= 1
            if not idle:
                del self._idle[origin]
            if not conn.closed and conn.loop.time() - conn.idle_since < IDLE_SECONDS:
                return conn
            conn.close()  # closed by the server meanwhile, or idle too long to trust
        return None

    async def _connect(self, origin: Origin, url: str) -> _Conn:
        loop = asyncio.get_running_loop()
        context = None
        if origin.scheme == "https":
            if self._context is None:
                self._context = self._tls()
            context = self._context
        try:
            async with asyncio.timeout(self.timeouts.connect):
                _, conn = await loop.create_connection(
                    lambda: _Conn(loop),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context is not None else None,
                )
        except TimeoutError:
            # Not handed off: the full engine would wait out the same timeout again.
            where = f"{origin.host}:{origin.port}"
            limit = self.timeouts.connect
            raise TransferTimeout(
                f"timed out: connect timeout ({limit:g} s) to {where}", url=url
            ) from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise Handoff(f"cannot connect: {type(exc).__name__}") from None
        return conn

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._idle_count = 0


__all__ = ["DRAIN_MAX", "IDLE_SECONDS", "MAX_IDLE", "Handoff", "Lane", "Reply", "Timeouts"]
