"""The aiohttp adapter: session construction and the one place foreign exceptions are translated.

Nothing above this module sees an aiohttp, ssl or socket exception: `translate` turns each into a
`StreamerError` with the (redacted) URL and a precise `Result`.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ssl
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp

from ..core.events import Phase
from ..core.redact import redact_text, redact_url, url_secrets
from ..errors import (
    BodyTruncatedError,
    CertificateError,
    ConnectError,
    ConnectionLostError,
    ProtocolError,
    ResolveError,
    Result,
    StreamerError,
    TLSError,
    TransferTimeout,
    UsageError,
)
from .lastwords import AnswerKeepingHandler

PhaseCallback = Callable[[Phase], None]


def _phase_tracer() -> aiohttp.TraceConfig:
    """Report Godot-like phases (resolving, connecting, requesting) from aiohttp's trace hooks.

    The per-request callback travels in ``trace_request_ctx``; requests without one cost a
    lookup and nothing more.
    """
    trace = aiohttp.TraceConfig()

    def hook(phase: Phase) -> Any:
        async def on_event(_s: Any, ctx: SimpleNamespace, _params: Any) -> None:
            callback = getattr(ctx.trace_request_ctx, "on_phase", None)
            if callback is not None:
                callback(phase)

        return on_event

    trace.on_dns_resolvehost_start.append(hook(Phase.RESOLVING))
    trace.on_connection_create_start.append(hook(Phase.CONNECTING))
    trace.on_request_headers_sent.append(hook(Phase.REQUESTING))
    return trace


class _ContinueRequest(aiohttp.ClientRequest):
    """A request that waits for "100 Continue" only briefly (RFC 9110 10.1.1).

    aiohttp waits for the interim response without a limit; a server that ignores Expect
    would then stall the upload until the read timeout. After ``expect_timeout`` seconds the
    body is sent anyway (curl's --expect100-timeout), unless a final answer has arrived by
    then: the server answered early (413, 401...) and must not get the body.
    """

    expect_timeout = 1.0

    def update_expect_continue(self, expect: bool = False) -> None:
        super().update_expect_continue(expect)
        # aiohttp's own future for the 100 is a private attribute, and aiohttp offers no public
        # way to bound the wait (checked against aiohttp 3.14.3-3.14.5; pyproject caps aiohttp
        # below 3.15, and tests/test_expect_continue.py pins the behaviour).
        waiter = self._continue
        if waiter is not None:
            self.loop.call_later(self.expect_timeout, self._send_anyway, waiter)

    def _send_anyway(self, waiter: asyncio.Future[bool]) -> None:
        response = getattr(self, "response", None)
        if waiter.done() or getattr(response, "status", None) is not None:
            return
        waiter.set_result(True)


def make_session(
    *,
    connect_timeout: float | None,
    read_timeout: float | None,
    read_bufsize: int,
    headers: dict[str, str],
    trust_env: bool = False,
    limit: int = 100,
    limit_per_host: int = 0,
    expect_timeout: float = 1.0,
    phases: bool = True,
    omit: Iterable[str] = (),
) -> aiohttp.ClientSession:
    """One aiohttp session; decoding is ours (core.decode), so aiohttp's is switched off.

    Keep ``trust_env`` False and pass what `EnvRoutes` finds with each request instead (aiohttp
    would look the environment up again, in a thread, for every request). The TLS context
    comes with each request that needs one (`Engine._request`), not with the connector.
    `omit`: fields aiohttp would add by itself (Accept, User-Agent, Content-Type...) that
    the client must not send (curl's -H 'Name:', `ClientConfig.omit_headers`).
    """
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit_per_host)
    # The connector's protocol factory is private; ours reads an early answer (lastwords.py).
    factory: Any = functools.partial(AnswerKeepingHandler, loop=asyncio.get_running_loop())
    connector._factory = factory
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=connect_timeout, connect=None, sock_read=read_timeout
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        read_bufsize=read_bufsize,
        headers=headers,
        skip_auto_headers=omit,
        trust_env=trust_env,
        trace_configs=[_phase_tracer()] if phases else None,
        # Cookies are not kept between requests: a download engine is not a browser, and a cookie
        # jar would carry state from one origin's redirect to the next request.
        cookie_jar=aiohttp.DummyCookieJar(),
        request_class=type(
            "ContinueRequest", (_ContinueRequest,), {"expect_timeout": expect_timeout}
        ),
    )


def _scrub(exc: BaseException, url: str) -> str:
    text = str(exc) or type(exc).__name__
    return redact_text(text.replace(url, redact_url(url)), url_secrets(url))


@dataclass(frozen=True)
class Timeouts:
    """The timeouts in force, in seconds, so that a timeout message can say which and how long."""

    connect: float | None = None
    read: float | None = None  # between two reads
    total: float | None = None  # for the whole exchange


NO_TIMEOUTS = Timeouts()


@dataclass(frozen=True)
class Context:
    """What `translate` needs to word an error with the numbers."""

    url: str
    received: int = 0  # body bytes read so far
    expected: int | None = None  # the declared Content-Length
    chunked: bool = False
    timeouts: Timeouts = NO_TIMEOUTS


def _certificate_problem(exc: aiohttp.ClientConnectorCertificateError) -> str:
    """Which check failed, from OpenSSL's verify result (e.g. "certificate has expired",
    "self-signed certificate", "Hostname mismatch ...")."""
    cause = exc.certificate_error
    reason = getattr(cause, "verify_message", None) or getattr(cause, "reason", None)
    code = getattr(cause, "verify_code", None)
    text = str(reason or "the certificate was not accepted").rstrip(".")
    return f"{text} (OpenSSL verify code {code})" if code else text


def _translate_connector(exc: aiohttp.ClientConnectorError, url: str) -> StreamerError:
    safe = redact_url(url)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        problem = redact_text(_certificate_problem(exc), url_secrets(url))
        return CertificateError(
            f"certificate check failed for {exc.host}:{exc.port}: {problem}", url=safe
        )
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ResolveError(f"cannot resolve host {exc.host!r}", url=safe)
    where = f"{exc.host}:{exc.port}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return TLSError(f"TLS handshake with {where} failed: {_os_reason(exc)}", url=safe)
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return ConnectError(f"cannot connect to proxy {where}: {_os_reason(exc)}", url=safe)
    return ConnectError(f"cannot connect to {where}: {_os_reason(exc)}", url=safe)


def _os_reason(exc: aiohttp.ClientConnectorError) -> str:
    """The cause in a few words: OpenSSL's reason ("WRONG_VERSION_NUMBER"), or the system's
    ("connection refused"), never aiohttp's "Cannot connect to host ... ssl:default [...]"."""
    cause = exc.os_error
    if cause.errno == errno.ECONNREFUSED:
        return "connection refused"
    reason = getattr(cause, "reason", None)  # ssl.SSLError: the OpenSSL reason code
    if isinstance(reason, str) and reason:
        return reason.replace("_", " ").lower()
    if cause.strerror:
        return cause.strerror.lower() if cause.errno else cause.strerror
    return type(cause).__name__


def _translate_payload(ctx: Context) -> StreamerError:
    # aiohttp's own decoding is off (we decode in core.decode), so a payload error is always
    # about framing: Content-Length not reached or a chunked body without its last chunk.
    # Its text (`<ContentLengthError: 400, ...>`, a synthetic status) is not shown.
    return BodyTruncatedError.cut_short(
        redact_url(ctx.url), ctx.received, ctx.expected, chunked=ctx.chunked
    )


def _seconds(value: float | None) -> str:
    return "" if value is None else f" ({value:g} s)"


def _translate_timeout(exc: BaseException, ctx: Context) -> StreamerError:
    """Say which timeout ran out and its value (aiohttp's text is empty or a bare class name)."""
    limits, safe = ctx.timeouts, redact_url(ctx.url)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        message = f"timed out: connect timeout{_seconds(limits.connect)}"
    elif isinstance(exc, aiohttp.ServerTimeoutError):
        message = f"timed out: read timeout{_seconds(limits.read)}, no data from the server"
    else:  # asyncio's timeout: aiohttp's total, the only one it enforces that way
        message = f"timed out: total timeout{_seconds(limits.total)} for the transfer"
    if ctx.received:
        message += f" after {ctx.received} bytes"
    return TransferTimeout(message, url=safe)


def translate(exc: BaseException, url: str, *, received: int = 0) -> StreamerError:
    """Map a foreign exception raised while talking to `url` onto the streamer tree."""
    return translate_in(exc, Context(url, received))


def translate_in(exc: BaseException, ctx: Context) -> StreamerError:
    """Map a foreign exception onto the streamer tree, worded with what `ctx` knows."""
    url, received = ctx.url, ctx.received
    safe = redact_url(url)
    if isinstance(exc, StreamerError):
        return exc
    # aiohttp wraps what a request body raised (a source that changed or could not be read)
    # in ClientConnectionError / ClientOSError; that cause, not the wrapper, is the failure.
    if isinstance(exc, aiohttp.ClientError) and isinstance(exc.__cause__, StreamerError):
        return exc.__cause__
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _translate_connector(exc, url)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return _translate_payload(ctx)
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return ConnectError(f"proxy refused the tunnel: {exc.status} {exc.message}", url=safe)
    if isinstance(exc, aiohttp.ClientResponseError):
        # We never call raise_for_status, so this is aiohttp failing to parse the reply (it
        # reports that as a synthetic 400); a real status comes back as a response instead.
        return ProtocolError(f"malformed HTTP response: {exc.message}", url=safe)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        # aiohttp puts the partly parsed head in .message when some of the reply had come:
        # then the server did answer, and broke off (curl's 56, not 52).
        answered = received > 0 or not isinstance(exc.message, str)
        result = Result.CONNECTION_ERROR if answered else Result.NO_RESPONSE
        return ConnectionLostError("server closed the connection", url=safe, result=result)
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return _translate_timeout(exc, ctx)
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return UsageError(f"invalid or unsupported URL: {_scrub(exc, url)}", url=safe)
    if isinstance(exc, ssl.SSLError):
        return TLSError(f"TLS error: {_scrub(exc, url)}", url=safe)
    if isinstance(exc, (aiohttp.ClientError, ConnectionError, OSError)):
        return ConnectionLostError(f"connection error: {_scrub(exc, url)}", url=safe)
    return StreamerError(f"unexpected error: {type(exc).__name__}: {_scrub(exc, url)}", url=safe)


@contextmanager
def mapped_errors(
    url: str,
    received: Callable[[], int] = lambda: 0,
    *,
    expected: int | None = None,
    chunked: bool = False,
    timeouts: Timeouts = NO_TIMEOUTS,
) -> Iterator[None]:
    """Translate foreign exceptions raised inside the block (CancelledError passes through)."""
    try:
        yield
    except (StreamerError, asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:
        ctx = Context(url, received(), expected, chunked, timeouts)
        raise translate_in(exc, ctx) from exc
