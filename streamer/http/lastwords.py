"""Read a server's answer that is already there when the connection breaks under a request.

A server that refuses a body (413, 401) often answers and closes without reading it, as
gunicorn does: the close resets the connection while we are still writing (RFC 9112 9.6 asks
servers to linger instead; many do not). The answer sits in our socket's receive buffer, read
before the reset, but asyncio drops the socket on the write error, and aiohttp then fails the
request with "Can not write request body" (exit 56, retryable) in about half the runs,
depending on which of the two events the loop looks at first. curl reads the answer and
reports the status (exit 22) every time; so do we: before the protocol records a failure or
loses its connection, whatever the socket still holds is fed to the parser. The answer, when
complete, then wins over the write error (aiohttp hands out parsed messages before errors).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from aiohttp.client_proto import ResponseHandler

# At most this much is read after the failure: an error answer is small, and a long body
# after the reset would be cut anyway.
_LEFT_MAX_READS = 16
_LEFT_READ_SIZE = 1 << 16


class AnswerKeepingHandler(ResponseHandler):
    """aiohttp's response protocol, reading what is left before failing (see module doc)."""

    def set_exception(self, exc: BaseException, *args: Any) -> None:
        self._read_what_is_left()
        super().set_exception(exc, *args)

    def connection_lost(self, exc: BaseException | None) -> None:
        if exc is not None:
            self._read_what_is_left()
        super().connection_lost(exc)

    def _read_what_is_left(self) -> None:
        transport = self.transport
        # Under TLS the socket holds records only the TLS layer can read: leave them.
        if transport is None or transport.get_extra_info("sslcontext") is not None:
            return
        sock = transport.get_extra_info("socket")
        try:
            # A duplicate of the descriptor: asyncio's socket wrapper forbids reads of its own.
            fd = os.dup(sock.fileno()) if sock is not None else -1
        except OSError:
            return  # already closed
        if fd < 0:
            return
        with socket.socket(fileno=fd) as dup:
            dup.setblocking(False)
            for _ in range(_LEFT_MAX_READS):
                try:
                    data = dup.recv(_LEFT_READ_SIZE)
                except OSError:  # nothing more (EAGAIN) or the reset itself
                    return
                if not data:
                    return
                self.data_received(data)


__all__ = ["AnswerKeepingHandler"]
