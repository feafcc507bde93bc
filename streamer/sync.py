"""Thin synchronous facades for scripts: one event loop per call, one client per call."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .client import DEFAULT_FETCH_LIMIT, Client
from .core.checksum import Checksum
from .errors import UsageError

if TYPE_CHECKING:
    from .core.events import ProgressCallback
    from .http.bodies import Source
    from .results import DownloadResult, FetchResult, TusResult, UploadResult

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on a new event loop (uvloop when installed); refuse inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coro.close()
        raise UsageError("the sync API cannot run inside an event loop: await the Client instead")
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)


def loop_factory() -> Any:
    """asyncio's loop; uvloop's when STREAMER_LOOP=uvloop and it is installed.

    Measured on a 2 GiB download (bench/README.md): asyncio's loop with tuned malloc used less
    CPU than uvloop's, so uvloop is opt-in.
    """
    if os.environ.get("STREAMER_LOOP", "").lower() != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def download(
    url: str,
    path: str | Path,
    *,
    max_bytes: int | None = None,
    checksum: str | Checksum | None = None,
    headers: Mapping[str, str] | None = None,
    accept_gzip: bool | None = None,
    no_clobber: bool = False,
    progress: ProgressCallback | None = None,
    **client_options: Any,
) -> DownloadResult:
    """Download `url` into `path`; other keyword options configure the `Client`."""

    async def go() -> DownloadResult:
        async with Client(**client_options) as client:
            return await client.download(
                url,
                path,
                max_bytes=max_bytes,
                checksum=checksum,
                headers=headers,
                accept_gzip=accept_gzip,
                no_clobber=no_clobber,
                progress=progress,
            )

    return run(go())


def fetch(
    url: str,
    *,
    max_bytes: int | None = DEFAULT_FETCH_LIMIT,
    headers: Mapping[str, str] | None = None,
    accept_gzip: bool | None = None,
    raise_for_status: bool = True,
    **client_options: Any,
) -> FetchResult:
    """Read `url` into memory (at most `max_bytes`); other keyword options configure `Client`."""

    async def go() -> FetchResult:
        async with Client(**client_options) as client:
            return await client.fetch(
                url,
                max_bytes=max_bytes,
                headers=headers,
                accept_gzip=accept_gzip,
                raise_for_status=raise_for_status,
            )

    return run(go())


def upload(
    url: str,
    source: Source,
    *,
    method: str = "PUT",
    headers: Mapping[str, str] | None = None,
    content_type: str | None = None,
    **client_options: Any,
) -> UploadResult:
    """Upload `source` (a path, bytes or a binary file) to `url`; other options go to `Client`."""

    async def go() -> UploadResult:
        async with Client(**client_options) as client:
            return await client.upload(
                url, source, method=method, headers=headers, content_type=content_type
            )

    return run(go())


def upload_resumable(
    endpoint: str,
    path: str | Path,
    *,
    chunk_size: int | None = None,
    metadata: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    checksum: str | None = None,
    retry: int = 3,
    **client_options: Any,
) -> TusResult:
    """Upload `path` to a tus 1.0.0 `endpoint`, resuming a remembered upload; see
    `Client.upload_resumable`. Other keyword options configure the `Client`."""

    async def go() -> TusResult:
        async with Client(**client_options) as client:
            return await client.upload_resumable(
                endpoint,
                path,
                chunk_size=chunk_size,
                metadata=metadata,
                checksum=checksum,
                retry=retry,
            )

    return run(go())
