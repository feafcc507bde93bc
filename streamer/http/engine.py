"""The aiohttp side of a `Client`: the session, requests, redirects under our own rules.

Loaded on the first request that needs it (`Client._engine`): a bulk run whose files all go
through the small-file lane never imports aiohttp, which is most of a command's start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
from yarl import URL

from ..config import ClientConfig
from ..core.events import Phase, ProgressCallback
from ..core.headers import without
from ..core.ratelimit import Pacer
from ..core.redact import redact_url
from ..core.redirects import RedirectPolicy, follows, plan_redirect
from ..core.stall import OwnWaits, StallMonitor
from ..core.status import status_error
from ..core.wire import wire_url
from ..errors import StreamerError, UsageError, evolve
from .bodies import Body
from .net import Timeouts, make_session, mapped_errors
from .outgoing import (
    body_for_hop,
    body_headers,
    counted,
    phase_reporter,
    split_userinfo,
    stall_clock,
)
from .routes import NO_ROUTE, EnvRoutes
from .stream import Stream, StreamOptions


class Engine:
    """One aiohttp session and the environment's routes, for the life of one `Client`."""

    def __init__(self, config: ClientConfig, tls: Callable[[], ssl.SSLContext]) -> None:
        """`tls` gives the client's one TLS context, made on the first request that needs it:
        loading the system's CAs costs ~15 ms, which a plain http:// command never pays."""
        self.config = cfg = config
        self._tls = tls
        self._session: aiohttp.ClientSession | None = make_session(
            connect_timeout=cfg.connect_timeout,
            read_timeout=cfg.read_timeout,
            read_bufsize=cfg.chunk_size,
            headers={},
            trust_env=False,  # the environment is consulted by self._routes instead
            limit=cfg.max_connections,
            limit_per_host=cfg.max_per_host,
            expect_timeout=cfg.expect_timeout,
            phases=cfg.report_phases,
            omit=cfg.omit_headers,
        )
        self.timeouts = Timeouts(cfg.connect_timeout, cfg.read_timeout, cfg.total_timeout)
        # Proxy and ~/.netrc from the environment, looked up once per origin (see EnvRoutes).
        self._routes = EnvRoutes() if cfg.trust_env else None

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def stream_options(self, max_bytes: int | None, decode: bool) -> StreamOptions:
        cfg = self.config
        deadline = None
        if cfg.total_timeout is not None:
            deadline = asyncio.get_running_loop().time() + cfg.total_timeout
        return StreamOptions(
            chunk_size=cfg.chunk_size,
            max_bytes=max_bytes,
            decode=decode,
            speed_limit=cfg.speed_limit,
            speed_time=cfg.speed_time,
            deadline=deadline,
            timeouts=self.timeouts,
        )

    async def open(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        opts: StreamOptions,
        progress: ProgressCallback | None,
        raise_for_status: bool,
        body: Body | None = None,
        cross_origin: bool = True,
        on_sent: Any = None,
        sending: list[AsyncGenerator[bytes, None]] | None = None,
        throttle: Pacer | None = None,
    ) -> Stream:
        """Send the request, following redirects under `plan_redirect`'s rules (RFC 9110 15.4).

        The chunk generator of every body sent is added to ``sending``, for the caller to close;
        `throttle` paces every body sent (see `outgoing.counted`).
        """
        safe_url = redact_url(url)
        request_url, auth = self._userinfo(url)
        headers = {**auth, **headers}
        policy = RedirectPolicy(
            max_redirects=self.config.max_redirects,
            allow_downgrade=self.config.allow_downgrade,
            allow_cross_origin=cross_origin,
            keep_credentials=self.config.location_trusted,
        )
        ctx = SimpleNamespace(
            on_phase=phase_reporter(safe_url, progress),
            on_sent=on_sent,
            sending=[] if sending is None else sending,
            throttle=throttle,
            own_waits=OwnWaits(),  # the body's waits for its throttle (`outgoing.stall_clock`)
        )
        hops = 0
        while True:
            resp = await self._request(
                method, request_url, headers=headers, ctx=ctx, opts=opts, body=body
            )
            location = resp.headers.get("Location")
            if not follows(resp.status, location):
                break
            resp.release()
            try:
                hop = plan_redirect(
                    url=request_url,
                    status=resp.status,
                    location=location,
                    method=method,
                    headers=headers,
                    hops=hops,
                    policy=policy,
                )
            except StreamerError as exc:
                # Name the URL that was asked for, not the last hop.
                raise evolve(exc, url=safe_url) from exc.__cause__
            body = body_for_hop(body, hop.drop_body, safe_url)
            ctx.on_phase(Phase.REDIRECTING)
            request_url, hop_auth = self._userinfo(hop.url)
            headers = hop.headers
            if hop_auth:  # credentials in the Location replace the ones we had
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                headers.update(hop_auth)
            hops, method = hops + 1, hop.method
        stream = Stream(resp, url=safe_url, redirects=hops, options=opts, progress=progress)
        if raise_for_status and stream.status >= 400:
            stream.close()
            raise status_error(
                stream.url, stream.status, stream.reason, stream.headers, now=time.time()
            )
        return stream

    async def _request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        ctx: SimpleNamespace,
        opts: StreamOptions,
        body: Body | None = None,
    ) -> aiohttp.ClientResponse:
        if self._session is None:
            raise UsageError("the client is not open: use `async with Client() as client`")
        timeout = self._session.timeout
        if opts.deadline is not None:
            remaining = opts.deadline - asyncio.get_running_loop().time()
            timeout = aiohttp.ClientTimeout(
                total=max(remaining, 0.001),
                sock_connect=self.config.connect_timeout,
                sock_read=self.config.read_timeout,
            )
        data = None
        if body is not None:
            headers = body_headers(headers, body, self.config.omit_headers)
            data = counted(body, ctx)
            ctx.sending.append(data)
        with mapped_errors(url, timeouts=self.timeouts):
            proxy, proxy_headers, headers = self._route(url, headers)
            # Every request that may do TLS (https, or any hop through a proxy) names the
            # context itself: the connector's default (aiohttp's own) is never used.
            tls = self._tls() if proxy is not None or url[:6].lower() == "https:" else True
            request = self._session.request(
                method,
                # The path and query byte for byte (core.wire): yarl would re-encode them.
                URL(wire_url(url), encoded=True),
                headers=headers,
                data=data,
                allow_redirects=False,
                proxy=proxy,
                proxy_headers=proxy_headers,
                ssl=tls,
                trace_request_ctx=ctx,
                timeout=timeout,
            )
            if opts.speed_limit is None:
                return await request
            return await _watched(request, opts, ctx, redact_url(url))

    def _userinfo(self, url: str) -> tuple[str, dict[str, str]]:
        """`split_userinfo`, less an Authorization the client omits (curl's
        -H 'Authorization:' drops the credentials it would send by itself)."""
        request_url, auth = split_userinfo(url)
        return request_url, dict(without(auth.items(), self.config.omit_headers))

    def plain_route(self, url: str) -> bool:
        """Whether requests to `url`'s origin go direct and without netrc credentials."""
        if self.config.proxy is not None:
            return False
        return self._routes is None or self._routes.lookup(url) == NO_ROUTE

    def _route(
        self, url: str, headers: dict[str, str]
    ) -> tuple[str | URL | None, dict[str, str] | None, dict[str, str]]:
        """The proxy, the headers for the proxy's CONNECT, and the request's headers, given
        what the environment says (http_proxy/no_proxy, ~/.netrc) when ``trust_env``."""
        if self._routes is None:
            return self.config.proxy, None, headers
        route = self._routes.lookup(url)
        wanted = "authorization" not in self.config.omit_headers
        if (
            route.authorization
            and wanted
            and not any(k.lower() == "authorization" for k in headers)
        ):
            # netrc credentials only for a request without its own (aiohttp would refuse both),
            # and not when the client omits them (-H 'Authorization:')
            headers = {**headers, "Authorization": route.authorization}
        if self.config.proxy is not None or route.proxy is None:  # an explicit proxy wins
            return self.config.proxy, None, headers
        if route.proxy_authorization is None or "proxy-authorization" in self.config.omit_headers:
            return route.proxy, None, headers
        # What aiohttp does with proxy_auth: on the request itself for http (it goes to the
        # proxy whole), on the CONNECT for https.
        if url[:6].lower() == "https:":
            return route.proxy, {"Proxy-Authorization": route.proxy_authorization}, headers
        return route.proxy, None, {**headers, "Proxy-Authorization": route.proxy_authorization}


async def _watched(
    request: Awaitable[aiohttp.ClientResponse], opts: StreamOptions, ctx: SimpleNamespace, url: str
) -> aiohttp.ClientResponse:
    """Await `request` (the request sent, up to the final response head) under the stall
    window, as curl's --speed-limit/--speed-time cover the whole exchange: body bytes sent
    count as progress; a head dripped byte by byte, endless 1xx interim answers (RFC 9110
    15.2) or a peer that stops reading the upload count as none, and end in TooSlowError.
    The window's clock stops while the body waits for its own throttle (--limit-rate): the
    peer is judged, never our pacing."""
    loop = asyncio.get_running_loop()
    assert opts.speed_limit is not None
    stall = StallMonitor(opts.speed_limit, opts.speed_time, stall_clock(loop, ctx), url=url)
    task = asyncio.ensure_future(request)
    sent = 0
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=stall.deadline(stall_clock(loop, ctx)))
            if done:
                return task.result()
            now, total = stall_clock(loop, ctx), getattr(ctx, "sent", 0)
            stall.feed(total - sent, now)  # raises TooSlowError when the window was too slow
            sent = total
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task  # its own failure (or cancellation) is not the one to report


__all__ = ["Engine"]
