"""The small-file lane: keep-alive HTTP/1.1 GETs on plain asyncio sockets, for bulk runs.

aiohttp's request path costs about a third of a millisecond of Python per request, more than
a 16 KiB transfer itself. For the common bulk case (a GET answered 200 with a small body
framed by Content-Length or by chunks, or with an error status) this lane does the exchange
with one protocol object per connection and hands each body piece straight to a sink (the
partial file). It reads a body only when the caller's size cap allows it; for any other
answer it stops and says so (`Reply.read` False, or `Handoff`), and the full engine asks again.

This module is the error boundary for its own sockets: connection-level failures of an
exchange become `StreamerError`s here; failures to connect at all become `Handoff`, so that
the full engine (and `net.translate`) reports them with its usual precision.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import OrderedDict
from collections.abc import Callable

from ..core.http1 import Origin, request_head
from ..errors import ConnectionLostError, TransferTimeout
from .pipeline import DRAIN_MAX, Connection, Handoff, Reply, Requeue, Sink, Timeouts

# Idle keep-alive connections kept at most, over all origins, and for how long (aiohttp's
# default keep-alive is 15 s; servers often close sooner, which `_take` notices).
MAX_IDLE = 100
IDLE_SECONDS = 15.0
# Sends of one request at most: a connection that ended before any byte of its answer
# (idle and closed by the server, or a pipeline cut short) is followed by a new one.
MAX_SENDS = 3


class Lane:
    """Keep-alive connections per origin: idle ones in a pool, and with `depth` > 1 one
    connection per origin that new requests join (pipelined) while it has room."""

    def __init__(
        self, timeouts: Timeouts, tls: Callable[[], ssl.SSLContext], depth: int = 1
    ) -> None:
        self.timeouts = timeouts
        self.depth = max(1, depth)
        self._tls = tls
        self._context: ssl.SSLContext | None = None
        # Idle connections per origin, least recently used origin first; bounded in number
        # (a manifest over thousands of hosts must not run out of file descriptors) and age.
        self._idle: OrderedDict[Origin, list[Connection]] = OrderedDict()
        self._idle_count = 0
        # Connections with requests in flight that more may join, per origin, oldest first.
        self._busy: dict[Origin, list[Connection]] = {}
        self.shallow: set[Origin] = set()  # origins that cut a pipeline: depth 1 there

    async def get(
        self,
        origin: Origin,
        target: str,
        fields: list[tuple[str, str]],
        *,
        sink: Sink,
        max_body: int,
        url: str,
    ) -> Reply:
        """GET `target`. A request that got no byte of its answer before its connection ended
        goes out again on a new connection (RFC 9112 9.3.1 and 9.3.2: a GET is safe to send
        again); on a new connection it is the first request, so a second loss is an error."""
        request = request_head(target, origin.authority, fields)
        fresh = False
        for _ in range(MAX_SENDS):
            conn = None if fresh else self._pick(origin)
            if conn is None:
                conn = await self._connect(origin, url)
            try:
                reply = await conn.exchange(request, sink, max_body, self.timeouts, url)
            except Requeue:
                if conn.broke and origin not in self.shallow:
                    self.shallow.add(origin)  # the server does not keep pipelined requests
                    self._busy.pop(origin, None)
                fresh = True
                continue
            except BaseException:
                conn.close()  # the others queued on it are requeued
                raise
            if not conn.in_flight and not conn.pooled and conn.reusable and not conn.closed:
                busy = self._busy.get(origin)
                if busy is not None and conn in busy:
                    busy.remove(conn)
                self._keep(origin, conn)
            return reply
        raise ConnectionLostError("server closed the connection", url=url)

    def _pick(self, origin: Origin) -> Connection | None:
        """The connection this request joins (pipelined), else an idle one, else None."""
        busy = self._busy.get(origin) if self.depth > 1 else None
        if busy:
            for joined in busy:
                if joined.can_join(self.depth):
                    return joined
            busy[:] = [c for c in busy if not c.closed]
        conn = self._take(origin)
        if conn is not None and self.depth > 1 and origin not in self.shallow:
            self._busy.setdefault(origin, []).append(conn)  # later requests join it
        return conn

    def _keep(self, origin: Origin, conn: Connection) -> None:
        conn.idle_since = conn.loop.time()
        conn.pooled = True
        self._idle.setdefault(origin, []).append(conn)
        self._idle.move_to_end(origin)
        self._idle_count += 1
        while self._idle_count > MAX_IDLE:  # close the oldest of the least recent origin
            oldest, conns = next(iter(self._idle.items()))
            conns.pop(0).close()
            self._idle_count -= 1
            if not conns:
                del self._idle[oldest]

    def _take(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            conn.pooled = False
            self._idle_count -= 1
            if not idle:
                del self._idle[origin]
            if not conn.closed and conn.loop.time() - conn.idle_since < IDLE_SECONDS:
                return conn
            conn.close()  # closed by the server meanwhile, or idle too long to trust
        return None

    async def _connect(self, origin: Origin, url: str) -> Connection:
        loop = asyncio.get_running_loop()
        context = None
        if origin.scheme == "https":
            if self._context is None:
                self._context = self._tls()
            context = self._context
        try:
            async with asyncio.timeout(self.timeouts.connect):
                _, conn = await loop.create_connection(
                    lambda: Connection(loop),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context is not None else None,
                )
        except TimeoutError:
            # Not handed off: the full engine would wait out the same timeout again.
            where = f"{origin.host}:{origin.port}"
            limit = self.timeouts.connect
            raise TransferTimeout(
                f"timed out: connect timeout ({limit:g} s) to {where}", url=url
            ) from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise Handoff(f"cannot connect: {type(exc).__name__}") from None
        return conn

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        for conns in self._busy.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._busy.clear()
        self._idle_count = 0


__all__ = [
    "DRAIN_MAX",
    "IDLE_SECONDS",
    "MAX_IDLE",
    "MAX_SENDS",
    "Handoff",
    "Lane",
    "Reply",
    "Timeouts",
]
