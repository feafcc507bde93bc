"""The file adapter: partial files next to the target, durable writes and atomic publication.

A download becomes visible under its final name only through `atomic.publish` (rename, or link
for no-clobber, after the data is fsynced; the directory fsynced after it). Helper files are
opened with O_NOFOLLOW: a symlink planted at ``T.part`` is replaced, never written through.
Every OSError leaves here as a `FileError` that names the path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from ..core.names import MAX_CHOSEN_BYTES, NAME_MAX
from ..errors import FileError, FileExistsError_, Result, TargetBusyError
from .atomic import NOFOLLOW, publish, write_atomic

PART_SUFFIX = ".part"
SIDECAR_SUFFIX = ".part.json"

_CANT_OPEN = Result.DOWNLOAD_FILE_CANT_OPEN
_WRITE = Result.DOWNLOAD_FILE_WRITE_ERROR


def part_path(target: Path) -> Path:
    """Where the partial body of `target` lives while it downloads."""
    return target.with_name(target.name + PART_SUFFIX)


def sidecar_path(target: Path) -> Path:
    """Where the resume state of `target` lives (JSON, next to the partial file)."""
    return target.with_name(target.name + SIDECAR_SUFFIX)


class StrayLink(Exception):
    """A symbolic link stands where streamer keeps one of its own files."""


def read_sidecar(path: Path) -> bytes | None:
    """The sidecar's bytes, or None when there is none or it cannot be read; `StrayLink` when
    a symlink stands there (it is not followed: its target is not ours to read)."""
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StrayLink(str(path)) from exc
        return None
    with open(fd, "rb") as f:
        try:
            return f.read()
        except OSError:
            return None


def write_sidecar(path: Path, text: str, url: str = "") -> None:
    """Replace the sidecar atomically (`write_atomic`: temp file of mode 0600, fsync, rename).

    The directory is not fsynced: after a crash the previous sidecar (or none) may be what is
    found, and it is as true as this one (it counts fewer bytes, all fsynced before it was
    written); a journal commit per checkpoint would cost more than that. Blocking: called
    from a worker thread."""
    try:
        write_atomic(path, text.encode("utf-8"), sync_name=False)
    except OSError as exc:
        raise file_error(exc, path, "write", _WRITE, url) from exc


def remove_quietly(*paths: Path) -> None:
    for path in paths:
        # Already gone, or not ours to remove: neither blocks the outcome.
        with contextlib.suppress(OSError):
            os.unlink(path)


def check_free_space(directory: Path, needed: int, url: str = "") -> None:
    """Refuse, before writing, a body that cannot fit in the free space of `directory`."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return  # Unknown: the writes themselves will tell.
    if needed > free:
        raise FileError(
            f"not enough space in {directory}: {needed} bytes needed, {free} free",
            path=str(directory),
            result=_WRITE,
            url=url,
        )


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    if exc.errno in (errno.EDQUOT, errno.EFBIG):
        return "disk quota or file size limit exceeded"
    return exc.strerror or str(exc)


def file_error(exc: OSError, path: Path, action: str, result: Result, url: str = "") -> FileError:
    """A FileError naming the path, the action and the OS's reason."""
    err = FileError(
        f"cannot {action} {path}: {_os_reason(exc)}", path=str(path), result=result, url=url
    )
    err.errno = exc.errno
    return err


def preflight(target: Path, *, no_clobber: bool, url: str = "") -> None:
    """Fail before any network transfer when the target cannot possibly be written."""
    size = len(target.name.encode("utf-8", "surrogateescape"))
    if size > MAX_CHOSEN_BYTES:
        raise FileError(
            f"cannot write {target}: file name too long ({size} bytes; at most"
            f" {MAX_CHOSEN_BYTES}, so that {target.name[:8]}...{SIDECAR_SUFFIX}.tmp fits in"
            f" {NAME_MAX})",
            path=str(target),
            result=_CANT_OPEN,
            url=url,
        )
    try:
        _preflight(target, no_clobber=no_clobber, url=url)
    except OSError as exc:
        if isinstance(exc, FileError):
            raise
        raise file_error(exc, target, "write", _CANT_OPEN, url) from exc


def _preflight(target: Path, *, no_clobber: bool, url: str) -> None:
    parent = target.parent
    if not parent.is_dir():
        raise FileError(
            f"cannot write {target}: directory {parent} does not exist",
            path=str(target),
            result=_CANT_OPEN,
            url=url,
        )
    if target.is_dir():
        raise FileError(
            f"cannot write {target}: it is a directory",
            path=str(target),
            result=_CANT_OPEN,
            url=url,
        )
    if no_clobber and target.exists():
        raise FileExistsError_(
            f"{target} exists and --no-clobber was given; nothing was downloaded",
            path=str(target),
            url=url,
        )


_REOPEN_TRIES = 3


def _still_named(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (same device and inode)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


class PartFile:
    """The `.part` file of one download, locked against a second writer, written with `os.write`.

    Writes happen on the event loop thread: a 1 MiB write into the page cache costs less than a
    thread hop (measured in bench/), and the network read awaits between writes anyway.
    """

    def __init__(self, target: Path, *, url: str = "") -> None:
        self.target = target
        self.path = part_path(target)
        self.url = url
        self.size = 0
        self._fd: int | None = None

    def open(self) -> int:
        """Open (creating) the partial file without truncating it, lock it, return its size.

        The lock (flock, released by the kernel when the process dies) makes a second process
        writing the same target fail fast instead of interleaving bytes with the first.
        """
        for _ in range(_REOPEN_TRIES):
            fd = self._open_locked()
            if _still_named(fd, self.path):
                self._fd = fd
                self.size = os.fstat(fd).st_size
                return self.size
            # The lock was had on a file its last holder had just renamed or removed (it
            # lets go only after that): that file is not the partial any more; open anew.
            os.close(fd)
        raise TargetBusyError(
            f"{self.path} keeps being replaced by another download of {self.target}",
            path=str(self.target),
            url=self.url,
        )

    def _open_locked(self) -> int:
        fd = self._open_regular()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise TargetBusyError(
                f"another download is writing {self.target} (lock on {self.path} is held)",
                path=str(self.target),
                url=self.url,
            ) from exc
        return fd

    def _open_regular(self) -> int:
        """Open (creating) the partial file itself: a symlink planted at its name is removed,
        never followed (it would make us write outside the directory); anything else that is
        not a regular file (a FIFO, a device) is refused."""
        flags = os.O_RDWR | os.O_CREAT | NOFOLLOW
        try:
            try:
                fd = os.open(self.path, flags, 0o644)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                os.unlink(self.path)  # the link only; its target stays as it is
                fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise file_error(exc, self.path, "create", _CANT_OPEN, self.url) from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FileError(
                f"cannot write {self.path}: it is not a regular file",
                path=str(self.path),
                result=_CANT_OPEN,
                url=self.url,
            )
        return fd

    def truncate(self, size: int) -> None:
        """Cut the file to `size` bytes and continue writing there.

        A file already `size` bytes long (a new, empty one starting at 0) is not truncated: on
        ext4 a truncate to 0 marks the file for write-back at close (auto_da_alloc), which cost
        ~0.1 ms per file in bulk runs (bench/README.md).
        """
        assert self._fd is not None, "truncate before open"
        try:
            if size != self.size:
                os.ftruncate(self._fd, size)
            os.lseek(self._fd, size, os.SEEK_SET)
        except OSError as exc:
            raise file_error(exc, self.path, "truncate", _WRITE, self.url) from exc
        self.size = size

    def hash_prefix(self, update: Callable[[bytes], None], size: int) -> None:
        """Feed the first `size` bytes to `update` (a resumed download's checksum needs them)."""
        assert self._fd is not None, "hash before open"
        offset = 0
        try:
            while offset < size:
                data = os.pread(self._fd, min(1 << 20, size - offset), offset)
                if not data:
                    break
                update(data)
                offset += len(data)
        except OSError as exc:
            raise file_error(exc, self.path, "read", _WRITE, self.url) from exc

    def write(self, data: bytes | memoryview) -> None:
        """Append all of `data` (a short write is retried, ENOSPC raised with the path)."""
        assert self._fd is not None, "write before open"
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self.size += n
        except OSError as exc:
            raise file_error(exc, self.path, "write", _WRITE, self.url) from exc

    def write_at(self, data: memoryview, offset: int) -> None:
        """Write all of `data` at `offset` (the rest of a direct-written body), then append
        after it."""
        assert self._fd is not None, "write before open"
        try:
            while data:
                n = os.pwrite(self._fd, data, offset)
                data, offset = data[n:], offset + n
        except OSError as exc:
            raise file_error(exc, self.path, "write", _WRITE, self.url) from exc
        self.moved_to(offset)

    def moved_to(self, end: int) -> None:
        """The file holds bytes up to `end`, written through another descriptor (a direct
        write, storage/direct.py): count them, and append after them from now on."""
        assert self._fd is not None, "write before open"
        if end > self.size:
            self.size = end
            os.lseek(self._fd, end, os.SEEK_SET)

    def fileno(self) -> int | None:
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    async def publish(
        self, *, no_clobber: bool, target: Path | None = None, durable: bool = True
    ) -> None:
        """fsync and move the partial file to the target name, then fsync the directory.

        The file stays open (and locked) until it has its final name, so no second writer can
        take the partial file between our last write and the rename. With ``durable=False``
        (bulk runs, which sync the file system in batches before journaling) both fsyncs are
        left to the caller.
        """
        target = self.target if target is None else target
        try:
            await publish(self._fd, self.path, target, no_clobber=no_clobber, durable=durable)
        except FileExistsError as exc:
            raise FileExistsError_(
                f"{target} exists and was left untouched (not overwriting it)",
                path=str(target),
                url=self.url,
            ) from exc
        except OSError as exc:
            raise file_error(exc, target, "rename into", _WRITE, self.url) from exc
        self.close()

    def discard(self) -> None:
        """Close and remove the partial file; never touches the target."""
        self.close()
        remove_quietly(self.path)  # the failure being reported matters more than this one
