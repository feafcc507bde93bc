"""One large file over N connections (aria2's -x/-s): Range requests written at their offsets.

The first request asks for ``bytes=0-``; a 206 with a complete length and a strong validator
(or a checksum) lets the file be split. The partial file is preallocated, each segment is
fetched with ``Range`` + ``If-Range`` and checked before a byte is written, and the segment map
lives in the sidecar (version 2) so every segment resumes after a crash. A server that ignores
ranges, or a resource with nothing to prove its identity, falls back to one stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from ..core.checksum import Checksum, Verifier
from ..core.events import Phase, Progress, ProgressCallback
from ..core.limits import BodyLimit
from ..core.redact import redact_url
from ..core.resume import ResumeState, strong_validators
from ..core.resume import total_from_response as resource_total
from ..core.segments import Segment, check_segment_response, split
from ..core.status import status_error
from ..errors import BodyTooLarge, BodyTruncatedError, Result, StreamerError, TransferTimeout
from ..results import DownloadResult
from ..storage.files import check_free_space, file_error, preflight
from ..storage.partial import Partial
from .deadline import FileDeadline, bounded
from .download import DownloadRequest, final_target, run_download, with_rate_limit
from .retrying import with_retries

if TYPE_CHECKING:
    from ..http.stream import Stream
    from .opener import Opener

CHECKPOINT_SECONDS = 2.0
_WRITE = Result.DOWNLOAD_FILE_WRITE_ERROR


class _Restart(Exception):
    """The resource changed or cannot be split any more: start over with one stream."""


class _Segmented:
    """The shared state of one segmented download (the map, the file, the checkpoints)."""

    def __init__(
        self,
        client: Opener,
        req: DownloadRequest,
        partial: Partial,
        state: ResumeState,
        progress: ProgressCallback | None,
    ) -> None:
        assert state.segments is not None and state.total is not None
        self.client, self.req, self.partial = client, req, partial
        self.progress = progress
        self.disposition = ""  # Content-Disposition of the answers, for -J
        self.state = state
        self.total = state.total
        self.segments = [Segment(*s) for s in state.segments]
        fd = partial.part.fileno()
        assert fd is not None
        self.fd = fd
        self._last_checkpoint = time.monotonic()
        self._checkpointing: asyncio.Task[None] | None = None

    def snapshot(self) -> ResumeState:
        segs = tuple((s.start, s.end, s.done) for s in self.segments)
        return replace(self.state, segments=segs, committed=0)

    def _commit(self, state: ResumeState) -> None:
        os.fdatasync(self.fd)  # the bytes the snapshot counts were written before this call
        self.partial.record(state)

    def maybe_checkpoint(self) -> None:
        if time.monotonic() - self._last_checkpoint < CHECKPOINT_SECONDS:
            return
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        self._last_checkpoint = time.monotonic()
        self._checkpointing = asyncio.ensure_future(
            asyncio.to_thread(self._commit, self.snapshot())
        )

    async def commit(self) -> None:
        if self._checkpointing is not None:
            with contextlib.suppress(OSError):
                await self._checkpointing
        await asyncio.to_thread(self._commit, self.snapshot())

    async def fetch(self, index: int) -> None:
        """Fill segment `index`, retrying transient failures from where it stopped."""

        async def attempt(_n: int) -> None:
            await self._fetch_once(index)

        await with_retries(attempt, self.req.retry)

    async def _fetch_once(self, index: int) -> None:
        seg = self.segments[index]
        headers = {**self.req.headers, "Range": seg.range_header()}
        if self.state.validator:
            headers["If-Range"] = self.state.validator
        async with self.client.stream(self.req.url, headers=headers, accept_gzip=False) as st:
            why = check_segment_response(
                seg,
                st.status,
                st.headers,
                self.total,
                self.state.etag,
                last_modified=self.state.last_modified,
            )
            if why is not None:
                raise _Restart(why)
            self.disposition = st.header_text("Content-Disposition") or self.disposition
            await self._write(index, st)
        if not self.segments[index].complete:
            raise BodyTruncatedError(
                f"segment {index} ended at byte {self.segments[index].offset} of {seg.end}",
                url=self.partial.url,
                received=self.segments[index].done,
                expected=seg.end - seg.start,
            )

    async def _write(self, index: int, stream: Stream) -> None:
        throttle = self.req.throttle
        async for chunk in stream:
            seg = self.segments[index]
            data = chunk[: seg.remaining]
            try:
                written = os.pwrite(self.fd, data, seg.offset)
            except OSError as exc:
                path, url = self.partial.part.path, self.partial.url
                raise file_error(exc, path, "write", _WRITE, url) from exc
            self.segments[index] = seg.advanced(written)
            self.maybe_checkpoint()
            self.report(Phase.BODY)
            if throttle is not None:  # one bucket for all; each stream's own waits
                await stream.pay(throttle, written)
            if self.segments[index].complete:
                return

    def report(self, phase: Phase) -> None:
        if self.progress is not None:
            done = sum(s.done for s in self.segments)
            self.progress(Progress(self.partial.url, phase, done, self.total))


async def run_segmented(
    client: Opener, req: DownloadRequest, parts: int, progress: ProgressCallback | None = None
) -> DownloadResult:
    """Download `req` over up to `parts` connections; one stream when it cannot be split."""
    req = with_rate_limit(req, client.config.limit_rate)  # one bucket for every segment
    safe_url = redact_url(req.url)
    started = time.monotonic()
    # One --max-time for the probe, every segment and their re-requests (see deadline.py).
    deadline = FileDeadline.start(client.config.total_timeout)
    preflight(req.path, no_clobber=req.no_clobber, url=safe_url)
    partial = Partial(req.path, url=redact_url(req.resume_key) if req.resume_key else safe_url)
    await partial.open_waiting(req.wait_lock)
    try:
        state = partial.state if _resumable(partial, req) else await _probe(client, req, parts)
        if state is None:
            partial.part.close()
            return await run_download(client, req, progress)
        return await _run(
            client, req, partial, state, started, progress=progress, deadline=deadline
        )
    except _Restart as why:
        partial.discard()
        # run_download keeps notes on a Partial of its own: this one goes on its result.
        result = await run_download(client, req, progress)
        note = f"segmented download restarted with one stream: {why}"
        return replace(result, notes=(note, *result.notes))
    except BodyTooLarge:
        partial.discard()  # bytes over the limit are not worth keeping, as on one stream
        raise
    except BaseException:
        partial.part.close()  # the partial and its sidecar (already current) stay for a re-run
        raise


def _resumable(partial: Partial, req: DownloadRequest) -> bool:
    state = partial.state
    if not req.resume or state is None or state.segments is None or state.url != partial.url:
        return False
    checksum = str(req.checksum) if req.checksum else None
    if state.validator is None and checksum is None:
        return False
    return partial.part.size == state.total


async def _probe(client: Opener, req: DownloadRequest, parts: int) -> ResumeState | None:
    """Ask for ``bytes=0-``: a 206 with a length and a validator means the file can be split."""
    headers = {**req.headers, "Range": "bytes=0-"}
    async with client.stream(req.url, headers=headers, accept_gzip=False) as st:
        if st.status >= 400:
            raise status_error(st.url, st.status, st.reason, st.headers, now=time.time())
        total = resource_total(st.status, st.headers) if st.status == 206 else None
        etag, last_modified = strong_validators(st.headers)
        has_identity = etag is not None or last_modified is not None or req.checksum is not None
        if total is None or not has_identity or len(split(total, parts)) < 2:
            return None
        segments = split(total, parts)
        return ResumeState(
            url=redact_url(req.url),
            final_url=redact_url(st.final_url),
            etag=etag,
            last_modified=last_modified,
            total=total,
            checksum=str(req.checksum) if req.checksum else None,
            segments=tuple((s.start, s.end, 0) for s in segments),
        )


def _prepare_file(partial: Partial, total: int) -> None:
    fd = partial.part.fileno()
    assert fd is not None
    try:
        if os.fstat(fd).st_size != total:
            os.ftruncate(fd, total)
        with contextlib.suppress(OSError, AttributeError):  # not every file system can
            os.posix_fallocate(fd, 0, total)
        partial.part.size = total
    except OSError as exc:
        raise file_error(exc, partial.part.path, "preallocate", _WRITE, partial.url) from exc


async def _run(
    client: Opener,
    req: DownloadRequest,
    partial: Partial,
    state: ResumeState,
    started: float,
    *,
    progress: ProgressCallback | None,
    deadline: FileDeadline,
) -> DownloadResult:
    assert state.total is not None
    # --max-filesize holds here as on one stream: the complete length is known before a byte.
    BodyLimit(req.max_bytes, partial.url).check_declared(state.total)
    remaining = sum(e - s - d for s, e, d in state.segments or ())
    check_free_space(req.path.parent, remaining, partial.url)
    _prepare_file(partial, state.total)
    job = _Segmented(client, req, partial, state, progress)
    await job.commit()
    resumed_from = sum(s.done for s in job.segments)
    try:
        async with bounded(deadline, partial.url, "download"):
            await _fetch_all(job)
    except (asyncio.CancelledError, KeyboardInterrupt, TransferTimeout):
        # SIGINT/SIGTERM/--max-time: every segment's exact position, not the last checkpoint.
        await asyncio.shield(job.commit())
        raise
    await _verify(req, partial, state.total)
    job.report(Phase.FINALIZING)
    target = final_target(req, job.disposition)
    no_clobber = req.no_clobber or (target != req.path and not req.clobber)
    await partial.publish(no_clobber=no_clobber, target=target, durable=req.durable)
    job.report(Phase.DONE)
    return DownloadResult(
        url=partial.url,
        final_url=state.final_url,
        path=target,
        status=206,
        size=state.total,
        elapsed=time.monotonic() - started,
        length_verified=True,
        checksum=str(req.checksum) if req.checksum else None,
        resumed_from=resumed_from,
        notes=(f"downloaded in {len(job.segments)} segments",),
    )


async def _fetch_all(job: _Segmented) -> None:
    """Fill every incomplete segment at once; the first failure stops the others."""
    try:
        async with asyncio.TaskGroup() as tg:
            for i, seg in enumerate(job.segments):
                if not seg.complete:
                    tg.create_task(job.fetch(i))
    except* _Restart as group:
        raise group.exceptions[0] from None
    except* StreamerError as group:
        await job.commit()
        raise group.exceptions[0] from None


async def _verify(req: DownloadRequest, partial: Partial, total: int) -> None:
    """With a checksum, hash the assembled file (its pieces arrived out of order)."""
    if not isinstance(req.checksum, Checksum):
        return
    verifier = Verifier(req.checksum, url=partial.url)
    await asyncio.to_thread(partial.part.hash_prefix, verifier.update, total)
    try:
        verifier.check()
    except StreamerError:
        partial.discard()
        raise


__all__ = ["run_segmented"]
