"""Send one request with a body on a plain socket, file bytes by ``sendfile`` (zero copy).

aiohttp's client can only send a body it has read into Python, a copy per megabyte; here the
kernel moves the file's pages to the socket itself (``os.sendfile``), between the bytes of the
request head and any framing pieces (multipart). A connection carries the next request only
when the caller keeps a `RawPool` (a tus run: creation, HEAD and PATCHes on one connection),
the body went out whole and the answer was read whole from a server that keeps it open;
otherwise it is closed after the answer (a body cut short leaves it out of step).

The answer is read while the body goes out, so a server that answers early (413, 401; RFC
9110 15.5: it need not read the body first) stops the sending, and its answer is reported
even when it resets the connection under our writes. With ``expect`` the head asks
``Expect: 100-continue`` (RFC 9110 10.1.1) and the body waits for the interim answer, a final
answer, or ``expect_timeout`` (then it goes anyway, as curl does).

A file slice is checked as `FileBody` checks it: the open file is the one whose length was
declared, and it has not changed when its last bytes are about to go; the last bytes are held
back until then, so a changed file ends in a truncated request, never in a complete but
corrupt body.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.http1 import Origin
from ..core.ratelimit import Pacer
from ..errors import (
    ConnectionLostError,
    FileError,
    Result,
    SourceChangedError,
    StreamerError,
    TransferTimeout,
)
from .answer import Answer, AnswerReader
from .keepalive import RawPool, connect

# The last bytes of a file slice, held back until the file is checked unchanged.
HOLD_BACK = 64 << 10
# One sendfile call asks for at most this much. On a non-blocking socket a call returns once
# the socket's buffers are full (a few MiB), so progress and an early answer are still looked
# at every few MiB; asking for more than the buffers take lets the kernel keep going while the
# receiver drains them. 1 GiB PUT to nginx on loopback (bench/README.md, "the floor"): 64 MiB
# per call 0.35 s median against 0.44 s with 1 MiB per call, in the same alternating run.
SENDFILE_MAX = 64 << 20
# A file that sendfile cannot take is read into Python this much at a time (bounded memory).
COPY_MAX = 1 << 20

OnSent = Callable[[int], None]


@dataclass(frozen=True)
class FileSlice:
    """`count` bytes of the file at `path` from `offset`; `identity` is the whole file's
    (size, mtime_ns, inode, device) when its length was declared."""

    path: str
    offset: int
    count: int
    identity: tuple[int, int, int, int]


Piece = bytes | FileSlice


@dataclass(frozen=True)
class SendTimeouts:
    connect: float | None
    idle: float | None  # no byte taken by the server, or none received, for this long
    total: float | None  # for the whole exchange
    expect: float  # wait for "100 Continue" at most this long


# Counted by `send_request` each time the kernel copied file bytes to a socket: what tests
# observe to know the zero-copy path ran (a number, not a timing).
SENDFILE_CALLS = [0]


class _Answered(Exception):
    """The final answer came while the body was still going out."""


class _SendFailed(OSError):
    """The socket refused our bytes: the server closed or reset the connection."""


_SOCKET_GONE = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ECONNABORTED})
# sendfile's answers for a file it cannot read from (some FUSE and special file systems).
_NO_SENDFILE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


@dataclass(frozen=True)
class Job:
    """One request for `send_request`: its head, the body's pieces and how to read the answer.
    `bodiless`: the answer has no body whatever its fields say (a HEAD's, RFC 9110 9.3.2);
    `resendable`: the request may go once more when a kept connection turns out closed;
    `throttle`: the body goes in slices of at most its `slice` bytes, each paid for (waited
    for) before it goes (curl's --limit-rate), still by sendfile."""

    head: bytes
    pieces: Sequence[Piece]
    expect: bool
    timeouts: SendTimeouts
    max_body: int
    url: str
    on_sent: OnSent | None = None
    bodiless: bool = False
    resendable: bool = False
    throttle: Pacer | None = None


class _Stale(Exception):
    """A kept connection was closed by the server before it answered a byte."""


async def send_request(job: Job, origin: Origin, pool: RawPool | None = None) -> Answer:
    """Send `job.head` then `job.pieces`, and read the answer (its body up to `job.max_body`).

    With a `pool`, an idle connection to `origin` is used when it is still open, and the
    connection is kept there after an answer read whole from a server that keeps it open;
    without one, each request has a connection of its own, closed after the answer.

    Raises `Handoff` when the connection cannot be made (nothing was sent: the full engine
    asks again and words the failure), `SourceChangedError`/`FileError` for the file, and
    `ConnectionLostError`/`TransferTimeout` for the exchange.
    """
    sock = pool.take(origin) if pool is not None else None
    if sock is not None:
        try:
            return await _over(sock, job, origin, pool, reused=True)
        except _Stale:
            pass  # RFC 9112 9.3.1: closed while idle; a repeatable request goes once more
    sock = await connect(origin, job.timeouts.connect, job.url)
    return await _over(sock, job, origin, pool, reused=False)


async def _over(
    sock: socket.socket, job: Job, origin: Origin, pool: RawPool | None, *, reused: bool
) -> Answer:
    """The exchange on `sock` under the total timeout; `sock` is kept in `pool` or closed."""
    keep = False
    try:
        async with asyncio.timeout(job.timeouts.total):
            answer, keep = await _exchange(sock, job, reused)
            return answer
    except TimeoutError as exc:
        if isinstance(exc, StreamerError):
            raise  # our own TransferTimeout (a TimeoutError too), not the total deadline
        total = job.timeouts.total
        raise TransferTimeout(
            f"timed out: total timeout ({total:g} s) for the transfer", url=job.url
        ) from None
    finally:
        if keep and pool is not None:
            pool.give(origin, sock)
        else:
            sock.close()


async def _exchange(sock: socket.socket, job: Job, reused: bool) -> tuple[Answer, bool]:
    """The answer, and whether the connection may carry the next request."""
    reader = AnswerReader(sock, job.max_body, job.url, bodiless=job.bodiless)
    task = asyncio.ensure_future(reader.read())
    whole = False
    try:
        sender = _Sender(sock, task, job.timeouts.idle, job.url, job.on_sent, throttle=job.throttle)
        try:
            await sender.write(job.head)
            if not job.expect or await _continued(reader, task, job.timeouts.expect):
                for piece in job.pieces:
                    await sender.piece(piece)
                whole = True
        except _Answered:
            pass  # the answer is there; the rest of the body is not wanted
        except _SendFailed as exc:
            # The server closed or reset the connection under our writes: its answer, when
            # it sent one first, is the result (see the module doc); else the write failed.
            return await _answer_after_failure(task, exc, job.timeouts.idle, job.url), False
        reader.sent_all()
        answer = await _await_answer(reader, task, job.timeouts.idle, job.url)
        return answer, whole and reader.reusable(answer)
    except ConnectionLostError:
        if reused and job.resendable and not reader.heard:
            raise _Stale from None  # lost before any answer byte: send once more
        raise
    finally:
        await _reap(task)


async def _reap(task: asyncio.Task[Answer]) -> None:
    """Stop the reader and wait for it (its socket is closed next), without swallowing a
    cancellation of our own."""
    if task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:  # its failure is not the one to report
        pass


async def _continued(reader: AnswerReader, task: asyncio.Task[Answer], wait: float) -> bool:
    """Wait for "100 Continue"; False when the final answer came instead (no body then)."""
    continued = asyncio.ensure_future(reader.continued.wait())
    try:
        await asyncio.wait({continued, task}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    finally:
        continued.cancel()
    return not task.done()


async def _await_answer(
    reader: AnswerReader, task: asyncio.Task[Answer], idle: float | None, url: str
) -> Answer:
    """The answer, failing after `idle` seconds with no byte from the server."""
    loop = asyncio.get_running_loop()
    while True:
        done, _ = await asyncio.wait({task}, timeout=idle)
        if done:
            return task.result()
        assert idle is not None
        if loop.time() - reader.last >= idle:
            raise TransferTimeout(
                f"timed out: read timeout ({idle:g} s), no data from the server", url=url
            )


async def _answer_after_failure(
    task: asyncio.Task[Answer], exc: OSError, idle: float | None, url: str
) -> Answer:
    with contextlib.suppress(TimeoutError, OSError, ConnectionLostError):
        async with asyncio.timeout(idle):
            return await asyncio.shield(task)
    reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
    raise ConnectionLostError(
        f"connection error while sending the body: {reason.lower()}",
        url=url,
        result=Result.CONNECTION_ERROR,
    ) from None


class _Sender:
    """Writes to a non-blocking socket, stopping when the answer task is done."""

    def __init__(
        self,
        sock: socket.socket,
        answer: asyncio.Task[Answer],
        idle: float | None,
        url: str,
        on_sent: OnSent | None,
        *,
        throttle: Pacer | None = None,
    ) -> None:
        self._sock, self._fd, self._answer = sock, sock.fileno(), answer
        self._idle, self._url, self._on_sent = idle, url, on_sent
        self._throttle = throttle
        self._paid = 0  # body bytes the throttle was paid for and not yet sent
        self.body_sent = 0
        self._head_done = False

    async def _writable(self) -> None:
        """Wait until the socket takes bytes; raise `_Answered` when the answer came first."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_writer(self._fd, wake)
        waiting: set[asyncio.Future[Any]] = {ready, self._answer}
        try:
            await asyncio.wait(waiting, timeout=self._idle, return_when="FIRST_COMPLETED")
        finally:
            loop.remove_writer(self._fd)
            ready.cancel()
        if self._answer.done():
            raise _Answered
        if not ready.done() or ready.cancelled():
            idle = self._idle or 0.0
            raise TransferTimeout(
                f"timed out: the server took no bytes of the body for {idle:g} s", url=self._url
            )

    async def _most(self, n: int) -> int:
        """How many of the next `n` bytes may go now: all of them, or with a throttle (body
        bytes only) what was paid for, paying for up to one slice first when nothing is (a
        send that takes fewer leaves the rest paid for the next one)."""
        if self._throttle is None or not self._head_done:
            return n
        if self._paid == 0:
            self._paid = min(n, self._throttle.slice)
            await self._throttle(self._paid)
        return min(n, self._paid)

    def _count(self, n: int) -> None:
        if not self._head_done:
            return
        self.body_sent += n
        self._paid = max(0, self._paid - n)
        if self._on_sent is not None:
            self._on_sent(self.body_sent)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            count = await self._most(len(view))  # a throttle's wait: the answer may come
            if self._answer.done():
                raise _Answered
            try:
                n = self._sock.send(view[:count])
            except BlockingIOError:
                await self._writable()
                continue
            except OSError as exc:
                raise _SendFailed(exc.errno, exc.strerror) from None
            view = view[n:]
            self._count(n)
        self._head_done = True

    async def piece(self, piece: Piece) -> None:
        if isinstance(piece, bytes):
            await self.write(piece)
        else:
            await self._file(piece)

    async def _file(self, part: FileSlice) -> None:
        try:
            with open(part.path, "rb") as f:
                if _identity(os.fstat(f.fileno())) != part.identity:
                    raise _changed(part, "it is not the file whose size was declared")
                hold = min(HOLD_BACK, part.count)
                end = part.offset + part.count
                await self._sendfile(f.fileno(), part, part.offset, end - hold)
                if _identity(os.stat(part.path)) != part.identity or os.pread(
                    f.fileno(), 1, part.identity[0]
                ):
                    raise _changed(part, "its size, time or identity differs from the start")
                tail = os.pread(f.fileno(), hold, end - hold)
        except (_SendFailed, StreamerError):
            raise  # the socket's failure or ours (TransferTimeout is an OSError too)
        except OSError as exc:
            raise FileError(
                f"cannot read {part.path}: {exc.strerror or exc}",
                path=part.path,
                result=Result.SOURCE_READ_ERROR,
            ) from exc
        if len(tail) != hold:
            raise _changed(part, f"it shrank below {end} bytes")
        await self.write(tail)

    async def _sendfile(self, fd: int, part: FileSlice, offset: int, end: int) -> None:
        while offset < end:
            count = await self._most(min(SENDFILE_MAX, end - offset))
            if self._answer.done():
                raise _Answered
            try:
                n = os.sendfile(self._fd, fd, offset, count)
            except BlockingIOError:
                await self._writable()
                continue
            except OSError as exc:
                if exc.errno in _SOCKET_GONE:
                    raise _SendFailed(exc.errno, exc.strerror) from None
                if exc.errno not in _NO_SENDFILE:
                    raise
                await self._copy(fd, part, offset, end)  # a file system without sendfile
                return
            if n == 0:
                raise _changed(part, f"it shrank to {offset} bytes")
            SENDFILE_CALLS[0] += 1
            offset += n
            self._count(n)

    async def _copy(self, fd: int, part: FileSlice, offset: int, end: int) -> None:
        """The bytes read into Python and sent, for a file that sendfile cannot take."""
        while offset < end:
            data = os.pread(fd, min(COPY_MAX, end - offset), offset)
            if not data:
                raise _changed(part, f"it shrank to {offset} bytes")
            await self.write(data)
            offset += len(data)


def _changed(part: FileSlice, why: str) -> SourceChangedError:
    return SourceChangedError.during_upload(part.path, why)


__all__ = ["SENDFILE_CALLS", "FileSlice", "Job", "Piece", "SendTimeouts", "send_request"]
