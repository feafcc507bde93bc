"""The file adapter: partial files next to the target, durable writes and atomic publication.

A download becomes visible under its final name only through `os.replace` (or `os.link` for
no-clobber) after the data is fsynced; the directory is fsynced after the rename so the new name
survives a crash too. Every OSError leaves here as a `FileError` that names the path.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import aiofiles.os

from .errors import FileError, FileExistsError_, Result

PART_SUFFIX = ".part"

_CANT_OPEN = Result.DOWNLOAD_FILE_CANT_OPEN
_WRITE = Result.DOWNLOAD_FILE_WRITE_ERROR


def part_path(target: Path) -> Path:
    """Where the partial body of `target` lives while it downloads."""
    return target.with_name(target.name + PART_SUFFIX)


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
            f"cannot write {target}: it is a directory", path=str(target), result=_CANT_OPEN, url=url
        )
    if no_clobber and target.exists():
        raise FileExistsError_(
            f"{target} exists and --no-clobber was given; nothing was downloaded",
            path=str(target),
            url=url,
        )


class PartFile:
    """The `.part` file of one download, written with plain `os.write` calls.

    Writes happen on the event loop thread: a 1 MiB write into the page cache costs less than a
    thread hop (measured in bench/), and the network read awaits between writes anyway.
    """

    def __init__(self, target: Path, *, url: str = "") -> None:
        self.target = target
        self.path = part_path(target)
        self.url = url
        self.size = 0
        self._fd: int | None = None

    def open_fresh(self) -> None:
        """Create or truncate the partial file (before the request: a preflight of its own)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise file_error(exc, self.path, "create", _CANT_OPEN, self.url) from exc
        self.size = 0

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

    async def sync(self) -> None:
        """fsync the data off the event loop (a large fsync can take seconds)."""
        if self._fd is None:
            return
        try:
            await aiofiles.os.wrap(os.fsync)(self._fd)
        except OSError as exc:
            raise file_error(exc, self.path, "fsync", _WRITE, self.url) from exc

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    async def publish(self, *, no_clobber: bool) -> None:
        """fsync, close and move the partial file to the target name, then fsync the directory."""
        await self.sync()
        self.close()
        try:
            if no_clobber:
                # link() fails if the target appeared meanwhile, where replace() would clobber it.
                await aiofiles.os.link(self.path, self.target)
                await aiofiles.os.remove(self.path)
            else:
                await aiofiles.os.replace(self.path, self.target)
        except FileExistsError as exc:
            raise FileExistsError_(
                f"{self.target} appeared during the download; kept it and left {self.path}",
                path=str(self.target),
                url=self.url,
            ) from exc
        except OSError as exc:
            raise file_error(exc, self.target, "rename into", _WRITE, self.url) from exc
        await fsync_dir(self.target.parent)

    def discard(self) -> None:
        """Close and remove the partial file; never touches the target."""
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError:
            pass  # Nothing more to do: the failure being reported matters more.


async def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (POSIX: the entry lives in the directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # Some file systems do not allow opening directories; the rename still happened.
    try:
        await aiofiles.os.wrap(os.fsync)(fd)
    except OSError:
        pass  # fsync on a directory is refused by some file systems; not a data loss.
    finally:
        os.close(fd)
