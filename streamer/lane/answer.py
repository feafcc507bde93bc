"""Read the answer to a request sent on a plain socket (`sendbody`), with the lane's parser.

Interim 1xx answers are skipped (RFC 9110 15.2), "100 Continue" is signalled to the sender;
the final answer's body is framed by Content-Length, by chunks (RFC 9112 7.1) or by the close
(RFC 9112 6.3, rule 8), and kept in memory up to a bound: an upload's answer is small.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from ..core.http1 import MAX_HEAD, ChunkError, Dechunker, Head, head_end, parse_head, reusable
from ..errors import BodyTruncatedError, ConnectionLostError, ProtocolError, Result

_READ_SIZE = 1 << 16
_NO_BODY = frozenset({204, 304})  # RFC 9110 6.4.1


@dataclass(frozen=True)
class Answer:
    head: Head
    body: bytes  # as received (content coding not undone), at most the bound
    over: bool  # the body went past the bound and was not read further


class AnswerReader:
    """Reads one answer from `sock`; `continued` is set when "100 Continue" arrives."""

    def __init__(
        self, sock: socket.socket, max_body: int, url: str, *, bodiless: bool = False
    ) -> None:
        self._sock, self._max, self._url = sock, max_body, url
        self._bodiless = bodiless  # the answer to a HEAD: no body, whatever its fields say
        self._loop = asyncio.get_running_loop()
        self.continued = asyncio.Event()
        self.last = self._loop.time()  # when a byte last came (or the body was all sent)
        self.heard = False  # any byte of an answer came
        self._extra = 0  # bytes received past the final answer

    def reusable(self, answer: Answer) -> bool:
        """Whether the connection can carry the next request after `answer` (read by `read`):
        kept alive, its body framed and read exactly, nothing more sent (RFC 9112 9.3)."""
        if answer.over:
            return False
        if self._bodiless or answer.head.status in _NO_BODY:
            return answer.head.keep_alive and self._extra == 0
        return reusable(answer.head, self._extra)

    def sent_all(self) -> None:
        """The body is out: the read timeout counts from now."""
        self.last = self._loop.time()

    async def _recv(self) -> bytes:
        try:
            data = await self._loop.sock_recv(self._sock, _READ_SIZE)
        except OSError as exc:
            reason = (exc.strerror or type(exc).__name__).lower()
            raise ConnectionLostError(f"connection error: {reason}", url=self._url) from None
        self.last = self._loop.time()
        return data

    async def read(self) -> Answer:
        buf = bytearray()
        head = await self._head(buf)
        rest = bytes(buf[head.size :])
        if self._bodiless or head.status in _NO_BODY:  # RFC 9112 6.3, rules 1 and 2
            self._extra = len(rest)
            return Answer(head, b"", False)
        if head.chunked:
            return await self._chunked(head, rest)
        if not head.simple and _has(head, "transfer-encoding", "content-length"):
            raise ProtocolError("malformed HTTP response: ambiguous body framing", url=self._url)
        return await self._sized(head, rest)

    async def _head(self, buf: bytearray) -> Head:
        while True:
            size = head_end(buf)
            if size < 0:
                if len(buf) > MAX_HEAD:
                    raise ProtocolError("malformed HTTP response: head too large", url=self._url)
                data = await self._recv()
                if not data:
                    result = Result.CONNECTION_ERROR if self.heard else Result.NO_RESPONSE
                    raise ConnectionLostError(
                        "server closed the connection", url=self._url, result=result
                    )
                self.heard = True
                buf += data
                continue
            head = parse_head(buf, size)
            if head is None or head.status == 101:
                raise ProtocolError("malformed HTTP response head", url=self._url)
            if head.status >= 200:
                return head
            if head.status == 100:
                self.continued.set()
            del buf[:size]

    async def _sized(self, head: Head, body: bytes) -> Answer:
        """A body of Content-Length bytes, or (without one) up to the close."""
        parts, got, want = [body], len(body), head.length
        while (want is None or got < want) and got <= self._max:
            data = await self._recv()
            if not data:
                if want is None:
                    break
                raise BodyTruncatedError.cut_short(self._url, got, want)
            parts.append(data)
            got += len(data)
        whole = b"".join(parts)
        if want is not None:
            self._extra = max(0, len(whole) - want)
            whole = whole[:want]
        return Answer(head, whole[: self._max], len(whole) > self._max)

    async def _chunked(self, head: Head, data: bytes) -> Answer:
        dechunk, got = Dechunker(), 0
        parts: list[bytes] = []
        while True:
            try:
                pieces = dechunk.feed(data)
            except ChunkError as exc:
                raise ProtocolError(f"malformed chunked body: {exc}", url=self._url) from None
            parts.extend(bytes(p) for p in pieces)
            got += sum(map(len, pieces))
            if got > self._max:
                return Answer(head, b"".join(parts)[: self._max], True)
            if dechunk.done:
                self._extra = len(dechunk.extra)
                return Answer(head, b"".join(parts), False)
            data = await self._recv()
            if not data:
                raise BodyTruncatedError.cut_short(self._url, got, None, chunked=True)


def _has(head: Head, *names: str) -> bool:
    return any(name in head.fields for name in names)


__all__ = ["Answer", "AnswerReader"]
