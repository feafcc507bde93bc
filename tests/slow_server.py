"""A controllable origin server for crash, local-fault, name and secret tests (127.0.0.1 only).

`SlowServer` serves named `Resource`s at ``/r/NAME`` with deterministic bodies (``data(size)``
of tests/faults.py), a strong ETag, ``Accept-Ranges: bytes`` and ``Range: bytes=N-`` with
``If-Range`` (a mismatching If-Range gets the whole body, a start past the end a 416). A
resource can pause its body at an offset until the client goes away (``stall_at``, so that a
test can kill the client mid-body at a known point), cut the connection (``cut_at``), hold the
body back after the head (``head_delay``), be chunked, carry a Content-Disposition, answer with
a plain status or redirect elsewhere. Every request is recorded in ``requests`` with its
headers and the body bytes handed to the transport (``Req.sent``).

The helpers that run ``python -m streamer`` as a real child process are in tests/helpers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from tests.faults import data

MIB = 1 << 20
PIECE = 256 * 1024  # body write size
MAX_STALL = 20.0  # seconds a stalled handler waits for the client to leave, at most


@dataclass
class Resource:
    """What ``/r/NAME`` answers; see the module docstring."""

    size: int = 0
    etag: str | None = '"v1"'
    chunked: bool = False
    stall_at: int | None = None  # pause after this body offset until the client leaves
    cut_at: int | None = None  # close the connection after this body offset
    once: bool = True  # stall/cut only the first request that reaches the offset
    head_delay: float = 0.0  # wait this long (or until the client leaves) before the body
    disposition: str | None = None
    status: int = 200  # any other value: a short text response with that status
    redirect: str | None = None  # a 302 to this URL instead of a body
    offset: int = 0  # the body is data(size, offset): another version of the resource


@dataclass
class Req:
    """One request as the server saw it, and how many body bytes it sent."""

    path: str
    headers: dict[str, str]
    sent: int = 0


@dataclass
class SlowServer:
    resources: dict[str, Resource] = field(default_factory=dict)
    requests: list[Req] = field(default_factory=list)
    stalled: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # set: a stall continues
    _runner: web.AppRunner | None = None
    port: int = 0
    crashes: list[BaseException] = field(default_factory=list)  # handler bugs, not cuts

    async def start(self) -> SlowServer:
        app = web.Application()
        app.router.add_get("/r/{name}", self._guarded)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
        assert not self.crashes, f"the slow server's handler crashed: {self.crashes!r}"

    def url(self, name: str, *, userinfo: str = "", query: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        q = f"?{query}" if query else ""
        return f"http://{at}127.0.0.1:{self.port}/r/{name}{q}"

    def requests_for(self, name: str) -> list[Req]:
        return [r for r in self.requests if r.path == f"/r/{name}"]

    async def _guarded(self, request: web.Request) -> web.StreamResponse:
        """The handler, with its own bugs recorded: a crash must fail the test (see stop), not
        pass for the cut or the close that aiohttp makes of it."""
        try:
            return await self._handle(request)
        except (web.HTTPException, asyncio.CancelledError, ConnectionError):
            raise  # answers, and a client that went away: not the handler's bugs
        except BaseException as exc:
            self.crashes.append(exc)
            raise

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        req = Req(request.path, dict(request.headers))
        self.requests.append(req)
        res = self.resources.get(request.match_info["name"])
        if res is None:
            raise web.HTTPNotFound()
        if res.redirect is not None:
            return web.Response(status=302, headers={"Location": res.redirect})
        if res.status != 200:
            return web.Response(status=res.status, text=f"status {res.status} on purpose\n")
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if res.etag is not None:
            headers["ETag"] = res.etag
        if res.disposition is not None:
            headers["Content-Disposition"] = res.disposition
        start = _range_start(request, res)
        if start is not None and start >= res.size:
            headers["Content-Range"] = f"bytes */{res.size}"
            return web.Response(status=416, headers=headers)
        status = 200
        if start is not None:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{res.size - 1}/{res.size}"
        resp = web.StreamResponse(status=status, headers=headers)
        if res.chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = res.size - (start or 0)
        await resp.prepare(request)
        if res.head_delay:
            await _wait_gone(request, res.head_delay)
        with contextlib.suppress(ConnectionError):
            await self._body(request, resp, res, req, start or 0)
        return resp

    async def _body(
        self, request: web.Request, resp: web.StreamResponse, res: Resource, req: Req, pos: int
    ) -> None:
        while pos < res.size:
            if _gone(request):
                return
            end = min(res.size, pos + PIECE)
            for mark in (res.stall_at, res.cut_at):
                if mark is not None and pos < mark:
                    end = min(end, mark)
            piece = data(end - pos, res.offset + pos)
            await resp.write(piece)
            req.sent += len(piece)
            pos = end
            if pos == res.cut_at:
                if res.once:
                    res.cut_at = None
                assert request.transport is not None
                request.transport.close()
                return
            if pos == res.stall_at:
                if res.once:
                    res.stall_at = None
                self.stalled.set()
                await _wait_gone(request, MAX_STALL, self.release)
        await resp.write_eof()


def _range_start(request: web.Request, res: Resource) -> int | None:
    """The N of ``Range: bytes=N-`` when it applies (If-Range matches), else None."""
    value = request.headers.get("Range", "")
    if not value.startswith("bytes=") or not value.endswith("-"):
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range != res.etag:
        return None
    digits = value[len("bytes=") : -1]
    return int(digits) if digits.isdigit() else None


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _wait_gone(
    request: web.Request, limit: float, release: asyncio.Event | None = None
) -> None:
    """Wait until the client has left (or `release` is set), `limit` seconds at most."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not _gone(request) and loop.time() < deadline:
        if release is not None and release.is_set():
            return
        await asyncio.sleep(0.02)


# --- expected bodies -------------------------------------------------------------------------


def body_digest(size: int, offset: int = 0) -> str:
    """sha256 of ``data(size, offset)``, computed a MiB at a time."""
    h = hashlib.sha256()
    for at in range(0, size, MIB):
        h.update(data(min(MIB, size - at), offset + at))
    return h.hexdigest()


def sidecar_committed(path: Path) -> int | None:
    """The ``committed`` count of a sidecar, or None while it is missing or being replaced."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    value = doc.get("committed")
    return value if isinstance(value, int) else None
