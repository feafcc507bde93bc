"""The run journal of a bulk download: which targets are complete, so a re-run skips them.

An append-only JSON Lines file. A "done" record is written only after the file system was
synced (syncfs in a thread, once per batch, while the downloads go on), so after a crash every
journaled file is durable; files finished but not yet journaled are simply fetched again.
Only the 64-bit key and size of each done target are kept in memory (a million jobs cost tens
of MiB, not the paths).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import hashlib
import json
import os
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.names import JOURNAL_NAME
from ..core.redact import redact_url
from ..core.targets import target_key
from ..errors import FileError, Result
from .atomic import NOFOLLOW, write_all

# A batch is synced and journaled when it reaches this many files or this age.
BATCH_FILES = 256
BATCH_SECONDS = 1.0
# Batches are flushed in the background while the downloads go on; a run whose file system
# syncs slower than it downloads waits once this many records are pending.
MAX_PENDING = 16 * BATCH_FILES

_MAX_KEY = 2**64 - 1
_MAX_SIZE = 2**63 - 1
_FIBONACCI = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: spreads the keys over the slots


class SizeMap:
    """Target key -> (size, job print) in flat arrays: open addressing with linear probing, at
    most half full, so 24-48 bytes per entry (a dict of Python ints costs ~120: a million done
    targets took 117 MiB). Key 0 marks a free slot, so its values are kept apart."""

    def __init__(self) -> None:
        self._bits = 10
        self._keys = array("Q", [0]) * (1 << self._bits)
        self._sizes = array("q", [0]) * (1 << self._bits)
        self._prints = array("Q", [0]) * (1 << self._bits)
        self._count = 0  # non-zero keys stored
        self._zero: tuple[int, int] | None = None  # the size and print of key 0, if it was set

    def __len__(self) -> int:
        return self._count + (self._zero is not None)

    def _slot(self, key: int) -> int:
        """The slot holding `key`, or the free slot where it would go."""
        keys, mask = self._keys, len(self._keys) - 1
        i = ((key * _FIBONACCI) & _MAX_KEY) >> (64 - self._bits)
        while keys[i] != key and keys[i] != 0:
            i = (i + 1) & mask
        return i

    def get(self, key: int) -> int | None:
        found = self.entry(key)
        return None if found is None else found[0]

    def entry(self, key: int) -> tuple[int, int] | None:
        """(size, job print) recorded for `key`, or None."""
        if key == 0:
            return self._zero
        i = self._slot(key)
        return (self._sizes[i], self._prints[i]) if self._keys[i] == key else None

    def __setitem__(self, key: int, size: int) -> None:
        self.put(key, size, 0)

    def put(self, key: int, size: int, job: int) -> None:
        if not (0 <= key <= _MAX_KEY and 0 <= size <= _MAX_SIZE and 0 <= job <= _MAX_KEY):
            raise ValueError(f"key, size or print out of range: {key}, {size}, {job}")
        if key == 0:
            self._zero = (size, job)
            return
        i = self._slot(key)
        if self._keys[i] != key:
            self._keys[i] = key
            self._count += 1
        self._sizes[i] = size
        self._prints[i] = job
        if 2 * self._count > len(self._keys):
            self._grow()

    def _grow(self) -> None:
        old = zip(self._keys, self._sizes, self._prints, strict=True)
        self._bits += 1
        self._keys = array("Q", [0]) * (1 << self._bits)
        self._sizes = array("q", [0]) * (1 << self._bits)
        self._prints = array("Q", [0]) * (1 << self._bits)
        for key, size, job in old:
            if key:
                i = self._slot(key)
                self._keys[i] = key
                self._sizes[i] = size
                self._prints[i] = job


def job_print(url: str, checksum: str | None) -> int:
    """A 64-bit print of what a done record vouches for: the (redacted) URL and the checksum.

    A journaled target is skipped only when the job asking for it now has the same print: a
    job whose URL or checksum changed since is fetched again, not skipped on its file's size.
    """
    text = f"{url}\n{checksum or ''}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


@dataclass(frozen=True)
class Done:
    """What a done record vouches for: the target, its size, the job (redacted URL and checksum)
    and the server's strong validator (ETag or Last-Modified) when it sent one."""

    target: str
    size: int
    checksum: str | None
    url: str
    validator: str | None = None


class Journal:
    """Reads the done set at start; appends done records in synced batches."""

    def __init__(self, path: Path, data_dir: Path | None = None) -> None:
        self.path = path
        self.done = SizeMap()  # target key -> size
        self._pending: list[Done] = []
        self._oldest = 0.0
        self._fd: int | None = None
        # The downloads' directory, when --journal puts the journal on another file system:
        # that one is synced too before each batch is journaled.
        self._data_dir = data_dir
        self._data_fd: int | None = None
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._failed: FileError | None = None  # a background flush's error, raised next

    def load(self) -> int:
        """Read the done records of earlier runs (corrupt lines are skipped); return the count."""
        try:
            fd = os.open(self.path, os.O_RDONLY | NOFOLLOW)
            with open(fd, encoding="utf-8", errors="replace") as f:
                for line in f:
                    self._read_line(line)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._error("read", exc) from exc
        return len(self.done)

    def _error(self, action: str, exc: OSError) -> FileError:
        why = exc.strerror
        if exc.errno == errno.ELOOP:
            why = "it is a symbolic link (not followed; remove it or choose --journal)"
        return FileError(
            f"cannot {action} journal {self.path}: {why}",
            path=str(self.path),
            result=Result.DOWNLOAD_FILE_CANT_OPEN,
        )

    def _read_line(self, line: str) -> None:
        try:
            rec: Any = json.loads(line)
        except ValueError:
            return  # a torn last line after a crash
        if isinstance(rec, dict) and rec.get("t") == "done":
            target, size = rec.get("target"), rec.get("size")
            if isinstance(target, str) and isinstance(size, int) and 0 <= size <= _MAX_SIZE:
                url, checksum = rec.get("url"), rec.get("checksum")
                # A record without its URL vouches for no job: print 0 matches none.
                job = job_print(url, checksum) if isinstance(url, str) else 0
                if checksum is not None and not isinstance(checksum, str):
                    job = 0
                self.done.put(target_key(target), size, job)

    def is_done(
        self,
        target: str,
        path: Path,
        key: int | None = None,
        job: tuple[str, str | None] | None = None,
    ) -> bool:
        """Journaled as complete for the same job, and the file is still there with that size.

        `key` is ``target_key(target)`` when the caller has it already; `job` is the asking
        job's (URL, checksum): when given, the record must vouch for that same job.
        """
        if not len(self.done):
            return False  # a first run: nothing to look up
        entry = self.done.entry(target_key(target) if key is None else key)
        if entry is None:
            return False
        size, recorded = entry
        if job is not None and recorded != job_print(redact_url(job[0]), job[1]):
            return False
        try:
            return path.stat().st_size == size
        except OSError:
            return False

    def open(self) -> None:
        try:
            # O_NOFOLLOW: records appended through a planted link would land in its target.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW, 0o600)
        except OSError as exc:
            raise self._error("open", exc) from exc
        if self._data_dir is not None:
            try:
                if os.stat(self._data_dir).st_dev != os.fstat(self._fd).st_dev:
                    self._data_fd = os.open(self._data_dir, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self._data_fd = None  # then _syncfs falls back on syncing everything

    async def record(self, done: Done) -> None:
        """Queue a done record; a batch big or old enough is flushed in the background (the
        file system sync takes a disk's time, which the downloads need not wait for).

        Raises the FileError of an earlier background flush; waits for the flush when
        MAX_PENDING records are pending (the disk syncs slower than files arrive)."""
        if self._failed is not None:
            raise self._failed
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(done)
        if len(self._pending) >= MAX_PENDING:
            await self.flush()
        elif self._due() and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush_behind())

    def _due(self) -> bool:
        """A batch is pending that is big or old enough to be synced and journaled."""
        pending = self._pending
        return len(pending) >= BATCH_FILES or (
            bool(pending) and time.monotonic() - self._oldest >= BATCH_SECONDS
        )

    async def _flush_behind(self) -> None:
        """Flush while a batch is due (more arrive during a sync); an error is kept for the
        next `record` or `close`."""
        with contextlib.suppress(FileError):  # kept in _failed by flush
            while self._due() and self._failed is None:
                await self.flush()

    async def flush(self) -> None:
        """Sync the file system (the batch's files become durable), then journal them."""
        if self._failed is not None:
            raise self._failed
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch or self._fd is None:
                return
            fd, data_fd = self._fd, self._data_fd
            lines = "".join(
                json.dumps(
                    {
                        "t": "done",
                        "target": d.target,
                        "size": d.size,
                        "checksum": d.checksum,
                        "url": d.url,
                        "validator": d.validator,
                    }
                )
                + "\n"
                for d in batch
            )
            # `done` keeps what earlier runs recorded: a run never asks about a target twice
            # (duplicates are refused), so its own records need not be looked up again.
            try:
                await asyncio.to_thread(_sync_and_append, fd, data_fd, lines.encode("utf-8"))
            except OSError as exc:
                self._fd = None  # nothing more is journaled; the files stay where they are
                os.close(fd)
                self._failed = FileError(
                    f"cannot write journal {self.path}: {exc.strerror}; the files of this run"
                    " are complete but a re-run will fetch them again",
                    path=str(self.path),
                    result=Result.DOWNLOAD_FILE_WRITE_ERROR,
                )
                raise self._failed from exc

    async def close(self) -> None:
        """Wait for a background flush, flush the rest, close the files; raises a flush's
        FileError (the files are complete, but a re-run fetches them again)."""
        try:
            if self._flusher is not None:
                await asyncio.shield(self._flusher)  # a cancelled run still journals its batch
            await self.flush()
        finally:
            self._close_files()

    def _close_files(self) -> None:
        for name in ("_fd", "_data_fd"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)


def _sync_and_append(fd: int, data_fd: int | None, data: bytes) -> None:
    # The batch's files and renames reach the disk before the journal says so.
    if data_fd is not None:
        _syncfs(data_fd)
    _syncfs(fd)
    write_all(fd, data)  # a short write would tear the last line
    os.fsync(fd)


def _syncfs(fd: int) -> None:
    """Sync the file system holding `fd` (Linux syncfs(2)); else every file system (sync(2)).

    syncfs waits only for our file system's dirty data, where sync would also wait for any
    other disk's, however busy."""
    if _LIBC is None or _LIBC.syncfs(fd) != 0:
        os.sync()


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syncfs  # noqa: B018 -- raises AttributeError where there is no syncfs
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


__all__ = ["BATCH_FILES", "BATCH_SECONDS", "JOURNAL_NAME", "Done", "Journal", "SizeMap"]
