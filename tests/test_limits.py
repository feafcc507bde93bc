"""Limits before damage: body size, decompression bombs, slow drips, stalls and total time."""

from __future__ import annotations

import gzip
import time
import tracemalloc
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

import streamer
from streamer import Client, Phase, Progress, Result
from tests.faults import (
    SEEN,
    WRITTEN,
    ClientFactory,
    End,
    RawFactory,
    check_error,
    data,
    gzip_bytes,
    head,
)
from tests.helpers import assert_nothing_left as _assert_nothing_left
from tests.helpers import url_of as _url

# --- max_bytes --------------------------------------------------------------------------------


async def test_declared_length_over_limit_refused_before_body(
    fault_server: TestServer, client: Client, tmp_path: Path
) -> None:
    """A Content-Length over max_bytes is BodyTooLarge before any body byte is read."""
    events: list[Progress] = []
    target = tmp_path / "big"
    with pytest.raises(streamer.BodyTooLarge) as info:
        await client.download(
            _url(fault_server, "/bytes/65536"), target, max_bytes=1000, progress=events.append
        )
    check_error(info.value, Result.BODY_SIZE_LIMIT_EXCEEDED)
    assert info.value.limit == 1000
    assert info.value.exit_code == 63
    assert all(e.done == 0 for e in events)
    _assert_nothing_left(target)


async def test_declared_length_over_limit_stream_reads_nothing(
    fault_server: TestServer, client: Client
) -> None:
    """stream(): the declared-length check fires on the first iteration with 0 bytes received."""
    async with client.stream(_url(fault_server, "/bytes/65536"), max_bytes=1000) as stream:
        with pytest.raises(streamer.BodyTooLarge):
            async for _ in stream:
                pytest.fail("a chunk was delivered past a declared length over the limit")
        assert stream.received == 0
        assert stream.delivered == 0


async def test_declared_huge_length_fails_fast(
    raw_server: RawFactory, client: Client, tmp_path: Path
) -> None:
    """A 1 TB Content-Length with max_bytes fails at once, without waiting for body bytes."""
    srv = await raw_server([head(Content_Length=10**12), b"x" * 100], End.STALL)
    started = time.monotonic()
    with pytest.raises(streamer.BodyTooLarge):
        await client.download(srv.url, tmp_path / "t", max_bytes=10_000)
    # No read was waited on: that would take the read_timeout (5 s) before failing.
    assert time.monotonic() - started < 5.0
    _assert_nothing_left(tmp_path / "t")


async def test_chunked_over_limit_stops_at_limit(
    fault_server: TestServer, make_client: ClientFactory
) -> None:
    """A chunked body over max_bytes raises once past the limit; no more than it is delivered."""
    client = await make_client(chunk_size=1000)
    delivered = 0
    async with client.stream(_url(fault_server, "/chunked/65536"), max_bytes=10_000) as stream:
        assert stream.content_length is None
        with pytest.raises(streamer.BodyTooLarge) as info:
            async for chunk in stream:
                delivered += len(chunk)
    check_error(info.value, Result.BODY_SIZE_LIMIT_EXCEEDED)
    assert delivered == 10_000


async def test_chunked_over_limit_download(
    fault_server: TestServer, client: Client, tmp_path: Path
) -> None:
    """download() of a chunked body over max_bytes fails and leaves no file."""
    target = tmp_path / "t"
    with pytest.raises(streamer.BodyTooLarge):
        await client.download(_url(fault_server, "/chunked/65536"), target, max_bytes=10_000)
    _assert_nothing_left(target)


@pytest.mark.parametrize("path", ["/bytes/10000", "/chunked/10000"])
async def test_body_of_exactly_the_limit_succeeds(
    fault_server: TestServer, client: Client, tmp_path: Path, path: str
) -> None:
    """A body of exactly max_bytes is allowed (the limit is inclusive)."""
    target = tmp_path / "t"
    result = await client.download(_url(fault_server, path), target, max_bytes=10_000)
    assert result.size == 10_000
    assert target.read_bytes() == data(10_000)


@pytest.mark.parametrize("path", ["/bytes/10001", "/chunked/10001"])
async def test_body_one_over_the_limit_fails(
    fault_server: TestServer, client: Client, tmp_path: Path, path: str
) -> None:
    """A body one byte over max_bytes is refused."""
    with pytest.raises(streamer.BodyTooLarge):
        await client.download(_url(fault_server, path), tmp_path / "t", max_bytes=10_000)
    _assert_nothing_left(tmp_path / "t")


async def test_close_delimited_over_limit(
    raw_server: RawFactory, client: Client, tmp_path: Path
) -> None:
    """A close-delimited body (no length to check up front) is cut at max_bytes too."""
    srv = await raw_server([b"HTTP/1.1 200 OK\r\n\r\n", b"y" * 50_000], End.CLOSE)
    with pytest.raises(streamer.BodyTooLarge):
        await client.download(srv.url, tmp_path / "t", max_bytes=1000)
    _assert_nothing_left(tmp_path / "t")


# --- content coding ---------------------------------------------------------------------------


async def test_gzip_bomb_stops_at_limit_with_flat_memory(
    fault_server: TestServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    """A 256 MiB gzip bomb with accept_gzip stops at max_bytes, quickly, in bounded memory."""
    client = await make_client(accept_gzip=True, chunk_size=64 * 1024)
    target = tmp_path / "bomb"
    tracemalloc.start()
    try:
        with pytest.raises(streamer.BodyTooLarge) as info:
            await client.download(_url(fault_server, "/gzip-bomb/256"), target, max_bytes=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    check_error(info.value, Result.BODY_SIZE_LIMIT_EXCEEDED)
    assert peak < 24 << 20, f"peak traced memory {peak} bytes"
    _assert_nothing_left(target)


async def test_gzip_kept_as_is_without_accept_gzip(
    fault_server: TestServer, client: Client, tmp_path: Path
) -> None:
    """Without accept_gzip a gzip body is saved as the raw bytes sent (curl's behaviour)."""
    target = tmp_path / "raw.gz"
    result = await client.download(_url(fault_server, "/gzip/50000"), target)
    assert target.read_bytes() == gzip_bytes(data(50000))
    assert gzip.decompress(target.read_bytes()) == data(50000)
    assert result.length_verified is True


async def test_gzip_bomb_raw_is_not_decoded_without_accept_gzip(
    fault_server: TestServer, client: Client, tmp_path: Path
) -> None:
    """Without accept_gzip the limit counts wire bytes: a small raw bomb fits a small limit."""
    target = tmp_path / "raw.gz"
    await client.download(_url(fault_server, "/gzip-bomb/4"), target, max_bytes=64 * 1024)
    assert gzip.decompress(target.read_bytes()) == bytes(4 << 20)


async def test_gzip_decoded_with_accept_gzip(
    fault_server: TestServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    """With accept_gzip the body is decoded and the request says it accepts gzip."""
    client = await make_client(accept_gzip=True)
    target = tmp_path / "plain"
    result = await client.download(_url(fault_server, "/gzip/50000"), target)
    assert target.read_bytes() == data(50000)
    assert result.size == 50000
    assert "gzip" in fault_server.app[SEEN][-1].headers["Accept-Encoding"]


async def test_download_asks_identity_by_default(
    fault_server: TestServer, client: Client, tmp_path: Path
) -> None:
    """download() sends Accept-Encoding: identity unless accept_gzip is set."""
    await client.download(_url(fault_server, "/bytes/10"), tmp_path / "t")
    assert fault_server.app[SEEN][-1].headers["Accept-Encoding"] == "identity"


async def test_corrupt_gzip_is_decompress_error(
    raw_server: RawFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    """A body that claims gzip but is not is DecompressError/BODY_DECOMPRESS_FAILED."""
    body = b"\x1f\x8b\x08\x00" + b"not really gzip at all" * 10
    srv = await raw_server([head(Content_Length=len(body), Content_Encoding="gzip"), body])
    client = await make_client(accept_gzip=True)
    with pytest.raises(streamer.DecompressError) as info:
        await client.download(srv.url, tmp_path / "t")
    check_error(info.value, Result.BODY_DECOMPRESS_FAILED)
    _assert_nothing_left(tmp_path / "t")


async def test_truncated_gzip_stream_is_decompress_error(
    raw_server: RawFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    """A complete HTTP body holding a cut gzip stream is DecompressError, not success."""
    body = gzip_bytes(data(50000))[:-20]
    srv = await raw_server([head(Content_Length=len(body), Content_Encoding="gzip"), body])
    client = await make_client(accept_gzip=True)
    with pytest.raises(streamer.DecompressError) as info:
        await client.download(srv.url, tmp_path / "t")
    check_error(info.value, Result.BODY_DECOMPRESS_FAILED)
    _assert_nothing_left(tmp_path / "t")


# --- time limits ------------------------------------------------------------------------------


async def test_drip_below_speed_limit_is_too_slow(
    fault_server: TestServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    """A drip that never goes idle (read_timeout never fires) is TOO_SLOW by speed_limit."""
    client = await make_client(read_timeout=3.0, speed_limit=1000, speed_time=0.5)
    started = time.monotonic()
    with pytest.raises(streamer.TooSlowError) as info:
        await client.download(_url(fault_server, "/drip/100?every=0.05"), tmp_path / "t")
    elapsed = time.monotonic() - started
    check_error(info.value, Result.TOO_SLOW)
    assert isinstance(info.value, TimeoutError)
    assert elapsed > 0.4  # the window had to pass; the drip alone would succeed after 5 s
    assert fault_server.app[WRITTEN]["/drip/100"] >= 3  # bytes kept coming: reads succeeded
    _assert_nothing_left(tmp_path / "t")


async def test_drip_above_speed_limit_succeeds(
    fault_server: TestServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    """A transfer faster than speed_limit is not aborted by the speed check."""
    client = await make_client(speed_limit=5, speed_time=0.3)
    result = await client.download(_url(fault_server, "/drip/10?every=0.02"), tmp_path / "t")
    assert result.size == 10


async def test_complete_stall_hits_read_timeout(
    fault_server: TestServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    """A server that goes silent mid-body is TransferTimeout/TIMEOUT after read_timeout."""
    client = await make_client(read_timeout=0.3)
    with pytest.raises(streamer.TransferTimeout) as info:
        await client.download(_url(fault_server, "/stall/100000/1000"), tmp_path / "t")
    check_error(info.value, Result.TIMEOUT)
    assert not isinstance(info.value, streamer.TooSlowError)
    _assert_nothing_left(tmp_path / "t")


async def test_stall_before_headers_hits_read_timeout(
    raw_server: RawFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    """A server that never answers the request is TIMEOUT after read_timeout."""
    srv = await raw_server([], End.STALL)
    client = await make_client(read_timeout=0.3)
    with pytest.raises(streamer.TransferTimeout) as info:
        await client.download(srv.url, tmp_path / "t")
    check_error(info.value, Result.TIMEOUT)


async def test_total_timeout_during_body(
    fault_server: TestServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    """total_timeout ends a transfer that keeps moving but takes too long: TIMEOUT."""
    client = await make_client(total_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(streamer.TransferTimeout) as info:
        await client.download(_url(fault_server, "/drip/200?every=0.02"), tmp_path / "t")
    check_error(info.value, Result.TIMEOUT)
    assert time.monotonic() - started > 0.4  # the drip alone would succeed after 4 s
    _assert_nothing_left(tmp_path / "t")


async def test_total_timeout_before_headers(
    raw_server: RawFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    """total_timeout also bounds the wait for the response head: TIMEOUT."""
    srv = await raw_server([], End.STALL)
    client = await make_client(total_timeout=0.4)
    with pytest.raises(streamer.TransferTimeout) as info:
        await client.download(srv.url, tmp_path / "t")
    check_error(info.value, Result.TIMEOUT)


async def test_total_timeout_covers_slow_redirects(
    raw_server: RawFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    """total_timeout is one budget for the whole chain, not per request."""
    redirect = head("HTTP/1.1 302 Found", Location="/next", Content_Length=0, Connection="close")
    srv = await raw_server([b"", redirect], End.CLOSE, delay=0.3)
    client = await make_client(total_timeout=1.0)
    with pytest.raises(streamer.StreamerError) as info:
        await client.download(srv.url, tmp_path / "t")
    check_error(info.value, Result.TIMEOUT)
    assert len(srv.requests) >= 3


async def test_stream_progress_starts_with_body(fault_server: TestServer, client: Client) -> None:
    """stream() reports BODY with done=0 before the first chunk, then growing counts."""
    events: list[Progress] = []
    async with client.stream(_url(fault_server, "/bytes/1000"), progress=events.append) as s:
        await s.read()
    body = [e for e in events if e.phase is Phase.BODY]
    assert body[0].done == 0
    assert body[-1].done == 1000
