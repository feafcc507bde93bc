"""Large bodies below aiohttp: one GET on a raw socket, its body read into one reused buffer.

aiohttp's StreamReader makes a new `bytes` per piece of body, most of a big download's CPU.
Here `recv_into` fills one preallocated buffer (`asyncio.BufferedProtocol`) and the sink gets
views of it (``os.write`` from a view: no copy in Python), each about the buffer's size (or
what came within `LINGER`), whatever the network's read sizes.

The engine's promises on reads hold, worded the same way: read (idle) timeout, total
deadline, stall window; framing checks (RFC 9112 6.3, 7.1: a short body, a chunked body
without its last chunk, bytes past the end are errors). Failures become `StreamerError`s
here; failing to connect becomes `Handoff`, for the engine to report precisely.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.http1 import MAX_HEAD, ChunkError, Dechunker, Head, head_end, parse_head
from ..errors import (
    BodyTruncatedError,
    ConnectionLostError,
    ProtocolError,
    Result,
    StreamerError,
    TransferTimeout,
)
from .connection import Handoff
from .readtimers import ReadTimers, Watch

# A sink takes body bytes; it may lend the connection the buffer to read the next ones into
# (and where in it to start: storage/direct.py keeps a partial block in front), else None.
Sink = Callable[[memoryview], tuple[memoryview, int] | None]
# Body bytes wait at most this long in the buffer for more to fill it (a slow or stalled
# server's bytes reach the file, and the progress report, as they would on the engine).
LINGER = 0.02
MAX_LINE = 8190  # the longest head line aiohttp accepts
_AFTER_BODY = "malformed HTTP response: bytes after the end of the body"


class Framing(enum.Enum):
    """How the end of the body is known (RFC 9112 6.3)."""

    LENGTH = "length"
    CHUNKED = "chunked"
    CLOSE = "close"  # no length: the server's close ends it (cannot be told from a cut)


class BodyConnection(asyncio.BufferedProtocol):
    """One connection, one exchange: `answer` reads the head, `pump` the body into a sink."""

    def __init__(self, loop: asyncio.AbstractEventLoop, url: str, watch: Watch, size: int):
        self.loop, self.url, self.watch = loop, url, watch
        self.transport: asyncio.Transport | None = None
        # Room for the largest head whatever `size` (a small chunk size must not refuse a
        # head the engine takes); the body goes on in pieces of about `size`.
        self._view = memoryview(bytearray(max(size, MAX_HEAD + 1)))
        self._flush_at = max(1, size - size // 4)
        self._at = 0  # where in the buffer the bytes not yet handed on start (see `Sink`)
        self._fill = 0  # bytes in the buffer not yet handed on (or, before the head, parsed)
        self.head: Head | None = None
        self._waiter: asyncio.Future[Any] | None = None
        self._sink: Sink | None = None
        self._framing = Framing.LENGTH
        self._left = 0  # body bytes still to come (LENGTH)
        self._dechunk: Dechunker | None = None
        self.received = 0  # body bytes read (de-chunked)
        self._any = False  # a byte of the answer has arrived
        self._timers = ReadTimers(loop, url, watch, fail=self._fail, received=self._count)
        self._linger: asyncio.TimerHandle | None = None  # writes what a slow read left
        self._gone: tuple[Exception | None] | None = None  # lost before the body was asked for
        self._pacing: asyncio.Task[None] | None = None  # our own --limit-rate wait (`pace`)
        self.closed = False

    # --- the exchange, as the caller sees it ----------------------------------------------------

    async def answer(self, request: bytes) -> Head:
        """Send `request` and read up to the final response head (1xx interim ones skipped)."""
        assert self.transport is not None
        self._waiter = self.loop.create_future()
        self._timers.start()
        self.transport.write(request)
        head: Head = await self._waiter
        return head

    async def pump(self, sink: Sink, framing: Framing, length: int | None) -> None:
        """Read the body into `sink`, in pieces of about the buffer's size; raises on a cut."""
        self._sink, self._framing = sink, framing
        waiter = self._waiter = self.loop.create_future()
        if framing is Framing.CHUNKED:
            self._dechunk = Dechunker()
        self._left = length or 0
        self._timers.start()
        rest, self._fill = self._fill, 0
        if rest or length == 0:
            self._on_body(rest)
        if self._gone is not None and not waiter.done():
            self._ended(self._gone[0])  # the server left while we were not reading
        elif self.transport is not None and not waiter.done():
            self.transport.resume_reading()
        try:
            await waiter
        except asyncio.CancelledError:
            self._write_what_came()
            raise

    def close(self) -> None:
        """Stop the exchange (an abandoned wait is cancelled, not failed) and the connection."""
        if self._waiter is not None and not self._waiter.done():
            self._write_what_came()
            self._waiter.cancel()
        self._shut()

    def _write_what_came(self) -> None:
        """On a cancellation (Ctrl-C): the body bytes already read go to the sink, so that a
        resume continues after them; the cancellation stays the outcome."""
        sink, n = self._sink, self._fill
        self._sink, self._fill = None, 0
        if sink is not None and n:
            with contextlib.suppress(Exception):
                sink(self._view[self._at : self._at + n])

    def hold(self) -> None:
        """Stop reading the body for now (the sink has no room: storage/direct.py)."""
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def release(self) -> None:
        """Read on after `hold`; the idle timeout counts from here, not from the last read."""
        self._timers.last = self.loop.time()
        if self.transport is not None and not self.closed and not self._done:
            self.transport.resume_reading()

    def pace(self, throttle: Callable[[int], Awaitable[None]], n: int) -> None:
        """Pay `throttle` for `n` body bytes (our own --limit-rate) with reading stopped; the
        idle timer and the stall window stand still meanwhile (`ReadTimers.pause`), so that
        they judge the peer, never our pacing. Waits paid while one is on follow it."""
        if not self._done:  # else the last piece: paid all the same (see `paced`)
            self._timers.pause()
            if self.transport is not None and not self.closed:
                self.transport.pause_reading()
        self._pacing = self.loop.create_task(self._paced(self._pacing, throttle, n))

    async def _paced(
        self,
        before: asyncio.Task[None] | None,
        throttle: Callable[[int], Awaitable[None]],
        n: int,
    ) -> None:
        if before is not None:
            await before
        await throttle(n)
        if self._pacing is not asyncio.current_task():
            return  # a later wait goes on: it resumes
        self._pacing = None
        if not self._done and not self.closed:
            self._timers.resume()
            if self.transport is not None:
                self.transport.resume_reading()

    async def paced(self) -> None:
        """Wait until the last pace is paid (the body may have ended first)."""
        if self._pacing is not None:
            await self._pacing

    def _shut(self) -> None:
        if self._pacing is not None:
            self._pacing.cancel()
            self._pacing = None
        self._timers.stop()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    # --- asyncio's side ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view[self._at + self._fill :]

    def buffer_updated(self, nbytes: int) -> None:
        self._timers.last = self.loop.time()
        self._any = True
        if self.head is None:
            self._fill += nbytes
            self._read_head()
        elif self._sink is not None:
            self._on_body(nbytes)

    def eof_received(self) -> bool | None:
        self._ended(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._ended(exc)

    # --- the head ---------------------------------------------------------------------------------

    def _read_head(self) -> None:
        while True:
            data = self._view[: self._fill].tobytes()
            size = head_end(data)
            if size < 0:
                if self._fill > MAX_HEAD:
                    self._fail(
                        ProtocolError("malformed HTTP response: head too large", url=self.url)
                    )
                return
            head = parse_head(data, size) if _bounded(data, size) else None
            if head is None:
                self._fail(ProtocolError("malformed HTTP response head", url=self.url))
                return
            self._view[: self._fill - size] = self._view[size : self._fill]
            self._fill -= size
            if head.status == 101:
                self._fail(Handoff("101 Switching Protocols"))
                return
            if head.status >= 200:
                break  # RFC 9110 15.2: interim 1xx answers precede the final one
        self.head = head
        assert self.transport is not None
        self.transport.pause_reading()  # until the caller wants the body (or closes)
        self._resolve(head)

    # --- the body ---------------------------------------------------------------------------------

    def _on_body(self, nbytes: int) -> None:
        if self._timers.stall is not None and not self._timers.fed(nbytes):
            return
        if self._framing is Framing.CHUNKED:
            self._chunks(nbytes)
            return
        self._fill += nbytes
        if self._framing is Framing.LENGTH:
            if self._fill > self._left:
                self._fail(ProtocolError(_AFTER_BODY, url=self.url))
                return
            if self._fill == self._left:
                self._hand_on()
                self._resolve(None)
                return
        if self._at + self._fill >= self._flush_at:
            self._hand_on()
        elif self._fill and self._linger is None:
            self._linger = self.loop.call_later(LINGER, self._hand_on)

    def _hand_on(self) -> None:
        """Give the buffered body bytes to the sink (one write), then reuse the buffer."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        n, self._fill = self._fill, 0
        self.received += n
        if self._framing is Framing.LENGTH:
            self._left -= n
        if n and self._sink is not None and not self._done:
            try:
                lent = self._sink(self._view[self._at : self._at + n])
            except Exception as exc:  # a write or a limit: the sink's error is the outcome
                self._fail(exc)
                return
            if lent is None:
                self._at = 0
            else:  # read on into the sink's buffer, after what it keeps there; hand on full
                self._view, self._at = lent
                self._flush_at = len(self._view)

    def _chunks(self, nbytes: int) -> None:
        """De-chunk what came (RFC 9112 7.1), gathering the data at the buffer's start."""
        assert self._dechunk is not None
        at = self._at + self._fill
        data = self._view[at : at + nbytes].tobytes()
        try:
            pieces = self._dechunk.feed(data)
        except ChunkError as exc:
            self._fail(ProtocolError(f"malformed chunked body: {exc}", url=self.url))
            return
        for piece in pieces:  # never more bytes than came, so they fit where the read was
            start = self._at + self._fill
            self._fill += len(piece)
            self._view[start : start + len(piece)] = piece
            if self._at + self._fill >= self._flush_at:
                self._hand_on()
        if self._fill and self._linger is None:
            self._linger = self.loop.call_later(LINGER, self._hand_on)
        if self._dechunk.done:
            self._hand_on()
            if self._dechunk.extra:
                self._fail(ProtocolError(_AFTER_BODY, url=self.url))
            self._resolve(None)

    def _ended(self, exc: Exception | None) -> None:
        """The server closed (or reset) the connection: the end of a close-delimited body,
        otherwise a cut, reported with the numbers (as `net.translate` words it)."""
        if self._done:
            if self._sink is None and self.head is not None:
                self._gone = (exc,)  # between the head and the body: told when it is asked
            return
        if self.head is None:
            self._fail(self._lost_before_head(exc))
            return
        self._hand_on()  # what came is written: a resume continues after it
        if self._framing is Framing.CLOSE and exc is None:
            self._resolve(None)
        else:
            self._fail(self._cut())

    @property
    def _done(self) -> bool:
        return self._waiter is None or self._waiter.done()

    def _lost_before_head(self, exc: Exception | None) -> StreamerError:
        if exc is not None:
            return ConnectionLostError(f"connection error: {exc}", url=self.url)
        result = Result.CONNECTION_ERROR if self._any else Result.NO_RESPONSE
        return ConnectionLostError("server closed the connection", url=self.url, result=result)

    def _cut(self) -> BodyTruncatedError:
        received = self.received
        if self._framing is Framing.CHUNKED:
            return BodyTruncatedError.cut_short(self.url, received, None, chunked=True)
        return BodyTruncatedError.cut_short(self.url, received, received + self._left)

    # --- outcome ----------------------------------------------------------------------------------

    def _count(self) -> int:
        return self.received

    def _resolve(self, value: Head | None) -> None:
        self._timers.stop()
        if not self._done:
            assert self._waiter is not None
            self._waiter.set_result(value)

    def _fail(self, exc: BaseException) -> None:
        if not self._done:
            assert self._waiter is not None
            self._waiter.set_exception(exc)
        self._shut()


def _bounded(data: bytes, size: int) -> bool:
    """A head within the sizes the engine accepts (aiohttp: 8190 bytes a line)."""
    return size <= MAX_HEAD and max(map(len, data[:size].split(b"\r\n"))) <= MAX_LINE


def _after(loop: asyncio.AbstractEventLoop, seconds: float | None) -> float | None:
    return None if seconds is None else loop.time() + seconds


async def connect(
    host: str, port: int, url: str, watch: Watch, size: int, *, tls: ssl.SSLContext | None = None
) -> BodyConnection:
    """A connection to host:port (TLS with `tls`: asyncio's SSL layer then decrypts into our
    buffer); `Handoff` when none can be made, a certificate refused included (the engine
    says why, in its words)."""
    loop = asyncio.get_running_loop()
    ends = [t for t in (watch.deadline, _after(loop, watch.connect)) if t is not None]
    try:
        async with asyncio.timeout_at(min(ends) if ends else None):
            _, conn = await loop.create_connection(
                lambda: BodyConnection(loop, url, watch, size),
                host,
                port,
                ssl=tls,
                server_hostname=host if tls is not None else None,
            )
    except TimeoutError:
        if not ends:  # the system's own connect timeout (ETIMEDOUT): the engine words it
            raise Handoff("cannot connect: TimeoutError") from None
        # Not handed off: the full engine would wait out the same timeout again.
        if watch.deadline is not None and loop.time() >= watch.deadline:
            message = f"timed out: total timeout ({watch.total:g} s) for the transfer"
        else:
            message = f"timed out: connect timeout ({watch.connect:g} s)"
        raise TransferTimeout(message, url=url) from None
    except (OSError, ValueError) as exc:
        raise Handoff(f"cannot connect: {type(exc).__name__}") from None
    return conn


__all__ = ["BodyConnection", "Framing", "Sink", "Watch", "connect"]
