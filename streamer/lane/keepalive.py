"""Connections of the raw send path (`sendbody`): made, and kept between the requests of a run.

A tus upload asks one origin several things in a row (OPTIONS, the creation POST, HEAD for
the offset, then the PATCHes); over plain http they share one connection when the server
keeps it open (RFC 9112 9.3), as curl's would; so do the parts of an S3 upload, a few at a
time. `RawPool` holds the idle ones, a bounded number per origin. Before one is used again
it is looked at without waiting: a server that closed it while it was idle (its keep-alive
timeout) has sent its FIN, so a peek reads end of file, and bytes nobody asked for mean the
server is out of step; either way a new connection is made. The race left (the server
closes just as the request goes out) is the caller's to resolve (see
`sendbody.send_request`: a request that may be repeated is sent once more).
"""

from __future__ import annotations

import asyncio
import socket

from ..core.http1 import Origin
from ..errors import TransferTimeout
from .connection import Handoff


async def connect(origin: Origin, timeout: float | None, url: str) -> socket.socket:
    """A new non-blocking socket to `origin` with TCP_NODELAY; `Handoff` when it cannot be
    made (nothing was sent: the full engine asks again and words the failure)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = _literal(origin) or await loop.getaddrinfo(
                origin.host, origin.port, type=socket.SOCK_STREAM
            )
            for n, (family, kind, proto, _, address) in enumerate(infos, 1):
                sock = socket.socket(family, kind, proto)
                try:
                    sock.setblocking(False)
                    await loop.sock_connect(sock, address)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    sock.close()
                    if n == len(infos):
                        raise
                    continue  # the next address (an IPv6 and an IPv4 one, say)
                except BaseException:
                    sock.close()
                    raise
                return sock
    except TimeoutError as exc:
        if timeout is None or exc.errno is not None:  # the system's ETIMEDOUT, not ours
            raise Handoff("cannot connect: timed out") from None
        # Not handed off: the engine would wait out the same timeout again (as the lane does).
        where = f"{origin.host}:{origin.port}"
        raise TransferTimeout(
            f"timed out: connect timeout ({timeout:g} s) to {where}", url=url
        ) from None
    except OSError as exc:
        # Nothing was sent: the engine connects again and words the failure its own way.
        raise Handoff(f"cannot connect: {type(exc).__name__}") from None
    raise Handoff("no address")


def _literal(origin: Origin) -> list[tuple[int, int, int, str, tuple[str, int]]]:
    """The address of an IP literal host, without asking the resolver (which runs in a worker
    thread and loads the IDNA codec: 1-2 ms of a small upload's start-up); [] for a name."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, origin.host)
        except OSError:
            continue
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (origin.host, origin.port))]
    return []


def _idle_and_open(sock: socket.socket) -> bool:
    """True when nothing is waiting on the idle socket: no FIN, no stray bytes, no error."""
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False  # end of file, or bytes the server sent unasked


class RawPool:
    """Idle keep-alive connections, at most `per_origin` to each origin (one for a tus run, as
    many as parts in flight for S3); `close` ends them all."""

    def __init__(self, per_origin: int = 1) -> None:
        self._idle: dict[Origin, list[socket.socket]] = {}
        self._limit = max(1, per_origin)
        self._closed = False

    def take(self, origin: Origin) -> socket.socket | None:
        """An idle connection to `origin` that is still open (the latest kept), else None."""
        idle = self._idle.get(origin, [])
        while idle:
            sock = idle.pop()
            if _idle_and_open(sock):
                return sock
            sock.close()
        return None

    def give(self, origin: Origin, sock: socket.socket) -> None:
        """Keep `sock` (its answer read whole, the server keeping it open) for the next request."""
        idle = self._idle.setdefault(origin, [])
        if self._closed or len(idle) >= self._limit:
            sock.close()
        else:
            idle.append(sock)

    def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for sock in idle:
                sock.close()
        self._idle.clear()

    def __enter__(self) -> RawPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["RawPool", "connect"]
