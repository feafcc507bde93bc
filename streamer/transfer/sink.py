"""Download one URL into a sink (curl's ``-o -``: stdout): no file, so no .part and no resume.

What reaches the sink cannot be taken back, so a retry is allowed only while nothing has been
written; the limits (size, checksum, decoding bounds, rate) hold as for a file.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.checksum import Checksum, Verifier
from ..core.redact import redact_url
from ..core.retry import RetryPolicy
from ..core.status import status_error
from ..errors import StreamerError
from ..results import DownloadResult
from .retrying import with_retries
from .throttle import Throttle

if TYPE_CHECKING:
    from .opener import Opener

Sink = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True)
class SinkRequest:
    """One download whose body goes to `sink` as it arrives."""

    url: str
    max_bytes: int | None = None
    checksum: Checksum | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    throttle: Throttle | None = None


async def run_to_sink(client: Opener, req: SinkRequest, sink: Sink) -> DownloadResult:
    """Stream `req.url` into `sink`; HTTP errors raise before a byte is written."""
    started = time.monotonic()
    written = 0

    async def attempt(n: int) -> DownloadResult:
        nonlocal written
        async with client.stream(req.url, headers=req.headers, max_bytes=req.max_bytes) as st:
            if st.status >= 400:
                raise status_error(st.url, st.status, st.reason, st.headers, now=time.time())
            verifier = Verifier(req.checksum, url=st.url) if req.checksum else None
            async for chunk in st:
                if verifier is not None:
                    verifier.update(chunk)
                await sink(chunk)
                written += len(chunk)
                if req.throttle is not None:  # our pacing, not the peer's slowness
                    await st.pay(req.throttle, len(chunk))
            if verifier is not None:
                verifier.check()  # too late to hold the bytes back, not to fail the exit code
            return DownloadResult(
                url=st.url,
                final_url=redact_url(st.final_url),
                path=Path("-"),
                status=st.status,
                size=written,
                elapsed=time.monotonic() - started,
                length_verified=st.length_verified,
                content_type=st.headers.get("Content-Type"),
                checksum=str(req.checksum) if req.checksum else None,
                redirects=st.redirects,
                resumed_from=0,
                attempts=n,
                notes=(),
            )

    def may_retry(_exc: StreamerError) -> bool:
        return written == 0  # bytes already handed on cannot be sent again

    return await with_retries(attempt, req.retry, may_retry=may_retry)


__all__ = ["Sink", "SinkRequest", "run_to_sink"]
