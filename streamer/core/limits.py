"""A body size limit enforced before the damage: on the declared length, then byte by byte.

A declared Content-Length (RFC 9110 8.6) lets us refuse before reading any body byte. But the
header may be absent (chunked, RFC 9112 7.1), or wrong, or the body may be decoded from a
much smaller compressed stream, so the running count is checked on every piece too.
"""

from __future__ import annotations

from streamer.core.sizes import format_size
from streamer.errors import BodyTooLarge, UsageError


def _bytes(n: int) -> str:
    return f"{n} bytes ({format_size(n)})" if n >= 1024 else f"{n} bytes"


class BodyLimit:
    """Count body bytes against `max_bytes` (None = no limit). Exactly `max_bytes` is allowed."""

    def __init__(self, max_bytes: int | None, url: str = "") -> None:
        if max_bytes is not None and max_bytes < 0:
            raise UsageError(f"body size limit must not be negative: {max_bytes}")
        self.max_bytes = max_bytes
        self.url = url
        self._count = 0

    @property
    def count(self) -> int:
        """Bytes fed so far (including the piece that tripped the limit, if any)."""
        return self._count

    @property
    def remaining(self) -> int | None:
        """Bytes still allowed (0 once the limit is reached or passed); None when unlimited."""
        if self.max_bytes is None:
            return None
        return max(0, self.max_bytes - self._count)

    def check_declared(self, length: int | None) -> None:
        """Refuse a declared body length (e.g. Content-Length) above the limit, before reading."""
        if self.max_bytes is None or length is None or length <= self.max_bytes:
            return
        raise BodyTooLarge(
            f"declared body size of {_bytes(length)} exceeds the limit of {_bytes(self.max_bytes)}",
            limit=self.max_bytes,
            url=self.url,
        )

    def feed(self, n: int) -> None:
        """Count `n` more bytes; raise `BodyTooLarge` as soon as the total passes the limit."""
        if n < 0:
            raise UsageError(f"cannot feed a negative byte count: {n}")
        self._count += n
        if self.max_bytes is not None and self._count > self.max_bytes:
            raise BodyTooLarge(
                f"body exceeded the limit of {_bytes(self.max_bytes)}",
                limit=self.max_bytes,
                url=self.url,
            )
