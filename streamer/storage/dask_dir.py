"""The files a Dask run keeps in its output directory besides the shards' journals.

``.streamer-dask.lock``: held (flock) by the submitting process for the whole run, so that a
second submission into the same directory is refused instead of writing the same targets.
``.streamer-dask-plan.json``: how many jobs went into each shard, so that a rerun cuts the jobs
the same way (and each shard finds its own journal) whatever the cluster's size.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from ..errors import FileError, Result, TargetBusyError
from .atomic import write_atomic

LOCK_NAME = ".streamer-dask.lock"
PLAN_NAME = ".streamer-dask-plan.json"


class DirLock:
    """An exclusive lock on ``DIR/.streamer-dask.lock``, held for one run (flock(2): released
    by the kernel if the holder dies)."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> DirLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise FileError(
                f"cannot create {self.path}: {exc.strerror}",
                path=str(self.path),
                result=Result.DOWNLOAD_FILE_CANT_OPEN,
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise TargetBusyError(
                f"another streamer --dask run is writing into {self.path.parent}; "
                "wait for it to finish",
                path=str(self.path.parent),
            ) from None
        self._fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the lock
            self._fd = None


def read_plan(out_dir: Path) -> int | None:
    """The shard size an earlier run into `out_dir` used, if any: a rerun cuts the jobs the
    same way whatever the cluster's size now, so each shard finds its own journal."""
    try:
        plan = json.loads((out_dir / PLAN_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    size = plan.get("shard_jobs") if isinstance(plan, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def write_plan(out_dir: Path, size: int) -> None:
    """Record the shard size (temp file, fsync, rename: never half written)."""
    path = out_dir / PLAN_NAME
    text = json.dumps({"version": 1, "shard_jobs": size}) + "\n"
    try:
        write_atomic(path, text.encode("utf-8"))
    except OSError as exc:
        raise FileError(
            f"cannot write {path}: {exc.strerror}",
            path=str(path),
            result=Result.DOWNLOAD_FILE_WRITE_ERROR,
        ) from exc


__all__ = ["LOCK_NAME", "PLAN_NAME", "DirLock", "read_plan", "write_plan"]
