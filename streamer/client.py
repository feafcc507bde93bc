"""`Client`: one aiohttp session, redirects under our own rules, and the three ways to read a body.

- `stream()` opens a response and hands out its body chunk by chunk (Godot's HTTPClient).
- `fetch()` reads a bounded body into memory.
- `download()` streams a body into a file that appears only when complete (Godot's HTTPRequest
  with ``download_file``); see `downloading.py`.
"""

from __future__ import annotations

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
from typing import TYPE_CHECKING, Any

from .config import ClientConfig, TLSOptions
from .core.decode import ACCEPT_ENCODING
from .core.headers import refuse_omitting, without
from .core.redact import redact_url
from .core.retry import RetryPolicy
from .environment import plain_environment
from .errors import StreamerError, UsageError
from .s3client import S3Uploads
from .tusclient import TusUploads

if TYPE_CHECKING:
    import ssl

    from .core.checksum import Checksum
    from .core.events import ProgressCallback
    from .core.manifest import Job
    from .core.ratelimit import Pacer
    from .http.bodies import Body, FilePart, Source, TextPart
    from .http.engine import Engine
    from .http.stream import Stream
    from .results import DownloadResult, FetchResult, UploadResult
    from .transfer.bulk import BulkOptions
    from .transfer.handover import BulkRun

DEFAULT_FETCH_LIMIT = 64 << 20


class Client(TusUploads, S3Uploads):
    """An HTTP client for streaming transfers; use as ``async with Client(**options) as c:``.

    Options are the fields of `ClientConfig` (headers, timeouts, max_redirects, proxy, TLS,
    chunk_size, limit_rate for each download and upload, ...). One aiohttp session, with its
    connection pool, lives as long as the client.
    """

    def __init__(self, config: ClientConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise UsageError("pass either a ClientConfig or keyword options, not both")
        self.config = config if config is not None else ClientConfig.from_options(options)
        self._open = False
        self._engine_: Engine | None = None
        self._plain_env: bool | None = None
        self._context: ssl.SSLContext | None = None

    async def __aenter__(self) -> Client:
        if self.config.tls != TLSOptions():  # a bad CA or certificate file fails here, at once
            self.tls_context()
        self._open = True
        return self

    def tls_context(self) -> ssl.SSLContext:
        """The one TLS context of this client, for the engine and the lane alike (the system's
        CAs unless configured otherwise; the default one is shared by the whole process)."""
        if self._context is None:
            from .http.tls import make_ssl_context  # https only: plain http never builds one

            self._context = make_ssl_context(self.config.tls)
        return self._context

    def _engine(self) -> Engine:
        """The aiohttp session and routes, made on first use (see engine.py for why)."""
        if not self._open:
            raise UsageError("the client is not open: use `async with Client() as client`")
        if self._engine_ is None:
            from .http.engine import Engine

            self._engine_ = Engine(self.config, self.tls_context)
        return self._engine_

    def plain_route(self, url: str) -> bool:
        """Whether requests to `url`'s origin go direct and without netrc credentials."""
        if not self._open:
            raise UsageError("the client is not open: use `async with Client() as client`")
        if self.config.proxy is not None or not self.config.trust_env:
            return self.config.proxy is None
        if self._plain_env is None:
            self._plain_env = plain_environment()
        return self._plain_env or self._engine().plain_route(url)

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._open = False
        if self._engine_ is not None:
            engine, self._engine_ = self._engine_, None
            await engine.aclose()

    def _headers(self, extra: Mapping[str, str] | None, accept_gzip: bool) -> dict[str, str]:
        """The client's own fields (less `omit_headers`), its config's, then the call's."""
        coding = ACCEPT_ENCODING if accept_gzip else "identity"
        own = [("User-Agent", self.config.user_agent), ("Accept-Encoding", coding)]
        merged = dict(without(own, self.config.omit_headers))
        merged.update(self.config.headers)
        merged.update(extra or {})
        return merged

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
        engine = self._engine()
        opts = engine.stream_options(max_bytes, decode)
        stream = await engine.open(
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
        throttle: Pacer | None = None,
    ) -> AsyncIterator[Stream]:
        """Send `body` with `method` and yield the answer as a `Stream` (uploads build on it).

        Redirects to another origin are not followed unless ``cross_origin``: a body meant for
        one server is not handed to another by a Location header. A `throttle` (one upload's
        rate limit, `transfer.throttle`) paces the body.
        """
        from .http.outgoing import close_bodies

        engine = self._engine()
        opts = engine.stream_options(max_bytes, decode=True)
        sending: list[AsyncGenerator[bytes, None]] = []
        try:
            stream = await engine.open(
                method,
                url,
                headers=self._headers(headers, True),
                opts=opts,
                progress=progress,
                raise_for_status=False,
                body=body,
                cross_origin=cross_origin,
                on_sent=on_sent,
                sending=sending,
                throttle=throttle,
            )
            try:
                yield stream
            finally:
                stream.close()
        finally:
            await close_bodies(sending)

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
        from multidict import CIMultiDict, CIMultiDictProxy

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
            from .results import FetchResult  # results load with the first that needs one

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
        resume_key: str | None = None,
    ) -> DownloadResult:
        """Stream `url` into `path` through a partial file; the target appears only when whole.

        A valid partial download of the same URL is resumed (``resume=False`` starts over);
        ``retry`` is a `RetryPolicy` or a number of retries. With ``remote_name`` the file is
        named from Content-Disposition inside ``path``'s directory, never replacing an existing
        file unless ``clobber``. With ``split`` > 1 it comes in byte ranges over that many
        connections (when the server supports ranges), each resumable. Another process
        downloading to the same target makes this fail at once (`TargetBusyError`), or wait
        for it ``wait_lock`` seconds first. ``resume_key`` names what a partial download is of
        when `url` changes between runs (presigned anew); the server's validator still rules.
        """
        from .transfer.download import DownloadRequest, run_download  # loads with the first
        from .transfer.special import is_special, run_into_special  # download (not for put)

        if retry is None or isinstance(retry, int):
            retry = RetryPolicy(retries=retry or 0)
        request = DownloadRequest(
            url,
            Path(path),
            max_bytes=max_bytes,
            checksum=checksum,
            headers=headers or {},
            accept_gzip=accept_gzip,
            no_clobber=no_clobber,
            resume=resume,
            retry=retry,
            remote_name=remote_name,
            clobber=clobber,
            split=split,
            wait_lock=wait_lock,
            resume_key=resume_key,
        )
        if is_special(request.path):  # -o /dev/null, a FIFO: written straight in, as curl does
            return await run_into_special(self, request, progress)
        if split > 1:
            from .transfer.segmented import run_segmented

            if self.config.accept_gzip if accept_gzip is None else accept_gzip:
                raise UsageError(
                    "split > 1 cannot decode: byte ranges of an encoded body cannot be joined",
                    url=redact_url(url),
                )
            return await run_segmented(self, request, split, progress)
        return await run_download(self, request, progress)

    def download_many(
        self,
        jobs: Iterable[Job | str] | AsyncIterable[Job | str],
        out_dir: str | Path,
        options: BulkOptions | None = None,
        *,
        journal: str | Path | None = None,
    ) -> BulkRun:
        """Download many jobs (Job values or plain URLs) into `out_dir`; the `BulkRun` yields one
        `JobResult` per job as each finishes. Failures are results, never exceptions that stop
        the rest. Use it as ``async with client.download_many(...) as results:`` so that leaving
        the loop early stops the transfers still running.

        With ``journal`` (a path), completed files are recorded there and skipped next time.
        """
        from .storage.journal import Journal  # bulk's parts load with the first bulk run
        from .transfer.bulk import BulkOptions, as_jobs, download_many
        from .transfer.handover import BulkRun

        log = None
        if journal is not None:
            log = Journal(Path(journal), Path(out_dir))
            log.load()
            log.open()
        opts = options or BulkOptions()
        return BulkRun(download_many(self, as_jobs(jobs), Path(out_dir), opts, log))

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
        from .http.bodies import make_body  # the upload machinery loads with the first upload
        from .transfer.upload import expect_headers

        body = make_body(source, size=size, content_type=content_type)
        return await self._upload(
            url,
            body,
            method=method,
            headers=expect_headers(headers or {}, body, expect_continue, self.config.omit_headers),
            retry=retry,
            cross_origin=cross_origin,
            progress=progress,
        )

    async def upload_form(
        self,
        url: str,
        *,
        fields: Sequence[tuple[str, str]] | Mapping[str, str] = (),
        files: Sequence[FilePart | TextPart] = (),
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | int | None = None,
        cross_origin: bool = False,
        expect_continue: bool | None = None,
        progress: ProgressCallback | None = None,
    ) -> UploadResult:
        """Send multipart/form-data (RFC 7578): `fields`, then `files` (TextPart too) in order."""
        pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
        from .core.multipart import FORM_NEEDS
        from .http.bodies import MultipartBody
        from .transfer.upload import expect_headers

        refuse_omitting(self.config.omit_headers, FORM_NEEDS, "a form is multipart/form-data")

        body = MultipartBody(pairs, list(files))
        return await self._upload(
            url,
            body,
            method=method,
            headers=expect_headers(headers or {}, body, expect_continue, self.config.omit_headers),
            retry=retry,
            cross_origin=cross_origin,
            progress=progress,
        )

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
        from .transfer.upload import UploadRequest, run_upload

        if retry is None or isinstance(retry, int):
            retry = RetryPolicy(retries=retry or 0)
        request = UploadRequest(
            url,
            body,
            method=method.upper(),
            headers=dict(headers or {}),
            retry=retry,
            cross_origin=cross_origin,
        )
        return await run_upload(self, request, progress)


__all__ = ["Client", "StreamerError"]
