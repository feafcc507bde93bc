"""How a download gets a raw-path answer (`fastpath.FastStream`), or the engine's.

`open_answer` tries the raw path first for what it can do exactly as the engine would: an
``http://`` or ``https://`` URL sent as written, reached directly (no proxy, no netrc),
with request fields the lane can write and no decoding asked (a rate limit is paid with
reading stopped, `BodyConnection.pace`). The head is
read on a raw connection (TLS with the client's one context); when it is one this path
takes (200/206 framed by Content-Length, chunks or the close; 304; 416; any error status,
whose body is never read) the download goes on with it. Redirects are followed here under
the engine's rules (`core.redirects`), one request per hop. Anything else (a 101, a failure
to connect or a refused certificate) is handed to the engine, which asks again; no byte has
been written by then.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from ..core.events import Phase, Progress, ProgressCallback
from ..core.headers import without
from ..core.http1 import Origin, merge_fields, request_head, simple_request
from ..core.redact import redact_url
from ..core.redirects import Hop, RedirectPolicy, follows, plan_redirect
from ..errors import StreamerError, evolve
from ..lane.bulkbody import Watch, connect
from ..lane.connection import Handoff
from .fastpath import Ask, FastStream

if TYPE_CHECKING:
    from ..http.stream import Stream
    from .opener import Opener

# Set to "0" to keep every body on aiohttp (a diagnostic switch, like STREAMER_LOOP).
ENV_SWITCH = "STREAMER_FAST_BODY"
_RANGE_FIELDS = ("range", "if-range")  # written by the resume plan; checked, then sent
_VALUE = re.compile(r"[\t\x20-\x7e]*")  # RFC 9110 5.5, visible ASCII only (as merge_fields)


def usable(client: Opener, url: str, *, decode: bool) -> bool:
    """Whether this download may try the raw path at all (see the module's docstring)."""
    config = client.config
    if not config.fast_body or decode or config.proxy is not None:
        return False
    if os.environ.get(ENV_SWITCH) == "0":
        return False
    scheme = url[:8].lower()
    return scheme.startswith(("http://", "https://")) and client.plain_route(url)


def request_fields(
    client: Opener, headers: Mapping[str, str], *, first: bool = True
) -> list[tuple[str, str]] | None:
    """The request's fields as the engine would send them (User-Agent, Accept, the config's
    headers, the call's, identity coding), or None when one is not for a raw request. A
    redirect's next hop (`first` False) has them all in `headers` already."""
    ranges = [(k, v) for k, v in headers.items() if k.lower() in _RANGE_FIELDS]
    rest = [(k, v) for k, v in headers.items() if k.lower() not in _RANGE_FIELDS]
    omit = client.config.omit_headers
    if first:
        base = without([("User-Agent", client.config.user_agent), ("Accept", "*/*")], omit)
        merged = merge_fields(base, client.config.headers.items(), rest)
    else:
        merged = merge_fields([(k, v) for k, v in rest if k.lower() != "accept-encoding"])
    if merged is None or not all(_VALUE.fullmatch(v) for _, v in ranges):
        return None
    return [*merged, *ranges, *without([("Accept-Encoding", "identity")], omit)]


async def open_fast(
    client: Opener,
    url: str,
    headers: Mapping[str, str],
    *,
    max_bytes: int | None,
    progress: ProgressCallback | None,
) -> FastStream | None:
    """The answer to a GET of `url` on raw connections, following redirects under the
    engine's rules (`core.redirects`, RFC 9110 15.4); None to ask the engine instead."""
    fields = request_fields(client, headers)
    if fields is None:
        return None
    config, safe_url = client.config, redact_url(url)
    phase = _phases(client, safe_url, progress)
    ask = Ask(max_bytes, progress, _watch(client), phase, config.chunk_size, tls=client.tls_context)
    policy = RedirectPolicy(
        config.max_redirects, config.allow_downgrade, keep_credentials=config.location_trusted
    )
    hop_url, hops = url, 0
    while True:
        stream = await _exchange(hop_url, fields, ask, safe_url, hops)
        location = None if stream is None else stream.headers.get("Location")
        if stream is None or not follows(stream.status, location):
            break
        stream.close()
        hop = _plan_hop(stream, hop_url, fields, hops=hops, policy=policy, safe_url=safe_url)
        ask.phase(Phase.REDIRECTING)
        fields = request_fields(client, hop.headers, first=False)
        if fields is None or not usable(client, hop.url, decode=False):
            return None  # the engine follows the chain from the start
        hop_url, hops = hop.url, hops + 1
    if stream is not None and _taken(stream):
        return stream
    if stream is not None:
        stream.close()
    return None


def _plan_hop(
    stream: FastStream,
    url: str,
    fields: list[tuple[str, str]],
    *,
    hops: int,
    policy: RedirectPolicy,
    safe_url: str,
) -> Hop:
    """The next hop after `stream`'s redirect, as the engine plans it (`core.redirects`)."""
    try:
        return plan_redirect(
            url=url,
            status=stream.status,
            location=stream.headers.get("Location"),
            method="GET",
            headers=dict(fields),
            hops=hops,
            policy=policy,
        )
    except StreamerError as exc:
        raise evolve(exc, url=safe_url) from exc.__cause__  # name the URL asked for


async def _exchange(
    url: str, fields: list[tuple[str, str]], ask: Ask, safe_url: str, hops: int
) -> FastStream | None:
    """One request on a new connection, up to its answer's head; None to hand over."""
    simple = simple_request(url)
    if simple is None:
        return None
    origin, target = simple
    ask.phase(Phase.RESOLVING if not _is_ip(origin) else None)
    ask.phase(Phase.CONNECTING)
    try:
        conn = await connect(
            origin.host, origin.port, safe_url, ask.watch, ask.size, tls=ask.tls(origin)
        )
    except Handoff:
        return None
    try:
        ask.phase(Phase.REQUESTING)
        head = await conn.answer(request_head(target, origin.authority, fields))
        return FastStream(conn, head, safe_url, url, hops=hops, ask=ask)
    except Handoff:
        conn.close()
        return None
    except BaseException:
        conn.close()
        raise


def _taken(stream: FastStream) -> bool:
    """The answers this path carries on; others (3xx, other 2xx) go to the engine."""
    status = stream.status
    if status in (200, 206):
        return stream.framing is not None
    return status in (304, 416) or status >= 400


def _phases(
    client: Opener, url: str, progress: ProgressCallback | None
) -> Callable[[Phase | None], None]:
    report = progress if progress is not None and client.config.report_phases else None

    def phase(which: Phase | None) -> None:
        if report is not None and which is not None:
            report(Progress(url, which))

    return phase


def _is_ip(origin: Origin) -> bool:
    try:
        ipaddress.ip_address(origin.host)
    except ValueError:
        return False
    return True


def _watch(client: Opener) -> Watch:
    config = client.config
    deadline = None
    if config.total_timeout is not None:
        deadline = asyncio.get_running_loop().time() + config.total_timeout
    return Watch(
        connect=config.connect_timeout,
        idle=config.read_timeout,
        total=config.total_timeout,
        deadline=deadline,
        speed_limit=config.speed_limit,
        speed_time=config.speed_time,
    )


@asynccontextmanager
async def open_answer(
    client: Opener,
    url: str,
    headers: Mapping[str, str],
    *,
    max_bytes: int | None,
    accept_gzip: bool | None,
    fast: bool,
    progress: ProgressCallback | None,
) -> AsyncIterator[FastStream | Stream]:
    """The answer to a download's GET: on the raw path when `fast` and it can be, else the
    engine's `Stream` (with every option that path honours)."""
    if fast:
        stream = await open_fast(client, url, headers, max_bytes=max_bytes, progress=progress)
        if stream is not None:
            try:
                yield stream
            finally:
                stream.close()
            return
    async with client.stream(
        url, headers=headers, max_bytes=max_bytes, accept_gzip=accept_gzip, progress=progress
    ) as engine_stream:
        yield engine_stream


__all__ = ["ENV_SWITCH", "open_answer", "open_fast", "request_fields", "usable"]
