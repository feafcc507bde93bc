"""One deadline for one attempt at a file that takes many requests (curl's --max-time).

curl's --max-time bounds each transfer; with --retry the clock starts again for each attempt,
and --retry-max-time bounds the retrying. A plain GET, PUT or POST is one request, bounded by
its own total timeout (`ClientConfig.total_timeout`, applied per request by the engine and the
raw paths). A tus upload (OPTIONS, POST, HEAD, PATCHes), an S3 multipart upload (create, the
parts in flight and their retries, complete) and a segmented download (the probe, the
segments and their re-requests) are one transfer of many requests: a `FileDeadline` is
started once for the attempt and `bounded` holds everything the attempt does to it.

When it passes, whatever is in flight is cancelled, so each path cleans up as it does for
SIGTERM (its resumable state kept), and the attempt ends in `TransferTimeout` (exit 28).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ..errors import TransferTimeout


@dataclass(frozen=True)
class FileDeadline:
    """When the attempt must be over: ``at`` on the event loop's clock (None: no bound)."""

    seconds: float | None = None
    at: float | None = None

    @classmethod
    def start(cls, seconds: float | None) -> FileDeadline:
        """A deadline `seconds` from now (from the running loop's clock); None: none."""
        if seconds is None:
            return cls()
        return cls(seconds, asyncio.get_running_loop().time() + seconds)


@asynccontextmanager
async def bounded(deadline: FileDeadline, url: str, what: str) -> AsyncIterator[None]:
    """Run the block under `deadline`; past it, the block is cancelled and `TransferTimeout`
    names `what` (the upload, the download) and `url` (redacted by the caller)."""
    if deadline.at is None:
        yield
        return
    scope = asyncio.timeout_at(deadline.at)
    try:
        async with scope:
            yield
    except TimeoutError as exc:
        if not scope.expired() or isinstance(exc, TransferTimeout):
            raise  # a request's own timeout, or one from deeper down: not this deadline
        raise TransferTimeout(
            f"timed out: total timeout ({deadline.seconds:g} s) for the whole {what}", url=url
        ) from None


__all__ = ["FileDeadline", "bounded"]
