"""A local origin with byte ranges (``bytes=A-B`` and ``bytes=A-``) and a strong ETag, for
--split and resume tests: rate-limited (``rate`` bytes per second per response) or holding
each response after ``hold`` bytes until ``release`` is set, or cutting each response after
``cut`` bytes (a short body: the connection closes). Records every Range header.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from tests.faults import data

ETAG = '"r1"'
PIECE = 64 * 1024


@dataclass
class Origin:
    """The origin's knobs and what it saw (the Range header of every request)."""

    size: int
    rate: float | None = None  # bytes per second per response, None: as fast as it can
    hold: int | None = None  # send this many bytes per response, then wait for `release`
    release: asyncio.Event = field(default_factory=asyncio.Event)
    cut: int | None = None  # send at most this many bytes per response, then close
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
        stop = end if self.cut is None else min(end, start + self.cut)
        with contextlib.suppress(ConnectionError):
            await self._body(resp, start, stop)
        if stop < end and request.transport is not None:
            request.transport.close()  # fewer bytes than Content-Length: a cut answer
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
