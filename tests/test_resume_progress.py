"""Resume keeps its progress: what a killed or stopped download held is what the re-run skips.

A real ``python -m streamer get`` against a local aiohttp origin that serves a deterministic
body with a strong ETag and byte ranges (``bytes=A-B`` and ``bytes=A-``), either rate-limited
(``rate`` bytes per second) or holding each response after ``hold`` bytes until released.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from tests.faults import data
from tests.helpers import MIB, file_digest, finish, kill, spawn, streamer, wait_for
from tests.slow_server import body_digest

ETAG = '"r1"'
PIECE = 64 * 1024


@dataclass
class Origin:
    """The origin's knobs and what it saw (the Range header of every request)."""

    size: int
    rate: float | None = None  # bytes per second per response, None: as fast as it can
    hold: int | None = None  # send this many bytes per response, then wait for `release`
    release: asyncio.Event = field(default_factory=asyncio.Event)
    ranges: list[str | None] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/f"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.ranges.append(request.headers.get("Range"))
        start, end = _range(request.headers.get("Range"), self.size)
        status = 200 if request.headers.get("Range") is None else 206
        if request.headers.get("If-Range") not in (None, ETAG):
            status, start, end = 200, 0, self.size
        headers = {"ETag": ETAG, "Accept-Ranges": "bytes"}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{self.size}"
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = end - start
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            await self._body(resp, start, end)
        return resp

    async def _body(self, resp: web.StreamResponse, pos: int, end: int) -> None:
        began, sent, held = time.monotonic(), 0, self.hold is None
        while pos < end:
            n = min(PIECE, end - pos)
            if not held and self.hold is not None:
                n = min(n, self.hold - sent)
            await resp.write(data(n, pos))
            pos, sent = pos + n, sent + n
            if not held and sent == self.hold:
                held = True
                await asyncio.wait_for(self.release.wait(), 60)
            if self.rate is not None:
                await asyncio.sleep(max(0.0, began + sent / self.rate - time.monotonic()))
        await resp.write_eof()


def _range(value: str | None, size: int) -> tuple[int, int]:
    if value is None:
        return 0, size
    first, _, last = value.removeprefix("bytes=").partition("-")
    return int(first), (int(last) + 1 if last else size)


@contextlib.asynccontextmanager
async def serving(origin: Origin) -> AsyncIterator[Origin]:
    app = web.Application()
    app.router.add_get("/f", origin.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    origin.port = runner.addresses[0][1]
    try:
        yield origin
    finally:
        origin.release.set()
        await runner.cleanup()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


async def test_kill9_resumes_within_seconds_of_data(tmp_path: Path) -> None:
    """kill -9 of a rate-limited 64 MiB download: the re-run asks for a Range starting at or
    after what the .part held 2 s before the kill (progress is checkpointed by time too)."""
    size, rate = 64 * MIB, 5e6
    target = tmp_path / "big.bin"
    part = tmp_path / "big.bin.part"
    async with serving(Origin(size, rate=rate)) as origin:
        proc = await spawn("get", origin.url, "-o", str(target), "-q")
        samples: list[tuple[float, int]] = []

        def passed() -> bool:
            samples.append((time.monotonic(), _size(part)))
            return samples[-1][1] >= 14 * MIB

        try:
            await wait_for(passed, "14 MiB in the .part", timeout=60)
            killed_at = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            await finish(proc)
        finally:
            kill(proc)
        held = max(s for t, s in samples if t <= killed_at - 2.0)
        assert held >= 4 * MIB  # the check below means something
        origin.rate = None
        again = await streamer("get", origin.url, "-o", str(target), "--json")
    assert again.rc == 0, again
    resumed = again.json()["resumed_from"]
    assert origin.ranges[1] == f"bytes={resumed}-"
    assert resumed >= held, (resumed, held)
    assert file_digest(target) == body_digest(size)


@pytest.mark.parametrize(("sig", "rc"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_split_stop_commits_every_segment_exactly(
    tmp_path: Path, sig: signal.Signals, rc: int
) -> None:
    """--split stopped by SIGTERM/SIGINT records each segment's exact position; the re-run
    asks each segment from there and JSON resumed_from counts every byte it kept."""
    size, parts, hold = 4 * MIB, 4, 300_000
    target = tmp_path / "s.bin"
    part = tmp_path / "s.bin.part"
    seg = size // parts
    async with serving(Origin(size, hold=hold)) as origin:
        proc = await spawn("get", origin.url, "-o", str(target), "-q", "--split", str(parts))
        try:

            def all_arrived() -> bool:
                if _size(part) != size:
                    return False
                with part.open("rb") as f:
                    for i in range(parts):
                        # the probe's segment starts at 0, the others at i * seg (+ hold bytes)
                        f.seek(i * seg)
                        if f.read(hold) != data(hold, i * seg):
                            return False
                return True

            await wait_for(all_arrived, "the held bytes of every segment in the .part")
            proc.send_signal(sig)
            stopped = await finish(proc)
        finally:
            kill(proc)
        assert stopped.rc == rc, stopped
        doc = json.loads((tmp_path / "s.bin.part.json").read_text())
        assert [s[2] for s in doc["segments"]] == [hold] * parts
        first = len(origin.ranges)
        origin.release.set()
        origin.hold = None
        again = await streamer("get", origin.url, "-o", str(target), "--json", "--split", "4")
    assert again.rc == 0, again
    assert again.json()["resumed_from"] == hold * parts
    starts = sorted(r.partition("=")[2].partition("-")[0] for r in origin.ranges[first:] if r)
    assert starts == sorted(str(i * seg + hold) for i in range(parts))
    assert file_digest(target) == body_digest(size)
