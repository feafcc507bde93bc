"""Zero-copy uploads: file bodies over plain http go out by ``sendfile`` on a raw socket.

The servers are raw asyncio sockets on 127.0.0.1 that read (or refuse to read) what arrives;
the real tus server and the built-in server judge the rest. That sendfile ran is observed on
`lane.sendbody.SENDFILE_CALLS`, the count of kernel copies from a file to a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from streamer import (
    Client,
    ConnectError,
    ConnectionLostError,
    HTTPStatusError,
    Result,
    TransferTimeout,
)
from streamer.core.retry import RetryPolicy
from streamer.http.bodies import FilePart, MultipartBody, TextPart
from streamer.lane import sendbody
from tests.conftest import CLIENT_DEFAULTS
from tests.faults import check_error
from tests.helpers import ThreadedServer, closed_port, file_digest, peak_rss
from tests.tus_peer import TusPeer, start_tus

MiB = 1 << 20
BODY = bytes(range(251)) * (12 * MiB // 251)  # not a multiple of anything round
OK = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


@dataclass
class Receiver:
    """Reads each request's head and body; `mode` says how it misbehaves."""

    mode: str = "ok"  # ok | cut-first | cut-always | early-401 | redirect | mute | deaf
    location: str = ""  # where "redirect" sends the client (307, after reading the body)
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    connections: int = 0


def _length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return -1


async def _serve(rx: Receiver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    rx.connections += 1
    head = await reader.readuntil(b"\r\n\r\n")
    rx.heads.append(head)
    if b"expect: 100-continue" in head.lower() and rx.mode != "early-401":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if rx.mode == "deaf":  # reads nothing, answers nothing
        await asyncio.sleep(10)
        return
    if rx.mode == "early-413-close":
        # Answer and close with the body unread: the kernel resets the connection under the
        # client's writes (gunicorn does this); the answer must still win.
        writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig")
        await writer.drain()
        return
    if rx.mode == "early-401":
        # Answer at once and read nothing more: the client must stop sending by itself.
        writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope")
        await writer.drain()
        await asyncio.sleep(10)
        return
    cut = rx.mode == "cut-always" or (rx.mode == "cut-first" and rx.connections == 1)
    want = MiB if cut else _length(head)
    body = await reader.readexactly(want)
    rx.bodies.append(body)
    if rx.mode == "mute":  # the whole body read, and no answer
        await asyncio.sleep(10)
    elif rx.mode == "redirect":
        writer.write(f"HTTP/1.1 307 Again\r\nLocation: {rx.location}\r\n\r\n".encode())
    elif not cut:
        writer.write(OK)
        await writer.drain()


@contextlib.asynccontextmanager
async def receiver(rx: Receiver) -> AsyncIterator[str]:
    tasks: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def run() -> None:
            try:
                with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                    await _serve(rx, reader, writer)
            finally:
                writer.close()

        tasks.append(asyncio.ensure_future(run()))
        with contextlib.suppress(asyncio.CancelledError):  # cancelled when the test ends
            await tasks[-1]

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/up/x.bin"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.close()
        await server.wait_closed()


def body_file(tmp_path: Path) -> Path:
    path = tmp_path / "body.bin"
    if not path.exists():
        path.write_bytes(BODY)
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return body_file(tmp_path)


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with Client(**CLIENT_DEFAULTS) as c:
        yield c


async def test_put_of_a_file_goes_out_by_sendfile(client: Client, source: Path) -> None:
    """A plain-http PUT of a file is sent by sendfile, byte-exact, with its exact length."""
    rx = Receiver()
    before = sendbody.SENDFILE_CALLS[0]
    async with receiver(rx) as url:
        result = await client.upload(url, source)
    assert result.status == 201 and result.sent == len(BODY)
    assert sendbody.SENDFILE_CALLS[0] > before
    assert rx.bodies == [BODY]
    assert _length(rx.heads[0]) == len(BODY)
    assert rx.heads[0].startswith(b"PUT /up/x.bin HTTP/1.1\r\n")


async def test_multipart_sends_file_parts_between_the_framing(
    client: Client, source: Path, tmp_path: Path
) -> None:
    """post -F: file parts go by sendfile between the framing bytes; the body is byte for
    byte the one `MultipartBody` frames, and Content-Length is its exact size."""
    other = tmp_path / "other.txt"
    other.write_bytes(b"second file\n")
    files = [FilePart("a", source), TextPart("note", "hi"), FilePart("b", other)]
    rx = Receiver()
    before = sendbody.SENDFILE_CALLS[0]
    async with receiver(rx) as url:
        await client.upload_form(url, fields=[("k", "v")], files=files)
    assert sendbody.SENDFILE_CALLS[0] > before
    head = rx.heads[0].decode("latin-1")
    boundary = head.split("boundary=", 1)[1].split("\r\n", 1)[0].strip('"')
    expected = MultipartBody([("k", "v")], files, boundary=boundary)
    framed = b"".join([chunk async for chunk in expected.open()])
    assert rx.bodies == [framed]
    assert _length(rx.heads[0]) == len(framed) == expected.length


async def test_307_to_another_origin_resends_without_credentials(
    client: Client, source: Path
) -> None:
    """A 307 from one plain-http origin to another (cross-origin allowed) sends the file
    again, whole and by sendfile; Authorization goes to the first origin only."""
    target = Receiver()
    async with receiver(target) as second:
        first = Receiver(mode="redirect", location=second)
        async with receiver(first) as url:
            before = sendbody.SENDFILE_CALLS[0]
            result = await client.upload(
                url, source, headers={"Authorization": "Bearer s3cret"}, cross_origin=True
            )
    assert result.redirects == 1 and result.status == 201
    assert first.bodies == [BODY] and target.bodies == [BODY]
    assert sendbody.SENDFILE_CALLS[0] >= before + 2
    assert b"authorization: bearer s3cret" in first.heads[0].lower()
    assert b"authorization" not in target.heads[0].lower()


async def test_refused_connection_is_reported_as_by_the_engine(
    client: Client, source: Path
) -> None:
    """A refused connection (nothing sent) is the engine's ConnectError (exit 7), worded
    as on every other path."""
    with pytest.raises(ConnectError) as info:
        await client.upload(f"http://127.0.0.1:{closed_port()}/x.bin", source, retry=0)
    check_error(info.value, Result.CANT_CONNECT)
    assert "connection refused" in str(info.value)


async def test_a_file_system_without_sendfile_still_uploads(
    client: Client, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the kernel refuses sendfile for the file (EINVAL: some FUSE file systems), the
    same bytes are read and sent instead; the body is still byte-exact."""

    def refuse(*_: object) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "sendfile", refuse)
    rx = Receiver()
    async with receiver(rx) as url:
        result = await client.upload(url, source)
    assert result.status == 201 and rx.bodies == [BODY]


async def test_a_stall_window_keeps_the_engine_path(source: Path) -> None:
    """What the raw path does not cover (here --speed-limit) goes through aiohttp, no sendfile."""
    rx = Receiver()
    before = sendbody.SENDFILE_CALLS[0]
    async with Client(**CLIENT_DEFAULTS, speed_limit=1.0) as c, receiver(rx) as url:
        result = await c.upload(url, source)
    assert result.status == 201 and rx.bodies == [BODY]
    assert sendbody.SENDFILE_CALLS[0] == before


async def test_server_closing_mid_body_is_a_connection_error(client: Client, source: Path) -> None:
    """A server that closes after 1 MiB of the body, without an answer, ends the upload in
    ConnectionLostError (exit 56) once the retries are spent; each attempt a new connection."""
    rx = Receiver(mode="cut-always")
    async with receiver(rx) as url:
        with pytest.raises(ConnectionLostError) as info:
            await client.upload(url, source, retry=RetryPolicy(retries=1, delay=0.0))
    check_error(info.value, Result.CONNECTION_ERROR)
    assert rx.connections == 2


async def test_put_is_resent_whole_after_a_cut(client: Client, source: Path) -> None:
    """After a cut the retry sends the file again from its first byte (PUT is idempotent)."""
    rx = Receiver(mode="cut-first")
    async with receiver(rx) as url:
        result = await client.upload(url, source, retry=RetryPolicy(retries=1, delay=0.0))
    assert result.attempts == 2
    assert rx.bodies[-1] == BODY


async def test_early_answer_stops_the_body(client: Client, tmp_path: Path) -> None:
    """A server that answers 401 at once and reads nothing gets no more than the socket
    buffers hold: the client stops sending and reports the status (exit 22)."""
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        for _ in range(64):
            f.write(BODY[:MiB])
    rx = Receiver(mode="early-401")
    async with receiver(rx) as url:
        with pytest.raises(HTTPStatusError) as info:
            await client.upload(url, big, expect_continue=False)
    assert info.value.status == 401
    check_error(info.value, Result.HTTP_ERROR)


async def test_answer_then_reset_reports_the_answer(client: Client, tmp_path: Path) -> None:
    """A 413 followed by a close with the body unread (a reset under our writes) is the
    result every time: HTTPStatusError 413, never a connection error."""
    big = tmp_path / "big.bin"
    big.write_bytes(BODY * 2)
    rx = Receiver(mode="early-413-close")
    async with receiver(rx) as url:
        for _ in range(5):
            with pytest.raises(HTTPStatusError) as info:
                await client.upload(url, big, expect_continue=False)
            assert info.value.status == 413
    assert rx.connections == 5


@pytest.mark.parametrize(
    ("mode", "limit", "words"),
    [
        ("mute", "read_timeout", "read timeout (0.5 s), no data from the server"),
        ("deaf", "read_timeout", "took no bytes of the body for 0.5 s"),
        ("mute", "total_timeout", "total timeout (0.5 s) for the transfer"),
    ],
)
async def test_timeouts_cover_the_upload(tmp_path: Path, mode: str, limit: str, words: str) -> None:
    """The read timeout bounds both waits of an upload (a server that takes no bytes of the
    body, one that reads it all and never answers), the total timeout the whole exchange;
    each ends in TransferTimeout (exit 28) naming the limit."""
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(64 * MiB)  # more than the socket buffers hold
    rx = Receiver(mode=mode)
    options = {**CLIENT_DEFAULTS, limit: 0.5}
    async with Client(**options) as c, receiver(rx) as url:
        with pytest.raises(TransferTimeout) as info:
            await c.upload(url, big if mode == "deaf" else body_file(tmp_path), retry=0)
    check_error(info.value, Result.TIMEOUT)
    assert words in str(info.value)


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusPeer]:
    with start_tus(tmp_path_factory.mktemp("tus-store")) as server:
        yield server


async def test_tus_patch_goes_out_by_sendfile(
    peer: TusPeer, source: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each tus PATCH sends its slice of the file by sendfile; the real server holds the file."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    before = sendbody.SENDFILE_CALLS[0]
    async with Client(**CLIENT_DEFAULTS) as c:
        result = await c.upload_resumable(peer.endpoint, source, chunk_size=5 * MiB)
    assert sendbody.SENDFILE_CALLS[0] >= before + 3  # three PATCHes at least
    assert file_digest(peer.stored(result.url)) == hashlib.sha256(BODY).hexdigest()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units are Linux's")
def test_peak_rss_of_a_large_put_stays_flat(tmp_path: Path) -> None:
    """`streamer put` of 512 MiB peaks under 40 MiB RSS: the bytes never pass through Python
    (the read path peaked at about 45 MiB for 1 GiB, bench_upload)."""
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(512 * MiB)  # sparse: the page cache serves zeros, the server stores them
    root = tmp_path / "srv"
    root.mkdir()
    with ThreadedServer(root, name="sendfile-rss") as base:
        cmd = [sys.executable, "-m", "streamer", "put", str(big), base + "big.bin", "-q"]
        peak = peak_rss(cmd, timeout=120, log=tmp_path / "put.log")
    assert peak.rc == 0, (tmp_path / "put.log").read_text()
    assert (root / "big.bin").stat().st_size == 512 * MiB
    assert peak.maxrss_kib < 40 * 1024, f"peak RSS {peak.maxrss_kib / 1024:.1f} MiB"
