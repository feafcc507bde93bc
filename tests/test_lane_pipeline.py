"""HTTP/1.1 pipelining on the lane (RFC 9112 9.3.2), against raw servers that misbehave on purpose.

`PipeServer` is an ``asyncio.start_server`` on 127.0.0.1 that reads whatever the client sends,
splits it into request heads itself and answers them in order, one at a time, through the
test's handler. So it sees exactly how many requests were waiting unanswered on a connection
(`Seen.waiting`): more than one only if the client sent a request before the answer to the one
before it had arrived. Bulk runs go through the public API into real files; a few tests drive
`Lane` itself, with one warm-up request first (a connection takes a second request only after
an HTTP/1.1 keep-alive answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streamer import Client, Result
from streamer.core.http1 import simple_request
from streamer.core.retry import RetryPolicy
from streamer.errors import BodyTruncatedError
from streamer.lane.connection import Lane, Reply, Timeouts
from streamer.transfer.bulk import BulkOptions, JobResult
from tests.faults import ClientFactory, data, head
from tests.helpers import finish, spawn

MAX_SILENCE = 10.0  # seconds a server connection waits for the client at most
RUN_LIMIT = 15.0  # seconds one run may take before the test fails
SIZE = 3000  # bytes of each body


def body(target: str) -> bytes:
    return data(SIZE, offset=zlib.crc32(target.encode()) % 251)


def answer(target: str, **headers: str | int) -> bytes:
    whole = body(target)
    return head("HTTP/1.1 200 OK", Content_Length=len(whole), **headers) + whole


@dataclass(frozen=True)
class Seen:
    conn: int  # connection number, from 1, in order of accept
    index: int  # request number on its connection, from 1
    target: str
    waiting: int  # requests received and unanswered when this one was answered, itself included
    lane: bool  # sent by the lane (no Accept field: aiohttp sends one)


# The handler answers one request; False: close the connection right after (requests still
# waiting are never answered).
Handler = Callable[[Seen, asyncio.StreamWriter], Awaitable[bool]]


async def whole(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    writer.write(answer(seen.target))
    await writer.drain()
    return True


@dataclass
class PipeServer:
    handler: Handler
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    cut: list[int] = field(default_factory=list)  # requests left unanswered at each close
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def url(self, name: str) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/f/{name}"

    async def start(self) -> PipeServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        number, index, buf = self.connections, 0, b""
        waiting: deque[tuple[str, bool]] = deque()
        try:
            while index < 1000:
                async with asyncio.timeout(MAX_SILENCE):
                    chunk = await reader.read(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\r\n\r\n" in buf:
                    raw, buf = buf.split(b"\r\n\r\n", 1)
                    target = raw.split(b" ")[1].decode()
                    waiting.append((target, b"\r\naccept:" not in raw.lower()))
                while waiting:
                    target, lane = waiting.popleft()
                    index += 1
                    seen = Seen(number, index, target, len(waiting) + 1, lane)
                    self.seen.append(seen)
                    if not await self.handler(seen, writer):
                        self.cut.append(len(waiting))
                        return
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._tasks.discard(task)

    @property
    def deepest(self) -> int:
        return max((s.waiting for s in self.seen), default=0)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[PipeServer]]]:
    servers: list[PipeServer] = []

    async def start(handler: Handler) -> PipeServer:
        srv = await PipeServer(handler).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        await srv.stop()


Serve = Callable[[Handler], Awaitable[PipeServer]]


@pytest.fixture
async def client(make_client: ClientFactory) -> Client:
    return await make_client()


async def run(
    client: Client, srv: PipeServer, out: Path, n: int, *, retries: int = 0, **opts: Any
) -> list[JobResult]:
    """A bulk run of ``n`` files from `srv` into `out`; every result (RUN_LIMIT s at most)."""
    out.mkdir(parents=True, exist_ok=True)
    options = BulkOptions(retry=RetryPolicy(retries=retries, delay=0), **opts)
    urls = [srv.url(f"p{i:03d}.bin") for i in range(n)]
    async with asyncio.timeout(RUN_LIMIT):
        return [r async for r in client.download_many(urls, out, options)]


def check_files(out: Path, results: list[JobResult], skip: frozenset[str] = frozenset()) -> None:
    """Every result but `skip` ok and its file byte-exact; nothing else left in `out`."""
    names = set()
    for res in results:
        name = res.path.name
        if name in skip:
            continue
        assert res.ok, (name, res.result, res.error)
        assert res.path.read_bytes() == body(f"/f/{name}"), name
        names.add(name)
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == names


async def lane_gets(
    srv: PipeServer, names: list[str], *, idle: float = 5.0
) -> tuple[list[Reply | BaseException], Lane]:
    """On a lane of depth 8 (closed after): one warm-up GET, then the GETs of `names` all at
    once; their replies or errors (the bodies are checked here), and the lane."""
    lane = lane_for(8, idle)
    try:
        return await _gets(lane, srv, names), lane
    finally:
        lane.close()


async def _gets(lane: Lane, srv: PipeServer, names: list[str]) -> list[Reply | BaseException]:

    async def one(name: str) -> Reply:
        url = srv.url(name)
        origin, target = simple_request(url) or pytest.fail("not simple")
        got = bytearray()
        reply = await lane.get(origin, target, [], sink=got.extend, max_body=1 << 20, url=url)
        if reply.read:
            assert bytes(got) == body(target), name
        return reply

    async with asyncio.timeout(RUN_LIMIT):
        await one("warm.bin")
        return await asyncio.gather(*(one(n) for n in names), return_exceptions=True)


def lane_for(depth: int, idle: float = 5.0) -> Lane:
    return Lane(Timeouts(5.0, idle, None), ssl.create_default_context, depth)


# --- pipelined requests ---------------------------------------------------------------------------


async def test_requests_are_pipelined_up_to_the_depth(
    client: Client, serve: Serve, tmp_path: Path
) -> None:
    """With --pipeline 4, requests go out before the answers to earlier ones arrived (the
    server finds several waiting), never more than 4 per connection; all 60 files byte-exact
    on the lane, each on its first attempt."""
    srv = await serve(whole)
    results = await run(client, srv, tmp_path / "out", 60, jobs=8, pipeline=4)
    check_files(tmp_path / "out", results)
    assert all(r.attempts == 1 for r in results)
    assert 1 < srv.deepest <= 4, srv.deepest
    assert len(srv.seen) == 60 and all(s.lane for s in srv.seen)


async def test_depth_one_sends_one_request_at_a_time(
    client: Client, serve: Serve, tmp_path: Path
) -> None:
    """--pipeline 1: a request goes out only on a connection with no request unanswered."""
    srv = await serve(whole)
    results = await run(client, srv, tmp_path / "out", 40, jobs=8, pipeline=1)
    check_files(tmp_path / "out", results)
    assert srv.deepest == 1


async def test_http10_keep_alive_answers_are_not_pipelined(
    client: Client, serve: Serve, tmp_path: Path
) -> None:
    """An HTTP/1.0 server that keeps connections alive (``Connection: keep-alive``) gets one
    request at a time per connection (RFC 9112 9.3.2: pipelining is for HTTP/1.1)."""

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        whole_body = body(seen.target)
        writer.write(
            head("HTTP/1.0 200 OK", Content_Length=len(whole_body), Connection="keep-alive")
            + whole_body
        )
        await writer.drain()
        return True

    srv = await serve(handler)
    results = await run(client, srv, tmp_path / "out", 40, jobs=8, pipeline=8)
    check_files(tmp_path / "out", results)
    assert srv.deepest == 1 and srv.connections <= 8
    assert all(s.lane for s in srv.seen)


async def test_lane_writes_a_pipeline_in_one_send(serve: Serve) -> None:
    """On the lane directly: 6 GETs asked in one loop turn, on a warm connection with depth 8:
    the first goes out at once, the 5 behind it in one write (the server reads them together),
    and all are answered on that one connection."""
    srv = await serve(whole)
    replies, _ = await lane_gets(srv, [f"b{i}.bin" for i in range(6)])
    assert all(isinstance(r, Reply) and r.read for r in replies), replies
    assert srv.connections == 1
    assert [s.waiting for s in srv.seen][-5:] == [5, 4, 3, 2, 1]


# --- servers that end a pipeline early ------------------------------------------------------------


async def test_server_closing_mid_pipeline_loses_no_file(
    client: Client, serve: Serve, tmp_path: Path
) -> None:
    """A server that closes every connection after its 3rd answer (no ``Connection: close``),
    whatever is waiting: the unanswered requests are sent again, not failed; all 50 files
    byte-exact, each on its first attempt."""

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        await whole(seen, writer)
        return seen.index < 3

    srv = await serve(handler)
    results = await run(client, srv, tmp_path / "out", 50, jobs=8, pipeline=8)
    check_files(tmp_path / "out", results)
    assert all(r.attempts == 1 for r in results), [(r.path.name, r.attempts) for r in results]
    assert all(s.lane for s in srv.seen)


async def test_a_cut_pipeline_leaves_the_host_at_depth_one(serve: Serve) -> None:
    """On the lane directly: the server closes after 2 answers with 4 requests waiting; those
    4 are answered on new connections, none failed, and the host gets depth 1 from then on
    (RFC 9112 9.3.2: no pipelining right after a retried pipeline's new connection)."""
    cuts = 0

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        nonlocal cuts
        await whole(seen, writer)
        if seen.conn == 1 and seen.index == 3:
            cuts += 1
            return False
        return True

    srv = await serve(handler)
    lane = lane_for(8)
    try:
        replies = await _gets(lane, srv, [f"c{i}.bin" for i in range(6)])
        assert all(isinstance(r, Reply) and r.read for r in replies), replies
        assert srv.cut == [4] and len(lane.shallow) == 1
        before = len(srv.seen)
        again = await _gets(lane, srv, [f"d{i}.bin" for i in range(6)])
    finally:
        lane.close()
    assert all(isinstance(r, Reply) and r.read for r in again), again
    assert all(s.waiting == 1 for s in srv.seen[before:]), srv.seen[before:]


async def test_connection_close_mid_pipeline_requeues_the_rest(serve: Serve) -> None:
    """On the lane directly: the 3rd answer on the first connection says ``Connection:
    close``; the requests behind it are answered on another connection, none failed, and a
    polite close does not take the host off pipelining."""

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.conn == 1 and seen.index == 3:
            writer.write(answer(seen.target, Connection="close"))
            await writer.drain()
            return False
        return await whole(seen, writer)

    srv = await serve(handler)
    replies, lane = await lane_gets(srv, [f"e{i}.bin" for i in range(6)])
    assert all(isinstance(r, Reply) and r.read for r in replies), replies
    assert srv.cut == [4] and not lane.shallow
    assert sorted(s.target for s in srv.seen) == sorted(
        ["/f/warm.bin", *(f"/f/e{i}.bin" for i in range(6))]
    )


async def test_server_answering_only_the_first_request_loses_no_file(serve: Serve) -> None:
    """On the lane directly: a server that answers the first of the pipelined requests and
    ignores the others (reads them, says nothing): after the read timeout they are sent again
    on new connections, answered there, none failed; the host gets depth 1."""

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.conn == 1 and seen.index >= 3:
            await asyncio.sleep(MAX_SILENCE)  # the client leaves first
            return False
        return await whole(seen, writer)

    srv = await serve(handler)
    replies, lane = await lane_gets(srv, [f"g{i}.bin" for i in range(4)], idle=0.3)
    assert all(isinstance(r, Reply) and r.read for r in replies), replies
    assert len(lane.shallow) == 1


# --- one answer's failure is its own --------------------------------------------------------------


async def test_a_404_mid_pipeline_fails_only_its_file(
    client: Client, serve: Serve, tmp_path: Path
) -> None:
    """One 404 among pipelined answers fails that job alone (HTTP error, no file); its small
    body is drained, so the answers after it come on the same connection and every other file
    is byte-exact on its first attempt."""

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.target == "/f/p020.bin":
            writer.write(head("HTTP/1.1 404 Not Found", Content_Length=9) + b"not here!")
            await writer.drain()
            return True
        return await whole(seen, writer)

    srv = await serve(handler)
    results = await run(client, srv, tmp_path / "out", 40, jobs=8, pipeline=8)
    check_files(tmp_path / "out", results, skip=frozenset({"p020.bin"}))
    (missing,) = [r for r in results if r.path.name == "p020.bin"]
    assert missing.result is Result.HTTP_ERROR and missing.status == 404
    assert all(r.attempts == 1 for r in results)
    (lost,) = [s for s in srv.seen if s.target == "/f/p020.bin"]
    assert any(s.conn == lost.conn and s.index > lost.index for s in srv.seen)
    assert srv.deepest > 1


async def test_a_body_cut_mid_pipeline_fails_its_file_and_requeues_the_rest(
    serve: Serve,
) -> None:
    """On the lane directly: the 3rd answer on the first connection is cut after half its
    body: that GET fails with the numbers (BodyTruncatedError), the requests waiting behind it
    are answered on a new connection, byte-exact."""

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.conn == 1 and seen.index == 3:
            whole_answer = answer(seen.target)
            writer.write(whole_answer[: len(whole_answer) - SIZE // 2])
            await writer.drain()
            return False
        return await whole(seen, writer)

    srv = await serve(handler)
    replies, _ = await lane_gets(srv, [f"h{i}.bin" for i in range(6)])
    cut = [r for r in replies if isinstance(r, BaseException)]
    assert len(cut) == 1 and isinstance(cut[0], BodyTruncatedError), replies
    assert cut[0].received == SIZE - SIZE // 2 and cut[0].expected == SIZE
    assert sum(isinstance(r, Reply) and r.read for r in replies) == 5
    assert srv.cut == [4]


async def test_a_body_cut_mid_pipeline_is_retried_in_a_bulk_run(
    client: Client, serve: Serve, tmp_path: Path
) -> None:
    """In a bulk run with --retry 1: the file whose body was cut mid-pipeline is fetched again
    (attempt 2); every other file is byte-exact on its first attempt."""
    target = "/f/p015.bin"

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.target == target and seen.waiting > 1 and seen.lane:
            whole_answer = answer(seen.target)
            writer.write(whole_answer[:-100])
            await writer.drain()
            return False
        return await whole(seen, writer)

    srv = await serve(handler)
    results = await run(client, srv, tmp_path / "out", 30, jobs=8, pipeline=8, retries=1)
    check_files(tmp_path / "out", results)
    tries = {r.path.name: r.attempts for r in results}
    if srv.cut:  # the cut happened (the request was pipelined): that file took two
        assert tries.pop("p015.bin") == 2
    assert set(tries.values()) == {1}


# --- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize(("how", "deepest"), [((), 8), (("--pipeline", "1"), 1)])
async def test_command_line_depth_from_option_or_environment(
    serve: Serve, tmp_path: Path, how: tuple[str, ...], deepest: int
) -> None:
    """`get -i` pipelines by STREAMER_PIPELINE when no --pipeline is given (here 3), and
    --pipeline wins over it (1: one request at a time); every file byte-exact either way."""
    srv = await serve(whole)
    manifest = tmp_path / "m.txt"
    names = [f"m{i:02d}.bin" for i in range(40)]
    manifest.write_text("".join(f"{srv.url(n)}\n" for n in names))
    out = tmp_path / "out"
    out.mkdir()
    argv = ("get", "-i", str(manifest), "-d", str(out), "-q", "-j", "8", *how)
    done = await finish(await spawn(*argv, env={"STREAMER_PIPELINE": "3"}))
    assert done.rc == 0, done.err
    assert all((out / n).read_bytes() == body(f"/f/{n}") for n in names)
    assert srv.deepest <= min(deepest, 3) and (deepest == 1) == (srv.deepest == 1)


async def test_a_bad_pipeline_environment_value_is_a_usage_error(tmp_path: Path) -> None:
    """STREAMER_PIPELINE that is not a whole number >= 1 stops `get -i` before any request:
    exit 2 and one line naming the variable."""
    manifest = tmp_path / "m.txt"
    manifest.write_text("http://127.0.0.1:9/a.bin\n")
    argv = ("get", "-i", str(manifest), "-d", str(tmp_path), "-q")
    done = await finish(await spawn(*argv, env={"STREAMER_PIPELINE": "0"}))
    assert done.rc == 2
    assert done.err.strip().splitlines() == [
        "streamer: STREAMER_PIPELINE must be a whole number >= 1, not '0'"
    ]
