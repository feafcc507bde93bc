"""A scripted server of ONE resource for the resume tests (127.0.0.1 only).

`Resource` holds the current `Version` (bytes, strong ETag, Last-Modified well before Date) and
`Resource.change()` publishes a new one. The server implements ``Range: bytes=N-[M]`` and
``If-Range`` itself (RFC 9110 13.1.5: an If-Range that does not match, or a weak tag, means
the whole representation with 200; a range starting at or past the end is a 416
``bytes */size``). Each request pops one `Act` from ``resource.script`` (empty: answer
correctly) that can misbehave on purpose: cut the body after ``cut_at`` bytes (FIN or RST),
ignore Range, put a wrong start or another complete length in Content-Range, send weak or no
validators, answer 416 or 503. Every request is recorded in ``resource.seen`` (its Range and
If-Range, the status and the body bytes sent); ``resource.sent`` is the total of body bytes.

    resource = Resource(data(200_000))
    server = await serve(resource)          # or the ``resource_url`` fixture of test_resume
    resource.script += [Act(cut_at=1000), Act(kind=Kind.IGNORE_RANGE)]
"""

from __future__ import annotations

import asyncio
import enum
import re
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.faults import data

PIECE = 4096  # bytes per write, so a cut lands where it was asked
CUT_PAUSE = 0.03  # seconds between the last byte before a cut and the cut itself
_RANGE = re.compile(r"bytes=([0-9]+)-([0-9]*)")


class Kind(enum.Enum):
    NORMAL = "normal"
    IGNORE_RANGE = "ignore_range"  # 200 and the whole body whatever Range says
    WRONG_START = "wrong_start"  # 206 starting one byte later than asked
    OTHER_LENGTH = "other_length"  # 206 claiming a complete length one byte longer
    BAD_LENGTH = "bad_length"  # 206 whose Content-Range covers one byte less than is sent
    UNSATISFIABLE = "416"  # 416 with Content-Range `header` (None: without one)
    UNAVAILABLE = "503"  # 503 with Retry-After `header` (None: without one)
    IGNORE_IF_RANGE = "ignore_if_range"  # honours Range but not If-Range (RFC 9110 13.1.5 allows)


class Validators(enum.Enum):
    STRONG = "strong"  # strong ETag and a Last-Modified a day before Date
    LAST_MODIFIED = "lm"  # only the Last-Modified
    RECENT_LAST_MODIFIED = "recent"  # only a Last-Modified 10 s before Date (weak, 8.8.2.2)
    WEAK = "weak"  # only W/"etag"
    NONE = "none"  # neither


@dataclass(frozen=True)
class Act:
    """How to answer one request; the defaults answer it correctly."""

    kind: Kind = Kind.NORMAL
    cut_at: int | None = None  # end the connection after this many body bytes
    how: str = "close"  # how a cut ends: "close" (FIN) or "abort" (RST)
    validators: Validators = Validators.STRONG
    header: str | None = None  # Content-Range of a 416, Retry-After of a 503
    change: bool = False  # publish a new version before answering
    pace: float = 0.0  # seconds to wait after each piece of body


@dataclass(frozen=True)
class Version:
    number: int
    body: bytes
    etag: str
    last_modified: str


@dataclass
class Seen:
    """One request: its Range and If-Range, the answer's status and the body bytes sent."""

    range: str | None
    if_range: str | None
    status: int = 0
    sent: int = 0


@dataclass
class Resource:
    """The one resource, its script of acts and the record of requests."""

    body: bytes
    script: deque[Act] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    version: Version = field(init=False)
    url: str = ""

    def __post_init__(self) -> None:
        self.version = self._make(1, self.body)

    @staticmethod
    def _make(number: int, body: bytes) -> Version:
        # A day before now (so strong, RFC 9110 8.8.2.2), one second later per version.
        when = time.time() - 86400 + number
        return Version(number, body, f'"v{number}"', formatdate(when, usegmt=True))

    def change(self, body: bytes | None = None) -> Version:
        """Publish a new version: other bytes (same length unless given), new ETag and date."""
        number = self.version.number + 1
        if body is None:
            body = data(len(self.version.body), offset=number * 37)
        self.version = self._make(number, body)
        return self.version

    @property
    def sent(self) -> int:
        return sum(s.sent for s in self.seen)

    def if_range_holds(self, value: str) -> bool:
        """RFC 9110 13.1.5: strong comparison of a tag, exact match of a date."""
        if value.startswith(("W/", '"')):
            return value == self.version.etag
        return value == self.version.last_modified


def _validators(version: Version, which: Validators) -> dict[str, str]:
    if which is Validators.STRONG:
        return {"ETag": version.etag, "Last-Modified": version.last_modified}
    if which is Validators.LAST_MODIFIED:
        return {"Last-Modified": version.last_modified}
    if which is Validators.RECENT_LAST_MODIFIED:
        return {"Last-Modified": formatdate(time.time() - 10, usegmt=True)}
    if which is Validators.WEAK:
        return {"ETag": "W/" + version.etag}
    return {}


def _wanted(resource: Resource, seen: Seen, act: Act) -> tuple[int, int] | None:
    """The (start, end exclusive) to send as a 206, or None for the whole body."""
    size = len(resource.version.body)
    match = _RANGE.fullmatch(seen.range or "")
    if match is None or act.kind is Kind.IGNORE_RANGE:
        return None
    if_range = seen.if_range if act.kind is not Kind.IGNORE_IF_RANGE else None
    if if_range is not None and not resource.if_range_holds(if_range):
        return None
    start = int(match[1])
    end = min(int(match[2]) + 1, size) if match[2] else size
    if start >= size:
        raise _Unsatisfiable
    return (start, end) if start < end else None


class _Unsatisfiable(Exception):
    pass


async def _handle(request: web.Request) -> web.StreamResponse:
    resource: Resource = request.app[RESOURCE]
    act = resource.script.popleft() if resource.script else Act()
    if act.change:
        resource.change()
    version = resource.version
    seen = Seen(request.headers.get("Range"), request.headers.get("If-Range"))
    resource.seen.append(seen)
    size = len(version.body)
    if act.kind is Kind.UNAVAILABLE:
        seen.status = 503
        headers = {} if act.header is None else {"Retry-After": act.header}
        return web.Response(status=503, headers=headers, text="busy\n")
    wanted = None
    try:
        wanted = _wanted(resource, seen, act)
    except _Unsatisfiable:
        act = Act(Kind.UNSATISFIABLE, header=f"bytes */{size}")
    if act.kind is Kind.UNSATISFIABLE:
        seen.status = 416
        headers = {} if act.header is None else {"Content-Range": act.header}
        return web.Response(status=416, headers=headers)
    headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
    headers |= _validators(version, act.validators)
    if wanted is None:
        seen.status, body = 200, version.body
    else:
        start, end = wanted
        first, last, complete = start, end - 1, size
        if act.kind is Kind.WRONG_START:
            first = start = start + 1 if start + 1 < end else start - 1
        elif act.kind is Kind.OTHER_LENGTH:
            complete = size + 1
        elif act.kind is Kind.BAD_LENGTH and last > first:
            last -= 1
        headers["Content-Range"] = f"bytes {first}-{last}/{complete}"
        seen.status, body = 206, version.body[start:end]
    resp = web.StreamResponse(status=seen.status, headers=headers)
    resp.content_length = len(body)
    await resp.prepare(request)
    stop = len(body) if act.cut_at is None else min(act.cut_at, len(body))
    for at in range(0, stop, PIECE):
        piece = body[at : min(at + PIECE, stop)]
        await resp.write(piece)
        seen.sent += len(piece)
        if act.pace:
            await asyncio.sleep(act.pace)
    if act.cut_at is not None:
        await asyncio.sleep(CUT_PAUSE)  # let the client read every byte sent before the cut
        _cut(request, act.how)
        return resp
    await resp.write_eof()
    return resp


def _cut(request: web.Request, how: str) -> None:
    transport = request.transport
    assert transport is not None
    if how == "abort":
        sock = transport.get_extra_info("socket")
        if sock is not None:  # SO_LINGER 0: the close sends RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


RESOURCE = web.AppKey("resource", Resource)


def make_resource_app(resource: Resource) -> web.Application:
    app = web.Application()
    app[RESOURCE] = resource
    app.router.add_get("/resource", _handle)
    return app


async def serve(resource: Resource) -> TestServer:
    """Start the app on 127.0.0.1 (the caller closes it) and set ``resource.url``."""
    server = TestServer(make_resource_app(resource), host="127.0.0.1")
    await server.start_server()
    resource.url = str(server.make_url("/resource"))
    return server


__all__ = ["Act", "Kind", "Resource", "Seen", "Validators", "Version", "serve"]
