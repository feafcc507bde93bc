"""--limit-rate with --speed-limit on downloads: the stall window judges the peer, never our
own pacing, on every download path.

curl checks --speed-limit against the transfer's measured speed, and with --limit-rate below
it curl aborts its own transfer (exit 28); streamer does not: the window's clock stops while
a body waits for its own throttle (`core.stall.OwnWaits`), as it does for uploads. So a
64 KiB/s download under a 1 MiB/s minimum over 1 s finishes, no sooner than
(N - burst)/R, with the exact bytes, from a server that sends everything within 0.6 s (an
unpaced client never waits a full window for it); and a server that goes mute mid-body is
still caught with exit 28 under the same options, and --max-time still counts our waits.
One test each for the raw fast path, the aiohttp engine, --split, a bulk -i run over two
processes, and the Python API.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streamer import Client, Result, TooSlowError
from streamer.core.ratelimit import burst_for
from tests.faults import data
from tests.helpers import one_error_line, streamer

KIB = 1 << 10
RATE = 64 * KIB
SIZE = 192 * KIB
# Every answer's last quarter comes this long after the rest: within one window, yet read
# only after the throttle's wait for the first part (which, counted, fails the window).
LATE = 0.6
LIMITS = ("--limit-rate", "64K", "--speed-limit", "1M", "--speed-time", "1")
ENGINE = {"STREAMER_FAST_BODY": "0"}
SILENCE = 30.0  # a mute server waits at most this long for the client to leave


def least(size: int = SIZE, rate: int = RATE, workers: int = 1) -> float:
    """The shortest time `size` bytes can take at `rate` split over `workers` buckets, each
    letting one burst go at once."""
    return (size - workers * burst_for(rate / workers)) / rate


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass
class Origin:
    """A raw HTTP/1.1 server of one body per path (`data(SIZE)`), with Range support, that
    sends each answer's last quarter `LATE` seconds after the rest, or goes mute (nothing
    more, until the client leaves) at byte `mute_at` of the body."""

    mute_at: int | None = None
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            async with asyncio.timeout(SILENCE):
                while await self._answer(reader, writer):
                    pass
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        request = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        first, start, end = request.split(" ", 1)[0], 0, SIZE - 1
        for line in request.split("\r\n"):
            if line.lower().startswith("range: bytes="):
                lo, _, hi = line.split("=", 1)[1].partition("-")
                start, end = int(lo), min(end, int(hi)) if hi else end
        status = "206 Partial Content" if start or end < SIZE - 1 else "200 OK"
        head = f"HTTP/1.1 {status}\r\nContent-Length: {end - start + 1}\r\n"
        if status.startswith("206"):
            head += f"Content-Range: bytes {start}-{end}/{SIZE}\r\n"
        writer.write((head + "Accept-Ranges: bytes\r\n\r\n").encode("latin-1"))
        if first == "HEAD":
            return True
        late = end + 1 - (end + 1 - start) // 4
        for at, stop in ((start, late), (late, end + 1)):
            if self.mute_at is not None and stop > self.mute_at:
                writer.write(data(max(0, self.mute_at - at), at))
                await reader.read()  # mute: nothing more, until the client leaves
                return False
            writer.write(data(stop - at, at))
            await writer.drain()
            if at == start:
                await asyncio.sleep(LATE)
        return True

    async def __aenter__(self) -> Origin:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    async with Origin() as server:
        yield server


@pytest.fixture
async def mute() -> AsyncIterator[Origin]:
    async with Origin(mute_at=100 * KIB) as server:
        yield server


BODY = data(SIZE)
PATHS = {
    "raw": ((), {}),
    "engine": ((), ENGINE),
    "split": (("--split", "3"), {}),
}


@pytest.mark.parametrize("path", sorted(PATHS))
async def test_get_paced_below_the_minimum_finishes(
    origin: Origin, tmp_path: Path, path: str
) -> None:
    """get --limit-rate 64K --speed-limit 1M --speed-time 1 of 192 KiB (raw path, engine,
    --split 3): our own throttle's waits are not the peer's slowness, so the download ends
    with the exact bytes, no sooner than (N - burst)/R, on the path named."""
    extra, env = PATHS[path]
    target = tmp_path / "out.bin"
    started = time.monotonic()
    run = await streamer(
        "get", origin.url + "f", "-o", str(target), *LIMITS, *extra, "--json", env=env
    )
    elapsed = time.monotonic() - started
    assert run.rc == 0, run.err
    assert sha(target.read_bytes()) == sha(BODY)
    assert elapsed >= least(), elapsed
    if path != "split":
        assert run.json()["body_path"] == ("engine" if env else "raw"), run.out


@pytest.mark.parametrize("path", sorted(PATHS))
async def test_get_paced_from_a_mute_peer_is_too_slow(
    mute: Origin, tmp_path: Path, path: str
) -> None:
    """The same options against a server that stops sending at 100 KiB: exit 28, one line."""
    extra, env = PATHS[path]
    args = ("get", mute.url + "f", "-o", str(tmp_path / "out.bin"), *LIMITS, *extra)
    run = await streamer(*args, "--read-timeout", "60", env=env)
    one_error_line(run, 28, "too slow")


@pytest.mark.parametrize("env", [{}, ENGINE], ids=["raw", "engine"])
async def test_max_time_still_counts_our_pacing(
    origin: Origin, tmp_path: Path, env: dict[str, str]
) -> None:
    """--max-time bounds the whole transfer, our own waits included (as curl's does): a
    192 KiB get at 32 KiB/s with --max-time 1 ends with exit 28 on the raw path and the
    engine alike."""
    args = ("get", origin.url + "f", "-o", str(tmp_path / "out.bin"), "--limit-rate", "32K")
    run = await streamer(*args, "--max-time", "1", env=env)
    one_error_line(run, 28, "total timeout")


def _manifest(tmp_path: Path, base: str, count: int) -> Path:
    (tmp_path / "out").mkdir()
    manifest = tmp_path / "urls.txt"
    manifest.write_text("".join(f"{base}f{i}\n" for i in range(count)))
    return manifest


@pytest.mark.parametrize("env", [{}, ENGINE], ids=["raw", "engine"])
async def test_bulk_paced_over_two_processes_finishes(
    origin: Origin, tmp_path: Path, env: dict[str, str]
) -> None:
    """get -i of 192 KiB (two files) with --processes 2 and the same options: each worker's
    share of the rate (32 KiB/s) is its own pacing, so both files arrive whole, no sooner
    than the shared rate allows."""
    out = tmp_path / "out"
    manifest = _manifest(tmp_path, origin.url, 2)
    started = time.monotonic()
    run = await streamer(
        "get", "-i", str(manifest), "-d", str(out), *LIMITS, "--processes", "2", env=env
    )
    elapsed = time.monotonic() - started
    assert run.rc == 0, run.err
    for i in range(2):
        assert sha((out / f"f{i}").read_bytes()) == sha(BODY)
    assert elapsed >= least(2 * SIZE, workers=2), elapsed


async def test_bulk_paced_from_a_mute_peer_is_too_slow(mute: Origin, tmp_path: Path) -> None:
    """A bulk run with the same options against a server that goes mute: exit 28."""
    manifest = _manifest(tmp_path, mute.url, 2)
    args = ("get", "-i", str(manifest), "-d", str(tmp_path / "out"), *LIMITS)
    run = await streamer(*args, "--processes", "2", "--read-timeout", "60")
    assert run.rc == 28, run.err
    assert "too slow" in run.err


async def test_api_paced_below_the_minimum_finishes(origin: Origin, tmp_path: Path) -> None:
    """Client(limit_rate=64K, speed_limit=1M, speed_time=1).download: exact bytes, no stall,
    no sooner than (N - burst)/R."""
    target = tmp_path / "api.bin"
    options = {"limit_rate": RATE, "speed_limit": 1 << 20, "speed_time": 1}
    async with Client(**options) as client:
        started = time.monotonic()
        await client.download(origin.url + "f", target)
        elapsed = time.monotonic() - started
    assert sha(target.read_bytes()) == sha(BODY)
    assert elapsed >= least(), elapsed


async def test_api_paced_from_a_mute_peer_is_too_slow(mute: Origin, tmp_path: Path) -> None:
    """The same client against a server that goes mute raises TooSlowError (TOO_SLOW)."""
    async with Client(limit_rate=RATE, speed_limit=1 << 20, speed_time=1) as client:
        with pytest.raises(TooSlowError) as caught:
            await client.download(mute.url + "f", tmp_path / "api.bin")
    assert caught.value.result is Result.TOO_SLOW
