"""Hostile peers (issue 10): a server that stacks codings, drips heads, never stops sending
interim answers or stops reading an upload; each ends with a typed error and curl's exit code.

Servers are raw asyncio sockets on 127.0.0.1 (`tests.faults.RawServer` or small ones here);
the CLI runs as a real child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from streamer.core.http1 import simple_request
from streamer.errors import TransferTimeout
from streamer.lane.connection import Lane, Timeouts
from tests.faults import End, RawFactory, head
from tests.helpers import one_error_line, streamer


async def test_cli_refuses_a_thousand_stacked_gzip_codings(
    raw_server: RawFactory, tmp_path: Path
) -> None:
    """--compressed against 1,000 stacked gzip codings: one line, exit 61, no file."""
    body = b"x"
    for _ in range(1000):
        body = gzip.compress(body, mtime=0)
    coding = ", ".join(["gzip"] * 1000)
    srv = await raw_server(
        [head(Content_Encoding=coding, Content_Length=len(body), Connection="close") + body],
        End.CLOSE,
    )
    target = tmp_path / "out"
    run = await streamer("get", "--compressed", "-o", str(target), srv.url)
    one_error_line(run, 61, "1000 codings")
    assert not target.exists()


async def test_lane_hands_one_byte_chunks_to_the_sink_in_reads_not_chunks(
    raw_server: RawFactory,
) -> None:
    """The lane's work per chunked body is linear and per read, not per chunk: 200 KB of
    one-byte chunks reach the sink whole in far fewer calls than chunks (one write each)."""
    body = bytes(range(256)) * 800
    wire = b"".join(b"1\r\n%c\r\n" % byte for byte in body) + b"0\r\n\r\n"
    srv = await raw_server([head(Transfer_Encoding="chunked") + wire], End.CLOSE)
    origin, target = simple_request(srv.url) or pytest.fail("not simple")
    lane = Lane(Timeouts(5.0, 10.0, None), ssl.create_default_context)
    got, calls = bytearray(), [0]

    def sink(piece: memoryview) -> None:
        calls[0] += 1
        got.extend(piece)

    try:
        reply = await lane.get(origin, target, [], sink=sink, max_body=1 << 20, url=srv.url)
    finally:
        lane.close()
    assert reply.read and bytes(got) == body
    assert calls[0] <= len(body) // 64, calls[0]


# --- the stall window covers the whole exchange (curl's --speed-limit/--speed-time) -----------

SLOW = ("--speed-limit", "1000", "--speed-time", "2", "--retry", "0", "--read-timeout", "60")
PEER_LIFE = 40.0  # seconds a hostile peer keeps going at most (the client must leave first)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def peer(handler: Handler) -> AsyncIterator[str]:
    """A raw server on 127.0.0.1 running `handler` per connection (for at most PEER_LIFE s);
    yields its URL and stops every connection afterwards."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            async with asyncio.timeout(PEER_LIFE):
                await handler(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()
            tasks.discard(task)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/f"
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def _drip_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    text = head(Content_Length=5, X_Filler="y" * 10_000)
    for i in range(0, len(text), 2):  # 2 bytes every half second: 4 bytes/s
        writer.write(text[i : i + 2])
        await writer.drain()
        await asyncio.sleep(0.5)


async def _endless_interim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    while True:  # RFC 2518 102 Processing, for ever (bounded by PEER_LIFE)
        writer.write(b"HTTP/1.1 102 Processing\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)


async def _stop_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(PEER_LIFE)  # the body fills the socket buffers, then nothing moves


@pytest.mark.timeout(120)
@pytest.mark.parametrize("handler", [_drip_head, _endless_interim], ids=["drip", "102"])
async def test_speed_limit_covers_the_response_head(handler: Handler, tmp_path: Path) -> None:
    """A head dripped at 4 bytes/s, or endless 102 answers: exit 28 (too slow), no file."""
    async with peer(handler) as url:
        run = await streamer("get", *SLOW, "-o", str(tmp_path / "f"), url, timeout=60)
    one_error_line(run, 28, "too slow")
    assert not (tmp_path / "f").exists()


@pytest.mark.timeout(120)
async def test_speed_limit_covers_an_upload_the_peer_stops_reading(tmp_path: Path) -> None:
    """An upload to a peer that stops reading ends with exit 28 (too slow), not a hang."""
    src = tmp_path / "src.bin"
    with src.open("wb") as f:
        f.truncate(64 << 20)  # more than loopback's socket buffers can hold
    async with peer(_stop_reading) as url:
        run = await streamer("put", *SLOW, str(src), url, timeout=60)
    one_error_line(run, 28, "too slow")


@pytest.mark.parametrize(
    ("timeouts", "said"),
    [
        (Timeouts(5.0, 0.3, None), "read timeout (0.3 s)"),
        (Timeouts(5.0, 5.0, 0.3), "total timeout (0.3 s)"),
    ],
    ids=["read", "total"],
)
async def test_lane_timeouts_say_which_and_their_value(
    raw_server: RawFactory, timeouts: Timeouts, said: str
) -> None:
    """The lane words its timeouts as the engine does: which one, and its value."""
    srv = await raw_server([head(Content_Length=10) + b"abc"], End.STALL)
    origin, target = simple_request(srv.url) or pytest.fail("not simple")
    lane = Lane(timeouts, ssl.create_default_context)
    try:
        with pytest.raises(TransferTimeout) as info:
            await lane.get(origin, target, [], sink=lambda _: None, max_body=100, url=srv.url)
    finally:
        lane.close()
    assert said in str(info.value)
