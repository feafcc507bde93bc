"""A partial download on disk: the locked `.part` file plus its sidecar, kept in step.

The order of writes is what makes a crash harmless (kill -9 at any moment):

1. bytes are appended to ``T.part``;
2. at a checkpoint (every 64 MiB, and about every second while data flows, so a slow link
   loses about a second of data to a kill -9) they are fdatasynced in a worker thread, and
   only then does the sidecar ``T.part.json`` (written through temp + fsync + rename)
   record them as committed;
3. on resume, anything in ``T.part`` past the committed count is cut off before appending;
4. the target ``T`` appears only by renaming a complete, verified, fsynced ``T.part``.

So the sidecar never claims a byte that is not durably in the partial file, and the target
never holds a partial body.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from ..core.resume import (
    Action,
    Plan,
    ResumeState,
    SidecarError,
    dump_state,
    load_state,
    plan_request,
)
from ..errors import TargetBusyError
from .atomic import SIDECAR_MIN
from .files import (
    PartFile,
    StrayLink,
    read_sidecar,
    remove_quietly,
    sidecar_path,
    write_sidecar,
)

# How much may be written between two checkpoints, and how long while data flows: what a crash
# can cost us to re-download (64 MiB on a fast disk; a second of data on a slow link).
CHECKPOINT_BYTES = 64 << 20
CHECKPOINT_SECONDS = 1.0
LOCK_POLL_SECONDS = 0.2


class Partial:
    """The partial file and resume state of one target, for the length of one download."""

    def __init__(self, target: Path, *, url: str) -> None:
        self.part = PartFile(target, url=url)
        self.sidecar = sidecar_path(target)
        self.url = url
        self.state: ResumeState | None = None
        self.notes: list[str] = []
        self._checkpointed = 0
        self._next_checkpoint = 0.0  # time.monotonic() after which data is checkpointed
        self._pending: asyncio.Future[None] | None = None
        # Whether a sidecar may exist: skips two unlink calls per small file in bulk runs.
        self._sidecar_on_disk = False

    async def open_waiting(self, seconds: float | None) -> None:
        """`open`, waiting up to `seconds` for another process's download of the same target.

        It polls rather than blocking in flock: each try opens the path afresh, so a partial
        file that the other process has meanwhile renamed to the target is never written.
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + (seconds or 0.0)
        while True:
            try:
                self.open()
                return
            except TargetBusyError:
                if seconds is None or loop.time() >= give_up:
                    raise
            await asyncio.sleep(LOCK_POLL_SECONDS)

    def open(self) -> None:
        """Lock the partial file and read the sidecar (an untrusted one only costs a restart)."""
        self.part.open()
        try:
            text = read_sidecar(self.sidecar)
        except StrayLink:
            self._sidecar_on_disk = True  # a planted link: removed or replaced, never followed
            return
        if text is None:
            return
        self._sidecar_on_disk = True
        try:
            self.state = load_state(text)
        except SidecarError as exc:
            self.notes.append(f"ignored the resume state in {self.sidecar}: {exc}")

    def plan(self, *, checksum: str | None, resume: bool) -> Plan:
        if not resume:
            return plan_request(None, None, url=self.url, checksum=checksum)
        size = self.part.size if self.state is not None else None
        return plan_request(self.state, size, url=self.url, checksum=checksum)

    async def begin(self, offset: int, state: ResumeState | None) -> None:
        """Continue writing at `offset` (0: start over). A None state means not resumable."""
        self.part.truncate(offset)
        self._checkpointed = offset
        self._next_checkpoint = time.monotonic() + CHECKPOINT_SECONDS
        self.state = None if state is None else state.with_committed(offset)
        small = state is not None and state.total is not None and state.total <= SIDECAR_MIN
        if self.state is None or (small and offset == 0):
            # A small body is cheaper to fetch again than to journal; its state is kept in
            # memory, and written if a failure makes it worth resuming (commit_now, save).
            self._drop_sidecar()
        else:
            self._sidecar_on_disk = True
            await asyncio.to_thread(write_sidecar, self.sidecar, dump_state(self.state), self.url)

    def forget(self) -> None:
        """Drop the resume state (the partial bytes are not of the resource any more)."""
        self.state = None
        self._drop_sidecar()
        self.part.truncate(0)

    def maybe_checkpoint(self) -> None:
        """Start a checkpoint in a thread when enough bytes were written since the last one,
        or a second has passed since it (one clock read per chunk: the hot loop's only cost)."""
        unrecorded = self.part.size - self._checkpointed
        if self.state is None or unrecorded == 0:
            return
        if unrecorded < CHECKPOINT_BYTES and time.monotonic() < self._next_checkpoint:
            return
        if self._pending is not None and not self._pending.done():
            return  # One at a time; the next chunk will ask again.
        self._checkpointed = self.part.size
        self._next_checkpoint = time.monotonic() + CHECKPOINT_SECONDS
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(None, self._commit, self.part.size)

    def _commit(self, size: int) -> None:
        """fsync the data, then record it: never the other way round."""
        fd, state = self.part.fileno(), self.state
        if fd is None or state is None:
            return
        os.fdatasync(fd)
        committed = state.with_committed(size)
        self._sidecar_on_disk = True
        write_sidecar(self.sidecar, dump_state(committed), self.url)
        self.state = committed  # a retry in this run plans from what is durable

    async def settle(self) -> None:
        """Wait for an in-flight checkpoint (its errors surface here)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    async def commit_now(self) -> None:
        """Record every byte written so far (fsync, then sidecar), e.g. before a retry."""
        with contextlib.suppress(OSError):
            await self.settle()
        if self.state is not None and self.part.size > self.state.committed:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, self._commit, self.part.size)
            except OSError as exc:
                self.notes.append(f"could not record progress: {exc}")

    async def save(self) -> bool:
        """After a failure: make what we hold resumable, or remove it. True when kept."""
        with contextlib.suppress(OSError):  # The final commit below decides.
            await self.settle()
        if self.state is None or self.part.size == 0:
            self.discard()
            return False
        # Disk full can refuse even the sidecar; the old sidecar (if any) is still true.
        await self.commit_now()
        self.part.close()
        return True

    def discard(self) -> None:
        """Remove the partial file and its sidecar; the target is never touched."""
        self.part.discard()
        self._drop_sidecar()

    async def publish(
        self, *, no_clobber: bool, target: Path | None = None, durable: bool = True
    ) -> None:
        """Make the verified partial file the target, then drop the sidecar."""
        await self.settle()
        await self.part.publish(no_clobber=no_clobber, target=target, durable=durable)
        self._drop_sidecar()

    def record(self, state: ResumeState) -> None:
        """Write `state` as the sidecar (the caller has made its bytes durable first).
        Blocking: called from a worker thread."""
        self._sidecar_on_disk = True
        write_sidecar(self.sidecar, dump_state(state), self.url)

    def _drop_sidecar(self) -> None:
        if self._sidecar_on_disk:
            remove_quietly(self.sidecar)
            self._sidecar_on_disk = False

    @property
    def resuming(self) -> bool:
        return self.state is not None


__all__ = ["CHECKPOINT_BYTES", "CHECKPOINT_SECONDS", "Action", "Partial"]
