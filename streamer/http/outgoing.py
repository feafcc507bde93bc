"""What goes out with a request: credentials from the URL, the body and its headers, phases.

Helpers of `client.py` that do not need the client itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Collection
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from ..core.events import Phase, Progress, ProgressCallback
from ..core.headers import basic_credentials
from ..core.ratelimit import Pacer
from ..core.redact import redact_url
from ..core.stall import OwnWaits
from ..errors import UsageError
from .bodies import Body, closing_chunks


def split_userinfo(url: str) -> tuple[str, dict[str, str]]:
    """Move URL credentials into an Authorization header (RFC 7617) so that our redirect rules,
    not aiohttp's, decide where they may go."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise UsageError(f"invalid URL: {exc}", url=redact_url(url)) from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise UsageError("only http:// and https:// URLs are supported", url=redact_url(url))
    if parts.username is None:
        return url, {}
    user, password = unquote(parts.username), unquote(parts.password or "")
    netloc = parts.netloc.rpartition("@")[2]
    auth = basic_credentials(f"{user}:{password}")
    return urlunsplit(parts._replace(netloc=netloc)), {"Authorization": auth}


def body_headers(headers: dict[str, str], body: Body, omit: Collection[str] = ()) -> dict[str, str]:
    """Content-Length when the body's length is known (else aiohttp sends it chunked), and
    the body's Content-Type unless the call set one or the client omits it."""
    out = {k: v for k, v in headers.items() if k.lower() not in ("content-length",)}
    if body.length is not None:
        out["Content-Length"] = str(body.length)
    if (
        body.content_type
        and "content-type" not in omit
        and "content-type" not in map(str.lower, out)
    ):
        out["Content-Type"] = body.content_type
    return out


def body_for_hop(body: Body | None, drop: bool, url: str) -> Body | None:
    """The body for the next hop: none after 301/302/303 to GET; the same bytes for 307/308."""
    if body is None or drop:
        return None
    if not body.replayable:
        raise UsageError(
            "the server redirected with 307/308, which requires sending the body again, and "
            "a one-shot source cannot be replayed",
            url=url,
        )
    return body


async def close_bodies(sending: list[AsyncGenerator[bytes, None]]) -> None:
    """Close the chunk generators of sent bodies: aiohttp stops iterating one when the answer
    comes early or the request is cancelled, but never closes it, so its source (an open file)
    would wait for the garbage collector, which may only come after the event loop is gone."""
    for chunks in sending:
        # Still running in aiohttp's (cancelled) writer: the cancellation unwinds and closes it.
        with contextlib.suppress(RuntimeError):
            await chunks.aclose()
    sending.clear()


async def counted(body: Body, ctx: SimpleNamespace) -> AsyncGenerator[bytes, None]:
    """The body's chunks, counting what was handed to the connection (for progress)."""
    ctx.sent = 0
    on_sent = getattr(ctx, "on_sent", None)
    throttle: Pacer | None = getattr(ctx, "throttle", None)
    clock = asyncio.get_running_loop().time
    async with closing_chunks(body.open()) as chunks:
        async for chunk in chunks:
            for piece in _slices(chunk, throttle):
                if throttle is not None:
                    # Paid before it goes: aiohttp stops asking once Content-Length bytes
                    # are out, so a wait after the last piece would never be awaited.
                    await ctx.own_waits.pay(throttle, len(piece), clock)
                yield piece
                ctx.sent += len(piece)
                if on_sent is not None:
                    on_sent(ctx.sent)


def stall_clock(loop: asyncio.AbstractEventLoop, ctx: SimpleNamespace) -> float:
    """The clock of an upload's stall window: the loop's time less the body's waits for its
    own throttle (`core.stall.OwnWaits`; --speed-limit judges the peer, never our pacing)."""
    waits: OwnWaits | None = getattr(ctx, "own_waits", None)
    now = loop.time()
    return now if waits is None else waits.clock(now)


def _slices(chunk: bytes, throttle: Pacer | None) -> list[bytes]:
    """`chunk` whole, or in pieces of at most the throttle's slice (a 1 MiB file read must
    not go out at once under a 64 KiB/s limit)."""
    if throttle is None or len(chunk) <= throttle.slice:
        return [chunk]
    view, step = memoryview(chunk), throttle.slice
    return [bytes(view[i : i + step]) for i in range(0, len(chunk), step)]


def phase_reporter(url: str, progress: ProgressCallback | None) -> Any:
    def on_phase(phase: Phase) -> None:
        if progress is not None:
            progress(Progress(url, phase))

    return on_phase
