"""The large-body path of a download: a plain GET read below aiohttp (`lane.bulkbody`).

`open_answer` tries it first for what it can do exactly as the engine would: an ``http://``
URL sent as written, reached directly (no proxy, no netrc), with request fields the lane can
write, no decoding asked and no rate limit. The answer's head is read on a raw connection;
when it is one this path takes (200/206 framed by Content-Length, chunks or the close; 304;
416; any error status, whose body is never read) the download goes on with a `FastStream`;
anything else (a redirect, a coding besides chunked, a failure to connect) is handed to the
engine, which asks again. Either way no byte has been written yet, so the download's rules
(`download._judge`, `_prepare`) decide on the same facts.

The body goes from the connection's one reused buffer to the partial file (`os.write` of a
view), checked against the size limit and hashed on the way. Durability stays the default;
the fsync before the rename overlaps the transfer: every `WRITEBACK_BYTES` an fdatasync of
what is written so far runs in a thread, so the final one finds little left to write.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from ..core.checksum import Verifier
from ..core.events import Phase, Progress, ProgressCallback
from ..core.http1 import Head, Origin, merge_fields, request_head, simple_request
from ..core.limits import BodyLimit
from ..core.redact import redact_url
from ..core.redirects import RedirectPolicy, follows, plan_redirect
from ..errors import ProtocolError, StreamerError, evolve
from ..lane.bulkbody import BodyConnection, Framing, Sink, Watch, connect
from ..lane.connection import Handoff

if TYPE_CHECKING:
    from ..http.stream import Stream
    from ..storage.partial import Partial
    from .opener import Opener

# Set to "0" to keep every body on aiohttp (a diagnostic switch, like STREAMER_LOOP).
ENV_SWITCH = "STREAMER_FAST_BODY"
# Bytes written between two background fdatasyncs (bench/README.md: the final fsync of a
# 1 GiB download then waits for the last few MiB only).
WRITEBACK_BYTES = 32 << 20
_RANGE_FIELDS = ("range", "if-range")  # written by the resume plan; checked, then sent
_VALUE = re.compile(r"[\t\x20-\x7e]*")  # RFC 9110 5.5, visible ASCII only (as merge_fields)


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
        self, conn: BodyConnection, head: Head, url: str, final_url: str, *, hops: int, ask: _Ask
    ) -> None:
        self._conn, self._head, self._ask = conn, head, ask
        self.url, self.final_url, self.redirects = url, final_url, hops
        self.status, self.reason = head.status, head.reason
        self.headers: Mapping[str, str] = Fields(head.fields)
        self.framing = _framing(head, self.url) if head.status in (200, 206) else None
        self.chunked = self.framing is Framing.CHUNKED
        self.content_length = head.length if self.framing is Framing.LENGTH else None
        self.limit = BodyLimit(ask.max_bytes, url=self.url)
        self.progress_base = 0  # bytes already held before this body (a resumed download)
        self.delivered = 0

    def header_text(self, name: str) -> str | None:
        """A field's value from its bytes: UTF-8 when valid, else ISO-8859-1 (as `Stream`)."""
        wanted = name.lower().encode("ascii") + b":"
        for line in self._head.block.split(b"\r\n"):
            if line[: len(wanted)].lower() == wanted:
                value = line[len(wanted) :].strip(b" \t")
                try:
                    return value.decode("utf-8")
                except UnicodeDecodeError:
                    return value.decode("latin-1")
        return None

    @property
    def length_verified(self) -> bool:
        return self.chunked or self.content_length is not None

    @property
    def progress_total(self) -> int | None:
        if self.content_length is None:
            return None
        return self.progress_base + self.content_length

    async def pump(self, partial: Partial, verifier: Verifier | None) -> None:
        """The body into `partial` (and the hash), refusing a declared length over the limit
        before a byte is read; waits for the background syncs before returning."""
        assert self.framing is not None, "a body is read only from a 200 or a 206"
        self.limit.check_declared(self.content_length)
        self._report()
        writeback = _WriteBack(partial)
        try:
            sink = self._sink(partial, verifier, writeback)
            await self._conn.pump(sink, self.framing, self.content_length)
        finally:
            await writeback.settle()
        await partial.settle()

    def _sink(self, partial: Partial, verifier: Verifier | None, writeback: _WriteBack) -> Sink:
        write, checkpoint, feed = partial.part.write, partial.maybe_checkpoint, self.limit.feed
        update = verifier.update if verifier is not None else None
        report = self._report if self._ask.progress is not None else None

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

    def __init__(self, partial: Partial) -> None:
        self._fd = partial.part.fileno()
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


class _Ask:
    """What one attempt asked for, for the connections and the stream it opens."""

    def __init__(
        self,
        max_bytes: int | None,
        progress: ProgressCallback | None,
        watch: Watch,
        phase: Callable[[Phase | None], None],
        size: int,
    ) -> None:
        self.max_bytes, self.progress, self.watch = max_bytes, progress, watch
        self.phase, self.size = phase, size


def _framing(head: Head, url: str) -> Framing | None:
    """How the body of a 200/206 ends (RFC 9112 6.3); None for a transfer coding besides
    chunked (the engine's); ProtocolError for framing no client may guess at."""
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
        return None
    if length is not None:
        raise ProtocolError(f"malformed HTTP response: Content-Length {length[:40]!r}", url=url)
    return Framing.CLOSE


def usable(client: Opener, url: str, *, decode: bool, throttled: bool) -> bool:
    """Whether this download may try the raw path at all (see the module's docstring)."""
    config = client.config
    if not config.fast_body or decode or throttled or config.proxy is not None:
        return False
    if os.environ.get(ENV_SWITCH) == "0":
        return False
    return url[:7].lower() == "http://" and client.plain_route(url)


def request_fields(
    client: Opener, headers: Mapping[str, str], *, first: bool = True
) -> list[tuple[str, str]] | None:
    """The request's fields as the engine would send them (User-Agent, Accept, the config's
    headers, the call's, identity coding), or None when one is not for a raw request. A
    redirect's next hop (`first` False) has them all in `headers` already."""
    ranges = [(k, v) for k, v in headers.items() if k.lower() in _RANGE_FIELDS]
    rest = [(k, v) for k, v in headers.items() if k.lower() not in _RANGE_FIELDS]
    if first:
        base = [("User-Agent", client.config.user_agent), ("Accept", "*/*")]
        merged = merge_fields(base, client.config.headers.items(), rest)
    else:
        merged = merge_fields([(k, v) for k, v in rest if k.lower() != "accept-encoding"])
    if merged is None or not all(_VALUE.fullmatch(v) for _, v in ranges):
        return None
    return [*merged, *ranges, ("Accept-Encoding", "identity")]


async def open_fast(
    client: Opener,
    url: str,
    headers: Mapping[str, str],
    *,
    max_bytes: int | None,
    progress: ProgressCallback | None,
) -> FastStream | None:
    """The answer to a GET of `url` on raw connections, following redirects under the
    engine's rules (`core.redirects`, RFC 9110 15.4); None to ask the engine instead."""
    fields = request_fields(client, headers)
    if fields is None:
        return None
    config, safe_url = client.config, redact_url(url)
    phase = _phases(client, safe_url, progress)
    ask = _Ask(max_bytes, progress, _watch(client), phase, config.chunk_size)
    policy = RedirectPolicy(config.max_redirects, config.allow_downgrade)
    hop_url, hops = url, 0
    while True:
        stream = await _exchange(hop_url, fields, ask, safe_url, hops)
        location = None if stream is None else stream.headers.get("Location")
        if stream is None or not follows(stream.status, location):
            break
        stream.close()
        try:
            hop = plan_redirect(
                url=hop_url,
                status=stream.status,
                location=location,
                method="GET",
                headers=dict(fields),
                hops=hops,
                policy=policy,
            )
        except StreamerError as exc:
            raise evolve(exc, url=safe_url) from exc.__cause__  # name the URL asked for
        ask.phase(Phase.REDIRECTING)
        fields = request_fields(client, hop.headers, first=False)
        if fields is None or not usable(client, hop.url, decode=False, throttled=False):
            return None  # the engine follows the chain from the start
        hop_url, hops = hop.url, hops + 1
    if stream is not None and _taken(stream):
        return stream
    if stream is not None:
        stream.close()
    return None


async def _exchange(
    url: str, fields: list[tuple[str, str]], ask: _Ask, safe_url: str, hops: int
) -> FastStream | None:
    """One request on a new connection, up to its answer's head; None to hand over."""
    simple = simple_request(url)
    if simple is None:
        return None
    origin, target = simple
    ask.phase(Phase.RESOLVING if not _is_ip(origin) else None)
    ask.phase(Phase.CONNECTING)
    try:
        conn = await connect(origin.host, origin.port, safe_url, ask.watch, ask.size)
    except Handoff:
        return None
    try:
        ask.phase(Phase.REQUESTING)
        head = await conn.answer(request_head(target, origin.authority, fields))
        return FastStream(conn, head, safe_url, url, hops=hops, ask=ask)
    except Handoff:
        conn.close()
        return None
    except BaseException:
        conn.close()
        raise


def _taken(stream: FastStream) -> bool:
    """The answers this path carries on; others (3xx, other 2xx) go to the engine."""
    status = stream.status
    if status in (200, 206):
        return stream.framing is not None
    return status in (304, 416) or status >= 400


def _phases(
    client: Opener, url: str, progress: ProgressCallback | None
) -> Callable[[Phase | None], None]:
    report = progress if progress is not None and client.config.report_phases else None

    def phase(which: Phase | None) -> None:
        if report is not None and which is not None:
            report(Progress(url, which))

    return phase


def _is_ip(origin: Origin) -> bool:
    try:
        ipaddress.ip_address(origin.host)
    except ValueError:
        return False
    return True


def _watch(client: Opener) -> Watch:
    config = client.config
    deadline = None
    if config.total_timeout is not None:
        deadline = asyncio.get_running_loop().time() + config.total_timeout
    return Watch(
        connect=config.connect_timeout,
        idle=config.read_timeout,
        total=config.total_timeout,
        deadline=deadline,
        speed_limit=config.speed_limit,
        speed_time=config.speed_time,
    )


@asynccontextmanager
async def open_answer(
    client: Opener,
    url: str,
    headers: Mapping[str, str],
    *,
    max_bytes: int | None,
    accept_gzip: bool | None,
    fast: bool,
    progress: ProgressCallback | None,
) -> AsyncIterator[FastStream | Stream]:
    """The answer to a download's GET: on the raw path when `fast` and it can be, else the
    engine's `Stream` (with every option that path honours)."""
    if fast:
        stream = await open_fast(client, url, headers, max_bytes=max_bytes, progress=progress)
        if stream is not None:
            try:
                yield stream
            finally:
                stream.close()
            return
    async with client.stream(
        url, headers=headers, max_bytes=max_bytes, accept_gzip=accept_gzip, progress=progress
    ) as engine_stream:
        yield engine_stream


__all__ = ["ENV_SWITCH", "WRITEBACK_BYTES", "FastStream", "open_answer", "usable"]
