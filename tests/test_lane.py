"""The small-file lane of bulk runs (streamer/quick.py over streamer/lane.py), against raw servers.

Every origin here is a `LaneServer`: an ``asyncio.start_server`` on 127.0.0.1 that reads any
number of request heads per connection (keep-alive), records each one (`Req`: connection
number, index on that connection, target, headers) and lets the test's handler answer it byte
by byte: whole, cut at a chosen offset (FIN or RST), stalled, with stray bytes, or not at all.
Jobs go through the public bulk API (`Client.download_many`) into real files; a few tests drive
`Lane` itself. Nothing of the code under test is mocked.

Who asked: the lane writes exactly ``Host``, ``User-Agent`` and ``Accept-Encoding``; aiohttp
(the full engine) adds ``Accept``, so `Req.by_lane` tells the two apart (pinned by
`test_requests_tell_the_lane_from_the_full_engine`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import ssl
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import streamer.lane.connection as lane_module
from streamer import Client, Result
from streamer.core.http1 import simple_request
from streamer.core.manifest import Job, parse_manifest
from streamer.core.retry import RetryPolicy
from streamer.errors import (
    BodyTooLarge,
    BodyTruncatedError,
    ChecksumMismatch,
    ConnectionLostError,
    HTTPStatusError,
    TransferTimeout,
)
from streamer.lane.connection import Handoff, Lane, Timeouts
from streamer.lane.fetch import HANDOFFS_PER_HOST, QUICK_MAX
from streamer.storage.files import part_path, sidecar_path
from streamer.transfer.bulk import BulkOptions, JobResult
from tests.faults import ClientFactory, data, head
from tests.resource_server import Act, Resource, serve

MAX_SILENCE = 10.0  # seconds a server connection waits for the client at most
CUT_PAUSE = 0.03  # seconds between the last byte sent and an RST, so the bytes arrive first
RUN_LIMIT = 15.0  # seconds one bulk run may take before the test fails
REQUESTS_PER_CONN = 200  # a server connection answers at most this many requests


# --- the server -----------------------------------------------------------------------------------


def body_for(name: str, size: int) -> bytes:
    """The deterministic body of ``/f/NAME?size=SIZE`` (shifted per name)."""
    return data(size, offset=zlib.crc32(name.encode()) % 251)


@dataclass(frozen=True)
class Req:
    """One request head as the server read it."""

    conn: int  # connection number, from 1, in order of accept
    index: int  # request number on its connection, from 1
    nth: int  # how many requests for this path so far, this one included
    target: str
    headers: dict[str, str]  # lower-case names

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def by_lane(self) -> bool:
        """Sent by the lane (Host, User-Agent, Accept-Encoding only), not by aiohttp."""
        return set(self.headers) == {"host", "user-agent", "accept-encoding"}

    def file(self) -> tuple[str, bytes]:
        """(NAME, body) for a ``/f/NAME?size=N`` target."""
        name = self.path.rsplit("/", 1)[-1]
        size = int(parse_qs(urlsplit(self.target).query).get("size", ["100"])[0])
        return name, body_for(name, size)


@dataclass
class Conn:
    """The server's side of one connection, for handlers."""

    number: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, *parts: bytes, pause: float = 0.0) -> None:
        for i, part in enumerate(parts):
            if i and pause:
                await asyncio.sleep(pause)
            self.writer.write(part)
            await self.writer.drain()

    async def abort(self) -> None:
        """RST (SO_LINGER 0) once what was sent has had time to arrive."""
        await asyncio.sleep(CUT_PAUSE)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def stall(self) -> None:
        """Say nothing until the client leaves (MAX_SILENCE at most)."""
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(MAX_SILENCE):
                while await self.reader.read(4096):
                    pass


Handler = Callable[[Req, Conn], Awaitable[bool]]  # False: close the connection afterwards


def response(body: bytes, status: str = "200 OK", **headers: str | int) -> bytes:
    """A whole HTTP/1.1 answer framed by Content-Length (keep-alive)."""
    return head(f"HTTP/1.1 {status}", Content_Length=len(body), **headers) + body


async def files(req: Req, conn: Conn) -> bool:
    """``/f/NAME?size=N``: the file, whole, keep-alive."""
    await conn.send(response(req.file()[1]))
    return True


@dataclass
class LaneServer:
    handler: Handler
    requests: list[Req] = field(default_factory=list)
    connections: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def url(self, target: str) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}{target}"

    def hits(self, path: str) -> list[Req]:
        return [r for r in self.requests if r.path == path]

    async def start(self) -> LaneServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        """Close every connection (its task then ends by itself), cancel what is left."""
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        conn = Conn(self.connections, reader, writer)
        try:
            for index in range(1, REQUESTS_PER_CONN + 1):
                async with asyncio.timeout(MAX_SILENCE):
                    raw = await reader.readuntil(b"\r\n\r\n")
                req = self._record(raw, conn.number, index)
                if not await self.handler(req, conn):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._tasks.discard(task)  # only now: `stop` waits for the close too

    def _record(self, raw: bytes, conn: int, index: int) -> Req:
        lines = raw.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ")
        assert method == "GET", lines[0]
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        path = urlsplit(target).path
        nth = 1 + sum(r.path == path for r in self.requests)
        req = Req(conn, index, nth, target, headers)
        self.requests.append(req)
        return req


ServerFactory = Callable[[Handler], Awaitable[LaneServer]]


@pytest.fixture
async def client(make_client: ClientFactory) -> Client:
    return await make_client()


# --- helpers --------------------------------------------------------------------------------------


async def run(
    client: Client, todo: Any, out: Path, *, retries: int = 0, **opts: Any
) -> list[JobResult]:
    """All results of one bulk run (at most RUN_LIMIT seconds); no delay between attempts."""
    out.mkdir(parents=True, exist_ok=True)
    options = BulkOptions(retry=RetryPolicy(retries=retries, delay=0), **opts)
    async with asyncio.timeout(RUN_LIMIT):
        return [r async for r in client.download_many(todo, out, options)]


def job(srv: LaneServer, name: str, size: int = 100, **kw: Any) -> Job:
    return Job(srv.url(f"/f/{name}?size={size}"), path=name, **kw)


def left_in(out: Path) -> set[str]:
    """Every file under `out`, relative."""
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


def only(results: list[JobResult]) -> JobResult:
    assert len(results) == 1, results
    return results[0]


def sha256(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def cut(size: int, keep: int, *, how: str = "close", whole_from: int | None = None) -> Handler:
    """``/f/NAME``: Content-Length `size`, `keep` body bytes, then FIN or RST; from the
    request number `whole_from` on (for this path) the whole body instead."""

    async def handler(req: Req, conn: Conn) -> bool:
        body = req.file()[1]
        assert len(body) == size
        if whole_from is not None and req.nth >= whole_from:
            await conn.send(response(body))
            return True
        await conn.send(head(Content_Length=size) + body[:keep])
        if how == "abort":
            await conn.abort()
        return False

    return handler


# --- the lane is used, and reuses its connections ---------------------------------------------


async def test_requests_tell_the_lane_from_the_full_engine(
    client: Client, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """The lane sends only Host, User-Agent and Accept-Encoding: identity; with ``quick=False``
    every request is aiohttp's (the `Req.by_lane` test the other tests rely on)."""
    srv = await serve_lane(files)
    results = await run(client, [job(srv, "a.bin")], tmp_path / "lane")
    assert only(results).ok
    results = await run(client, [job(srv, "b.bin")], tmp_path / "full", quick=False)
    assert only(results).ok
    lane, full = srv.requests
    assert lane.by_lane and lane.headers["accept-encoding"] == "identity"
    assert lane.headers["host"] == urlsplit(srv.url("/")).netloc
    assert not full.by_lane


async def test_keep_alive_one_connection_per_worker(
    client: Client, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """50 small files with jobs=2: at most 2 connections (+1 slack), one request per file, all
    on the lane, every file byte-exact."""
    srv = await serve_lane(files)
    todo = [job(srv, f"k{i:02d}.bin", 100 + 37 * i) for i in range(50)]
    results = await run(client, todo, tmp_path / "out", jobs=2)
    assert len(results) == 50
    assert all(r.ok and r.attempts == 1 and r.status == 200 for r in results), results
    assert srv.connections <= 3, srv.connections
    assert len(srv.requests) == 50 and all(r.by_lane for r in srv.requests)
    for r in srv.requests:
        name, body = r.file()
        assert (tmp_path / "out" / name).read_bytes() == body
    assert left_in(tmp_path / "out") == {f"k{i:02d}.bin" for i in range(50)}


# --- connections the server closes ----------------------------------------------------------------


async def test_idle_connection_closed_by_server_is_replaced(
    client: Client, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """A server that closes each connection after its 3rd answer (no ``Connection: close``):
    every job still succeeds on the lane, each on its first attempt, 3 answers per connection."""

    async def handler(req: Req, conn: Conn) -> bool:
        await conn.send(response(req.file()[1]))
        return req.index < 3

    srv = await serve_lane(handler)
    todo = [job(srv, f"i{i:02d}.bin") for i in range(12)]
    results = await run(client, todo, tmp_path / "out", jobs=1)
    assert all(r.ok and r.attempts == 1 for r in results), results
    assert len(srv.requests) == 12 and all(r.by_lane for r in srv.requests)
    assert srv.connections == 4
    assert [r.index for r in srv.requests] == [1, 2, 3] * 4


async def test_get_on_connection_closed_unanswered_is_retried_once_on_new_connection(
    client: Client, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """RFC 9112 9.3.1: a GET sent on a reused connection that the server closes without a byte
    of answer is sent again, once, on a new connection, by the lane itself (attempts stays 1)."""

    async def handler(req: Req, conn: Conn) -> bool:
        if req.index == 4:
            return False  # read, then closed unanswered: the keep-alive race, every time
        await conn.send(response(req.file()[1]))
        return True

    srv = await serve_lane(handler)
    names = [f"r{i:02d}.bin" for i in range(10)]
    results = await run(client, [job(srv, n) for n in names], tmp_path / "out", jobs=1)
    assert all(r.ok and r.attempts == 1 for r in results), results
    assert all(r.by_lane for r in srv.requests)
    dropped = [r for r in srv.requests if r.index == 4]
    assert [r.path for r in dropped] == ["/f/r03.bin", "/f/r06.bin", "/f/r09.bin"]
    for r in dropped:
        again = srv.hits(r.path)
        assert len(again) == 2 and (again[1].conn, again[1].index) == (r.conn + 1, 1)
    assert srv.connections == 4
    for n in names:
        assert (tmp_path / "out" / n).read_bytes() == body_for(n, 100)


async def test_unanswered_get_is_not_retried_twice(
    client: Client, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """The lane's replacement of a dead reused connection happens once: when the new connection
    is also closed unanswered, the job fails with NO_RESPONSE (retries=0: no third request)."""

    async def handler(req: Req, conn: Conn) -> bool:
        if req.conn == 1 and req.index == 1:
            await conn.send(response(req.file()[1]))
            return True
        return False

    srv = await serve_lane(handler)
    todo = [job(srv, "a.bin"), job(srv, "b.bin")]
    results = await run(client, todo, tmp_path / "out", jobs=1)
    a, b = sorted(results, key=lambda r: r.path.name)
    assert a.ok
    assert b.result is Result.NO_RESPONSE and isinstance(b.error, ConnectionLostError)
    assert [(r.conn, r.index) for r in srv.hits("/f/b.bin")] == [(1, 2), (2, 1)]
    assert all(r.by_lane for r in srv.requests)
    assert left_in(tmp_path / "out") == {"a.bin"}


async def test_retry_after_stale_connection_uses_a_new_one_even_with_two_idle(
    client: Client, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """Two idle pooled connections that the server has both given up on: the GET that finds
    the first one dead is sent again on a NEW connection (RFC 9112 9.3.1), not on the other
    dead one, and the job succeeds with retries=0."""

    async def handler(req: Req, conn: Conn) -> bool:
        if req.index > 1:
            return False  # one answer per connection, then closed unanswered
        await asyncio.sleep(0.1)  # so that the first two jobs overlap: two connections
        await conn.send(response(req.file()[1]))
        return True

    srv = await serve_lane(handler)
    gate = asyncio.Event()

    async def todo() -> AsyncIterator[Job]:
        yield job(srv, "a.bin")
        yield job(srv, "b.bin")
        await gate.wait()  # the third job starts alone, with both connections idle
        yield job(srv, "c.bin")

    out = tmp_path / "out"
    out.mkdir()
    results: list[JobResult] = []
    async with asyncio.timeout(RUN_LIMIT):
        async for r in client.download_many(todo(), out, BulkOptions(jobs=2)):
            results.append(r)
            if len(results) == 2:
                gate.set()
    assert len(results) == 3
    assert srv.connections >= 2
    assert all(r.ok for r in results), [(r.path.name, r.result) for r in results]
    assert (out / "c.bin").read_bytes() == body_for("c.bin", 100)


# --- bodies cut short, no answer ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keep", "how"),
    [(0, "close"), (1, "close"), (999, "close"), (1, "abort"), (999, "abort")],
    ids=["0-fin", "1-fin", "last-1-fin", "1-rst", "last-1-rst"],
)
async def test_cut_body_fails_partial_body_and_leaves_nothing(
    client: Client, serve_lane: ServerFactory, tmp_path: Path, keep: int, how: str
) -> None:
    """Content-Length 1000 and a cut after `keep` bytes, retries=0: Result.PARTIAL_BODY
    (BodyTruncatedError with the counts), one request only, no target and no `.part` left."""
    srv = await serve_lane(cut(1000, keep, how=how))
    r = only(await run(client, [job(srv, "c.bin", 1000)], tmp_path / "out"))
    assert r.result is Result.PARTIAL_BODY, r
    assert isinstance(r.error, BodyTruncatedError)
    assert (r.error.received, r.error.expected) == (keep, 1000)
    assert r.attempts == 1
    assert len(srv.requests) == 1 and srv.requests[0].by_lane
    assert left_in(tmp_path / "out") == set()


@pytest.mark.parametrize("keep", [0, 1, 999], ids=["0", "1", "last-1"])
async def test_cut_body_then_whole_one_succeeds_on_attempt_two(
    client: Client, serve_lane: ServerFactory, tmp_path: Path, keep: int
) -> None:
    """retries=1: the lane's cut answer is attempt 1, the full engine's whole one attempt 2;
    the file is exact and nothing else is left."""
    srv = await serve_lane(cut(1000, keep, whole_from=2))
    r = only(await run(client, [job(srv, "c.bin", 1000)], tmp_path / "out", retries=1))
    assert r.ok and r.attempts == 2, r
    assert [x.by_lane for x in srv.requests] == [True, False]
    assert srv.requests[1].headers.get("range") is None  # the lane left no partial to resume
    assert (tmp_path / "out" / "c.bin").read_bytes() == body_for("c.bin", 1000)
    assert left_in(tmp_path / "out") == {"c.bin"}


@pytest.mark.parametrize(
    "case",
    [
        (b"", "close", Result.NO_RESPONSE),
        (b"", "abort", Result.NO_RESPONSE),
        (b"HTTP/1.1 200 O", "close", Result.CONNECTION_ERROR),
    ],
    ids=["fin", "rst", "half-status-line"],
)
async def test_fresh_connection_closed_before_the_answer(
    client: Client, serve_lane: ServerFactory, tmp_path: Path, case: tuple[bytes, str, Result]
) -> None:
    """A new connection closed before any byte of the answer, retries=0: Result.NO_RESPONSE
    and one request (no lane retry on a fresh connection); after part of a status line:
    CONNECTION_ERROR. Nothing is left on disk."""
    sent, how, result = case

    async def handler(req: Req, conn: Conn) -> bool:
        if sent:
            await conn.send(sent)
        if how == "abort":
            await conn.abort()
        return False

    srv = await serve_lane(handler)
    r = only(await run(client, [job(srv, "n.bin")], tmp_path / "out"))
    assert r.result is result, r
    assert isinstance(r.error, ConnectionLostError)
    assert len(srv.requests) == 1 and srv.connections == 1
    assert left_in(tmp_path / "out") == set()


# --- error statuses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        response(b"not here\n", "404 Not Found"),
        head("HTTP/1.1 404 Not Found", Connection="close") + b"not here\n",
        head("HTTP/1.1 404 Not Found", Transfer_Encoding="chunked")
        + b"9\r\nnot here\n\r\n0\r\n\r\n",
        response(b"x" * (100 << 10), "404 Not Found"),
    ],
    ids=["content-length", "close-delimited", "chunked", "large-body"],
)
async def test_404_is_http_error_after_one_request(
    client: Client, serve_lane: ServerFactory, tmp_path: Path, answer: bytes
) -> None:
    """A 404 (however its body is framed) gives Result.HTTP_ERROR with status 404, and the
    server sees exactly one request for it: the full engine does not ask again."""

    async def handler(req: Req, conn: Conn) -> bool:
        await conn.send(answer)
        return b"Connection: close" not in answer and b"chunked" not in answer

    srv = await serve_lane(handler)
    r = only(await run(client, [job(srv, "missing.bin")], tmp_path / "out"))
    assert r.result is Result.HTTP_ERROR and r.status == 404, r
    assert isinstance(r.error, HTTPStatusError) and r.error.status == 404
    assert r.attempts == 1
    assert len(srv.requests) == 1 and srv.requests[0].by_lane
    assert left_in(tmp_path / "out") == set()


async def test_small_error_body_is_drained_and_connection_kept(
    client: Client, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """A 404 framed by a small Content-Length is read and thrown away, and the next job of the
    worker reuses the same connection."""

    async def handler(req: Req, conn: Conn) -> bool:
        if req.path.startswith("/f/missing"):
            await conn.send(response(b"not here\n", "404 Not Found"))
        else:
            await conn.send(response(req.file()[1]))
        return True

    srv = await serve_lane(handler)
    todo = [job(srv, "missing.bin"), job(srv, "next.bin")]
    results = await run(client, todo, tmp_path / "out", jobs=1)
    assert sorted(r.result.name for r in results) == ["HTTP_ERROR", "SUCCESS"]
    assert srv.connections == 1 and [r.index for r in srv.requests] == [1, 2]
    assert left_in(tmp_path / "out") == {"next.bin"}


@pytest.mark.parametrize(
    "retry_after", ["0", "Wed, 21 Oct 2015 07:28:00 GMT"], ids=["zero", "date-in-the-past"]
)
async def test_503_retry_after_now_then_200_succeeds_on_attempt_two(
    client: Client, serve_lane: ServerFactory, tmp_path: Path, retry_after: str
) -> None:
    """A 503 from the lane with a Retry-After that says "now" (0 seconds, or an HTTP-date
    already past, RFC 9110 10.2.3), then 200: with retries=1 the job succeeds with attempts ==
    2 at once (Retry-After overrides a 5 s backoff), the file exact."""

    async def handler(req: Req, conn: Conn) -> bool:
        if req.nth == 1:
            busy = response(b"busy\n", "503 Service Unavailable", Retry_After=retry_after)
            await conn.send(busy)
        else:
            await conn.send(response(req.file()[1]))
        return True

    srv = await serve_lane(handler)
    out = tmp_path / "out"
    out.mkdir()
    options = BulkOptions(retry=RetryPolicy(retries=1, backoff=5.0))
    started = time.monotonic()
    async with asyncio.timeout(RUN_LIMIT):
        results = [r async for r in client.download_many([job(srv, "s.bin")], out, options)]
    r = only(results)
    assert r.ok and r.attempts == 2 and r.status == 200, r
    assert time.monotonic() - started < 5.0  # the 5 s backoff was not waited out
    assert [x.by_lane for x in srv.requests] == [True, False]
    assert (out / "s.bin").read_bytes() == body_for("s.bin", 100)
    assert left_in(out) == {"s.bin"}


# --- hand-offs to the full engine -----------------------------------------------------------------

BIG = QUICK_MAX + 1


def chunked(body: bytes, coding: str = "chunked") -> bytes:
    """`body` in two chunks (the first with an extension), a trailer field, then the end."""
    first, rest = body[: len(body) // 3], body[len(body) // 3 :]
    chunks = b"%x;ext=1\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n" % (
        len(first),
        first,
        len(rest),
        rest,
    )
    return head(Transfer_Encoding=coding) + chunks


async def handoff_handler(req: Req, conn: Conn) -> bool:
    """``/chunked/NAME``, ``/bigchunked/NAME`` (QUICK_MAX + 1 bytes), ``/gzipchunked/NAME``
    (another coding before chunked), ``/close/NAME``, ``/redirect/NAME`` (302 to /f/NAME),
    ``/big/NAME`` (QUICK_MAX + 1 bytes with Content-Length), ``/continue/NAME`` (100 then 200),
    ``/continue1/NAME`` (both in one write), ``/split/NAME`` (the head in pieces), ``/f/NAME``."""
    kind, name = req.path.split("/")[1:3]
    if kind == "redirect":
        await conn.send(head("HTTP/1.1 302 Found", Location=f"/f/{name}", Content_Length=0))
        return True
    body = body_for(name, BIG if kind == "big" else 1000)
    if kind in ("chunked", "bigchunked"):
        await conn.send(chunked(body_for(name, BIG) if kind == "bigchunked" else body))
        return True
    if kind == "gzipchunked":  # a coding the lane does not decode (nor does it ask for one)
        await conn.send(chunked(body, "identity, chunked"))
        return True
    if kind == "close":
        await conn.send(head() + body)
        return False
    if kind == "continue":
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n", response(body), pause=0.02)
        return True
    if kind == "continue1":  # the interim answer, the head and the body in one write
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n" + response(body))
        return True
    if kind == "split":  # the head cut inside a line, then inside its CRLF CRLF
        whole = response(body)
        end = whole.index(b"\r\n\r\n")
        await conn.send(whole[:20], whole[20 : end + 3], whole[end + 3 :], pause=0.02)
        return True
    await conn.send(response(body))
    return True


@pytest.mark.parametrize(
    ("kind", "expected_paths"),
    [
        ("gzipchunked", [("/gzipchunked/x.bin", True), ("/gzipchunked/x.bin", False)]),
        ("bigchunked", [("/bigchunked/x.bin", True), ("/bigchunked/x.bin", False)]),
        ("close", [("/close/x.bin", True), ("/close/x.bin", False)]),
        ("redirect", [("/redirect/x.bin", True), ("/redirect/x.bin", False), ("/f/x.bin", False)]),
        ("big", [("/big/x.bin", True), ("/big/x.bin", False)]),
        ("continue", [("/continue/x.bin", True)]),
        ("continue1", [("/continue1/x.bin", True)]),
        ("split", [("/split/x.bin", True)]),
    ],
    ids=[
        "coding-then-chunked",
        "chunked-over-quick-max",
        "close-delimited",
        "302",
        "over-quick-max",
        "100-continue",
        "100-continue-same-read",
        "head-in-three-reads",
    ],
)
async def test_answers_not_for_the_lane_are_handed_to_the_full_engine(
    client: Client,
    serve_lane: ServerFactory,
    tmp_path: Path,
    kind: str,
    expected_paths: list[tuple[str, bool]],
) -> None:
    """Close-delimited, redirected and larger-than-QUICK_MAX answers (chunked or not), and a
    coding other than chunked, are asked again by the full engine (one extra request), and the
    file is exact; a 100 Continue before the 200 (in its own read or in the same one) is read
    past by the lane itself, as is a head that arrives in pieces."""
    srv = await serve_lane(handoff_handler)
    r = only(await run(client, [Job(srv.url(f"/{kind}/x.bin"), path="x.bin")], tmp_path / "out"))
    assert r.ok and r.attempts == 1 and r.status == 200, r
    assert [(x.path, x.by_lane) for x in srv.requests] == expected_paths
    size = BIG if kind in ("big", "bigchunked") else 1000
    assert (tmp_path / "out" / "x.bin").read_bytes() == body_for("x.bin", size)
    assert left_in(tmp_path / "out") == {"x.bin"}


async def test_host_leaves_the_lane_after_repeated_handoffs(
    client: Client, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """After HANDOFFS_PER_HOST hand-offs a host's later jobs go straight to the full engine
    (no more double requests), even those the lane could have taken."""
    srv = await serve_lane(handoff_handler)
    todo = [Job(srv.url(f"/close/h{i}.bin"), path=f"h{i}.bin") for i in range(6)]
    todo.append(Job(srv.url("/f/plain.bin"), path="plain.bin"))
    results = await run(client, todo, tmp_path / "out", jobs=1)
    assert all(r.ok for r in results), results
    lane = [r.path for r in srv.requests if r.by_lane]
    assert lane == [f"/close/h{i}.bin" for i in range(HANDOFFS_PER_HOST)]
    assert len(srv.requests) == HANDOFFS_PER_HOST + len(todo)
    for i in range(6):
        assert (tmp_path / "out" / f"h{i}.bin").read_bytes() == body_for(f"h{i}.bin", 1000)


# --- limits and checksums -------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [1000, BIG], ids=["small", "over-quick-max"])
async def test_max_bytes_below_declared_length_fails_before_the_body(
    client: Client, serve_lane: ServerFactory, tmp_path: Path, declared: int
) -> None:
    """A manifest ``max_bytes`` below the declared Content-Length: BODY_SIZE_LIMIT_EXCEEDED
    after one request, no body written, no target, no `.part`."""
    srv = await serve_lane(files)
    line = json.dumps(
        {"url": srv.url(f"/f/m.bin?size={declared}"), "path": "m.bin", "max_bytes": 999}
    )
    (parsed,) = parse_manifest([line])
    assert isinstance(parsed, Job) and parsed.max_bytes == 999
    r = only(await run(client, [parsed], tmp_path / "out"))
    assert r.result is Result.BODY_SIZE_LIMIT_EXCEEDED, r
    assert isinstance(r.error, BodyTooLarge) and r.error.limit == 999
    assert len(srv.requests) == 1 and srv.requests[0].by_lane
    assert left_in(tmp_path / "out") == set()


async def test_max_bytes_equal_to_length_is_fetched_on_the_lane(
    client: Client, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """``max_bytes`` equal to the Content-Length is no obstacle: one lane request, exact file."""
    srv = await serve_lane(files)
    r = only(await run(client, [job(srv, "m.bin", 999, max_bytes=999)], tmp_path / "out"))
    assert r.ok and r.size == 999
    assert len(srv.requests) == 1 and srv.requests[0].by_lane
    assert (tmp_path / "out" / "m.bin").read_bytes() == body_for("m.bin", 999)


async def test_wrong_checksum_fails_and_leaves_nothing(
    client: Client, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """A wrong sha256: Result.CHECKSUM_MISMATCH (ChecksumMismatch), no target, no `.part`, and
    no second request (a mismatch is not retried)."""
    srv = await serve_lane(files)
    wrong = sha256(b"something else")
    r = only(await run(client, [job(srv, "c.bin", checksum=wrong)], tmp_path / "out", retries=1))
    assert r.result is Result.CHECKSUM_MISMATCH, r
    assert isinstance(r.error, ChecksumMismatch)
    assert r.error.actual.endswith(hashlib.sha256(body_for("c.bin", 100)).hexdigest())
    assert len(srv.requests) == 1
    assert left_in(tmp_path / "out") == set()


async def test_right_checksum_succeeds_on_the_lane(
    client: Client, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    srv = await serve_lane(files)
    right = sha256(body_for("c.bin", 100))
    r = only(await run(client, [job(srv, "c.bin", checksum=right)], tmp_path / "out"))
    assert r.ok
    assert len(srv.requests) == 1 and srv.requests[0].by_lane
    assert (tmp_path / "out" / "c.bin").read_bytes() == body_for("c.bin", 100)


# --- partials and targets from earlier runs -------------------------------------------------------


async def test_partial_with_sidecar_is_resumed_by_the_full_engine(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """A `.part` and sidecar left by an interrupted full-engine download are not touched by the
    lane: the bulk job's only request is the full engine's ``Range: bytes=K-`` (206), and the
    file equals the resource."""
    size, cut_at = 200 * 1024, 100_000
    body = data(size)
    resource = Resource(body)
    server = await serve(resource)
    try:
        dl = await make_client(chunk_size=4096)
        out = tmp_path / "out"
        out.mkdir()
        target = out / "resource.bin"
        resource.script.append(Act(cut_at=cut_at))
        with pytest.raises(BodyTruncatedError):
            await dl.download(resource.url, target)
        assert part_path(target).stat().st_size == cut_at and sidecar_path(target).exists()

        r = only(await run(dl, [Job(resource.url, path="resource.bin")], out))
    finally:
        await server.close()
    assert r.ok, r
    assert [(s.range, s.status) for s in resource.seen] == [(None, 200), (f"bytes={cut_at}-", 206)]
    assert resource.sent == size
    assert target.read_bytes() == body
    assert left_in(out) == {"resource.bin"}


async def test_leftover_part_without_sidecar_goes_to_the_full_engine(
    client: Client, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """A non-empty `.part` of an earlier run (no sidecar): the lane neither writes nor removes
    it; the full engine makes the one request, and the file is exact."""
    srv = await serve_lane(files)
    out = tmp_path / "out"
    out.mkdir()
    part = part_path(out / "p.bin")
    part.write_bytes(b"bytes of an earlier run")
    r = only(await run(client, [job(srv, "p.bin", 500)], out))
    assert r.ok, r
    assert len(srv.requests) == 1 and not srv.requests[0].by_lane
    assert (out / "p.bin").read_bytes() == body_for("p.bin", 500)
    assert left_in(out) == {"p.bin"}


async def test_target_that_is_a_directory_fails_23_and_is_left_alone(
    client: Client, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """The lane does not stat a target first: a directory there is found by the rename
    (EISDIR), the lane's `.part` goes, and the full engine fails the job (23, naming the
    directory) with the directory and its contents untouched; the run's other job succeeds."""
    srv = await serve_lane(files)
    out = tmp_path / "out"
    (out / "d.bin").mkdir(parents=True)
    (out / "d.bin" / "keep").write_text("keep")
    results = await run(client, [job(srv, "d.bin", 500), job(srv, "ok.bin", 500)], out)
    by_name = {r.path.name: r for r in results}
    bad = by_name["d.bin"]
    assert bad.result is Result.DOWNLOAD_FILE_CANT_OPEN, bad
    assert bad.error is not None and "directory" in str(bad.error)
    assert by_name["ok.bin"].ok
    assert left_in(out) == {"d.bin/keep", "ok.bin"}
    assert (out / "d.bin" / "keep").read_text() == "keep"


@pytest.mark.parametrize("how", ["cut", "checksum"])
async def test_existing_target_replaced_only_by_a_complete_body(
    client: Client, serve_lane: ServerFactory, tmp_path: Path, how: str
) -> None:
    """A target from an earlier run keeps its content when the new body is cut short or fails
    its checksum; a complete body then replaces it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "t.bin").write_bytes(b"the old content")
    if how == "cut":
        srv = await serve_lane(cut(1000, 500, whole_from=2))
        first = job(srv, "t.bin", 1000)
    else:
        srv = await serve_lane(files)
        first = job(srv, "t.bin", 1000, checksum=sha256(b"other"))
    r = only(await run(client, [first], out))
    assert r.result is (Result.PARTIAL_BODY if how == "cut" else Result.CHECKSUM_MISMATCH), r
    assert (out / "t.bin").read_bytes() == b"the old content"
    assert left_in(out) == {"t.bin"}

    r = only(await run(client, [job(srv, "t.bin", 1000)], out))
    assert r.ok
    assert (out / "t.bin").read_bytes() == body_for("t.bin", 1000)
    assert left_in(out) == {"t.bin"}


# --- timeouts -------------------------------------------------------------------------------------


def stalling(sent: int) -> Handler:
    """``/f/NAME?size=N``: nothing (-1), the head only (0), or the head and `sent` body bytes,
    then silence until the client leaves."""

    async def handler(req: Req, conn: Conn) -> bool:
        body = req.file()[1]
        if req.nth > 1:
            await conn.send(response(body))
            return True
        if sent >= 0:
            await conn.send(head(Content_Length=len(body)) + body[:sent])
        await conn.stall()
        return False

    return handler


async def dripping(req: Req, conn: Conn) -> bool:
    """``/f/NAME?size=N``: the head, then one body byte every 0.1 s."""
    body = req.file()[1]
    await conn.send(head(Content_Length=len(body)))
    for i in range(len(body)):  # 100 bytes: 10 s at most
        await asyncio.sleep(0.1)
        await conn.send(body[i : i + 1])
    return True


STALLS = pytest.mark.parametrize("sent", [-1, 0, 1], ids=["before-head", "after-head", "1-byte"])


@STALLS
async def test_idle_timeout_ends_the_job_quickly_and_leaves_nothing(
    make_client: ClientFactory, serve_lane: ServerFactory, tmp_path: Path, sent: int
) -> None:
    """read_timeout=0.5 and a server gone silent: the job fails within a few seconds, after one
    request, with no target and no `.part` left."""
    client = await make_client(read_timeout=0.5)
    srv = await serve_lane(stalling(sent))
    r = only(await run(client, [job(srv, "s.bin", 1000)], tmp_path / "out"))
    assert not r.ok and r.result is Result.TIMEOUT, r
    assert len(srv.requests) == 1
    assert left_in(tmp_path / "out") == set()


@STALLS
async def test_idle_timeout_is_result_timeout(
    make_client: ClientFactory, serve_lane: ServerFactory, tmp_path: Path, sent: int
) -> None:
    """read_timeout=0.5 and a server gone silent on the lane: Result.TIMEOUT (TransferTimeout)."""
    client = await make_client(read_timeout=0.5)
    srv = await serve_lane(stalling(sent))
    r = only(await run(client, [job(srv, "s.bin", 1000)], tmp_path / "out"))
    assert r.result is Result.TIMEOUT, (r.result, r.error)
    assert isinstance(r.error, TransferTimeout)


async def test_idle_timeout_is_retried(
    make_client: ClientFactory, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """A timeout is retryable: with retries=1 a stalled lane answer is followed by the full
    engine's whole one, attempts == 2, file exact."""
    client = await make_client(read_timeout=0.5)
    srv = await serve_lane(stalling(0))
    r = only(await run(client, [job(srv, "s.bin", 1000)], tmp_path / "out", retries=1))
    assert r.ok and r.attempts == 2, (r.result, r.error)
    assert (tmp_path / "out" / "s.bin").read_bytes() == body_for("s.bin", 1000)


@pytest.mark.parametrize("how", ["idle", "total"])
async def test_lane_raises_transfer_timeout(serve_lane: ServerFactory, how: str) -> None:
    """The lane itself reports a silent server as TransferTimeout (Result.TIMEOUT) after the
    idle time, and a drip that is never idle that long after the total time of an exchange."""
    srv = await serve_lane(stalling(0) if how == "idle" else dripping)
    url = srv.url("/f/s.bin?size=100")
    origin, target = simple_request(url) or pytest.fail("not simple")
    timeouts = Timeouts(5.0, 0.3, None) if how == "idle" else Timeouts(5.0, 5.0, 0.5)
    lane = Lane(timeouts, ssl.create_default_context)
    try:
        started = time.monotonic()
        with pytest.raises(TransferTimeout) as info:
            await lane.get(origin, target, [], sink=lambda _: None, max_body=QUICK_MAX, url=url)
        assert info.value.result is Result.TIMEOUT
        assert 0.25 < time.monotonic() - started < 5.0  # before any other timer (5 s)
    finally:
        lane.close()


async def test_total_timeout_ends_a_dripping_answer(
    make_client: ClientFactory, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """total_timeout=1 and a body dripping one byte per 0.1 s (never idle for read_timeout):
    the job fails after about a second, nothing left on disk."""
    client = await make_client(read_timeout=5.0, total_timeout=1.0)
    srv = await serve_lane(dripping)
    r = only(await run(client, [job(srv, "d.bin", 100)], tmp_path / "out"))
    assert not r.ok and r.result is Result.TIMEOUT, r  # the drip alone takes 10 s
    assert left_in(tmp_path / "out") == set()


async def test_total_timeout_is_result_timeout(
    make_client: ClientFactory, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """total_timeout=1 and a dripping body on the lane: Result.TIMEOUT (TransferTimeout)."""
    client = await make_client(read_timeout=5.0, total_timeout=1.0)
    srv = await serve_lane(dripping)
    r = only(await run(client, [job(srv, "d.bin", 100)], tmp_path / "out"))
    assert r.result is Result.TIMEOUT, (r.result, r.error)
    assert isinstance(r.error, TransferTimeout)


# --- bytes past the declared length ---------------------------------------------------------------


async def test_extra_bytes_after_body_are_not_taken_by_the_lane(
    client: Client, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """Content-Length 5 followed by 8 bytes in one write: the lane takes nothing from a server
    that is out of step; it closes that connection and hands the job to the full engine, whose
    verdict stands: aiohttp reads the 3 extra bytes as a next status line and the job fails
    with INVALID_RESPONSE, exactly as with ``quick=False``, leaving no file. The next lane
    request goes out on a new connection."""

    async def handler(req: Req, conn: Conn) -> bool:
        if req.path == "/f/extra.bin":
            await conn.send(head(Content_Length=5) + b"12345678")
            return True
        await conn.send(response(req.file()[1]))
        return True

    srv = await serve_lane(handler)
    todo = [Job(srv.url("/f/extra.bin"), path="extra.bin"), job(srv, "next.bin")]
    results = await run(client, todo, tmp_path / "out", jobs=1)
    extra, after_job = sorted(results, key=lambda r: r.path.name)
    assert after_job.ok
    assert extra.result is Result.INVALID_RESPONSE, (extra.result, extra.error)
    assert [x.by_lane for x in srv.hits("/f/extra.bin")] == [True, False]
    (first,) = [x for x in srv.requests if x.by_lane and x.path == "/f/extra.bin"]
    (after,) = srv.hits("/f/next.bin")
    assert after.by_lane and after.conn != first.conn and after.index == 1
    assert left_in(tmp_path / "out") == {"next.bin"}

    full = only(await run(client, todo[:1], tmp_path / "full", quick=False))
    assert full.result is extra.result
    assert left_in(tmp_path / "full") == set()


async def test_lane_does_not_read_an_answer_longer_than_declared(
    serve_lane: ServerFactory,
) -> None:
    """On the lane directly: head and more bytes than Content-Length in one piece give
    ``read=False`` with nothing given to the sink, and the connection is not kept."""

    async def handler(req: Req, conn: Conn) -> bool:
        await conn.send(head(Content_Length=5) + b"12345678")
        return True

    srv = await serve_lane(handler)
    url = srv.url("/x")
    origin, target = simple_request(url) or pytest.fail("not simple")
    lane = Lane(Timeouts(5.0, 5.0, None), ssl.create_default_context)
    got = bytearray()
    try:
        reply = await lane.get(origin, target, [], sink=got.extend, max_body=1000, url=url)
        assert reply.read is False and reply.head.length == 5
        assert got == b""
        reply = await lane.get(origin, target, [], sink=got.extend, max_body=1000, url=url)
        assert reply.read is False
    finally:
        lane.close()
    assert srv.connections == 2


async def test_stray_bytes_on_an_idle_connection_retire_it(serve_lane: ServerFactory) -> None:
    """On the lane directly: a body read exactly, then stray bytes while the connection is idle
    in the pool: that connection is dropped and the next GET goes out on a new one, with its
    own body intact."""
    sent_stray = asyncio.Event()

    async def handler(req: Req, conn: Conn) -> bool:
        await conn.send(response(req.file()[1]))
        if req.conn == 1:
            await asyncio.sleep(0.02)
            await conn.send(b"abc")
            sent_stray.set()
        return True

    srv = await serve_lane(handler)
    lane = Lane(Timeouts(5.0, 5.0, None), ssl.create_default_context)
    bodies = []
    try:
        for name in ("one.bin", "two.bin"):
            url = srv.url(f"/f/{name}?size=300")
            origin, target = simple_request(url) or pytest.fail("not simple")
            got = bytearray()
            reply = await lane.get(origin, target, [], sink=got.extend, max_body=1000, url=url)
            assert reply.read and reply.head.status == 200
            bodies.append(bytes(got))
            async with asyncio.timeout(5):
                await sent_stray.wait()
            await asyncio.sleep(0.1)  # the stray bytes arrive while the connection is idle
    finally:
        lane.close()
    assert bodies == [body_for("one.bin", 300), body_for("two.bin", 300)]
    assert [(r.conn, r.index) for r in srv.requests] == [(1, 1), (2, 1)]


async def test_handoff_is_raised_for_a_malformed_head(serve_lane: ServerFactory) -> None:
    """On the lane directly: a response head it cannot judge (here a bare-LF head) is a
    `Handoff`, never a guess."""

    async def handler(req: Req, conn: Conn) -> bool:
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\nX: y\r\n\r\nok")
        return False

    srv = await serve_lane(handler)
    url = srv.url("/x")
    origin, target = simple_request(url) or pytest.fail("not simple")
    lane = Lane(Timeouts(5.0, 5.0, None), ssl.create_default_context)
    try:
        with pytest.raises(Handoff):
            await lane.get(origin, target, [], sink=lambda _: None, max_body=1000, url=url)
    finally:
        lane.close()


async def test_idle_connections_are_bounded_over_all_origins(
    serve_lane: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the lane directly, with MAX_IDLE set to 3: after GETs to 5 origins only 3 idle
    connections stay open (the least recently used origins' are closed), so a run over many
    hosts cannot exhaust file descriptors; a GET to a closed one's origin connects anew."""
    monkeypatch.setattr(lane_module, "MAX_IDLE", 3)
    servers = [await serve_lane(files) for _ in range(5)]
    lane = Lane(Timeouts(5.0, 5.0, None), ssl.create_default_context)
    try:
        for srv in [*servers, servers[0]]:
            url = srv.url("/f/a.bin?size=10")
            origin, target = simple_request(url) or pytest.fail("not simple")
            reply = await lane.get(origin, target, [], sink=lambda _d: None, max_body=99, url=url)
            assert reply.read
        open_idle = sum(len(conns) for conns in lane._idle.values())
    finally:
        lane.close()
    assert open_idle == 3
    assert servers[0].connections == 2  # its first connection had been closed as the oldest
    assert [s.connections for s in servers[1:]] == [1, 1, 1, 1]


async def test_an_idle_connection_older_than_idle_seconds_is_not_reused(
    serve_lane: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection idle for longer than IDLE_SECONDS is closed instead of reused (servers
    drop idle keep-alive connections; a stale one would cost a failed attempt)."""
    monkeypatch.setattr(lane_module, "IDLE_SECONDS", 0.05)
    srv = await serve_lane(files)
    lane = Lane(Timeouts(5.0, 5.0, None), ssl.create_default_context)
    url = srv.url("/f/a.bin?size=10")
    origin, target = simple_request(url) or pytest.fail("not simple")
    try:
        for pause in (0.0, 0.2, 0.0):
            await asyncio.sleep(pause)
            reply = await lane.get(origin, target, [], sink=lambda _d: None, max_body=99, url=url)
            assert reply.read
    finally:
        lane.close()
    assert [(r.conn, r.index) for r in srv.requests] == [(1, 1), (2, 1), (2, 2)]


async def test_a_chunked_answer_is_decoded_on_the_lane_in_one_request(
    client: Client, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """RFC 9112 7.1: a 200 framed by chunks (with an extension and a trailer) is decoded by the
    lane: one request, the exact body, and the connection is kept for the next job."""
    srv = await serve_lane(handoff_handler)
    todo = [Job(srv.url(f"/chunked/c{i}.bin"), path=f"c{i}.bin") for i in range(3)]
    results = await run(client, todo, tmp_path / "out", jobs=1)
    assert all(r.ok and r.size == 1000 for r in results), results
    assert [(r.path, r.by_lane, r.conn) for r in srv.requests] == [
        (f"/chunked/c{i}.bin", True, 1) for i in range(3)
    ]
    for i in range(3):
        assert (tmp_path / "out" / f"c{i}.bin").read_bytes() == body_for(f"c{i}.bin", 1000)


async def chunk_faults(req: Req, conn: Conn) -> bool:
    """``/cut``: the first chunk, then the connection closes; ``/bad``: a chunk-size that is
    not hex; ``/long``: a chunk longer than its size."""
    kind = req.path.strip("/")
    start = head(Transfer_Encoding="chunked")
    if kind == "cut":
        await conn.send(start + b"5\r\nhello\r\n")
        return False
    if kind == "bad":
        await conn.send(start + b"zz\r\nhello\r\n0\r\n\r\n")
        return False
    await conn.send(start + b"3\r\nhello\r\n0\r\n\r\n")
    return False


@pytest.mark.parametrize(
    ("kind", "result"),
    [
        ("cut", Result.PARTIAL_BODY),
        ("bad", Result.INVALID_RESPONSE),
        ("long", Result.INVALID_RESPONSE),
    ],
)
async def test_a_broken_chunked_answer_fails_typed_and_leaves_nothing(
    client: Client, serve_lane: ServerFactory, tmp_path: Path, kind: str, result: Result
) -> None:
    """A chunked body cut before its last chunk is PARTIAL_BODY (retryable); malformed framing
    is INVALID_RESPONSE; either way after one request, with no target and no `.part`."""
    srv = await serve_lane(chunk_faults)
    r = only(await run(client, [Job(srv.url(f"/{kind}"), path="x.bin")], tmp_path / "out"))
    assert r.result is result, (r.result, r.error)
    assert len(srv.requests) == 1
    assert left_in(tmp_path / "out") == set()


async def test_max_bytes_stops_a_chunked_answer_on_the_lane(
    client: Client, serve_lane: ServerFactory, tmp_path: Path
) -> None:
    """A job's max_bytes below a chunked body's size (no length declared): reading stops at the
    limit, BODY_SIZE_LIMIT_EXCEEDED after one request, nothing left behind."""
    srv = await serve_lane(handoff_handler)
    job = Job(srv.url("/chunked/m.bin"), path="m.bin", max_bytes=500)
    r = only(await run(client, [job], tmp_path / "out"))
    assert r.result is Result.BODY_SIZE_LIMIT_EXCEEDED, (r.result, r.error)
    assert len(srv.requests) == 1
    assert left_in(tmp_path / "out") == set()
