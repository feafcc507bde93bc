"""What the S3 uploads (signed and presigned) share: one request and its answer, the parts
in parallel, the progress that the server confirmed, and the new object's headers.

Progress counts bytes the server confirmed (a part's 200 with its ETag), never bytes queued
or in flight: a bar that reached 60 % means 60 % of the file is stored and would not be sent
again by a rerun.
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.events import Phase, Progress, ProgressCallback
from ..core.ratelimit import Pacer
from ..core.redact import redact_url
from ..core.s3 import Part, s3_error
from ..errors import ProtocolError, Result, S3Error
from ..http.bodies import Body
from ..lane.keepalive import RawPool
from .rawsend import send_body

if TYPE_CHECKING:
    from .opener import Opener

# An S3 answer (XML) is kept in memory up to this size; a ListParts page of 1,000 parts is
# about 250 KiB.
ANSWER_LIMIT = 4 << 20
# What S3 itself assumes of an object stored without a Content-Type (RFC 2046 section 4.5.1).
FALLBACK_TYPE = "application/octet-stream"

Answer = tuple[int, Mapping[str, str], bytes]


async def exchange(
    client: Opener,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: Body | None,
    *,
    pool: RawPool | None = None,
    throttle: Pacer | None = None,
) -> Answer:
    """Send one request; an answer >= 400 (or a 200 carrying an <Error>) raises `S3Error`.
    With a `pool` (the parts of one upload), a kept connection carries it when one is idle;
    a `throttle` (one for all the parts of an upload) paces its body."""
    async with send_body(
        client,
        method,
        url,
        body=body,
        headers=headers,
        max_bytes=ANSWER_LIMIT,
        pool=pool,
        throttle=throttle,
    ) as st:
        answer = await st.read()
        status, reason, answer_headers = st.status, st.reason, dict(st.headers)
    if status >= 400 or (status == 200 and method == "POST" and s3_error(answer) is not None):
        raise s3_failure(status, reason, answer, url)
    return status, answer_headers, answer


def s3_failure(status: int, reason: str, answer: bytes, url: str) -> S3Error:
    """The error for an S3 answer: the status, S3's error code and message (never a secret:
    the URL is redacted and the request's headers are not quoted)."""
    code, message = s3_error(answer) or ("", "")
    text = f"HTTP {status} {reason}".rstrip()
    if code:
        text += f": {code}"
    if message:
        text += f" ({message[:200]})"
    result = Result.UPLOAD_EXPIRED if code == "NoSuchUpload" else None
    retryable = status in (500, 502, 503, 504) or code in ("SlowDown", "RequestTimeout")
    return S3Error(
        text,
        status=status,
        reason=reason,
        code=code,
        url=redact_url(url),
        result=result,
        retryable=retryable,
    )


def etag_of(headers: Mapping[str, str], url: str) -> str:
    etag = next((v for k, v in headers.items() if k.lower() == "etag"), None)
    if not etag:
        raise ProtocolError("S3 answered without an ETag", url=redact_url(url))
    return etag


def object_headers(
    path: Path, content_type: str | None, headers: Mapping[str, str]
) -> dict[str, str]:
    """The headers that create the object (PutObject, CreateMultipartUpload): the caller's,
    with a Content-Type: `content_type`, else one among `headers`, else the one the file's
    name suggests (`mimetypes`), else application/octet-stream."""
    out = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    given = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    out["Content-Type"] = content_type or given or guess_type(path.name)
    return out


def guess_type(name: str) -> str:
    """The MIME type of a file name's extension; gzip'd or compressed files stay opaque
    (their encoding is not a Content-Encoding the object is served with)."""
    ctype, encoding = mimetypes.guess_type(name, strict=False)
    return ctype if ctype and encoding is None else FALLBACK_TYPE


class Confirmed:
    """Bytes the server has confirmed, reported to `progress` part by part."""

    def __init__(
        self, url: str, total: int, progress: ProgressCallback | None, done: int = 0
    ) -> None:
        self.url, self.total, self.done, self._progress = redact_url(url), total, done, progress
        self._report(Phase.UPLOADING)

    def add(self, length: int) -> None:
        self.done += length
        self._report(Phase.UPLOADING)

    def finish(self) -> None:
        self.done = self.total
        self._report(Phase.DONE)

    def _report(self, phase: Phase) -> None:
        if self._progress is not None:
            self._progress(Progress(self.url, phase, self.done, self.total))


async def run_parallel(
    parts: Sequence[Part], parallel: int, send: Callable[[Part], Awaitable[str]]
) -> dict[int, str]:
    """``send`` each part with at most `parallel` in flight; the first failure cancels the rest."""
    results: dict[int, str] = {}
    queue = iter(parts)

    async def worker() -> None:
        for part in queue:  # one shared iterator: each part is taken by exactly one worker
            results[part.number] = await send(part)

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, min(parallel, len(parts))))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return results
