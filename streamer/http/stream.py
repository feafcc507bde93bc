"""One open response and its body as bounded chunks: the HTTPClient side of streamer.

The chunk loop applies, in order: the read deadline (total time and stall window), framing checks
(a body shorter than its Content-Length is an error), decoding with bounded output, the size
limit on decoded bytes, and progress. Memory per stream is bounded by aiohttp's read buffer
(2 x ``read_bufsize``) plus one chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp

from ..core.decode import Decoder
from ..core.events import Phase, Progress, ProgressCallback
from ..core.limits import BodyLimit
from ..core.stall import OwnWaits, StallMonitor
from ..core.text import field_text
from ..errors import BodyTruncatedError, TransferTimeout, UsageError
from .net import NO_TIMEOUTS, Timeouts, mapped_errors


@dataclass(frozen=True)
class StreamOptions:
    """Per-stream knobs, resolved from the client's config and the call's arguments."""

    chunk_size: int
    max_bytes: int | None
    decode: bool
    speed_limit: float | None
    speed_time: float
    deadline: float | None  # loop.time() by which the whole transfer must be over
    timeouts: Timeouts = NO_TIMEOUTS  # the values, for messages


def _declared_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("Content-Length")
    if value is None or "chunked" in headers.get("Transfer-Encoding", "").lower():
        return None
    try:
        n = int(value)
    except ValueError:
        return None  # aiohttp rejects a malformed length before we get here
    return n if n >= 0 else None


class Stream:
    """A response whose body has not been read yet; iterate it for chunks of bounded size."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        *,
        url: str,
        redirects: int,
        options: StreamOptions,
        progress: ProgressCallback | None = None,
    ) -> None:
        self._resp = response
        self._opts = options
        self._progress = progress
        self.url = url
        self.final_url = str(response.url)
        self.redirects = redirects
        self.status = response.status
        self.reason = response.reason or ""
        self.headers: Mapping[str, str] = response.headers
        self.chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
        self.content_length = _declared_length(response.headers)
        self.content_encoding = response.headers.get("Content-Encoding", "").strip().lower()
        self.received = 0  # bytes of body read off the wire (encoded)
        self.delivered = 0  # bytes handed to the caller (decoded)
        self.limit = BodyLimit(options.max_bytes, url=url)
        self.progress_base = 0  # bytes already held before this body (a resumed download)
        # The reader's waits for its own throttle (`pay`): the stall window's clock stands
        # still meanwhile (`core.stall.OwnWaits`).
        self.own_waits = OwnWaits()
        self._started = False

    def header_text(self, name: str) -> str | None:
        """A header's value from its bytes on the wire: UTF-8 when valid, else ISO-8859-1.

        RFC 9110 5.5 leaves non-ASCII field bytes as opaque octets, historically ISO-8859-1,
        and RFC 6266 appendix C.1 reads a plain ``filename="r\xe9sum\xe9.txt"`` that way
        (as curl does, which keeps the bytes); aiohttp's text has replaced such bytes by U+FFFD.
        """
        wanted = name.lower().encode("ascii")
        for key, value in self._resp.raw_headers:
            if key.lower() == wanted:
                return field_text(value)
        return None

    @property
    def length_verified(self) -> bool:
        """Whether the body's end was framed (Content-Length or last chunk), not a mere close."""
        return self.chunked or self.content_length is not None or self._resp.method == "HEAD"

    @property
    def decoding(self) -> bool:
        return self._opts.decode and self.content_encoding not in ("", "identity")

    def check_declared_size(self) -> None:
        """Refuse, before a byte of body is read, a declared length over the limit."""
        if not self.decoding:
            self.limit.check_declared(self.content_length)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.iter_chunks()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body, decoded when asked, in chunks of at most ``chunk_size`` bytes."""
        if self._started:
            raise UsageError("a stream's body can be read only once", url=self.url)
        self._started = True
        self.check_declared_size()
        decoder = Decoder(
            self.content_encoding if self.decoding else None,
            url=self.url,
            piece=self._opts.chunk_size,
        )
        self._report(Phase.BODY)
        if not self.decoding:
            # The hot path of every plain download: one generator layer, no decoder.
            feed, report = self.limit.feed, self._progress is not None
            async for raw in self._raw_chunks():
                feed(len(raw))
                self.delivered += len(raw)
                if report:
                    self._report(Phase.BODY)
                yield raw
            return
        async for raw in self._raw_chunks():
            for piece in decoder.feed(raw):
                yield self._deliver(piece)
        for piece in decoder.finish():
            yield self._deliver(piece)

    async def read(self) -> bytes:
        """The whole body in memory; the size limit applies as it arrives."""
        parts = [chunk async for chunk in self.iter_chunks()]
        return b"".join(parts)

    def _deliver(self, piece: bytes) -> bytes:
        self.limit.feed(len(piece))
        self.delivered += len(piece)
        self._report(Phase.BODY)
        return piece

    @property
    def progress_total(self) -> int | None:
        """The size the file will have, when it is known (bytes held before plus this body)."""
        if self.decoding or self.content_length is None:
            return None
        return self.progress_base + self.content_length

    def _report(self, phase: Phase) -> None:
        if self._progress is not None:
            done = self.progress_base + self.delivered
            self._progress(Progress(self.url, phase, done, self.progress_total))

    async def _raw_chunks(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        opts = self._opts
        stall, clock = None, self.own_waits.clock
        if opts.speed_limit is not None:
            start = clock(loop.time())
            stall = StallMonitor(opts.speed_limit, opts.speed_time, start, url=self.url)
        read = self._resp.content.read
        size = opts.chunk_size
        with mapped_errors(
            self.url,
            lambda: self.received,
            expected=self.content_length,
            chunked=self.chunked,
            timeouts=opts.timeouts,
        ):
            while True:
                if stall is None and opts.deadline is None:
                    data = await read(size)
                else:
                    data = await self._read_with_deadline(loop, stall, size)
                if not data:
                    break
                self.received += len(data)
                if stall is not None:
                    stall.feed(len(data), clock(loop.time()))
                yield data
        self._check_complete()

    async def _read_with_deadline(
        self, loop: asyncio.AbstractEventLoop, stall: StallMonitor | None, size: int
    ) -> bytes:
        """One read bounded by the total deadline and by when the stall window would fail
        (the window's clock is `own_waits.clock`; no wait of ours happens within a read)."""
        total_at = self._opts.deadline if self._opts.deadline is not None else float("inf")
        clock = self.own_waits.clock
        while True:
            now = loop.time()
            stall_at = now + stall.deadline(clock(now)) if stall is not None else float("inf")
            try:
                async with asyncio.timeout_at(min(total_at, stall_at)):
                    return await self._resp.content.read(size)
            except TimeoutError:
                now = loop.time()
                if now >= total_at:
                    raise self._total_timeout() from None
                if stall is not None:
                    stall.check(clock(now))  # raises TooSlowError when the last window was too slow

    async def pay(self, throttle: Callable[[int], Awaitable[None]], n: int) -> None:
        """Wait for our own throttle (--limit-rate) after `n` bytes read: the stall window
        does not count the wait (`own_waits`), the total deadline does (--max-time bounds
        the transfer, as the raw path's `ReadTimers.pause` keeps it)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(self._opts.deadline):
                await self.own_waits.pay(throttle, n, loop.time)
        except TimeoutError:
            raise self._total_timeout() from None

    def _total_timeout(self) -> TransferTimeout:
        total = self._opts.timeouts.total
        limit = "" if total is None else f" ({total:g} s)"
        return TransferTimeout(f"timed out: total timeout{limit} for the transfer", url=self.url)

    def _check_complete(self) -> None:
        """A body shorter than its declared length is an error, never a success (RFC 9112 8)."""
        expected = self.content_length
        if expected is not None and self.received != expected and self._resp.method != "HEAD":
            raise BodyTruncatedError.cut_short(self.url, self.received, expected)

    def release(self) -> None:
        self._resp.release()

    def close(self) -> None:
        self._resp.close()
