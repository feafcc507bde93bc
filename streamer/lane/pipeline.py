"""One keep-alive HTTP/1.1 connection of the lane, with pipelined GETs (RFC 9112 9.3.2).

A connection carries a queue of requests: the first is being answered, the others were sent
behind it and are answered in order. Several requests added in one turn of the event loop go
out in one write, and several answers that arrive in one read are all parsed from it, so one
wake-up of the loop serves several files. `Lane` (connection.py) decides which connection a
request joins; a connection takes a second request only after one complete HTTP/1.1 keep-alive
answer (never right after it was opened: RFC 9112 9.3.2 on retried pipelines).

When the connection ends, each request that got no byte of its answer is not failed but
`Requeue`d (RFC 9112 9.3.2: unanswered requests are retried on another connection); a GET is
safe to send again (RFC 9110 9.2.2). The request being answered fails with its own error (a
cut body, a timeout), and an error status or a limit ends only its own request.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, cast

from ..core.http1 import MAX_HEAD, ChunkError, Dechunker, Head, head_end, parse_head, reusable
from ..errors import (
    BodyTruncatedError,
    ConnectionLostError,
    ProtocolError,
    Result,
    TransferTimeout,
)

# An error status's body is read (and thrown away) to keep the connection when at most this.
DRAIN_MAX = 64 << 10
# Pipelined answers can end in a short segment that the server holds back until our ACK
# (its Nagle algorithm, RFC 896, against our delayed ACK, RFC 1122 4.2.3.2): 40 ms each time
# here against nginx. Linux acks at once in quick-ack mode, which each read may end.
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)

Sink = Callable[[memoryview], None]


class Handoff(Exception):
    """This exchange is not for the lane; the full engine should ask again."""


class Requeue(Exception):
    """The connection ended before any byte of this request's answer: send it again elsewhere
    (not a failure, not a retry of the job)."""


class Reply(NamedTuple):  # a tuple: made once per file, and a frozen dataclass costs 3x
    head: Head
    read: bool  # the body went to the sink, whole (False: not read; status and head only)
    size: int = 0  # body bytes given to the sink
    over: bool = False  # a chunked body went past max_body (and was not read further)


@dataclass(frozen=True)
class Timeouts:
    connect: float | None
    idle: float | None  # between two reads
    total: float | None  # for one exchange


class _Ask(NamedTuple):
    """One request on a connection: where its answer goes, and who waits for it."""

    sink: Sink
    max_body: int
    url: str
    waiter: asyncio.Future[Reply]
    sent: float


class Connection(asyncio.Protocol):
    """One connection: requests queued in order, answers parsed as they arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False  # the last answer left the connection usable
        self.answered = 0  # complete answers on this connection
        self.deep = False  # a request was ever sent behind an unanswered one
        self.broke = False  # ended by the server, or stalled, with pipelined requests unanswered
        self.pooled = False  # in the Lane's idle pool
        self.idle_since = 0.0
        self._asks: deque[_Ask] = deque()
        self._out: list[bytes] = []  # requests to write at the end of this loop turn
        self._buf = bytearray()  # a head begun in an earlier read
        self.pipelinable = False  # the last answer was HTTP/1.1 and kept the connection
        self._timer: asyncio.TimerHandle | None = None
        self._sock: socket.socket | None = None
        self._timeouts = Timeouts(None, None, None)
        self._last = 0.0
        self._begin_state(None)

    def _begin_state(self, ask: _Ask | None) -> None:
        """The state of the answer now expected (to `ask`, the first of the queue)."""
        self._head: Head | None = None
        self._sink: Sink | None = None if ask is None else ask.sink
        self._max_body = 0 if ask is None else ask.max_body
        self._url = "" if ask is None else ask.url
        self._left = self._received = 0
        self._dechunk: Dechunker | None = None
        self._over = self._any = False  # _any: a byte of this answer has arrived
        self.reusable = False
        total = self._timeouts.total
        self._deadline = None if total is None or ask is None else ask.sent + total

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport has Transport's methods without being its subclass.
        self.transport = cast(asyncio.Transport, transport)
        self._sock = transport.get_extra_info("socket") if _QUICKACK is not None else None

    @property
    def in_flight(self) -> int:
        return len(self._asks)

    def can_join(self, depth: int) -> bool:
        """Whether one more request may be pipelined here: an HTTP/1.1 keep-alive answer came
        (RFC 9112 9.3.2), and fewer than `depth` requests are unanswered."""
        return self.pipelinable and not self.closed and len(self._asks) < depth

    def exchange(
        self, request: bytes, sink: Sink, max_body: int, timeouts: Timeouts, url: str
    ) -> asyncio.Future[Reply]:
        waiter = self.loop.create_future()
        now = self.loop.time()
        self._timeouts = timeouts
        ask = _Ask(sink, max_body, url, waiter, now)
        self._asks.append(ask)
        if len(self._asks) == 1:
            self._last = now
            self._begin_state(ask)
            self._arm()
            assert self.transport is not None
            self.transport.write(request)  # the server is idle: at once
            return waiter
        # Behind an unanswered request: written at the end of this loop turn, with the
        # requests other tasks add meanwhile (one send for all of them).
        self.deep = True
        if not self._out:
            self.loop.call_soon(self._flush)
        self._out.append(request)
        return waiter

    def _flush(self) -> None:
        out = self._out
        # A task cancelled meanwhile closes this connection when it resumes: send nothing
        # for it (a run that was stopped makes no further request).
        if out and not self.closed and not any(a.waiter.cancelled() for a in self._asks):
            assert self.transport is not None
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        self._out = []

    def data_received(self, data: bytes) -> None:
        self._last = self.loop.time()
        if self.deep and self._sock is not None:
            self._quick_ack(self._sock)
        if self._buf:  # a head begun in an earlier read
            data, self._buf = bytes(self._buf) + data, bytearray()
        pos, end = 0, len(data)
        while pos < end:
            if not self._asks or self.closed:
                self.close()  # bytes nobody asked for: the connection is out of step
                return
            self._any = True
            if self._dechunk is not None:
                pos = self._chunks(data, pos)
            elif self._head is not None:
                pos = self._body(data, pos)
            else:
                pos = self._read_head(data, pos)

    def _quick_ack(self, sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, cast(int, _QUICKACK), 1)
        except (OSError, AttributeError):
            self._sock = None  # not a TCP socket after all: never asked again

    def _read_head(self, data: bytes, pos: int) -> int:
        """The answer's head at `pos` in `data`, then its body bytes to the sink; the offset
        where this answer ends in `data`. The common answer's head and body are in one read:
        nothing is copied."""
        while True:
            size = head_end(data, pos)
            if size < 0:
                self._buf += data[pos:]  # the head so far, until more arrives
                if len(self._buf) > MAX_HEAD:
                    self._fail(Handoff("response head too large"))
                return len(data)
            head = parse_head(data, size, pos)
            if head is None or head.status == 101:
                self._fail(Handoff("response head not simple"))
                return len(data)
            pos += size
            if head.status >= 200:
                break  # RFC 9110 15.2: interim 1xx answers precede the final one
        self._head = head
        if head.status == 200 and head.simple and head.length is not None:
            if head.length > self._max_body:
                self._finish(read=False)
                return len(data)
            self._left = head.length
        elif head.status == 200 and head.chunked:
            self._dechunk = Dechunker()
            return self._chunks(data, pos)
        elif head.status >= 400 and head.simple and head.length is not None:
            if head.length > DRAIN_MAX:
                self._finish(read=False)
                return len(data)
            self._left, self._sink = head.length, None
        else:
            self._finish(read=False)
            return len(data)
        return self._body(data, pos)

    def _body(self, data: bytes, pos: int) -> int:
        end = len(data)
        if end - pos > self._left:
            # Bytes past this body: the next answer's, if one is expected on a kept
            # connection; else the server is out of step and nothing of it is taken.
            if len(self._asks) < 2 or not reusable(cast(Head, self._head), 0):
                self._finish(read=False)
                return end
            end = pos + self._left
        if end > pos:
            self._left -= end - pos
            self._received += end - pos
            if self._sink is not None:
                try:
                    self._sink(memoryview(data)[pos:end])
                except OSError as exc:
                    self._fail(exc)
                    return len(data)
        if self._left == 0:
            self.reusable = reusable(cast(Head, self._head), 0)
            self._finish(read=self._sink is not None)
        return end

    def _chunks(self, data: bytes, pos: int) -> int:
        """Body bytes of a chunked answer (RFC 9112 7.1), decoded into the sink."""
        assert self._dechunk is not None and self._sink is not None
        try:
            pieces = self._dechunk.feed(data[pos:] if pos else data)
        except ChunkError as exc:
            self._fail(ProtocolError(f"malformed chunked body: {exc}", url=self._url))
            return len(data)
        size = sum(map(len, pieces))
        if self._received + size > self._max_body:
            self._over = True
            self._finish(read=False)
            return len(data)
        self._received += size
        if size:
            # One sink call (one write) per read, not per chunk: a body of one-byte chunks
            # would otherwise cost a system call per byte. The join copies each byte once.
            joined = pieces[0] if len(pieces) == 1 else memoryview(b"".join(pieces))
            try:
                self._sink(joined)
            except OSError as exc:
                self._fail(exc)
                return len(data)
        if not self._dechunk.done:
            return len(data)
        head, extra = cast(Head, self._head), len(self._dechunk.extra)
        if extra and len(self._asks) > 1 and reusable(head, 0):
            self.reusable = True  # the bytes after the last chunk are the next answer's
            self._finish(read=True)
            return len(data) - extra
        self.reusable = reusable(head, extra)
        self._finish(read=True)
        return len(data)

    def _finish(self, *, read: bool) -> None:
        """The first request's answer is complete (or not to be read): give it its Reply; the
        next request's answer is expected, or the connection closes."""
        # The timer stays: it finds no exchange when it fires (or re-arms for the next one),
        # which costs less than a timer made and cancelled per exchange.
        ask = self._asks.popleft()
        head = cast(Head, self._head)
        reply = Reply(head, read, self._received, self._over)
        self.answered += 1
        # RFC 9112 9.3.2: more requests join only a connection known to be persistent.
        self.pipelinable = self.reusable and head.minor == 1
        if not self.reusable:
            self.close()
        elif self._asks:
            self._begin_state(self._asks[0])
            self._arm()
        if not ask.waiter.done():
            ask.waiter.set_result(reply)

    def _fail(self, exc: BaseException) -> None:
        ask = self._asks.popleft() if self._asks else None
        self.close()
        if ask is not None and not ask.waiter.done():
            ask.waiter.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        by_server = not self.closed
        self.closed = True
        self.reusable = self.pipelinable = False
        self._stop_timer()
        if not self._asks:
            return
        if by_server and len(self._asks) > 1:
            self.broke = True  # the server does not keep pipelined requests: depth 1 there
        if self._draining:
            self._finish(read=False)  # the error status is the answer; its body is not
        elif self._any:
            self._fail(self._lost_error())
        elif self.answered:
            # RFC 9112 9.3.1/9.3.2: a GET that got no answer on a connection that had
            # answered before (kept idle, or behind others) goes out again.
            self._fail(Requeue())
        else:
            lost = ConnectionLostError(
                "server closed the connection", url=self._url, result=Result.NO_RESPONSE
            )
            self._fail(lost)

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
        return ConnectionLostError(
            "server closed the connection", url=self._url, result=Result.CONNECTION_ERROR
        )

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
        if not self._asks or self.closed:
            return  # between exchanges: nothing to time
        now, idle = self.loop.time(), self._timeouts.idle
        expired = self._deadline is not None and now >= self._deadline
        stalled = idle is not None and now - self._last >= idle
        if self._draining and (expired or stalled):
            self._finish(read=False)  # the error status is the answer; its body is not
        elif expired:
            total = self._timeouts.total
            message = f"timed out: total timeout ({total:g} s) for the transfer"
            self._fail(TransferTimeout(message, url=self._url))
        elif stalled and self.deep and self.answered and not self._any:
            # A server that answered some pipelined requests and ignores the rest.
            self.broke = True
            self._fail(Requeue())
        elif stalled:
            message = f"timed out: read timeout ({idle:g} s), no data from the server"
            self._fail(TransferTimeout(message, url=self._url))
        else:
            self._arm()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """Close; every request still queued is requeued (none has a byte of its answer)."""
        self.reusable = self.pipelinable = False
        self._stop_timer()
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()
        self._out = []
        while self._asks:
            waiter = self._asks.popleft().waiter
            if not waiter.done():
                waiter.set_exception(Requeue())


__all__ = ["DRAIN_MAX", "Connection", "Handoff", "Reply", "Requeue", "Sink", "Timeouts"]
