"""Download one URL into one file: preflight, stream to `.part`, verify, fsync, rename.

The target never holds a partial body: bytes go to ``<target>.part`` and reach the target name
only by an atomic rename after the length and checksum checks pass. Any failure removes the
partial file and leaves an existing target untouched.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .core.checksum import Checksum, Verifier
from .core.events import Phase, Progress, ProgressCallback
from .core.redact import redact_url
from .files import PartFile, preflight
from .results import DownloadResult

if TYPE_CHECKING:
    from .client import Client
    from .stream import Stream


@dataclass(frozen=True)
class DownloadRequest:
    """One download as asked for, validated."""

    url: str
    path: Path
    max_bytes: int | None = None
    checksum: Checksum | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    accept_gzip: bool | None = None
    no_clobber: bool = False

    @classmethod
    def build(
        cls,
        url: str,
        path: str | Path,
        *,
        max_bytes: int | None = None,
        checksum: str | Checksum | None = None,
        headers: Mapping[str, str] | None = None,
        accept_gzip: bool | None = None,
        no_clobber: bool = False,
    ) -> DownloadRequest:
        if isinstance(checksum, str):
            checksum = Checksum.parse(checksum)
        return cls(
            url=url,
            path=Path(path),
            max_bytes=max_bytes,
            checksum=checksum,
            headers=dict(headers or {}),
            accept_gzip=accept_gzip,
            no_clobber=no_clobber,
        )


async def run_download(
    client: Client, req: DownloadRequest, progress: ProgressCallback | None
) -> DownloadResult:
    """Carry out `req` with `client`; on failure no partial file and no changed target remain."""
    safe_url = redact_url(req.url)
    started = time.monotonic()
    preflight(req.path, no_clobber=req.no_clobber, url=safe_url)
    part = PartFile(req.path, url=safe_url)
    part.open_fresh()
    try:
        async with client.stream(
            req.url,
            headers=req.headers,
            max_bytes=req.max_bytes,
            accept_gzip=req.accept_gzip,
            raise_for_status=True,
            progress=progress,
        ) as stream:
            verifier = Verifier(req.checksum, url=safe_url) if req.checksum else None
            await _pump(stream, part, verifier)
            if verifier is not None:
                verifier.check()
            _report(progress, stream, Phase.FINALIZING, part.size)
            await part.publish(no_clobber=req.no_clobber)
    except BaseException:
        part.discard()
        raise
    _report(progress, stream, Phase.DONE, part.size)
    return DownloadResult(
        url=safe_url,
        final_url=redact_url(stream.final_url),
        path=req.path,
        status=stream.status,
        size=part.size,
        elapsed=time.monotonic() - started,
        length_verified=stream.length_verified,
        content_type=stream.headers.get("Content-Type"),
        checksum=str(req.checksum) if req.checksum else None,
        redirects=stream.redirects,
    )


async def _pump(stream: Stream, part: PartFile, verifier: Verifier | None) -> None:
    """Response chunks into the file (and the hash): the hot loop, kept free of extra work."""
    write = part.write
    if verifier is None:
        async for chunk in stream:
            write(chunk)
        return
    update = verifier.update
    async for chunk in stream:
        update(chunk)
        write(chunk)


def _report(progress: ProgressCallback | None, stream: Stream, phase: Phase, done: int) -> None:
    if progress is not None:
        progress(Progress(stream.url, phase, done, stream.content_length))
