"""Promises of the small-file lane and of bulk runs around it (lane.py, quick.py, bulk.py,
cli_bulk.py, cli_shards.py): headers, error statuses, timeouts, retry budget, clashing names,
304, the journal, the bar, forking, one writer per target, cancellation, secrets.

Each test of the first part failed for the reason its docstring gives until that bug was
fixed; the others pin promises that held when checked. Servers are real sockets on 127.0.0.1
(`tests.test_lane.LaneServer`, `tests.faults.RawServer`), files are real, CLI runs are real
processes; nothing of the code under test is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamer import Result
from streamer.cli.bulk import _Tally
from streamer.cli.shards import share
from streamer.core.http1 import simple_request
from streamer.core.manifest import Job
from streamer.core.sizes import format_size
from streamer.errors import (
    BodyTooLarge,
    BodyTruncatedError,
    ChecksumMismatch,
    ConnectionLostError,
    HTTPStatusError,
    TransferTimeout,
    UsageError,
)
from streamer.lane.connection import DRAIN_MAX, Lane, Timeouts
from streamer.lane.fetch import QUICK_MAX
from streamer.storage.files import part_path, sidecar_path
from streamer.transfer.bulk import BulkOptions
from tests.faults import ClientFactory, End, RawFactory, head
from tests.helpers import ENV, Run, finish, spawn, streamer, wait_for
from tests.test_lane import (
    Conn,
    Handler,
    LaneServer,
    Req,
    body_for,
    files,
    job,
    left_in,
    only,
    response,
    run,
)

RUN_LIMIT = 15.0
SECRET = "S3cr3tSignatureValue"

LaneFactory = Callable[[Handler], Awaitable[LaneServer]]


@pytest.fixture
async def lane_server(serve_lane: LaneFactory) -> LaneFactory:
    """``srv = await lane_server(handler)``: test_lane's keep-alive `LaneServer` factory."""
    return serve_lane


# The bulk-run helpers of test_lane, under this file's names.
bulk, fjob, files_in, one = run, job, left_in, only


def lane_get(lane: Lane, url: str, sink: Callable[[memoryview], None], max_body: int = 1 << 20):
    origin, target = simple_request(url) or pytest.fail("not simple")
    return lane.get(origin, target, [], sink=sink, max_body=max_body, url=url)


async def python_cli(code: str, *args: str) -> Run:
    """``python -c CODE ARGS`` (CODE ends by running streamer's CLI main with ARGS)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        *args,
        env=ENV,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return await finish(proc)


# =================================================================================================
# Each failed for its reason until the fix.
# =================================================================================================


async def test_non_latin1_header_value_does_not_crash_the_run(
    make_client: ClientFactory, lane_server: LaneFactory, tmp_path: Path
) -> None:
    """A manifest header value with a non-latin-1 character (allowed by Job's validation):
    the job gets a result like with ``quick=False`` (which succeeds), and the other jobs of the
    run are not abandoned; the run never raises a foreign exception."""
    client = await make_client()
    srv = await lane_server(files)
    note = (("X-Note", "snow \u2603"),)
    full = one(
        await bulk(client, [fjob(srv, "a.bin", headers=note)], tmp_path / "full", quick=False)
    )
    assert full.ok  # the full engine's verdict
    results = await bulk(
        client, [fjob(srv, "b.bin", headers=note), fjob(srv, "c.bin")], tmp_path / "lane", jobs=1
    )
    assert len(results) == 2 and all(r.ok for r in results), results


async def test_config_header_with_crlf_is_never_sent_as_extra_header_lines(
    make_client: ClientFactory, lane_server: LaneFactory, tmp_path: Path
) -> None:
    """``Client(headers={"X-Tag": "a\\r\\nX-Injected: yes"})``: no request ever carries an
    ``X-Injected`` header line (aiohttp refuses the value as a header injection)."""
    client = await make_client(headers={"X-Tag": "a\r\nX-Injected: yes"})
    srv = await lane_server(files)
    full = one(await bulk(client, [fjob(srv, "a.bin")], tmp_path / "full", quick=False))
    assert not full.ok  # refused before sending
    lane = one(await bulk(client, [fjob(srv, "b.bin")], tmp_path / "lane"))
    assert not any("x-injected" in r.headers for r in srv.requests), srv.requests
    assert not lane.ok


async def test_user_agent_in_config_headers_replaces_the_default_on_the_lane(
    make_client: ClientFactory, raw_server: RawFactory, tmp_path: Path
) -> None:
    """``headers={"User-Agent": "mybot/1.0"}`` is the one User-Agent sent, on the lane as by
    the full engine (which sends exactly that one)."""
    client = await make_client(headers={"User-Agent": "mybot/1.0"})
    srv = await raw_server([response(b"ok", Connection="close")], End.CLOSE)
    for quick in (False, True):
        job = Job(srv.url + "a", path=f"a-{quick}")
        assert one(await bulk(client, [job], tmp_path, quick=quick)).ok
    full, lane = (raw.decode("latin-1").split("\r\n") for raw in srv.requests)
    assert [x for x in full if x.lower().startswith("user-agent:")] == ["User-Agent: mybot/1.0"]
    assert "Accept: */*" not in lane  # really the lane's request
    assert [x for x in lane if x.lower().startswith("user-agent:")] == ["User-Agent: mybot/1.0"]


async def error_with_bad_body(req: Req, conn: Conn) -> bool:
    """``/cut``: 404 declaring 100 body bytes, 5 sent, FIN. ``/stall``: 503 (Retry-After 0)
    declaring 100, 5 sent, then silence."""
    if req.path == "/stall":
        await conn.send(b"HTTP/1.1 503 Busy\r\nRetry-After: 0\r\nContent-Length: 100\r\n\r\nshort")
        await conn.stall()
        return False
    await conn.send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 100\r\n\r\nshort")
    return False


@pytest.mark.parametrize(("path", "status"), [("/cut", 404), ("/stall", 503)])
async def test_error_status_whose_body_is_cut_or_stalls_is_http_error(
    make_client: ClientFactory, lane_server: LaneFactory, tmp_path: Path, path: str, status: int
) -> None:
    """The status is known once the head is in: the job's result is HTTP_ERROR with that
    status, as with ``quick=False``, whatever then happens to the discarded body."""
    client = await make_client(read_timeout=0.5)
    srv = await lane_server(error_with_bad_body)
    full = one(await bulk(client, [Job(srv.url(path), path="x")], tmp_path / "f", quick=False))
    assert (full.result, full.status) == (Result.HTTP_ERROR, status)
    lane = one(await bulk(client, [Job(srv.url(path), path="x")], tmp_path / "l"))
    assert srv.requests[-1].by_lane
    assert (lane.result, lane.status) == (Result.HTTP_ERROR, status), (lane.result, lane.error)


FSIZE_LIMIT = 4096
LIMITED_CLI = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, ({FSIZE_LIMIT}, {FSIZE_LIMIT}))
from streamer.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


async def test_journal_that_cannot_be_written_is_a_typed_error(
    lane_server: LaneFactory, tmp_path: Path
) -> None:
    """A journal the process may not grow (RLIMIT_FSIZE reached; EFBIG on append): the run
    ends with a one-line ``streamer:`` error and the file-write exit code (23), no traceback."""
    srv = await lane_server(files)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".streamer-journal.jsonl").write_bytes(b"\n" * FSIZE_LIMIT)  # blank lines: ignored
    manifest = tmp_path / "m.txt"
    manifest.write_text("".join(srv.url(f"/f/j{i}.bin?size=100") + "\n" for i in range(3)))
    run = await python_cli(LIMITED_CLI, "get", "-i", str(manifest), "-d", str(out))
    assert files_in(out) >= {"j0.bin", "j1.bin", "j2.bin"}  # the downloads themselves worked
    assert "Traceback" not in run.err, run.err[-600:]
    assert run.rc == 23, run


def test_progress_bar_shows_bytes_and_failures_reported_by_running_workers() -> None:
    """A worker's progress message (3 files, 3000 bytes, 1 failed) shows in the bar's text at
    once, before that worker's final counts arrive."""
    tally = _Tally(10, bar=True)
    try:
        tally.merge({"t": "progress", "k": 0, "files": 3, "bytes": 3000, "failed": 1})
        tally.merge({"t": "progress", "k": 1, "files": 1, "bytes": 1000, "failed": 0})
        assert tally.bar.n == 4
        assert tally.bar.postfix == f"{format_size(4000)}, 1 failed", tally.bar.postfix
    finally:
        tally.bar.close()


FORK_WATCH = """
import os, sys, threading
real_fork = os.fork
def fork():
    others = sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())
    sys.stderr.write("FORK-THREADS %s\\n" % ",".join(others))
    return real_fork()
os.fork = fork
from streamer.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


async def test_workers_are_forked_before_any_thread_exists_even_with_a_bar(
    lane_server: LaneFactory, tmp_path: Path
) -> None:
    """cli_shards' rule ("forks N workers before any event loop or thread exists") with
    ``--progress``: at each fork the main thread is the only thread."""
    srv = await lane_server(files)
    manifest = tmp_path / "m.txt"
    manifest.write_text("".join(srv.url(f"/f/t{i}.bin?size=100") + "\n" for i in range(4)))
    out = tmp_path / "out"
    out.mkdir()
    args = ("get", "-i", str(manifest), "-d", str(out), "--processes", "2")
    plain = await python_cli(FORK_WATCH, *args)
    assert plain.rc == 0 and plain.err.count("FORK-THREADS \n") == 2, plain.err
    run = await python_cli(FORK_WATCH, *args, "--progress")
    assert run.rc == 0, run
    forks = [
        line.split("FORK-THREADS ")[1] for line in run.err.splitlines() if "FORK-THREADS" in line
    ]
    assert forks == ["", ""], forks


async def always_503(req: Req, conn: Conn) -> bool:
    await conn.send(response(b"busy\n", "503 Service Unavailable", Retry_After=0))
    return True


@pytest.mark.parametrize("quick", [True, False], ids=["lane", "full"])
async def test_retry_budget_caps_the_retries_of_the_whole_run(
    make_client: ClientFactory, lane_server: LaneFactory, tmp_path: Path, quick: bool
) -> None:
    """retry_budget=2 (``retries allowed over the whole run``), 4 jobs at once that always get
    503: at most 4 + 2 requests in all."""
    client = await make_client()
    srv = await lane_server(always_503)
    todo = [fjob(srv, f"b{i}.bin") for i in range(4)]
    results = await bulk(client, todo, tmp_path, retries=3, jobs=4, retry_budget=2, quick=quick)
    assert all(r.result is Result.HTTP_ERROR for r in results)
    assert len(srv.requests) <= 4 + 2, (len(srv.requests), [r.attempts for r in results])


async def test_a_target_that_is_another_targets_partial_is_not_consumed(
    make_client: ClientFactory, lane_server: LaneFactory, tmp_path: Path
) -> None:
    """Jobs for ``a.part`` then ``a``: every job reported successful has its own file, whole
    (or one of them is refused: ``a.part`` is a reserved name, refused when the job is made)."""
    client = await make_client()
    srv = await lane_server(files)
    with pytest.raises(UsageError, match="reserved"):
        fjob(srv, "a.part", 100)
    todo = [fjob(srv, "a", 200)]
    results = await bulk(client, todo, tmp_path, jobs=1)
    for r in results:
        if r.ok:
            name = r.path.name
            assert r.path.exists(), f"{name} reported downloaded, but it is not there"
            assert r.path.read_bytes() == body_for(name, r.size)


async def not_modified(req: Req, conn: Conn) -> bool:
    await conn.send(b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n')
    return True


@pytest.mark.parametrize("quick", [True, False], ids=["lane", "full"])
async def test_304_to_a_conditional_job_leaves_the_existing_file_alone(
    make_client: ClientFactory, lane_server: LaneFactory, tmp_path: Path, quick: bool
) -> None:
    """A job with ``If-None-Match`` answered ``304 Not Modified``: the existing target keeps
    its content (the server said it is current), whatever the job's result."""
    client = await make_client()
    srv = await lane_server(not_modified)
    (tmp_path / "c.bin").write_bytes(b"the current content")
    job = Job(srv.url("/c.bin"), path="c.bin", headers=(("If-None-Match", '"v1"'),))
    r = one(await bulk(client, [job], tmp_path, quick=quick))
    assert (tmp_path / "c.bin").read_bytes() == b"the current content", (r.result, r.status)


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A 127.0.0.1 port whose accept queue is full: a new connect() hangs (SYNs are dropped)."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_connect_timeout_is_not_paid_twice_on_the_lane(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """connect_timeout=0.8 and a host that never completes the handshake: the job fails with
    TIMEOUT after about 0.8 s, as with ``quick=False``, not after 1.6 s."""
    client = await make_client(connect_timeout=0.8)
    with unanswered_port() as port:
        job = Job(f"http://127.0.0.1:{port}/x", path="x")
        started = time.monotonic()
        full = one(await bulk(client, [job], tmp_path / "f", quick=False))
        full_time = time.monotonic() - started
        if full.result is not Result.TIMEOUT or full_time > 1.3:
            pytest.skip(f"this machine does not leave the connect hanging: {full.result}")
        started = time.monotonic()
        lane = one(await bulk(client, [job], tmp_path / "l"))
        lane_time = time.monotonic() - started
    assert lane.result is Result.TIMEOUT
    assert lane_time < 1.3, (round(lane_time, 2), round(full_time, 2))


# =================================================================================================
# Promises that hold (not covered elsewhere).
# =================================================================================================


async def test_lane_job_holding_its_part_makes_another_process_fail_fast_target_busy(
    make_client: ClientFactory, lane_server: LaneFactory, tmp_path: Path
) -> None:
    """One writer per target: while a bulk job holds ``T.part`` on the lane, ``streamer get``
    of the same target in another process exits TARGET_BUSY (82) at once, without a request;
    the lane job then finishes and T is exact."""
    gate = asyncio.Event()

    async def held(req: Req, conn: Conn) -> bool:
        await gate.wait()
        await conn.send(response(req.file()[1]))
        return True

    client = await make_client()
    srv = await lane_server(held)
    target = tmp_path / "t.bin"
    task = asyncio.create_task(bulk(client, [fjob(srv, "t.bin", 500)], tmp_path))
    try:
        await wait_for(lambda: len(srv.requests) == 1, "the lane's request")
        assert part_path(target).exists() and srv.requests[0].by_lane
        other = await streamer("get", srv.url("/f/t.bin?size=500"), "-o", str(target))
        assert other.rc == 82, other
        assert "another download is writing" in other.err
        assert len(srv.requests) == 1
    finally:
        gate.set()
    r = one(await task)
    assert r.ok and target.read_bytes() == body_for("t.bin", 500)
    assert files_in(tmp_path) == {"t.bin"}


async def test_part_locked_by_another_process_makes_the_lane_job_target_busy(
    make_client: ClientFactory, lane_server: LaneFactory, tmp_path: Path
) -> None:
    """Another process downloading T (its ``T.part`` locked, its answer pending): the bulk job
    for T fails with TARGET_BUSY without a request, and leaves that ``T.part`` alone; the other
    process then completes T."""
    gate = asyncio.Event()

    async def held(req: Req, conn: Conn) -> bool:
        await gate.wait()
        await conn.send(response(req.file()[1]))
        return True

    client = await make_client()
    srv = await lane_server(held)
    target = tmp_path / "t.bin"
    proc = await spawn("get", srv.url("/f/t.bin?size=700"), "-o", str(target))
    try:
        await wait_for(lambda: len(srv.requests) == 1, "the other process's request")
        r = one(await bulk(client, [fjob(srv, "t.bin", 700)], tmp_path))
        assert r.result is Result.TARGET_BUSY, (r.result, r.error)
        assert len(srv.requests) == 1
        assert part_path(target).exists()
    finally:
        gate.set()
    other = await finish(proc)
    assert other.rc == 0, other
    assert target.read_bytes() == body_for("t.bin", 700)
    assert files_in(tmp_path) == {"t.bin"}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_cancelled_lane_job_removes_its_part_closes_fd_and_connection(
    make_client: ClientFactory, lane_server: LaneFactory, tmp_path: Path
) -> None:
    """Ctrl-C in the middle of a lane body: the run's task ends cancelled, the new ``T.part``
    is removed (T never appears), the file descriptor and the socket are closed (the server
    sees the connection end), and nothing is logged afterwards when the exchange's timer would
    have fired."""
    client = await make_client(read_timeout=0.3)
    sent = asyncio.Event()

    async def half(req: Req, conn: Conn) -> bool:
        await conn.send(head(Content_Length=1000) + b"x" * 10)
        sent.set()
        await conn.stall()
        return False

    srv = await lane_server(half)
    baseline = open_fds()
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    try:
        task = asyncio.create_task(bulk(client, [fjob(srv, "c.bin", 1000)], tmp_path))
        async with asyncio.timeout(5):
            await sent.wait()
        await wait_for(lambda: part_path(tmp_path / "c.bin").exists(), "the part")
        await asyncio.sleep(0.05)  # the 10 bytes are written
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert files_in(tmp_path) == set()
        await wait_for(lambda: not srv._writers, "the server to see the connection closed")
        await asyncio.sleep(0.5)  # past the idle timeout of the cancelled exchange
        assert open_fds() <= baseline
        assert errors == []
    finally:
        loop.set_exception_handler(None)


async def test_timer_of_a_finished_exchange_never_touches_the_pooled_connection(
    lane_server: LaneFactory,
) -> None:
    """Idle 0.2 s and total 0.3 s: a connection idle in the pool for 0.6 s after its exchange
    is still used for the next GET (its timer was stopped), bodies intact."""
    srv = await lane_server(files)
    lane = Lane(Timeouts(5.0, 0.2, 0.3), ssl.create_default_context)
    try:
        got = [bytearray(), bytearray()]
        for i, name in enumerate(("one.bin", "two.bin")):
            reply = await lane_get(lane, srv.url(f"/f/{name}?size=300"), got[i].extend)
            assert reply.read
            await asyncio.sleep(0.6)
    finally:
        lane.close()
    assert [bytes(b) for b in got] == [body_for("one.bin", 300), body_for("two.bin", 300)]
    assert [(r.conn, r.index) for r in srv.requests] == [(1, 1), (1, 2)]


@pytest.mark.parametrize("timeouts", [(0.3, None), (None, 0.4), (5.0, 0.4)], ids=str)
async def test_a_stall_on_a_reused_connection_is_timed_by_the_connections_timer(
    lane_server: LaneFactory, timeouts: tuple[float | None, float | None]
) -> None:
    """One timer per connection, kept across exchanges: after a quick first exchange, a second
    GET on the same connection that stalls mid-body still ends with TransferTimeout (read or
    total timeout, whichever is set and comes first), and the connection is not reused."""

    async def handler(req: Req, conn: Conn) -> bool:
        if req.path.startswith("/stall"):
            await conn.send(head(Content_Length=100) + b"x")
            await conn.stall()
            return False
        await conn.send(response(req.file()[1]))
        return True

    srv = await lane_server(handler)
    idle, total = timeouts
    lane = Lane(Timeouts(5.0, idle, total), ssl.create_default_context)
    try:
        got = bytearray()
        assert (await lane_get(lane, srv.url("/f/a.bin?size=50"), got.extend)).read
        with pytest.raises(TransferTimeout, match="read timeout" if total is None else "total"):
            await lane_get(lane, srv.url("/stall/x"), lambda _: None)
        assert (await lane_get(lane, srv.url("/f/b.bin?size=50"), got.extend)).read
    finally:
        lane.close()
    assert bytes(got) == body_for("a.bin", 50) + body_for("b.bin", 50)
    assert [(r.path, r.conn, r.index) for r in srv.requests] == [
        ("/f/a.bin", 1, 1),
        ("/stall/x", 1, 2),
        ("/f/b.bin", 2, 1),
    ]


async def test_connection_is_not_reused_after_a_timeout_or_a_sink_failure(
    lane_server: LaneFactory,
) -> None:
    """A timed-out exchange and one whose sink raised (a failed write) both retire their
    connection: each next GET goes out on a new one and gets its own body."""

    async def handler(req: Req, conn: Conn) -> bool:
        if req.path.startswith("/stall"):
            await conn.send(head(Content_Length=100) + b"x")
            await conn.stall()
            return False
        await conn.send(response(req.file()[1]))
        return True

    srv = await lane_server(handler)
    lane = Lane(Timeouts(5.0, 0.3, None), ssl.create_default_context)

    def full_disk(_: memoryview) -> None:
        raise OSError(28, "No space left on device")

    try:
        with pytest.raises(TransferTimeout):
            await lane_get(lane, srv.url("/stall/x"), lambda _: None)
        got = bytearray()
        assert (await lane_get(lane, srv.url("/f/a.bin?size=50"), got.extend)).read
        with pytest.raises(OSError, match="No space"):
            await lane_get(lane, srv.url("/f/b.bin?size=50"), full_disk)
        got2 = bytearray()
        assert (await lane_get(lane, srv.url("/f/c.bin?size=50"), got2.extend)).read
    finally:
        lane.close()
    assert bytes(got) == body_for("a.bin", 50) and bytes(got2) == body_for("c.bin", 50)
    assert [(r.path, r.conn, r.index) for r in srv.requests] == [
        ("/stall/x", 1, 1),
        ("/f/a.bin", 2, 1),
        ("/f/b.bin", 2, 2),
        ("/f/c.bin", 3, 1),
    ]


async def test_body_of_exactly_quick_max_is_taken_by_the_lane_without_a_sidecar(
    make_client: ClientFactory, lane_server: LaneFactory, tmp_path: Path
) -> None:
    """Content-Length == QUICK_MAX (and max_bytes == QUICK_MAX): one lane request, the file
    exact, no sidecar and no `.part` left."""
    client = await make_client()
    srv = await lane_server(files)
    r = one(await bulk(client, [fjob(srv, "q.bin", QUICK_MAX, max_bytes=QUICK_MAX)], tmp_path))
    assert r.ok and r.size == QUICK_MAX
    assert len(srv.requests) == 1 and srv.requests[0].by_lane
    assert (tmp_path / "q.bin").read_bytes() == body_for("q.bin", QUICK_MAX)
    assert not sidecar_path(tmp_path / "q.bin").exists()
    assert files_in(tmp_path) == {"q.bin"}


async def test_content_length_zero_gives_an_empty_file_and_keeps_the_connection(
    make_client: ClientFactory, lane_server: LaneFactory, tmp_path: Path
) -> None:
    """200 with Content-Length 0 (even with max_bytes=0): an empty target, on the lane; the
    next job reuses the connection."""
    client = await make_client()
    srv = await lane_server(files)
    todo = [fjob(srv, "e.bin", 0, max_bytes=0), fjob(srv, "n.bin", 10)]
    results = await bulk(client, todo, tmp_path, jobs=1)
    assert all(r.ok for r in results), results
    assert (tmp_path / "e.bin").read_bytes() == b""
    assert (tmp_path / "n.bin").read_bytes() == body_for("n.bin", 10)
    assert [(r.by_lane, r.conn) for r in srv.requests] == [(True, 1), (True, 1)]


async def test_uppercase_checksum_is_checked_on_the_lane(
    make_client: ClientFactory, lane_server: LaneFactory, tmp_path: Path
) -> None:
    """``SHA-256:<UPPER HEX>`` is the same checksum: the right one passes on the lane, a wrong
    upper-case one is CHECKSUM_MISMATCH with nothing left."""
    client = await make_client()
    srv = await lane_server(files)
    right = "SHA-256:" + hashlib.sha256(body_for("u.bin", 100)).hexdigest().upper()
    wrong = "SHA256:" + hashlib.sha256(b"x").hexdigest().upper()
    ok = one(await bulk(client, [fjob(srv, "u.bin", checksum=right)], tmp_path / "a"))
    bad = one(await bulk(client, [fjob(srv, "u.bin", checksum=wrong)], tmp_path / "b"))
    assert ok.ok and all(r.by_lane for r in srv.requests)
    assert bad.result is Result.CHECKSUM_MISMATCH
    assert files_in(tmp_path / "a") == {"u.bin"} and files_in(tmp_path / "b") == set()


@pytest.mark.parametrize(("extra", "same_conn"), [(0, True), (1, False)], ids=["max", "max+1"])
async def test_error_body_drained_up_to_drain_max_only(
    make_client: ClientFactory,
    lane_server: LaneFactory,
    tmp_path: Path,
    extra: int,
    same_conn: bool,
) -> None:
    """A 404 body of exactly DRAIN_MAX bytes is read and the connection kept; one byte more and
    it is not read, the connection is retired, and the next job goes out on a new one with its
    body intact."""

    async def handler(req: Req, conn: Conn) -> bool:
        if req.path.startswith("/f/missing"):
            await conn.send(response(b"e" * (DRAIN_MAX + extra), "404 Not Found"))
        else:
            await conn.send(response(req.file()[1]))
        return True

    client = await make_client()
    srv = await lane_server(handler)
    results = await bulk(client, [fjob(srv, "missing"), fjob(srv, "next.bin")], tmp_path, jobs=1)
    missing, after = sorted(results, key=lambda r: r.path.name)
    assert (missing.result, missing.status, after.ok) == (Result.HTTP_ERROR, 404, True)
    assert all(r.by_lane for r in srv.requests) and len(srv.requests) == 2
    assert (srv.requests[1].conn == srv.requests[0].conn) is same_conn
    assert (tmp_path / "next.bin").read_bytes() == body_for("next.bin", 100)


async def test_interim_1xx_then_close_is_a_typed_connection_error(
    make_client: ClientFactory, lane_server: LaneFactory, tmp_path: Path
) -> None:
    """``100 Continue`` and then FIN before any final answer: CONNECTION_ERROR
    (ConnectionLostError), one request, nothing left on disk."""

    async def handler(req: Req, conn: Conn) -> bool:
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        return False

    client = await make_client()
    srv = await lane_server(handler)
    r = one(await bulk(client, [fjob(srv, "i.bin")], tmp_path))
    assert r.result is Result.CONNECTION_ERROR and isinstance(r.error, ConnectionLostError)
    assert len(srv.requests) == 1
    assert files_in(tmp_path) == set()


async def secret_faults(req: Req, conn: Conn) -> bool:
    kind = req.path.split("/")[1]
    body = req.file()[1]
    if kind == "404":
        await conn.send(response(b"no\n", "404 Not Found"))
    elif kind == "cut":
        await conn.send(head(Content_Length=len(body)) + body[:10])
        return False
    elif kind == "stall":
        await conn.send(head(Content_Length=len(body)))
        await conn.stall()
        return False
    elif kind == "1xx":
        await conn.send(b"HTTP/1.1 103 Early Hints\r\n\r\n")
        return False
    else:
        await conn.send(response(body))
    return True


@pytest.mark.parametrize(
    "case",
    [
        ("404", {}, HTTPStatusError),
        ("cut", {}, BodyTruncatedError),
        ("stall", {}, TransferTimeout),
        ("1xx", {}, ConnectionLostError),
        ("f", {"checksum": "sha256:" + "0" * 64}, ChecksumMismatch),
        ("f", {"max_bytes": 5}, BodyTooLarge),
    ],
    ids=["404", "cut", "timeout", "1xx-close", "checksum", "max-bytes"],
)
async def test_signed_query_never_appears_in_lane_errors(
    make_client: ClientFactory,
    lane_server: LaneFactory,
    tmp_path: Path,
    case: tuple[str, dict[str, Any], type[Exception]],
) -> None:
    """Every lane failure of a presigned URL: the signature reached its own server, and the
    error (str, repr, JSON result) shows it only as REDACTED."""
    kind, extra, error = case
    client = await make_client(read_timeout=0.3)
    srv = await lane_server(secret_faults)
    url = srv.url(f"/{kind}/s.bin?size=100&X-Amz-Signature={SECRET}")
    r = one(await bulk(client, [Job(url, path="s.bin", **extra)], tmp_path))
    assert isinstance(r.error, error), (r.result, r.error)
    assert srv.requests[0].by_lane and SECRET in srv.requests[0].target
    shown = f"{r.error} {r.error!r} {json.dumps(r.to_json())} {r.error.url}"
    assert SECRET not in shown, shown
    assert "REDACTED" in r.error.url
    assert files_in(tmp_path) == set()


async def test_every_result_is_delivered_once_to_a_slow_consumer(
    make_client: ClientFactory, lane_server: LaneFactory, tmp_path: Path
) -> None:
    """_Outbox: 60 jobs, 2 workers (outbox limit 4) and a consumer slower than the workers:
    every job's result arrives exactly once, and the iteration ends."""
    client = await make_client()
    srv = await lane_server(files)
    todo = [fjob(srv, f"o{i:02d}.bin", 10 + i) for i in range(60)]
    (tmp_path / "out").mkdir()
    names: list[str] = []
    async with asyncio.timeout(RUN_LIMIT):
        async for r in client.download_many(todo, tmp_path / "out", BulkOptions(jobs=2)):
            assert r.ok
            names.append(r.path.name)
            await asyncio.sleep(0.002)
    assert sorted(names) == sorted(j.path or "" for j in todo)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_share_splits_every_limit_among_workers(n: int) -> None:
    """share(): the workers' jobs, per-host caps and retry budgets add up to the run's exactly
    (each worker has at least one job and slot), rates and memory never exceed it."""
    for jobs, per_host, budget in [(n, n, 0), (7, 5, 1), (16, 9, 13), (100, 16, 3)]:
        opts = BulkOptions(
            jobs=jobs,
            max_per_host=per_host,
            retry_budget=budget,
            limit_rate=1000.0,
            memory_budget=(64 << 20) + 1,
        )
        parts = [share(opts, k, n) for k in range(n)]
        assert sum(p.jobs for p in parts) == jobs
        assert sum(p.max_per_host for p in parts) == per_host
        assert sum(p.retry_budget or 0 for p in parts) == budget
        assert all(p.jobs >= 1 and p.max_per_host >= 1 for p in parts)
        assert sum(p.limit_rate or 0 for p in parts) <= 1000.0 + 1e-9
        assert sum(p.memory_budget for p in parts) <= opts.memory_budget


SHM = Path("/dev/shm")


@pytest.mark.skipif(
    not SHM.is_dir() or SHM.stat().st_dev == Path(__file__).stat().st_dev,
    reason="needs /dev/shm on another file system",
)
async def test_journal_on_another_file_system_rerun_makes_no_request(
    lane_server: LaneFactory, tmp_path: Path
) -> None:
    """``--journal`` on another file system (/dev/shm): the run records every file, and a
    re-run skips them all without a request."""
    srv = await lane_server(files)
    manifest = tmp_path / "m.txt"
    manifest.write_text("".join(srv.url(f"/f/j{i}.bin?size=100") + "\n" for i in range(5)))
    out = tmp_path / "out"
    out.mkdir()
    journal = SHM / f"streamer-review-{os.getpid()}-{time.monotonic_ns()}.jsonl"
    try:
        args = ("get", "-i", str(manifest), "-d", str(out), "--journal", str(journal))
        first = await streamer(*args)
        assert first.rc == 0, first
        assert len(srv.requests) == 5
        records = [json.loads(x) for x in journal.read_text().splitlines()]
        assert sorted(x["target"] for x in records) == [f"j{i}.bin" for i in range(5)]
        again = await streamer(*args)
        assert again.rc == 0, again
        assert "5 already done" in again.err, again.err
        assert len(srv.requests) == 5
    finally:
        with contextlib.suppress(OSError):
            journal.unlink()


def test_lane_part_lock_is_the_full_engines_lock() -> None:
    """Sanity for the tests above: the lane's lock on ``T.part`` is flock, the full engine's
    protocol (a second flock on the same path is refused)."""
    import tempfile

    from streamer.lane.fetch import _create_part

    with tempfile.TemporaryDirectory() as d:
        target = Path(d) / "t"
        fd = _create_part(f"{target}.part")
        assert fd is not None
        try:
            other = os.open(f"{target}.part", os.O_RDWR)
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(other)
            assert _create_part(f"{target}.part") is None  # O_EXCL: it exists
        finally:
            os.close(fd)


async def test_lane_runs_under_uvloop(lane_server: LaneFactory, tmp_path: Path) -> None:
    """STREAMER_LOOP=uvloop (the `fast` extra): the lane's protocol takes uvloop's transport
    (no asyncio.Transport subclass) and a bulk run fetches every file on the lane, exact."""
    if importlib.util.find_spec("uvloop") is None:
        if os.environ.get("CI"):
            pytest.fail("uvloop (streamer[fast], installed by .ci/setup) is missing")
        pytest.skip("uvloop is not installed: pip install 'streamer[fast]'")
    srv = await lane_server(files)
    names = [f"u{i}.bin" for i in range(20)]
    manifest = tmp_path / "m.txt"
    manifest.write_text("".join(f"{srv.url(f'/f/{n}?size=700')}\n" for n in names))
    out = tmp_path / "out"
    out.mkdir()
    run = await streamer(
        "get", "-i", str(manifest), "-d", str(out), "-q", env={"STREAMER_LOOP": "uvloop"}
    )
    assert run.rc == 0, run.err
    assert run.err == ""
    assert all((out / n).read_bytes() == body_for(n, 700) for n in names)
    assert len(srv.requests) == len(names) and all(r.by_lane for r in srv.requests)
