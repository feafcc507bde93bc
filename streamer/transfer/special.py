"""Downloads into a FIFO or a device node (``-o /dev/null``, ``-o >(cmd)``): straight in.

Such a target is not a file that can be replaced: renaming a `.part` over it would swap the
device node for a regular file (as root that destroys ``/dev/null``) and a reader of the FIFO
would never see the body. So, as curl does, the body is written into the open node as it
arrives: no `.part`, no sidecar, no rename, no resume (a pipe cannot be appended to later),
one stream (``--split`` writes at offsets, which a pipe has not). The length and checksum are
still checked, and a failure is reported, but bytes already written cannot be taken back.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.checksum import Checksum, Verifier
from ..core.events import ProgressCallback
from ..core.redact import redact_url
from ..errors import Result, UsageError
from ..results import DownloadResult
from ..storage.atomic import write_all
from ..storage.files import file_error

if TYPE_CHECKING:
    from .download import DownloadRequest
    from .opener import Opener

_WRITE = Result.DOWNLOAD_FILE_WRITE_ERROR


def is_special(path: Path) -> bool:
    """Whether `path` names (through links too) a FIFO, a character or a block device."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def _check_special(request: DownloadRequest, url: str) -> None:
    """What cannot hold when the target is a FIFO or a device is refused, not ignored: bytes
    written into one cannot be taken back, replaced, or written at an offset."""
    refused = [
        name
        for name, given in (
            ("split", request.split > 1),
            ("remote_name (-J)", request.remote_name),
            ("no_clobber", request.no_clobber),
            ("retry", request.retry.retries > 0),
        )
        if given
    ]
    if refused:
        raise UsageError(
            f"{request.path} is a FIFO or a device, written straight in: "
            f"{', '.join(refused)} cannot apply to it",
            url=redact_url(url),
            path=str(request.path),
        )


async def run_into_special(
    client: Opener, req: DownloadRequest, progress: ProgressCallback | None
) -> DownloadResult:
    """Stream `req.url` into the special file `req.path` (writes in a thread: a full pipe
    blocks the writer until its reader catches up, and the event loop must not wait)."""
    url = redact_url(req.url)
    _check_special(req, url)
    started = time.monotonic()
    try:  # opening a FIFO waits for its reader
        fd = await asyncio.to_thread(os.open, req.path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise file_error(exc, req.path, "open", Result.DOWNLOAD_FILE_CANT_OPEN, url) from exc
    try:
        async with client.stream(
            req.url,
            headers=req.headers,
            max_bytes=req.max_bytes,
            accept_gzip=req.accept_gzip,
            raise_for_status=True,
            progress=progress,
        ) as stream:
            verifier = None
            if isinstance(req.checksum, Checksum):
                verifier = Verifier(req.checksum, url=url)
            size = 0
            async for chunk in stream:
                if verifier is not None:
                    verifier.update(chunk)
                try:
                    await asyncio.to_thread(write_all, fd, chunk)
                except OSError as exc:
                    raise file_error(exc, req.path, "write", _WRITE, url) from exc
                size += len(chunk)
                if req.throttle is not None:  # our pacing, not the peer's slowness
                    await stream.pay(req.throttle, len(chunk))
            if verifier is not None:
                verifier.check()
    finally:
        os.close(fd)
    return DownloadResult(
        url=url,
        final_url=redact_url(stream.final_url),
        path=req.path,
        status=stream.status,
        size=size,
        elapsed=time.monotonic() - started,
        length_verified=stream.length_verified,
        content_type=stream.headers.get("Content-Type"),
        checksum=str(req.checksum) if req.checksum else None,
        redirects=stream.redirects,
        notes=(f"written straight into {req.path} (not a regular file: no .part, no resume)",),
    )


__all__ = ["is_special", "run_into_special"]
