"""One PATCH body appended to a tus upload's data file, off the event loop.

The data file is cut back to the record's offset when opened (bytes past it were never
recorded: a crash mid-PATCH, or a body whose checksum failed), then the body is appended in
blocks of `BLOCK` bytes, each written (and hashed, for Upload-Checksum) in a thread.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from streamer.core.tus_server import TusRequestError
from streamer.server.upload import BlockWriter, in_thread

BLOCK = 1 << 20
"""Bytes gathered before one write to disk (memory per PATCH stays near this)."""


def _open_at(path: Path, offset: int) -> int:
    """Open the data file for writing at ``offset``, locked: another process serving the
    same directory cannot write the same upload meanwhile (423 there)."""
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise TusRequestError(
            "the upload is being written by another process", status=423
        ) from None
    try:
        os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


class DataWriter:
    """Appends at most the upload's remaining bytes; ``count`` is how many were accepted."""

    def __init__(self, fd: int, offset: int, length: int, checksum: tuple[str, bytes] | None):
        self._fd: int | None = fd
        self.start = offset
        self.count = 0
        self._room = length - offset
        self._expected = None if checksum is None else checksum[1]
        algorithm = "sha1" if checksum is None else checksum[0]
        # md5 and sha1 only detect corruption here (the checksum extension), not attacks.
        self._hasher = hashlib.new(algorithm, usedforsecurity=False)
        hash_block = None if self._expected is None else self._hasher.update
        self._blocks = BlockWriter(fd, BLOCK, hash_block)

    @classmethod
    def open(
        cls, path: Path, offset: int, length: int, checksum: tuple[str, bytes] | None
    ) -> DataWriter:
        """Open on the loop's thread (no fsync; the cut-back only has work after a crash or
        a 460): with an await here, a cancelled handler would leak the locked descriptor."""
        return cls(_open_at(path, offset), offset, length, checksum)

    async def write(self, data: bytes) -> bool:
        """Take ``data``; False when it went past the upload's length (the rest was left)."""
        fits = min(len(data), self._room - self.count)
        self.count += fits
        await self._blocks.write(data[:fits] if fits < len(data) else data)
        return fits == len(data)

    async def flush(self) -> None:
        await self._blocks.flush()

    async def verdict(self, outcome: str) -> TusRequestError | None:
        """None when the body arrived whole (and matches its Upload-Checksum), else why not."""
        await self.flush()
        if outcome == "cut":
            return TusRequestError(f"the body was cut short after {self.count} bytes")
        if outcome == "over":
            return TusRequestError("the body goes past Upload-Length", status=413)
        if self._expected is not None and self._hasher.digest() != self._expected:
            return TusRequestError(
                f"Upload-Checksum does not match the {self.count} bytes received; dropped",
                status=460,
            )
        return None

    async def sync(self) -> None:
        """Everything taken so far durably on disk."""
        await self.flush()
        assert self._fd is not None
        await in_thread(os.fsync, self._fd)

    async def discard(self) -> None:
        """Forget this body: the file is cut back to where it started."""
        self._blocks.drop()
        self.count = 0
        assert self._fd is not None
        await in_thread(os.ftruncate, self._fd, self.start)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


__all__ = ["BLOCK", "DataWriter"]
