"""Direct writes of a large body: page-aligned buffers written with O_DIRECT, off the loop.

A durable download pays twice on the page-cache path: the copy into the cache, then its
writeback before the final fsync. With ``O_DIRECT`` the disk takes the bytes straight from our
buffers. Asked for with ``STREAMER_DIRECT_IO=1``: on this project's test machine (a VM, ext4)
it saved CPU but the disk took direct writes slower than the kernel's own writeback
(bench/README.md). The rules:

- The network fills one buffer of a small pool (`BUFFERS` x `BUFFER_BYTES`, mmap, so page
  aligned) while one thread ``pwrite``s full blocks of the others, in order; when no buffer is
  free the reader is held (`hold`/`release`: the transport pauses), never an unbounded queue.
- Offsets and lengths are multiples of `BLOCK`. A resume from an odd length starts at the
  block holding it, with the bytes the file already has read back in front (rewritten as
  they are). The unaligned tail goes through the part file's ordinary descriptor.
- The part file counts a byte only once its write has returned (`PartFile.moved_to`), so a
  checkpoint, and a kill -9, never count a byte that is not in the file; one writer, in
  order, so the file never has a hole.
- Where the file system refuses O_DIRECT (tmpfs before Linux 6.6 refuses the open; some
  refuse a write with EINVAL), `open_direct` returns None or the writes go on through the
  ordinary descriptor, the refused block included: nothing is lost.
"""

from __future__ import annotations

import asyncio
import errno
import mmap
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import Result
from .atomic import NOFOLLOW
from .files import PartFile, file_error

# Off unless set to 1: on the machine it was measured on, direct writes took less CPU but
# more wall time than the page cache with background fdatasyncs (bench/README.md).
ENV_SWITCH = "STREAMER_DIRECT_IO"
BLOCK = 4096  # a multiple of every logical block size Linux disks use (512, 4096)
# One buffer being filled, one being written, one queued: the disk is what waits (measured:
# more or larger buffers, or more writer threads, gained nothing; ext4 serializes appending
# direct writes to one file, bench/README.md).
BUFFER_BYTES = 4 << 20
BUFFERS = 3
# Bodies below this size go through the page cache: the pool and the thread cost more than
# they save (bench/README.md).
DIRECT_MIN = 8 << 20
# A slow body's bytes are written at least this often (the checkpoint's rhythm, partial.py).
PUSH_SECONDS = 1.0

_WRITE = Result.DOWNLOAD_FILE_WRITE_ERROR
Lend = tuple[memoryview, int]  # a buffer for the reader to fill, and where to fill it from


def wanted(length: int | None) -> bool:
    """Whether a body of `length` bytes gets direct writes (asked for, known, large)."""
    if os.environ.get(ENV_SWITCH) != "1":
        return False
    return length is not None and length >= DIRECT_MIN


def open_direct(part: PartFile) -> int | None:
    """A second descriptor on the open part file with O_DIRECT, or None where the file system
    refuses it (or the name no longer points at our file)."""
    fd = part.fileno()
    flag = getattr(os, "O_DIRECT", 0)
    if fd is None or not flag:
        return None
    try:
        direct = os.open(part.path, os.O_WRONLY | flag | NOFOLLOW)
    except OSError:
        return None  # EINVAL (an old tmpfs); anything else: the page cache path will say it
    here, there = os.fstat(fd), os.fstat(direct)
    if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
        os.close(direct)
        return None
    return direct


class DirectWriter:
    """The pool and the writer thread of one body, written from `part.size` on; `written`
    runs (on the loop) after each write has returned and been counted."""

    def __init__(
        self,
        part: PartFile,
        fd: int,
        *,
        hold: Callable[[], None],
        release: Callable[[], None],
        written: Callable[[], None],
    ) -> None:
        self.part, self._fd = part, fd
        self._hold, self._release, self._written = hold, release, written
        self._free = [mmap.mmap(-1, BUFFER_BYTES) for _ in range(BUFFERS)]
        self._cur = self._free.pop()
        self._base = part.size - part.size % BLOCK  # the file offset of the buffer's byte 0
        self._fill = part.size - self._base
        self._queued: list[tuple[Future[int], mmap.mmap, int]] = []  # in file order
        self._held = False
        self._error: BaseException | None = None
        self._direct = True  # until the file system refuses a direct write
        self.direct_bytes = 0
        self._pushed = time.monotonic()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="streamer-direct")
        self._loop = asyncio.get_running_loop()
        if self._fill:  # a resume from an odd length: the block's first bytes, as they are
            self._cur[: self._fill] = os.pread(self._part_fd(), self._fill, self._base)

    # --- the reader's side (the event loop) --------------------------------------------------

    def take(self, view: memoryview) -> Lend:
        """Account `view` (read into the lent buffer, or copied there) and lend the buffer to
        fill next; a full (or, on a slow body, an old) buffer is queued for writing first."""
        if self._error is not None:
            raise self._error
        if view.obj is self._cur:
            self._fill += len(view)
        else:
            while view:  # bytes read before the first lend (after the head): copied in
                n = min(len(view), BUFFER_BYTES - self._fill)
                self._cur[self._fill : self._fill + n] = view[:n]
                self._fill, view = self._fill + n, view[n:]
                if self._fill == BUFFER_BYTES:
                    self._push()
        if self._fill == BUFFER_BYTES or (
            self._fill >= BLOCK and time.monotonic() - self._pushed >= PUSH_SECONDS
        ):
            self._push()
        return memoryview(self._cur), self._fill

    def _push(self) -> None:
        """Queue the buffer's whole blocks; the rest (under a block) starts the next buffer."""
        size = self._fill - self._fill % BLOCK
        full, base = self._cur, self._base
        if not self._free:  # never while `hold` is honoured; bounded (one write) if not
            self._queued[0][0].exception()
            self._settle()
        self._cur = self._free.pop()
        rest = self._fill - size
        self._cur[:rest] = full[size : self._fill]
        self._base, self._fill, self._pushed = base + size, rest, time.monotonic()
        job = self._pool.submit(self._write, full, size, base)
        self._queued.append((job, full, base + size))
        job.add_done_callback(lambda _: self._loop.call_soon_threadsafe(self._settle))
        if not self._free and not self._held:
            self._held = True
            self._hold()

    def _settle(self) -> None:
        """Count the writes that returned, in file order (with several threads a later one
        can return first: it is counted after those before it), and free their buffers."""
        while self._queued and self._queued[0][0].done():
            job, buf, end = self._queued.pop(0)
            self._free.append(buf)
            exc = job.exception()
            if exc is not None:
                self._error = self._error or exc
            elif self._error is None:
                self.direct_bytes += job.result()
                self.part.moved_to(end)
                self._written()
        if self._held and self._free:  # after an error too: the next read then fails
            self._held = False
            self._release()

    # --- the writer thread ------------------------------------------------------------------------

    def _write(self, buf: mmap.mmap, size: int, offset: int) -> int:
        """Write `size` bytes of `buf` at `offset`; returns how many went with O_DIRECT."""
        view, done, direct = memoryview(buf)[:size], 0, 0
        try:
            while done < size:
                if self._direct:
                    try:
                        n = os.pwrite(self._fd, view[done:], offset + done)
                    except OSError as exc:
                        if exc.errno != errno.EINVAL:
                            raise
                        self._direct = False  # refused here: the page cache from now on
                        continue
                    direct += n
                else:
                    n = os.pwrite(self._part_fd(), view[done:], offset + done)
                done += n
        except OSError as exc:
            raise file_error(exc, self.part.path, "write", _WRITE, self.part.url) from exc
        finally:
            view.release()
        return direct

    def _part_fd(self) -> int:
        fd = self.part.fileno()
        assert fd is not None, "the part file is open while its body is written"
        return fd

    # --- the end ----------------------------------------------------------------------------------

    async def finish(self) -> None:
        """Wait for every queued write, then write the unaligned rest through the ordinary
        descriptor: the part file then holds every byte taken, also when cancelled. Raises
        the first write error."""
        try:
            if self._error is None and self._fill >= BLOCK:
                self._push()
            if self._queued:
                await asyncio.wait([asyncio.wrap_future(job) for job, _, _ in self._queued])
        finally:
            self._pool.shutdown(wait=True)  # every write has returned: no thread holds a buffer
            os.close(self._fd)
            self._settle()
            if self._error is None:
                start = self.part.size - self._base
                if 0 <= start < self._fill:
                    self.part.write_at(memoryview(self._cur)[start : self._fill], self.part.size)
        if self._error is not None:
            raise self._error


__all__ = [
    "BLOCK",
    "BUFFERS",
    "BUFFER_BYTES",
    "DIRECT_MIN",
    "ENV_SWITCH",
    "DirectWriter",
    "Lend",
    "open_direct",
    "wanted",
]
