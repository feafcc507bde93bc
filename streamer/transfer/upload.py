"""Send a body (a file, bytes, a stream or a multipart form) and read the server's answer.

Bodies stream from their source in bounded chunks with an exact Content-Length when it is
known (chunked otherwise). Retries reopen the source, so a retry sends identical bytes. PUT is
idempotent (RFC 9110 9.2.2) and retried under the policy; POST is retried only when the
request never left (the connection could not be made), never once its body may have started.
The client's ``limit_rate`` holds the body to a byte rate (curl's --limit-rate), retries and
307/308 resends included: one throttle for the whole upload.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..core.events import Phase, Progress, ProgressCallback
from ..core.redact import redact_url
from ..core.retry import RetryPolicy
from ..core.status import status_error
from ..errors import ConnectError, ResolveError, StreamerError
from ..http.bodies import Body
from ..results import UploadResult
from .rawsend import send_body
from .retrying import with_retries
from .throttle import RateThrottle, rate_throttle

if TYPE_CHECKING:
    from .opener import Opener

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


# Bodies at least this large (or of unknown length) ask "Expect: 100-continue" first, so a
# server that refuses them (413, 401) can say so before the bytes are sent (as curl does).
EXPECT_THRESHOLD = 1 << 20


def expect_headers(
    headers: Mapping[str, str],
    body: Body,
    expect_continue: bool | None,
    omit: Collection[str] = (),
) -> dict[str, str]:
    """The request headers, with ``Expect: 100-continue`` when asked or when the body is big.

    An Expect header with an empty value (curl's ``-H 'Expect:'``) means no expectation: it
    is dropped, not sent empty, and the body goes at once; so does a client whose `omit`
    (`ClientConfig.omit_headers`) names Expect, unless the call asks for it."""
    out = dict(headers)
    wanted = False if expect_continue is None and "expect" in omit else expect_continue
    for name in [k for k in out if k.lower() == "expect" and not out[k].strip()]:
        del out[name]
        wanted = False
    if wanted is None:
        wanted = body.length is None or body.length >= EXPECT_THRESHOLD
    if wanted and not any(k.lower() == "expect" for k in out):
        out["Expect"] = "100-continue"
    return out


def _may_retry(method: str, exc: StreamerError) -> bool:
    """Only idempotent methods are resent once the body may have started (RFC 9110 9.2.2)."""
    return method.upper() in _IDEMPOTENT or isinstance(exc, (ConnectError, ResolveError))


async def run_upload(
    client: Opener, req: UploadRequest, progress: ProgressCallback | None
) -> UploadResult:
    started = time.monotonic()
    throttle = rate_throttle(client.config.limit_rate)

    async def attempt(n: int) -> UploadResult:
        try:
            return await _send(client, req, progress, started, n, throttle=throttle)
        except _ExpectationFailed:
            # RFC 9110 10.1.1: a 417 means the server (or a proxy) will not do 100-continue;
            # the same request without the expectation is the way on.
            headers = {k: v for k, v in req.headers.items() if k.lower() != "expect"}
            again = replace(req, headers=headers)
            return await _send(client, again, progress, started, n, throttle=throttle)

    def may_retry(exc: StreamerError) -> bool:
        return _may_retry(req.method, exc) and req.body.replayable

    return await with_retries(attempt, req.retry, may_retry=may_retry)


class _ExpectationFailed(Exception):
    """The server answered 417 to ``Expect: 100-continue``."""


async def _send(
    client: Opener,
    req: UploadRequest,
    progress: ProgressCallback | None,
    started: float,
    attempts: int,
    *,
    throttle: RateThrottle | None,
) -> UploadResult:
    safe_url = redact_url(req.url)
    on_sent = _sent_reporter(safe_url, req.body.length, progress)
    async with send_body(
        client,
        req.method,
        req.url,
        body=req.body,
        headers=req.headers,
        max_bytes=req.response_limit,
        cross_origin=req.cross_origin,
        on_sent=on_sent,
        progress=progress,
        throttle=throttle,
    ) as stream:
        if stream.status == 417 and any(k.lower() == "expect" for k in req.headers):
            raise _ExpectationFailed
        if stream.status >= 400:
            answer = await stream.read()
            raise status_error(
                safe_url, stream.status, stream.reason, stream.headers, answer, now=time.time()
            )
        body = await stream.read()
    if progress is not None:
        progress(Progress(safe_url, Phase.DONE, req.body.length or 0, req.body.length))
    return UploadResult(
        url=safe_url,
        final_url=redact_url(stream.final_url),
        status=stream.status,
        reason=stream.reason,
        headers=dict(stream.headers),
        body=body,
        sent=req.body.length or 0,
        elapsed=time.monotonic() - started,
        attempts=attempts,
        redirects=stream.redirects,
    )


def _sent_reporter(url: str, total: int | None, progress: ProgressCallback | None) -> object:
    if progress is None:
        return None

    def on_sent(done: int) -> None:
        progress(Progress(url, Phase.UPLOADING, done, total))

    return on_sent
