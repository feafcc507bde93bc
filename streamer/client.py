"""`Client`: one aiohttp session, redirects under our own rules, and the three ways to read a body.

- `stream()` opens a response and hands out its body chunk by chunk (Godot's HTTPClient).
- `fetch()` reads a bounded body into memory.
- `download()` streams a body into a file that appears only when complete (Godot's HTTPRequest
  with ``download_file``); see `downloading.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .bodies import Body, FilePart, MultipartBody, Source, make_body
from .bulk import BulkOptions, JobResult
from .config import ClientConfig
from .core.checksum import Checksum
from .core.decode import ACCEPT_ENCODING
from .core.events import Phase, ProgressCallback
from .core.manifest import Job
from .core.redact import redact_url
from .core.redirects import REDIRECT_STATUSES, RedirectPolicy, plan_redirect
from .core.retry import RetryPolicy
from .downloading import DownloadRequest, run_download
from .errors import StreamerError, UsageError
from .net import EnvRoutes, make_session, mapped_errors
from .outgoing import (
    body_for_hop,
    body_headers,
    close_bodies,
    counted,
    error_for_status,
    phase_reporter,
    split_userinfo,
)
from .results import DownloadResult, FetchResult, UploadResult
from .stream import Stream, StreamOptions
from .uploading import UploadRequest, expect_headers, run_upload

DEFAULT_FETCH_LIMIT = 64 << 20


class Client:
    """An HTTP client for streaming transfers; use as ``async with Client(**options) as c:``.

    Options are the fields of `ClientConfig` (headers, timeouts, max_redirects, proxy, TLS,
    chunk_size, ...). One aiohttp session, with its connection pool, lives as long as the client.
    """

    def __init__(self, config: ClientConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise UsageError("pass either a ClientConfig or keyword options, not both")
        self.config = config if config is not None else ClientConfig.from_options(options)
        self._session: aiohttp.ClientSession | None = None
        # Proxy and ~/.netrc from the environment, looked up once per origin (see EnvRoutes).
        self._routes = EnvRoutes() if self.config.trust_env else None

    async def __aenter__(self) -> Client:
        cfg = self.config
        self._session = make_session(
            tls=cfg.tls,
            connect_timeout=cfg.connect_timeout,
            read_timeout=cfg.read_timeout,
            read_bufsize=cfg.chunk_size,
            headers={},
            trust_env=False,  # the environment is consulted by self._routes instead
            limit=cfg.max_connections,
            limit_per_host=cfg.max_per_host,
            expect_timeout=cfg.expect_timeout,
            phases=cfg.report_phases,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _headers(self, extra: Mapping[str, str] | None, accept_gzip: bool) -> dict[str, str]:
        merged = {"User-Agent": self.config.user_agent}
        merged["Accept-Encoding"] = ACCEPT_ENCODING if accept_gzip else "identity"
        merged.update(self.config.headers)
        merged.update(extra or {})
        return merged

    def _stream_options(self, max_bytes: int | None, decode: bool) -> StreamOptions:
        cfg = self.config
        deadline = None
        if cfg.total_timeout is not None:
            deadline = asyncio.get_running_loop().time() + cfg.total_timeout
        return StreamOptions(
            chunk_size=cfg.chunk_size,
            max_bytes=max_bytes,
            decode=decode,
            speed_limit=cfg.speed_limit,
            speed_time=cfg.speed_time,
            deadline=deadline,
        )

    @asynccontextmanager
    async def stream(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        accept_gzip: bool | None = None,
        raise_for_status: bool = False,
        progress: ProgressCallback | None = None,
    ) -> AsyncIterator[Stream]:
        """Open `url` and yield a `Stream` (status, headers, declared length, chunk iterator)."""
        decode = self.config.accept_gzip if accept_gzip is None else accept_gzip
        opts = self._stream_options(max_bytes, decode)
        stream = await self._open(
            method,
            url,
            headers=self._headers(headers, decode),
            opts=opts,
            progress=progress,
            raise_for_status=raise_for_status,
        )
        try:
            yield stream
        finally:
            stream.close()

    @asynccontextmanager
    async def send(
        self,
        method: str,
        url: str,
        *,
        body: Body | None,
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        cross_origin: bool = False,
        on_sent: Any = None,
        progress: ProgressCallback | None = None,
    ) -> AsyncIterator[Stream]:
        """Send `body` with `method` and yield the answer as a `Stream` (uploads build on it).

        Redirects to another origin are not followed unless ``cross_origin``: a body meant for
        one server is not handed to another by a Location header.
        """
        opts = self._stream_options(max_bytes, decode=True)
        sending: list[AsyncGenerator[bytes, None]] = []
        try:
            stream = await self._open(
                method, url, headers=self._headers(headers, True), opts=opts, progress=progress,
                raise_for_status=False, body=body, cross_origin=cross_origin, on_sent=on_sent,
                sending=sending,
            )  # fmt: skip
            try:
                yield stream
            finally:
                stream.close()
        finally:
            await close_bodies(sending)

    async def _open(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        opts: StreamOptions,
        progress: ProgressCallback | None,
        raise_for_status: bool,
        body: Body | None = None,
        cross_origin: bool = True,
        on_sent: Any = None,
        sending: list[AsyncGenerator[bytes, None]] | None = None,
    ) -> Stream:
        """Send the request, following redirects under `plan_redirect`'s rules (RFC 9110 15.4).

        The chunk generator of every body sent is added to ``sending``, for the caller to close.
        """
        safe_url = redact_url(url)
        request_url, auth = split_userinfo(url)
        headers = {**auth, **headers}
        policy = RedirectPolicy(
            max_redirects=self.config.max_redirects,
            allow_downgrade=self.config.allow_downgrade,
            allow_cross_origin=cross_origin,
        )
        ctx = SimpleNamespace(
            on_phase=phase_reporter(safe_url, progress),
            on_sent=on_sent,
            sending=[] if sending is None else sending,
        )
        hops = 0
        while True:
            resp = await self._request(
                method, request_url, headers=headers, ctx=ctx, opts=opts, body=body
            )
            if resp.status not in REDIRECT_STATUSES:
                break
            location = resp.headers.get("Location")
            resp.release()
            try:
                hop = plan_redirect(
                    url=request_url, status=resp.status, location=location, method=method,
                    headers=headers, hops=hops, policy=policy,
                )  # fmt: skip
            except StreamerError as exc:
                exc.url = safe_url  # name the URL that was asked for, not the last hop
                raise
            body = body_for_hop(body, hop.drop_body, safe_url)
            ctx.on_phase(Phase.REDIRECTING)
            request_url, hop_auth = split_userinfo(hop.url)
            headers = hop.headers
            if hop_auth:  # credentials in the Location replace the ones we had
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                headers.update(hop_auth)
            hops, method = hops + 1, hop.method
        stream = Stream(resp, url=safe_url, redirects=hops, options=opts, progress=progress)
        if raise_for_status and stream.status >= 400:
            stream.close()
            raise error_for_status(stream)
        return stream

    async def _request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        ctx: SimpleNamespace,
        opts: StreamOptions,
        body: Body | None = None,
    ) -> aiohttp.ClientResponse:
        if self._session is None:
            raise UsageError("the client is not open: use `async with Client() as client`")
        timeout = self._session.timeout
        if opts.deadline is not None:
            remaining = opts.deadline - asyncio.get_running_loop().time()
            timeout = aiohttp.ClientTimeout(
                total=max(remaining, 0.001),
                sock_connect=self.config.connect_timeout,
                sock_read=self.config.read_timeout,
            )
        data = None
        if body is not None:
            headers = body_headers(headers, body)
            data = counted(body, ctx)
            ctx.sending.append(data)
        with mapped_errors(url, lambda: 0):
            proxy, proxy_headers, headers = self._route(url, headers)
            return await self._session.request(
                method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                proxy=proxy,
                proxy_headers=proxy_headers,
                trace_request_ctx=ctx,
                timeout=timeout,
            )

    def _route(
        self, url: str, headers: dict[str, str]
    ) -> tuple[str | URL | None, dict[str, str] | None, dict[str, str]]:
        """The proxy, the headers for the proxy's CONNECT, and the request's headers, given
        what the environment says (http_proxy/no_proxy, ~/.netrc) when ``trust_env``."""
        if self._routes is None:
            return self.config.proxy, None, headers
        route = self._routes.lookup(url)
        if route.authorization and not any(k.lower() == "authorization" for k in headers):
            # netrc credentials only for a request without its own (aiohttp would refuse both)
            headers = {**headers, "Authorization": route.authorization}
        if self.config.proxy is not None or route.proxy is None:  # an explicit proxy wins
            return self.config.proxy, None, headers
        if route.proxy_authorization is None:
            return route.proxy, None, headers
        # What aiohttp does with proxy_auth: on the request itself for http (it goes to the
        # proxy whole), on the CONNECT for https.
        if url[:6].lower() == "https:":
            return route.proxy, {"Proxy-Authorization": route.proxy_authorization}, headers
        return route.proxy, None, {**headers, "Proxy-Authorization": route.proxy_authorization}

    async def fetch(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = DEFAULT_FETCH_LIMIT,
        accept_gzip: bool | None = None,
        raise_for_status: bool = True,
        progress: ProgressCallback | None = None,
    ) -> FetchResult:
        """Read the body into memory, refusing one larger than `max_bytes` before reading it."""
        started = time.monotonic()
        async with self.stream(
            url,
            method=method,
            headers=headers,
            max_bytes=max_bytes,
            accept_gzip=True if accept_gzip is None else accept_gzip,
            raise_for_status=raise_for_status,
            progress=progress,
        ) as stream:
            body = await stream.read()
            return FetchResult(
                url=stream.url,
                final_url=redact_url(stream.final_url),
                status=stream.status,
                reason=stream.reason,
                headers=CIMultiDictProxy(CIMultiDict(stream.headers)),
                body=body,
                elapsed=time.monotonic() - started,
                length_verified=stream.length_verified,
                redirects=stream.redirects,
            )

    async def download(
        self,
        url: str,
        path: str | Path,
        *,
        max_bytes: int | None = None,
        checksum: str | Checksum | None = None,
        headers: Mapping[str, str] | None = None,
        accept_gzip: bool | None = None,
        no_clobber: bool = False,
        resume: bool = True,
        retry: RetryPolicy | int | None = None,
        remote_name: bool = False,
        clobber: bool = False,
        split: int = 1,
        wait_lock: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> DownloadResult:
        """Stream `url` into `path` through a partial file; the target appears only when whole.

        A valid partial download of the same URL is resumed (``resume=False`` starts over);
        ``retry`` is a `RetryPolicy` or a number of retries. With ``remote_name`` the file is
        named from Content-Disposition inside ``path``'s directory, never replacing an existing
        file unless ``clobber``. With ``split`` > 1 the file is fetched over that many
        connections in byte ranges (when the server supports ranges), each resumable.
        Another process downloading to the same target makes this fail at once with
        `TargetBusyError`, or, with ``wait_lock`` seconds, wait for it that long first.
        """
        if retry is None or isinstance(retry, int):
            retry = RetryPolicy(retries=retry or 0)
        request = DownloadRequest(
            url, Path(path), max_bytes=max_bytes, checksum=checksum, headers=headers or {},
            accept_gzip=accept_gzip, no_clobber=no_clobber, resume=resume, retry=retry,
            remote_name=remote_name, clobber=clobber, split=split, wait_lock=wait_lock,
        )  # fmt: skip
        if split > 1:
            from .segmented import run_segmented

            return await run_segmented(self, request, split)
        return await run_download(self, request, progress)

    def download_many(
        self,
        jobs: Iterable[Job | str] | AsyncIterable[Job | str],
        out_dir: str | Path,
        options: BulkOptions | None = None,
        *,
        journal: str | Path | None = None,
    ) -> AsyncIterator[JobResult]:
        """Download many jobs (Job values or plain URLs) into `out_dir`; yields one `JobResult`
        per job as each finishes. Failures are results, never exceptions that stop the rest.

        With ``journal`` (a path), completed files are recorded there and skipped next time.
        """
        from .bulk import as_jobs, download_many
        from .journal import Journal

        log = None
        if journal is not None:
            log = Journal(Path(journal))
            log.load()
            log.open()
        return download_many(self, as_jobs(jobs), Path(out_dir), options or BulkOptions(), log)

    async def upload(
        self,
        url: str,
        source: Source,
        *,
        method: str = "PUT",
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
        size: int | None = None,
        retry: RetryPolicy | int | None = None,
        cross_origin: bool = False,
        expect_continue: bool | None = None,
        progress: ProgressCallback | None = None,
    ) -> UploadResult:
        """Send `source` (a path, an open binary file, bytes, or a function returning an async
        iterable of bytes) as the request body, streaming it with flat memory.

        ``expect_continue`` (default: for bodies of 1 MiB or more, or of unknown length) asks
        the server with ``Expect: 100-continue`` before sending the body.
        """
        body = make_body(source, size=size, content_type=content_type)
        return await self._upload(
            url, body, method=method, headers=expect_headers(headers or {}, body, expect_continue),
            retry=retry, cross_origin=cross_origin, progress=progress,
        )  # fmt: skip

    async def upload_form(
        self,
        url: str,
        *,
        fields: Sequence[tuple[str, str]] | Mapping[str, str] = (),
        files: Sequence[FilePart] = (),
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | int | None = None,
        cross_origin: bool = False,
        expect_continue: bool | None = None,
        progress: ProgressCallback | None = None,
    ) -> UploadResult:
        """Send a multipart/form-data body (RFC 7578) whose files stream from their sources."""
        pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
        body = MultipartBody(pairs, list(files))
        return await self._upload(
            url, body, method=method, headers=expect_headers(headers or {}, body, expect_continue),
            retry=retry, cross_origin=cross_origin, progress=progress,
        )  # fmt: skip

    async def _upload(
        self,
        url: str,
        body: Body,
        *,
        method: str,
        headers: Mapping[str, str] | None,
        retry: RetryPolicy | int | None,
        cross_origin: bool,
        progress: ProgressCallback | None,
    ) -> UploadResult:
        if retry is None or isinstance(retry, int):
            retry = RetryPolicy(retries=retry or 0)
        request = UploadRequest(
            url, body, method=method.upper(), headers=dict(headers or {}), retry=retry,
            cross_origin=cross_origin,
        )  # fmt: skip
        return await run_upload(self, request, progress)


__all__ = ["Client", "StreamerError"]
