"""Client.download/fetch/stream against real misbehaving servers: success, framing, failures."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

import streamer
from streamer import Client, Phase, Progress, Result
from streamer.storage.files import part_path
from tests.faults import (
    HEAD_200,
    SEEN,
    WRITTEN,
    ClientFactory,
    End,
    RawFactory,
    check_error,
    data,
    head,
)
from tests.helpers import assert_nothing_left as _assert_nothing_left
from tests.helpers import url_of as _url

OLD = b"the previous, complete version of the file\n"


async def _fails(
    client: Client, url: str, target: Path, kind: type[Exception], result: Result, **kw: object
) -> streamer.StreamerError:
    """Download `url`, expecting `kind` with `result`; check no file is left behind."""
    with pytest.raises(kind) as info:
        await client.download(url, target, **kw)  # type: ignore[arg-type]
    check_error(info.value, result)
    _assert_nothing_left(target)
    assert isinstance(info.value, streamer.StreamerError)
    return info.value


# --- success ----------------------------------------------------------------------------------


async def test_download_success_fields(
    fault_server: TestServer, client: Client, tmp_path: Path, payload: bytes
) -> None:
    """A complete body lands byte for byte under the target name with truthful result fields."""
    target = tmp_path / "out.bin"
    result = await client.download(_url(fault_server, "/bytes/65536"), target)
    assert target.read_bytes() == payload
    assert not part_path(target).exists()
    assert result.result is Result.SUCCESS
    assert (result.status, result.size, result.path) == (200, len(payload), target)
    assert result.elapsed > 0
    assert result.length_verified is True
    assert result.redirects == 0
    assert result.final_url == result.url == _url(fault_server, "/bytes/65536")
    assert result.content_type == "application/octet-stream"


async def test_download_chunked_success(
    fault_server: TestServer, client: Client, tmp_path: Path, payload: bytes
) -> None:
    """A chunked body with its last chunk is complete and length-verified."""
    target = tmp_path / "out.bin"
    result = await client.download(_url(fault_server, "/chunked/65536"), target)
    assert target.read_bytes() == payload
    assert result.length_verified is True


async def test_download_empty_body(
    fault_server: TestServer, client: Client, tmp_path: Path
) -> None:
    """Content-Length: 0 gives an empty, existing file."""
    target = tmp_path / "empty"
    result = await client.download(_url(fault_server, "/bytes/0"), target)
    assert target.read_bytes() == b""
    assert result.size == 0


async def test_download_overwrites_existing_target_on_success(
    fault_server: TestServer, client: Client, tmp_path: Path
) -> None:
    """A successful download replaces an existing target whole."""
    target = tmp_path / "out.bin"
    target.write_bytes(OLD * 100)
    await client.download(_url(fault_server, "/bytes/10"), target)
    assert target.read_bytes() == data(10)


async def test_close_delimited_body_is_success_unverified(
    raw_server: RawFactory, client: Client, tmp_path: Path
) -> None:
    """A body ended by the server closing (no length, not chunked) succeeds, length unverified."""
    srv = await raw_server([HEAD_200, b"hello ", b"world"], End.CLOSE, delay=0.05)
    target = tmp_path / "out"
    result = await client.download(srv.url + "f", target)
    assert target.read_bytes() == b"hello world"
    assert result.length_verified is False
    assert result.size == 11


# --- truncation -------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_truncated_content_length(
    fault_server: TestServer, client: Client, tmp_path: Path, how: str
) -> None:
    """A body shorter than its Content-Length is PARTIAL_BODY, with received/expected counts."""
    url = _url(fault_server, f"/cut/100000/30000?how={how}")
    err = await _fails(
        client, url, tmp_path / "t", streamer.BodyTruncatedError, Result.PARTIAL_BODY
    )
    assert isinstance(err, streamer.BodyTruncatedError)
    assert (err.received, err.expected) == (30000, 100000)
    assert "30000" in str(err)
    assert err.retryable is True
    assert err.exit_code == 18


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_raw_content_length_lie(
    raw_server: RawFactory, client: Client, tmp_path: Path, how: str
) -> None:
    """A raw Content-Length lie (10 promised, 3 sent, then FIN or RST) is PARTIAL_BODY."""
    srv = await raw_server([head(Content_Length=10), b"abc"], End(how))
    err = await _fails(
        client, srv.url, tmp_path / "t", streamer.BodyTruncatedError, Result.PARTIAL_BODY
    )
    assert isinstance(err, streamer.BodyTruncatedError)
    assert (err.received, err.expected) == (3, 10)


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_chunked_without_last_chunk(
    fault_server: TestServer, client: Client, tmp_path: Path, how: str
) -> None:
    """A chunked body cut before its 0-chunk is CHUNKED_BODY_SIZE_MISMATCH (a truncation)."""
    url = _url(fault_server, f"/cut-chunked/30000?how={how}")
    err = await _fails(
        client,
        url,
        tmp_path / "t",
        streamer.BodyTruncatedError,
        Result.CHUNKED_BODY_SIZE_MISMATCH,
    )
    assert isinstance(err, streamer.BodyTruncatedError)
    assert err.expected is None


FAILURES: dict[str, tuple[str, dict[str, object]]] = {
    "truncated": ("/cut/100000/30000", {}),
    "reset": ("/cut/100000/30000?how=abort", {}),
    "no-last-chunk": ("/cut-chunked/30000", {}),
    "status-400": ("/status/400", {}),
    "status-503": ("/status/503", {}),
    "redirect-loop": ("/loop", {}),
    "unsafe-redirect": ("/to?url=file:///etc/passwd", {}),
    "too-large": ("/bytes/65536", {"max_bytes": 1000}),
    "too-large-chunked": ("/chunked/65536", {"max_bytes": 1000}),
    "checksum": ("/bytes/100", {"checksum": "sha256:" + "0" * 64}),
}


@pytest.mark.parametrize("case", FAILURES.values(), ids=FAILURES.keys())
async def test_failure_leaves_existing_target_untouched(
    fault_server: TestServer, client: Client, tmp_path: Path, case: tuple[str, dict[str, object]]
) -> None:
    """After any failure an existing target keeps its old bytes and no .part remains."""
    path, options = case
    target = tmp_path / "keep.bin"
    target.write_bytes(OLD)
    with pytest.raises(streamer.StreamerError):
        await client.download(_url(fault_server, path), target, **options)  # type: ignore[arg-type]
    assert target.read_bytes() == OLD
    assert not part_path(target).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bin"]


async def test_cancelled_download_leaves_target_untouched(
    fault_server: TestServer, client: Client, tmp_path: Path
) -> None:
    """Cancelling a download mid-body propagates CancelledError and leaves the target as it was."""
    target = tmp_path / "keep.bin"
    target.write_bytes(OLD)
    task = asyncio.create_task(client.download(_url(fault_server, "/drip/200?every=0.02"), target))
    for _ in range(200):  # until some body bytes have gone out
        if fault_server.app[WRITTEN].get("/drip/200", 0) >= 5:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert target.read_bytes() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bin"]


async def test_stale_part_file_is_replaced_and_removed_on_failure(
    fault_server: TestServer, client: Client, tmp_path: Path
) -> None:
    """A stale .part from an earlier run is never published: truncated, then removed on failure."""
    target = tmp_path / "t"
    part_path(target).write_bytes(b"stale" * 1000)
    with pytest.raises(streamer.BodyTruncatedError):
        await client.download(_url(fault_server, "/cut/1000/10"), target)
    _assert_nothing_left(target)


# --- status and protocol errors ---------------------------------------------------------------


@pytest.mark.parametrize(("code", "retryable"), [(400, False), (404, False), (503, True)])
async def test_http_error_status(
    fault_server: TestServer, client: Client, tmp_path: Path, code: int, retryable: bool
) -> None:
    """A real status >= 400 is HTTPStatusError/HTTP_ERROR with the status; nothing written."""
    url = _url(fault_server, f"/status/{code}")
    err = await _fails(client, url, tmp_path / "t", streamer.HTTPStatusError, Result.HTTP_ERROR)
    assert isinstance(err, streamer.HTTPStatusError)
    assert err.status == code
    assert err.retryable is retryable
    assert err.exit_code == 22


async def test_fetch_raises_for_status_stream_does_not(
    fault_server: TestServer, client: Client
) -> None:
    """fetch() raises HTTPStatusError for a 400; stream() hands the 400 response back."""
    url = _url(fault_server, "/status/400")
    with pytest.raises(streamer.HTTPStatusError) as info:
        await client.fetch(url)
    check_error(info.value, Result.HTTP_ERROR)
    async with client.stream(url) as stream:
        assert stream.status == 400
        assert b"on purpose" in await stream.read()


MALFORMED = {
    "not-http": b"garbage\r\n\r\n",
    "bad-status-code": b"HTTP/1.1 abc OK\r\n\r\n",
    "header-without-colon": b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    "bad-content-length": b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    "bad-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
    # A body of exactly its length followed, in the same segment, by bytes that are no response.
    "garbage-after-body": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcGARBAGE",
    "length-and-chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    ),
    "huge-header": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
}


@pytest.mark.parametrize("reply", MALFORMED.values(), ids=MALFORMED.keys())
async def test_unparsable_response_is_invalid_response(
    raw_server: RawFactory, client: Client, tmp_path: Path, reply: bytes
) -> None:
    """A reply aiohttp cannot parse is ProtocolError/INVALID_RESPONSE, never HTTP_ERROR 400."""
    srv = await raw_server([reply], End.CLOSE)
    err = await _fails(
        client, srv.url, tmp_path / "t", streamer.ProtocolError, Result.INVALID_RESPONSE
    )
    assert not isinstance(err, streamer.HTTPStatusError)
    assert len(srv.requests) == 1


async def test_connection_refused(client: Client, tmp_path: Path) -> None:
    """Nobody listening on the port is ConnectError/CANT_CONNECT."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: the port refuses connections
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/x"
        err = await _fails(client, url, tmp_path / "t", streamer.ConnectError, Result.CANT_CONNECT)
    assert err.exit_code == 7
    assert "refused" in str(err)


async def test_server_closes_without_response(
    raw_server: RawFactory, client: Client, tmp_path: Path
) -> None:
    """A server that reads the request and closes without a byte of reply is NO_RESPONSE."""
    srv = await raw_server([], End.CLOSE)
    await _fails(client, srv.url, tmp_path / "t", streamer.ConnectionLostError, Result.NO_RESPONSE)
    # aiohttp itself repeats an idempotent request once after a disconnect without a reply.
    assert len(srv.requests) in (1, 2)


async def test_server_resets_without_response(
    raw_server: RawFactory, client: Client, tmp_path: Path
) -> None:
    """A reset instead of a reply is ConnectionLostError/CONNECTION_ERROR (pinned behaviour)."""
    srv = await raw_server([], End.ABORT)
    target = tmp_path / "t"
    await _fails(client, srv.url, target, streamer.ConnectionLostError, Result.CONNECTION_ERROR)


async def test_server_accepts_and_closes_unread(
    raw_server: RawFactory, client: Client, tmp_path: Path
) -> None:
    """Accept-then-close before reading the request (the kernel resets): a ConnectionLostError."""
    srv = await raw_server([], End.CLOSE, read_request=False)
    with pytest.raises(streamer.ConnectionLostError) as info:
        await client.download(srv.url, tmp_path / "t")
    assert info.value.result in (Result.NO_RESPONSE, Result.CONNECTION_ERROR)
    check_error(info.value, info.value.result)
    _assert_nothing_left(tmp_path / "t")


async def test_server_dies_mid_headers(
    raw_server: RawFactory, client: Client, tmp_path: Path
) -> None:
    """A reply cut inside its head is a ConnectionLostError (no aiohttp type), nothing written."""
    srv = await raw_server([b"HTTP/1.1 200 OK\r\nContent-Le"], End.CLOSE)
    target = tmp_path / "t"
    with pytest.raises(streamer.ConnectionLostError) as info:
        await client.download(srv.url, target)
    check_error(info.value, info.value.result)
    _assert_nothing_left(target)


async def test_server_dies_mid_headers_is_not_no_response(
    raw_server: RawFactory, client: Client, tmp_path: Path
) -> None:
    """NO_RESPONSE means no byte of reply came: a half-sent head is CONNECTION_ERROR instead."""
    srv = await raw_server([b"HTTP/1.1 200 OK\r\nContent-Le"], End.CLOSE)
    with pytest.raises(streamer.StreamerError) as info:
        await client.download(srv.url, tmp_path / "t")
    assert info.value.result in (Result.CONNECTION_ERROR, Result.INVALID_RESPONSE)


# --- checksum ---------------------------------------------------------------------------------


async def test_checksum_match(
    fault_server: TestServer, client: Client, tmp_path: Path, payload: bytes
) -> None:
    """A matching checksum publishes the file and reports the checksum in the result."""
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    target = tmp_path / "ok"
    result = await client.download(_url(fault_server, "/bytes/65536"), target, checksum=digest)
    assert result.checksum == digest
    assert target.read_bytes() == payload


async def test_checksum_mismatch(
    fault_server: TestServer, client: Client, tmp_path: Path, payload: bytes
) -> None:
    """A mismatching checksum is CHECKSUM_MISMATCH; no target, no .part, old target kept."""
    wrong = hashlib.sha256(payload + b"x").hexdigest()
    url = _url(fault_server, "/bytes/65536")
    err = await _fails(
        client,
        url,
        tmp_path / "bad",
        streamer.ChecksumMismatch,
        Result.CHECKSUM_MISMATCH,
        checksum=f"sha256:{wrong}",
    )
    assert isinstance(err, streamer.ChecksumMismatch)
    assert err.expected == wrong
    assert err.actual == hashlib.sha256(payload).hexdigest()
    kept = tmp_path / "kept"
    kept.write_bytes(OLD)
    with pytest.raises(streamer.ChecksumMismatch):
        await client.download(url, kept, checksum=f"sha256:{wrong}")
    assert kept.read_bytes() == OLD
    assert not part_path(kept).exists()


# --- fetch and stream -------------------------------------------------------------------------


async def test_fetch_returns_body(fault_server: TestServer, client: Client, payload: bytes) -> None:
    """fetch() returns the whole body and the response's facts."""
    result = await client.fetch(_url(fault_server, "/bytes/65536"))
    assert result.body == payload
    assert result.status == 200
    assert result.length_verified is True
    assert result.headers["Content-Length"] == "65536"


async def test_fetch_decodes_gzip_by_default(fault_server: TestServer, client: Client) -> None:
    """fetch() asks for and undoes gzip unless told otherwise."""
    result = await client.fetch(_url(fault_server, "/gzip/50000"))
    assert result.body == data(50000)
    assert "gzip" in fault_server.app[SEEN][-1].headers["Accept-Encoding"]


@pytest.mark.parametrize("path", ["/bytes/65536", "/chunked/65536"])
async def test_fetch_refuses_over_max_bytes(
    fault_server: TestServer, client: Client, path: str
) -> None:
    """fetch() with a body over max_bytes raises BodyTooLarge instead of returning a prefix."""
    with pytest.raises(streamer.BodyTooLarge) as info:
        await client.fetch(_url(fault_server, path), max_bytes=1000)
    check_error(info.value, Result.BODY_SIZE_LIMIT_EXCEEDED)
    assert info.value.limit == 1000


STREAMS = {
    "length": ("/bytes/65536", False, 65536),
    "chunked": ("/chunked/65536", True, None),
    "gzip": ("/gzip/65536", False, None),
}


@pytest.mark.parametrize("case", STREAMS.values(), ids=STREAMS.keys())
async def test_stream_chunks_bounded_by_chunk_size(
    fault_server: TestServer,
    make_client: ClientFactory,
    payload: bytes,
    case: tuple[str, bool, int | None],
) -> None:
    """stream() never yields a chunk over chunk_size and reports framing truthfully."""
    path, chunked, length = case
    client = await make_client(chunk_size=1000, accept_gzip=True)
    async with client.stream(_url(fault_server, path)) as stream:
        assert stream.chunked is chunked
        if length is not None:
            assert stream.content_length == length
        sizes: list[int] = []
        body = bytearray()
        async for chunk in stream:
            sizes.append(len(chunk))
            body += chunk
        assert stream.length_verified is True
    assert bytes(body) == payload
    assert max(sizes) <= 1000
    assert len(sizes) >= 66


async def test_stream_close_delimited_is_unverified(raw_server: RawFactory, client: Client) -> None:
    """stream() of a close-delimited body reads it all and says its length is unverified."""
    srv = await raw_server([HEAD_200, b"x" * 5000], End.CLOSE)
    async with client.stream(srv.url) as stream:
        assert stream.content_length is None
        assert stream.chunked is False
        assert await stream.read() == b"x" * 5000
        assert stream.length_verified is False


async def test_stream_body_read_only_once(fault_server: TestServer, client: Client) -> None:
    """A stream's body can be iterated once; a second read is a UsageError."""
    async with client.stream(_url(fault_server, "/bytes/10")) as stream:
        assert await stream.read() == data(10)
        with pytest.raises(streamer.UsageError):
            await stream.read()


async def test_progress_phases_and_monotonic_done(
    fault_server: TestServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    """Progress reports go through BODY to DONE, `done` never decreases and ends at the size."""
    client = await make_client(chunk_size=4096)
    events: list[Progress] = []
    target = tmp_path / "p"
    await client.download(_url(fault_server, "/bytes/65536"), target, progress=events.append)
    phases = [e.phase for e in events]
    assert Phase.BODY in phases
    assert phases[-1] is Phase.DONE
    assert phases.index(Phase.BODY) < phases.index(Phase.FINALIZING) < phases.index(Phase.DONE)
    assert Phase.REQUESTING in phases
    assert phases.index(Phase.REQUESTING) < phases.index(Phase.BODY)
    dones = [e.done for e in events if e.phase in (Phase.BODY, Phase.FINALIZING, Phase.DONE)]
    assert dones == sorted(dones)
    assert dones[-1] == 65536
    assert len([e for e in events if e.phase is Phase.BODY]) > 2
    assert all(e.total == 65536 for e in events if e.phase is Phase.BODY)
