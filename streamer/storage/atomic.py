"""The one way a file becomes real under its name: temp name, fsync, rename, fsync the directory.

Every writer in streamer that publishes a file uses `rename_into_place` (or `publish`, its
off-the-loop form): the download engine's `.part`, the lane's `.part`, the sidecars and the
built-in server's uploads. POSIX gives atomicity to rename(2) only: a reader (or a crash) sees
the old file or the new one. The data is fsynced before the rename, so the new name never
points at blocks that were not written; the directory is fsynced after it, so the new name
itself survives a crash (the entry lives in the directory, not in the file).

Helper files are opened with ``O_NOFOLLOW``: a symlink planted at a name streamer writes is
never followed (that would write outside the output directory). `create_fresh` removes what
stands at a temporary name first and then creates it with ``O_EXCL``, which never follows a
link either, so a link planted in between makes the open fail instead of being written through.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

# Bodies up to this size get no sidecar when they start from byte 0 (one fsync saved per file);
# here, not in partial.py, so that the lane has it without loading resume planning.
SIDECAR_MIN = 2 << 20

TEMP_SUFFIX = ".tmp"
NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_FRESH = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW


def temp_path(path: Path) -> Path:
    """The temporary name `path` is written under before it is renamed into place."""
    return path.with_name(path.name + TEMP_SUFFIX)


def create_fresh(path: Path, mode: int = 0o600) -> int:
    """A new, empty file at `path` open for writing; whatever stood there (a stale temp file,
    a planted link) is removed first, not followed."""
    try:
        return os.open(path, _FRESH, mode)
    except FileExistsError:
        os.unlink(path)  # a stale temp file or a planted link: the name is ours to reuse
    return os.open(path, _FRESH, mode)


def sync_dir(directory: Path) -> None:
    """fsync `directory` so that a rename in it survives a crash (blocking)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return  # some file systems cannot open a directory; the rename still happened
    try:
        os.fsync(fd)
    except OSError:
        pass  # refused by some file systems: no data is lost by that
    finally:
        os.close(fd)


def rename_into_place(
    fd: int | None,
    tmp: str | Path,
    target: str | Path,
    *,
    no_clobber: bool = False,
    durable: bool = True,
) -> None:
    """fsync `fd` (the open file named `tmp`), rename `tmp` onto `target`, fsync the directory.

    With `no_clobber` the name is taken by link(2), which fails with FileExistsError when
    `target` exists, where rename(2) would replace it. With ``durable=False`` (bulk runs sync
    the file system in batches) both fsyncs are the caller's. Raises OSError; blocking.
    Paths may be text: the small-file lane publishes thousands a second and skips `Path`.
    """
    if durable and fd is not None:
        os.fsync(fd)
    if no_clobber:
        os.link(tmp, target)
        os.unlink(tmp)
    else:
        os.replace(tmp, target)
    if durable:
        sync_dir(Path(target).parent)


async def publish(
    fd: int | None,
    tmp: str | Path,
    target: str | Path,
    *,
    no_clobber: bool = False,
    durable: bool = True,
) -> None:
    """`rename_into_place` in a worker thread when it fsyncs (that can take seconds)."""
    if durable:
        await asyncio.to_thread(rename_into_place, fd, tmp, target, no_clobber=no_clobber)
    else:
        rename_into_place(fd, tmp, target, no_clobber=no_clobber, durable=False)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write all of `data` to `fd`: a short write (a signal, a pipe, a full buffer) is
    continued, not lost. Blocking."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_atomic(
    path: Path, data: bytes, mode: int = 0o600, *, sync_name: bool = True, tmp: Path | None = None
) -> None:
    """Replace `path` by a file holding `data`: a crash leaves the old file or the new one.

    ``sync_name=False`` skips the directory fsync, for files whose older version is as good
    as the new one after a crash (a sidecar: the old one counts fewer bytes, all of them
    durable). `tmp` (default `temp_path(path)`) is the name written first: one per process
    where several processes may write `path`. Blocking (fsyncs): call it from a thread."""
    tmp = temp_path(path) if tmp is None else tmp
    fd = create_fresh(tmp, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
        rename_into_place(None, tmp, path, durable=sync_name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)


__all__ = [
    "NOFOLLOW",
    "SIDECAR_MIN",
    "TEMP_SUFFIX",
    "create_fresh",
    "publish",
    "rename_into_place",
    "sync_dir",
    "temp_path",
    "write_all",
    "write_atomic",
]
