"""Misbehaving servers for the tests of the download engine's error paths (127.0.0.1 only).

`make_fault_app()` builds an aiohttp app whose routes break HTTP on purpose. Every request is
recorded in ``app[SEEN]`` as a `Seen` (path and request headers), and every body handler
stores in ``app[WRITTEN][path]`` how many body bytes it managed to hand to the transport.
Routes (n, k: byte counts; bodies are `data(n)`, deterministic):

=============================  ================================================================
``/bytes/{n}``                 n bytes with an exact Content-Length
``/chunked/{n}``               n bytes, chunked, with the terminating 0-chunk
``/cut/{n}/{k}?how=close``     Content-Length n, only k bytes, then FIN (``how=abort``: RST)
``/cut-chunked/{k}``           chunked, k bytes, then close without the 0-chunk
``/drip/{n}?every=0.2``        Content-Length n, one byte every ``every`` seconds
``/stall/{n}/{k}``             Content-Length n, k bytes, then silence until the client leaves
``/gzip/{n}``                  gzip of data(n), ``Content-Encoding: gzip`` and Content-Length
``/gzip-bomb/{mib}``           gzip of mib MiB of zeros, compressed while it is sent (chunked)
``/status/{code}``             a real response with that status and a short text body
``/redirect/{n}``              n same-origin 302 hops, then ``/bytes/100``
``/loop``                      302 to itself, forever
``/to?url=U&status=302``       one redirect to U (another origin, https->http, file:, ftp: ...)
=============================  ================================================================

`RawServer` is an ``asyncio.start_server`` that reads one request head per connection, records
it in ``.requests``, sends a scripted list of byte strings and then ends as told by `End`
(CLOSE: FIN, ABORT: RST through SO_LINGER 0, STALL: silence until the client leaves). It makes
what aiohttp's server refuses to: broken status lines and headers, Content-Length lies,
close-delimited (HTTP/1.0 style) bodies, garbage after the head.

Fixtures (tests/conftest.py):

* ``payload``: 64 KiB of `data`, what ``/bytes/65536`` serves.
* ``fault_server`` / ``fault_server2``: aiohttp ``TestServer``s of `make_fault_app` on two ports
  (two origins); ``fault_server.make_url("/bytes/10")``, ``fault_server.app[SEEN]``.
* ``raw_server``: a factory, ``srv = await raw_server([HEAD_200, b"body"], End.CLOSE)``;
  ``srv.url`` (``http://127.0.0.1:PORT/``), ``srv.requests``; stopped at teardown.
* ``client``: an open `streamer.Client` with short timeouts and ``trust_env=False``.
* ``make_client``: ``c = await make_client(speed_limit=100, ...)``, closed at teardown.

`check_error(err, Result.X)` asserts an error is a `StreamerError` with that result and no
aiohttp (or other foreign) type leaked through.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from streamer import Client, Result, StreamerError

_PATTERN = bytes(range(251)) * 4096  # ~1 MiB; 251 is prime, so shifted copies never align


def data(n: int, offset: int = 0) -> bytes:
    """``n`` deterministic bytes: byte i of a body is ``i % 251`` (``offset`` shifts i)."""
    out = bytearray()
    while len(out) < n:
        start = (offset + len(out)) % 251
        out += _PATTERN[start : start + min(n - len(out), len(_PATTERN) - 251)]
    return bytes(out)


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]


SEEN = web.AppKey("seen", list[Seen])
WRITTEN = web.AppKey("written", dict[str, int])
PIECE = 16 * 1024
MAX_SILENCE = 10.0  # seconds a stalling handler or raw connection waits at most


def _int(request: web.Request, name: str) -> int:
    return int(request.match_info[name])


async def _start(
    request: web.Request, *, length: int | None, chunked: bool = False, gzip: bool = False
) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    if gzip:
        resp.headers["Content-Encoding"] = "gzip"
    if chunked:
        resp.enable_chunked_encoding()
    elif length is not None:
        resp.content_length = length
    await resp.prepare(request)
    return resp


async def _send(request: web.Request, resp: web.StreamResponse, body: bytes) -> None:
    """Write `body` in pieces, counting in WRITTEN what reached the transport."""
    written = request.app[WRITTEN]
    written.setdefault(request.path, 0)
    for at in range(0, len(body), PIECE):
        piece = body[at : at + PIECE]
        await resp.write(piece)
        written[request.path] += len(piece)


def _cut(request: web.Request, how: str) -> None:
    transport = request.transport
    assert transport is not None
    if how == "abort":
        _linger_zero(transport.get_extra_info("socket"))
        transport.abort()
    else:
        transport.close()


def _linger_zero(sock: socket.socket | None) -> None:
    """Make the next close send RST instead of FIN."""
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def bytes_handler(request: web.Request) -> web.StreamResponse:
    """/bytes/{n} and /chunked/{n}: a whole, correctly framed body."""
    n = _int(request, "n")
    chunked = request.path.startswith("/chunked/")
    resp = await _start(request, length=None if chunked else n, chunked=chunked)
    await _send(request, resp, data(n))
    return resp


async def cut_handler(request: web.Request) -> web.StreamResponse:
    """/cut/{n}/{k} and /cut-chunked/{k}: k bytes of a longer body, then the transport is cut."""
    n = request.match_info.get("n")
    resp = await _start(request, length=None if n is None else int(n), chunked=n is None)
    await _send(request, resp, data(_int(request, "k")))
    _cut(request, request.query.get("how", "close"))
    return resp


async def drip_handler(request: web.Request) -> web.StreamResponse:
    n, every = _int(request, "n"), float(request.query.get("every", "0.2"))
    resp = await _start(request, length=n)
    body = data(n)
    for i in range(n):
        await resp.write(body[i : i + 1])
        request.app[WRITTEN][request.path] = i + 1
        await asyncio.sleep(every)
    return resp


async def stall_handler(request: web.Request) -> web.StreamResponse:
    resp = await _start(request, length=_int(request, "n"))
    await _send(request, resp, data(_int(request, "k")))
    # The test server cancels this handler when the client disconnects; the sleep only bounds
    # a client that never does.
    await asyncio.sleep(MAX_SILENCE)
    return resp


def gzip_bytes(body: bytes) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return z.compress(body) + z.flush()


async def gzip_handler(request: web.Request) -> web.StreamResponse:
    packed = gzip_bytes(data(_int(request, "n")))
    resp = await _start(request, length=len(packed), gzip=True)
    await _send(request, resp, packed)
    return resp


async def gzip_bomb_handler(request: web.Request) -> web.StreamResponse:
    """mib MiB of zeros gzipped as they go: the server holds one MiB of input, never the bomb."""
    resp = await _start(request, length=None, chunked=True, gzip=True)
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    written = request.app[WRITTEN]
    written[request.path] = 0
    try:
        for _ in range(_int(request, "mib")):
            out = z.compress(zeros)
            if out:
                await resp.write(out)
                written[request.path] += len(out)
            else:
                await asyncio.sleep(0)  # zeros compress to nothing for a while: let the loop run
        await resp.write(z.flush())
    except ConnectionError:
        pass  # the client stopped reading, as it should
    return resp


async def status_handler(request: web.Request) -> web.Response:
    code = _int(request, "code")
    return web.Response(status=code, text=f"status {code} on purpose\n")


def _redirect(location: str, status: int = 302) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


async def redirect_handler(request: web.Request) -> web.Response:
    n = _int(request, "n")
    return _redirect(f"/redirect/{n - 1}" if n > 1 else "/bytes/100")


async def to_handler(request: web.Request) -> web.Response:
    """/to?url=U&status=S: one redirect to U; /loop (no url): a redirect to itself, forever."""
    return _redirect(request.query.get("url", "/loop"), int(request.query.get("status", "302")))


@web.middleware
async def _record(request: web.Request, handler: Handler) -> web.StreamResponse:
    request.app[SEEN].append(Seen(request.path, dict(request.headers)))
    return await handler(request)


def make_fault_app() -> web.Application:
    """The misbehaving aiohttp application described in the module docstring."""
    app = web.Application(middlewares=[_record])
    app[SEEN] = []
    app[WRITTEN] = {}
    routes = {
        "/bytes/{n}": bytes_handler,
        "/chunked/{n}": bytes_handler,
        "/cut/{n}/{k}": cut_handler,
        "/cut-chunked/{k}": cut_handler,
        "/drip/{n}": drip_handler,
        "/stall/{n}/{k}": stall_handler,
        "/gzip/{n}": gzip_handler,
        "/gzip-bomb/{mib}": gzip_bomb_handler,
        "/status/{code}": status_handler,
        "/redirect/{n}": redirect_handler,
        "/loop": to_handler,
        "/to": to_handler,
    }
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    return app


ClientFactory = Callable[..., Awaitable[Client]]
"""The type of the ``make_client`` fixture."""


# --- the raw socket server ------------------------------------------------------------------


class End(enum.Enum):
    """How a raw connection ends after the script is sent."""

    CLOSE = "close"  # FIN
    ABORT = "abort"  # RST (SO_LINGER 0)
    STALL = "stall"  # nothing more until the client leaves (at most MAX_SILENCE)


HEAD_200 = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"  # close-delimited body follows


def head(status_line: str = "HTTP/1.1 200 OK", **headers: str | int) -> bytes:
    """A response head; keyword names use ``_`` for ``-`` (``Content_Length=10``)."""
    lines = [status_line] + [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class RawServer:
    """Answer every connection with `script` then `end`; see the module docstring."""

    script: Sequence[bytes]
    end: End = End.CLOSE
    read_request: bool = True  # False: act without reading a byte (accept-and-close)
    delay: float = 0.0  # seconds between two parts of the script
    requests: list[bytes] = field(default_factory=list)
    _server: asyncio.Server | None = field(default=None, init=False, repr=False)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set, init=False, repr=False)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set, init=False, repr=False)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._run(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.read_request:
            async with asyncio.timeout(MAX_SILENCE):
                self.requests.append(await reader.readuntil(b"\r\n\r\n"))
        for i, part in enumerate(self.script):
            if i and self.delay:
                await asyncio.sleep(self.delay)
            writer.write(part)
            await writer.drain()
        if self.end is End.ABORT:
            _linger_zero(writer.get_extra_info("socket"))
            writer.transport.abort()
        elif self.end is End.STALL:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(MAX_SILENCE):
                    while await reader.read(4096):
                        pass


def check_error(err: BaseException, result: Result) -> None:
    """Assert `err` is a streamer error with `result`, not a foreign (aiohttp, ssl ...) type."""
    assert isinstance(err, StreamerError), f"foreign exception leaked: {err!r}"
    assert not isinstance(err, aiohttp.ClientError), f"aiohttp type leaked: {err!r}"
    assert type(err).__module__.startswith("streamer."), type(err)
    assert err.result is result, f"{err.result} != {result}: {err}"


RawFactory = Callable[..., Awaitable[RawServer]]
"""The type of the ``raw_server`` fixture."""
