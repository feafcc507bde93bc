"""Send a body (a file, bytes, a stream or a multipart form) and read the server's answer.

Bodies stream from their source in bounded chunks with an exact Content-Length when it is
known (chunked otherwise). Retries reopen the source, so a retry sends identical bytes. PUT is
idempotent (RFC 9110 9.2.2) and retried under the policy; POST is retried only when the
request never left (the connection could not be made), never once its body may have started.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .bodies import Body
from .core.events import Phase, Progress, ProgressCallback
from .core.redact import redact_url
from .core.retry import RetryPolicy
from .errors import ConnectError, ResolveError, StreamerError
from .results import UploadResult

if TYPE_CHECKING:
    from .client import Client

# What a server says back to an upload is kept in memory up to this size.
RESPONSE_LIMIT = 1 << 20

_IDEMPOTENT = frozenset({"PUT", "DELETE", "OPTIONS", "HEAD", "GET"})


@dataclass(frozen=True)
class UploadRequest:
    url: str
    body: Body
    method: str = "PUT"
    headers: Mapping[str, str] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    cross_origin: bool = False
    response_limit: int = RESPONSE_LIMIT


def _may_retry(method: str, exc: StreamerError) -> bool:
    """Only idempotent methods are resent once the body may have started (RFC 9110 9.2.2)."""
    return method.upper() in _IDEMPOTENT or isinstance(exc, (ConnectError, ResolveError))


async def run_upload(
    client: Client, req: UploadRequest, progress: ProgressCallback | None
) -> UploadResult:
    started = time.monotonic()
    policy = req.retry
    while True:
        try:
            return await _send(client, req, progress, started, policy.attempts)
        except StreamerError as exc:
            delay = None
            if _may_retry(req.method, exc) and req.body.replayable:
                delay = policy.next_delay(
                    exc, elapsed=time.monotonic() - started, rand=random.random(),
                    retry_after=getattr(exc, "retry_after", None),
                )  # fmt: skip
            if delay is None:
                exc.attempts = policy.attempts
                if policy.attempts > 1:
                    exc.message = policy.exhausted_message(exc)
                raise
            policy = policy.increment(exc)
            await asyncio.sleep(delay)


async def _send(
    client: Client,
    req: UploadRequest,
    progress: ProgressCallback | None,
    started: float,
    attempts: int,
) -> UploadResult:
    safe_url = redact_url(req.url)
    on_sent = _sent_reporter(safe_url, req.body.length, progress)
    async with client.send(
        req.method, req.url, body=req.body, headers=req.headers, max_bytes=req.response_limit,
        cross_origin=req.cross_origin, on_sent=on_sent, progress=progress,
    ) as stream:  # fmt: skip
        answer = await stream.read() if stream.status >= 400 else b""
        if stream.status >= 400:
            from .client import error_for_status

            err = error_for_status(stream)
            text = answer[:200].decode("utf-8", "replace").strip()
            if text:
                err.message = f"{err.message}: {text}"
            raise err
        body = await stream.read()
    if progress is not None:
        progress(Progress(safe_url, Phase.DONE, req.body.length or 0, req.body.length))
    return UploadResult(
        url=safe_url, final_url=redact_url(stream.final_url), status=stream.status,
        reason=stream.reason, headers=dict(stream.headers), body=body,
        sent=req.body.length or 0, elapsed=time.monotonic() - started, attempts=attempts,
        redirects=stream.redirects,
    )  # fmt: skip


def _sent_reporter(url: str, total: int | None, progress: ProgressCallback | None) -> object:
    if progress is None:
        return None

    def on_sent(done: int) -> None:
        progress(Progress(url, Phase.UPLOADING, done, total))

    return on_sent
