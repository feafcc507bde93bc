"""The raw path's answer: a response read on a `lane.bulkbody` connection, as a download sees it.

`FastStream` has the attributes of `http.stream.Stream` that `download.py` uses (status,
headers, declared length, limit, progress), so the download's rules (`_judge`, `_prepare`)
decide on the same facts whichever path read the head; its `pump` then moves the body from
the connection's one reused buffer to the partial file (`os.write` of a view), checked
against the size limit and hashed on the way. How a download gets one: `fastopen.py`.

Durability stays the default, and the fsync before the rename overlaps the transfer: every
`WRITEBACK_BYTES` an fdatasync of what is written so far runs in a thread, so the final one
finds little left to write. Asked for (``STREAMER_DIRECT_IO=1``), a large body of known
length is instead read straight into page-aligned buffers that a thread writes with O_DIRECT
(storage/direct.py: no page-cache copy; less CPU, but slower on the disk it was measured on).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from ..core.checksum import Verifier
from ..core.events import Phase, Progress, ProgressCallback
from ..core.http1 import Head, Origin
from ..core.limits import BodyLimit
from ..core.text import field_text
from ..errors import ProtocolError
from ..lane.bulkbody import BodyConnection, Framing, Sink, Watch
from ..storage import direct
from .throttle import Throttle

if TYPE_CHECKING:
    from ..storage.partial import Partial

# Bytes written between two background fdatasyncs (bench/README.md: the final fsync of a
# 1 GiB download then waits for the last few MiB only).
WRITEBACK_BYTES = 32 << 20


class Fields(Mapping[str, str]):
    """A response head's fields by case-insensitive name (RFC 9110 5.1)."""

    def __init__(self, lowered: dict[str, str]) -> None:
        self._fields = lowered

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


class FastStream:
    """An answer read on a raw connection, with the attributes of `http.stream.Stream` that a
    download uses; `pump` moves its body into a partial file."""

    decoding = False

    def __init__(
        self, conn: BodyConnection, head: Head, url: str, final_url: str, *, hops: int, ask: Ask
    ) -> None:
        self._conn, self._head, self._ask = conn, head, ask
        self.url, self.final_url, self.redirects = url, final_url, hops
        self.status, self.reason = head.status, head.reason
        self.headers: Mapping[str, str] = Fields(head.fields)
        self.framing = framing_of(head, self.url) if head.status in (200, 206) else None
        self.chunked = self.framing is Framing.CHUNKED
        self.content_length = head.length if self.framing is Framing.LENGTH else None
        self.limit = BodyLimit(ask.max_bytes, url=self.url)
        self.progress_base = 0  # bytes already held before this body (a resumed download)
        self.delivered = 0
        self.direct_bytes = 0  # body bytes written with O_DIRECT (storage/direct.py)

    def header_text(self, name: str) -> str | None:
        """A field's value from its bytes: UTF-8 when valid, else ISO-8859-1 (as `Stream`)."""
        wanted = name.lower().encode("ascii") + b":"
        for line in self._head.block.split(b"\r\n"):
            if line[: len(wanted)].lower() == wanted:
                return field_text(line[len(wanted) :].strip(b" \t"))
        return None

    @property
    def length_verified(self) -> bool:
        return self.chunked or self.content_length is not None

    @property
    def progress_total(self) -> int | None:
        if self.content_length is None:
            return None
        return self.progress_base + self.content_length

    async def pump(
        self,
        partial: Partial,
        verifier: Verifier | None,
        *,
        durable: bool,
        throttle: Throttle | None = None,
    ) -> None:
        """The body into `partial` (and the hash), refusing a declared length over the limit
        before a byte is read; waits for the background syncs before returning. Not
        `durable` (bulk runs sync the file system in batches): no background syncs. With a
        `throttle` (--limit-rate) each piece is paid for with reading stopped, and none of
        that wait counts as the peer's slowness (`BodyConnection.pace`)."""
        assert self.framing is not None, "a body is read only from a 200 or a 206"
        self.limit.check_declared(self.content_length)
        self._report()
        # Direct writes stop reading for their own reasons (hold/release): not with pacing.
        writer = self._direct_writer(partial) if durable and throttle is None else None
        writeback = _WriteBack(partial if durable and writer is None else None)
        try:
            if writer is None:
                sink = self._sink(partial, verifier, writeback, throttle)
            else:
                sink = self._direct_sink(verifier, writer)
            await self._conn.pump(sink, self.framing, self.content_length)
            await self._conn.paced()
        finally:
            await writeback.settle()
            if writer is not None:
                try:
                    await writer.finish()
                finally:
                    self.direct_bytes += writer.direct_bytes
        await partial.settle()

    def _direct_writer(self, partial: Partial) -> direct.DirectWriter | None:
        """Direct writes for a large body of known length where the file system takes them."""
        if not direct.wanted(self.content_length):
            return None
        fd = direct.open_direct(partial.part)
        if fd is None:
            return None
        conn = self._conn
        try:
            return direct.DirectWriter(
                partial.part,
                fd,
                hold=conn.hold,
                release=conn.release,
                written=partial.maybe_checkpoint,
            )
        except OSError:  # no memory for the pool, or the block's head unreadable
            os.close(fd)
            return None  # the page cache path (which reports a file's failure itself)

    def _direct_sink(self, verifier: Verifier | None, writer: direct.DirectWriter) -> Sink:
        """As `_sink`, but the bytes stay in the writer's buffers (they are written, and
        checkpointed, when a thread's direct write of them has returned)."""
        feed, take = self.limit.feed, writer.take
        update = verifier.update if verifier is not None else None
        report = self._report if self._ask.progress is not None else None

        def sink(view: memoryview) -> direct.Lend:
            feed(len(view))  # BodyTooLarge before the bytes are taken
            if update is not None:
                update(view)
            lent = take(view)
            self.delivered += len(view)
            if report is not None:
                report()
            return lent

        return sink

    def _sink(
        self,
        partial: Partial,
        verifier: Verifier | None,
        writeback: _WriteBack,
        throttle: Throttle | None,
    ) -> Sink:
        write, checkpoint, feed = partial.part.write, partial.maybe_checkpoint, self.limit.feed
        update = verifier.update if verifier is not None else None
        report = self._report if self._ask.progress is not None else None
        pace = self._conn.pace

        def sink(view: memoryview) -> None:
            feed(len(view))  # BodyTooLarge before the bytes are written
            if update is not None:
                update(view)
            write(view)
            self.delivered += len(view)
            checkpoint()
            writeback.written(len(view))
            if report is not None:
                report()
            if throttle is not None:
                pace(throttle, len(view))

        return sink

    def _report(self, phase: Phase = Phase.BODY) -> None:
        progress = self._ask.progress
        if progress is not None:
            done = self.progress_base + self.delivered
            progress(Progress(self.url, phase, done, self.progress_total))

    def close(self) -> None:
        self._conn.close()


class _WriteBack:
    """fdatasync of the partial file in a thread every `WRITEBACK_BYTES`, one at a time, so
    that the page cache never holds much unwritten body when the final fsync comes. Its
    failures are left to that fsync, which reports them (it sees the same error state)."""

    def __init__(self, partial: Partial | None) -> None:
        self._fd = None if partial is None else partial.part.fileno()
        self._since = 0
        self._pending: asyncio.Future[None] | None = None

    def written(self, n: int) -> None:
        self._since += n
        if self._since < WRITEBACK_BYTES or self._fd is None:
            return
        if self._pending is not None and not self._pending.done():
            return
        self._since = 0
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(None, _datasync, self._fd)

    async def settle(self) -> None:
        """Wait for the sync in flight: the file must not be closed under it."""
        if self._pending is not None:
            with contextlib.suppress(OSError):
                await self._pending


def _datasync(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.fdatasync(fd)


class Ask:
    """What one attempt asked for, for the connections and the stream it opens."""

    def __init__(
        self,
        max_bytes: int | None,
        progress: ProgressCallback | None,
        watch: Watch,
        phase: Callable[[Phase | None], None],
        size: int,
        *,
        tls: Callable[[], ssl.SSLContext],
    ) -> None:
        self.max_bytes, self.progress, self.watch = max_bytes, progress, watch
        self.phase, self.size, self._tls = phase, size, tls

    def tls(self, origin: Origin) -> ssl.SSLContext | None:
        """The client's one TLS context for an https origin (RFC 9110 4.2.2), else None."""
        return self._tls() if origin.scheme == "https" else None


def framing_of(head: Head, url: str) -> Framing:
    """How the body of a 200/206 ends (RFC 9112 6.3); ProtocolError for framing no client
    may guess at. Another transfer coding is kept as sent, as the engine does: chunked as
    the final coding is undone, and without it the body ends when the server closes."""
    if head.chunked:
        return Framing.CHUNKED
    if head.simple:
        return Framing.LENGTH
    fields = head.fields
    coding, length = fields.get("transfer-encoding"), fields.get("content-length")
    if coding is not None and length is not None:
        raise ProtocolError(
            "malformed HTTP response: both Transfer-Encoding and Content-Length", url=url
        )
    if coding is not None:
        final = coding.rsplit(",", 1)[-1].strip(" \t").lower()
        return Framing.CHUNKED if final == "chunked" else Framing.CLOSE
    if length is not None:
        raise ProtocolError(f"malformed HTTP response: Content-Length {length[:40]!r}", url=url)
    return Framing.CLOSE


__all__ = ["WRITEBACK_BYTES", "Ask", "FastStream", "Fields", "framing_of"]
