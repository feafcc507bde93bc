"""A raw HTTP/1.1 server on 127.0.0.1 that records every request head byte for byte.

It answers GET (200, or 206 for a Range), PUT and POST (201), a 302 at /redirect, a 307 from
/away/PATH to `Recorder.away` + /PATH (another origin), a 401 at /deny, and just enough of
tus 1.0.0 (creation) under /files for one small upload; connections are kept alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

BIG = bytes(range(256)) * 8192  # 2 MiB: --split 2 makes two 1 MiB segments of it
SMALL = b"small body " * 50  # a bulk job the lane takes
ETAG = '"v1"'


@dataclass
class Recorder:
    """A raw HTTP/1.1 server on 127.0.0.1 that keeps every request head byte for byte."""

    heads: list[bytes] = field(default_factory=list)
    url: str = ""
    tus_offset: int = 0
    away: str = ""  # where /away/PATH redirects to: another recorder's URL

    def fields(self) -> list[list[tuple[str, str]]]:
        """Each head's field lines as (lower-case name, value)."""
        out = []
        for head in self.heads:
            lines = head.decode("latin-1").split("\r\n")[1:]
            pairs = [line.partition(":") for line in lines if line]
            out.append([(name.lower(), value.strip()) for name, _, value in pairs])
        return out


def _length(head: bytes) -> tuple[int, bool]:
    lowered = head.lower()
    found = re.search(rb"\r\ncontent-length: *([0-9]+)", lowered)
    return (int(found.group(1)) if found else 0), b"transfer-encoding: chunked" in lowered


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> None:
    length, chunked = _length(head)
    if not chunked:
        await reader.readexactly(length)
        return
    while True:  # RFC 9112 7.1: size line, data, CRLF; a zero size and the trailer end it
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return
        await reader.readexactly(size + 2)


TUS = b"Tus-Resumable: 1.0.0\r\n"


def _tus_answer(method: bytes, head: bytes, rec: Recorder) -> bytes:
    """Just enough of a tus 1.0.0 server (creation) for one small upload."""
    if method == b"OPTIONS":
        return b"HTTP/1.1 204 No Content\r\n" + TUS + b"Tus-Version: 1.0.0\r\n"
    if method == b"POST":
        return b"HTTP/1.1 201 Created\r\n" + TUS + b"Location: /files/1\r\nContent-Length: 0\r\n"
    if method == b"PATCH":
        rec.tus_offset += _length(head)[0]
    offset = b"Upload-Offset: %d\r\nContent-Length: 0\r\n" % rec.tus_offset
    return (
        (b"HTTP/1.1 204 No Content\r\n" if method == b"PATCH" else b"HTTP/1.1 200 OK\r\n")
        + TUS
        + offset
    )


def _answer(head: bytes, rec: Recorder) -> bytes:
    method, target = head.split(b" ", 2)[:2]
    if target == b"/redirect":
        return b"HTTP/1.1 302 Found\r\nLocation: /big\r\nContent-Length: 0\r\n\r\n"
    if target.startswith(b"/away/"):  # 307: the method and body go along (RFC 9110 15.4.8)
        where = rec.away.encode() + target[5:]
        return (
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % where
        )
    if target == b"/deny":
        challenge = b'WWW-Authenticate: Basic realm="r"\r\n'  # RFC 7617 2
        return b"HTTP/1.1 401 Unauthorized\r\n" + challenge + b"Content-Length: 0\r\n\r\n"
    if target.startswith(b"/files"):
        return _tus_answer(method, head, rec) + b"\r\n"
    if method in (b"PUT", b"POST"):
        return b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    body = SMALL if target.startswith(b"/small") else BIG
    asked = re.search(rb"\r\nrange: *bytes=([0-9]+)-([0-9]*)", head.lower())
    common = f"ETag: {ETAG}\r\nAccept-Ranges: bytes\r\n".encode()
    if asked is None:
        return b"HTTP/1.1 200 OK\r\n" + common + b"Content-Length: %d\r\n\r\n" % len(body) + body
    start = int(asked.group(1))
    end = min(int(asked.group(2) or len(body) - 1), len(body) - 1)
    part = body[start : end + 1]
    return (
        b"HTTP/1.1 206 Partial Content\r\n"
        + common
        + f"Content-Range: bytes {start}-{end}/{len(body)}\r\n".encode()
        + b"Content-Length: %d\r\n\r\n" % len(part)
        + part
    )


@contextlib.asynccontextmanager
async def recorder() -> AsyncIterator[Recorder]:
    """Serve keep-alive connections, one request after another, until the test ends."""
    rec = Recorder()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            for _ in range(1000):  # bounded: no test sends this many on one connection
                head = await reader.readuntil(b"\r\n\r\n")
                rec.heads.append(head)
                await _read_body(reader, head)
                writer.write(_answer(head, rec))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    rec.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield rec
    finally:
        server.close()
        await server.wait_closed()
