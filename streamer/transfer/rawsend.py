"""Send a request body zero-copy when the route allows it, else through the full engine.

`send_body` is `Opener.send` with one difference: a body made of files and bytes (a plain
file, a slice of one, a multipart form of files and fields) sent over plain http, direct (no
proxy, no netrc credentials), with headers the raw path can write as they are, goes out on a
socket of its own with ``sendfile`` (`lane.sendbody`). A caller with a `RawPool` (a tus run,
an S3 upload's parts) sends its bodiless and bytes-only requests that way too, on the pool's
kept connections (`lane.keepalive`). The choice is made before a byte is sent. Anything
else (TLS, proxies, a stall window, a stream source, base64 parts, credentials in the URL)
takes the aiohttp path. Redirects are planned by the same rules as the engine's
(`core.redirects`, RFC 9110 15.4: 307/308 resend the body); when a hop is one the raw path
cannot take, the engine asks again from the first request. A connection that cannot be made
goes to the engine too (nothing was sent), which reports the failure in its usual words.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from multidict import CIMultiDict, CIMultiDictProxy

from ..core.decode import ACCEPT_ENCODING, Decoder
from ..core.events import Phase, Progress, ProgressCallback
from ..core.headers import without
from ..core.http1 import Origin, simple_request
from ..core.limits import BodyLimit
from ..core.multipart import PART_TAIL, closing, part_head
from ..core.ratelimit import Pacer
from ..core.redact import redact_url
from ..core.redirects import RedirectPolicy, follows, plan_redirect
from ..errors import BodyTooLarge, StreamerError, evolve
from ..http.bodies import Body, BytesBody, FileBody, MultipartBody
from ..http.outgoing import body_for_hop
from ..lane.answer import Answer
from ..lane.connection import Handoff
from ..lane.keepalive import RawPool
from ..lane.sendbody import FileSlice, Job, Piece, SendTimeouts, send_request

if TYPE_CHECKING:
    from .opener import Opener

_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 5.6.2 token
_VALUE = re.compile(r"[\t\x20-\x7e]*")  # no CR, LF, NUL (no injected lines), ASCII only
# Fields the raw path writes itself, or whose meaning it does not implement.
_OWN = frozenset({"host", "content-length", "transfer-encoding", "connection", "te", "upgrade"})
# RFC 9112 9.3.1: a request found unanswered on a kept connection the server closed may go
# again when repeating it is harmless: the idempotent methods (RFC 9110 9.2.2), and a tus
# PATCH, whose Upload-Offset makes the server refuse a repeat (409) rather than apply it.
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class Reply(Protocol):
    """What `send_body` yields: a `Stream` of the engine, or a `RawStream`."""

    status: int
    reason: str
    headers: Mapping[str, str]
    final_url: str
    redirects: int

    async def read(self) -> bytes: ...


class RawStream:
    """The answer of a raw send, with the parts of `Stream` that uploads read."""

    def __init__(
        self, answer: Answer, url: str, final_url: str, max_bytes: int | None, redirects: int
    ) -> None:
        head = answer.head
        self.url, self.final_url, self.redirects = url, final_url, redirects
        self.status, self.reason = head.status, head.reason
        fields: CIMultiDict[str] = CIMultiDict()
        for line in head.block.split(b"\r\n")[:-1]:
            name, _, value = line.partition(b":")
            fields.add(name.decode("ascii"), value.strip(b" \t").decode("latin-1"))
        self.headers: Mapping[str, str] = CIMultiDictProxy(fields)
        self._answer, self._max = answer, max_bytes

    async def read(self) -> bytes:
        """The body, decoded; `BodyTooLarge` past the size limit, as `Stream.read`."""
        limit = BodyLimit(self._max, url=self.url)
        coding = self.headers.get("Content-Encoding", "").strip().lower()
        decoder = Decoder(coding if coding not in ("", "identity") else None, url=self.url)
        out = []
        for piece in [*decoder.feed(self._answer.body), *decoder.finish()]:
            limit.feed(len(piece))
            out.append(piece)
        if self._answer.over and self._max is not None:
            raise BodyTooLarge(
                f"the answer is larger than the limit of {self._max} bytes",
                limit=self._max,
                url=self.url,
            )
        return b"".join(out)


def body_pieces(body: Body) -> list[Piece] | None:
    """The body as bytes and file slices, or None when it has another kind of part."""
    if isinstance(body, FileBody):
        assert body.length is not None
        return [FileSlice(str(body.path), body.start, body.length, body.identity)]
    if isinstance(body, BytesBody):
        return [bytes(body.data)]
    if not isinstance(body, MultipartBody):
        return None
    pieces: list[Piece] = []
    for spec, part in body.parts:
        inner = body_pieces(part)
        if inner is None or isinstance(part, MultipartBody):
            return None
        pieces += [part_head(body.boundary, spec), *inner, PART_TAIL]
    pieces.append(closing(body.boundary))
    return pieces


def _fields(client: Opener, headers: Mapping[str, str], body: Body | None) -> list[tuple[str, str]]:
    """The request's fields as the engine sends them: its defaults under `headers` (which
    hold the client's own headers already, see `send_body`); a later name wins, any case."""
    cfg = client.config
    defaults = [("User-Agent", cfg.user_agent), ("Accept", "*/*")]
    defaults += [("Accept-Encoding", ACCEPT_ENCODING)]
    merged: dict[str, tuple[str, str]] = {}
    for layer in (without(defaults, cfg.omit_headers), headers.items()):
        for name, value in layer:
            merged[name.lower()] = (name, value)
    merged.pop("content-length", None)
    if body is not None and "content-type" not in merged:
        kind = [("Content-Type", body.content_type or "application/octet-stream")]
        merged.update((k.lower(), (k, v)) for k, v in without(kind, cfg.omit_headers))
    return list(merged.values())


@dataclass(frozen=True)
class _Plan:
    origin: Origin
    head: bytes
    pieces: list[Piece]
    expect: bool
    resendable: bool


def _pieces(body: Body | None, pooled: bool) -> list[Piece] | None:
    """The body's pieces when the raw path should send it: with a file in it; with a pool
    (a run of small requests on one connection) also bytes alone and no body at all."""
    if body is None:
        return [] if pooled else None
    if body.length is None:
        return None
    pieces = body_pieces(body)
    if pieces is None or not (pooled or any(isinstance(p, FileSlice) for p in pieces)):
        return None  # without a pool, bytes alone gain nothing from sendfile
    return pieces


def _plan(
    client: Opener,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: Body | None,
    *,
    pooled: bool,
) -> _Plan | None:
    """How the raw path sends this request, or None when it cannot (see module doc)."""
    if client.config.speed_limit is not None:
        return None
    if not _NAME.fullmatch(method):  # a method is a token (RFC 9110 9.1): no injected lines
        return None
    simple = simple_request(url)
    if simple is None or simple[0].scheme != "http" or not client.plain_route(url):
        return None
    pieces = _pieces(body, pooled)
    if pieces is None:
        return None
    fields = _fields(client, headers, body)
    expect = ""
    for name, value in fields:
        key = name.lower()
        if key in _OWN or not _NAME.fullmatch(name) or not _VALUE.fullmatch(value):
            return None
        if key == "expect":
            expect = value.strip().lower()
    if expect not in ("", "100-continue"):
        return None
    origin, target = simple
    length = None if body is None else body.length
    head = _head(method, target, origin, fields, length)
    again = method in _IDEMPOTENT or (method == "PATCH" and "upload-offset" in _names(fields))
    return _Plan(origin, head, pieces, bool(expect), again)


def _names(fields: list[tuple[str, str]]) -> set[str]:
    return {name.lower() for name, _ in fields}


def _head(
    method: str, target: str, origin: Origin, fields: list[tuple[str, str]], length: int | None
) -> bytes:
    """The request head (RFC 9112 3): every part checked above (tokens, no CR/LF/NUL). No
    Content-Length without a body (RFC 9110 8.6: none is expected for HEAD, OPTIONS, ...)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {origin.authority}"]
    lines += [f"{name}: {value}" for name, value in fields]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


@asynccontextmanager
async def send_body(
    client: Opener,
    method: str,
    url: str,
    *,
    body: Body | None,
    headers: Mapping[str, str] | None = None,
    max_bytes: int | None = None,
    cross_origin: bool = False,
    on_sent: Any = None,
    progress: ProgressCallback | None = None,
    pool: RawPool | None = None,
    throttle: Pacer | None = None,
) -> AsyncIterator[Reply]:
    """`client.send`, zero-copy where the raw path can take the request (see module doc).

    With a `pool` (a run of requests to one origin: tus), requests without a file go the raw
    way too, and they share the pool's kept connection (`lane.keepalive`). A `throttle`
    holds the body to its rate on either path (the caller shares one across requests)."""
    request = _Request(
        method, url, body, headers or {}, max_bytes, cross_origin, on_sent, pool, throttle
    )
    answer = await _raw_chain(client, request, progress)
    if answer is not None:
        yield answer
        return
    # The engine takes the request from the start, under its own rules (a hop the raw path
    # cannot take is rare: a plain-http redirect to https or to a proxied origin).
    async with client.send(
        method,
        url,
        body=body,
        headers=headers,
        max_bytes=max_bytes,
        cross_origin=cross_origin,
        on_sent=on_sent,
        progress=progress,
        throttle=throttle,
    ) as stream:
        yield stream


@dataclass(frozen=True)
class _Request:
    method: str
    url: str
    body: Body | None
    headers: Mapping[str, str]
    max_bytes: int | None
    cross_origin: bool
    on_sent: Any
    pool: RawPool | None
    throttle: Pacer | None


async def _raw_chain(
    client: Opener, req: _Request, progress: ProgressCallback | None
) -> RawStream | None:
    """The answer through the raw path, redirects followed; None: the engine should ask."""
    hops, safe, cfg = 0, redact_url(req.url), client.config
    # The client's headers join the call's before the first hop, as the engine merges them,
    # so that the redirect rules drop credentials from both on a hop to another origin.
    sent = {**cfg.headers, **req.headers}
    url, method, body = req.url, req.method, req.body
    policy = RedirectPolicy(
        cfg.max_redirects, cfg.allow_downgrade, req.cross_origin, cfg.location_trusted
    )
    pooled = req.pool is not None
    while (plan := _plan(client, method, url, sent, body, pooled=pooled)) is not None:
        answer = await _raw(client, plan, url, req, bodiless=method == "HEAD")
        if answer is None:
            return None
        location = answer.head.fields.get("location")
        if not follows(answer.head.status, location):
            return RawStream(answer, safe, url, req.max_bytes, hops)
        try:
            hop = plan_redirect(
                url=url,
                status=answer.head.status,
                location=location,
                method=method,
                headers=sent,
                hops=hops,
                policy=policy,
            )
        except StreamerError as exc:
            raise evolve(exc, url=safe) from exc.__cause__  # the URL asked for, not the hop
        body = body_for_hop(body, hop.drop_body, safe)
        if progress is not None:
            progress(Progress(safe, Phase.REDIRECTING))
        url, sent, method, hops = hop.url, hop.headers, hop.method, hops + 1
    return None


async def _raw(
    client: Opener, plan: _Plan, url: str, req: _Request, *, bodiless: bool
) -> Answer | None:
    """The raw exchange's answer; None when the engine should ask again (see module doc)."""
    cfg = client.config
    timeouts = SendTimeouts(
        cfg.connect_timeout, cfg.read_timeout, cfg.total_timeout, cfg.expect_timeout
    )
    job = Job(
        plan.head,
        plan.pieces,
        plan.expect,
        timeouts,
        max_body=(1 << 20) if req.max_bytes is None else req.max_bytes,
        url=redact_url(url),
        on_sent=req.on_sent,
        bodiless=bodiless,
        resendable=plan.resendable,
        throttle=req.throttle,
    )
    try:
        return await send_request(job, plan.origin, req.pool)
    except Handoff:
        return None


__all__ = ["RawStream", "Reply", "body_pieces", "send_body"]
