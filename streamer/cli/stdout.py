"""`-o -`: the body to standard output, as curl does for pipelines (``| tar x``)."""

from __future__ import annotations

import asyncio
import os
import sys

from ..core.redact import redact_url
from ..errors import FileError, Result
from ..storage.atomic import write_all
from ..transfer.sink import Sink


def stdout_sink(url: str) -> Sink:
    """Write each chunk whole to fd 1, off the event loop (a slow reader must not stall the
    timers). A reader that went away (EPIPE) is curl's exit 23; stdout is then pointed at
    /dev/null so that the interpreter's final flush cannot print a traceback."""
    fd = sys.stdout.fileno()
    sys.stdout.flush()

    async def sink(chunk: bytes) -> None:
        try:
            await asyncio.to_thread(write_all, fd, chunk)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
            raise FileError(
                "stdout closed by the reader (broken pipe)",
                url=redact_url(url),
                result=Result.DOWNLOAD_FILE_WRITE_ERROR,
            ) from None
        except OSError as exc:
            raise FileError(
                f"cannot write to stdout: {exc.strerror}",
                url=redact_url(url),
                result=Result.DOWNLOAD_FILE_WRITE_ERROR,
            ) from exc

    return sink
