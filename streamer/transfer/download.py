"""Download one URL into one file: resume what is there, retry what fails, publish when whole.

One `Partial` (locked `.part` + sidecar) lives for the whole download; each attempt plans its
request from it (fresh, or Range + If-Range), judges the answer with the pure rules of
`core.resume` before writing a byte, and streams into it. A retry is simply another attempt, so
it continues from the bytes already written under the same checks as a later run would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.checksum import Checksum, Verifier
from ..core.events import Phase, Progress, ProgressCallback
from ..core.names import name_from_content_disposition, reserved_reason
from ..core.redact import redact_url
from ..core.resume import Action, Plan, ResumeState, Verdict, judge_response, strong_validators
from ..core.resume import total_from_response as resource_total
from ..core.retry import RetryPolicy
from ..core.status import status_error
from ..errors import (
    BodyTooLarge,
    BodyTruncatedError,
    ChecksumMismatch,
    FileError,
    ProtocolError,
    Result,
    StreamerError,
)
from ..results import DownloadResult
from ..storage.files import check_free_space, preflight
from ..storage.partial import Partial
from .fastopen import open_answer, usable
from .fastpath import FastStream
from .retrying import with_retries
from .throttle import rate_throttle

Throttle = Callable[[int], Awaitable[None]]

if TYPE_CHECKING:
    from ..http.stream import Stream
    from .opener import Opener

    Answer = Stream | FastStream  # the engine's answer, or the raw path's (fastpath.py)


@dataclass(frozen=True)
class DownloadRequest:
    """One download as asked for, validated."""

    url: str
    path: Path
    max_bytes: int | None = None
    checksum: Checksum | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    accept_gzip: bool | None = None
    no_clobber: bool = False
    resume: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    remote_name: bool = False  # name the file from Content-Disposition (curl's -J)
    clobber: bool = False  # with remote_name: may a server-chosen name replace a file?
    durable: bool = True  # fsync before the rename (bulk runs sync in batches instead)
    throttle: Throttle | None = None  # awaited per chunk with its size (a rate limit)
    split: int = 1  # connections for one file (segmented download when > 1)
    wait_lock: float | None = None  # seconds to wait for another process's download of it
    # Asked before each retry the policy allows (a bulk run's budget); False: no retry.
    may_retry: Callable[[StreamerError], bool] | None = None
    # What the partial download is of, when the URL changes between runs (a presigned URL
    # signed anew each time); default: the URL.
    resume_key: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.checksum, str):
            object.__setattr__(self, "checksum", Checksum.parse(self.checksum))
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "headers", dict(self.headers or {}))


# Bodies smaller than this skip the free-space check (one statvfs per file in bulk runs); a
# full disk still stops them, with ENOSPC on write.
FREE_SPACE_CHECK_MIN = 1 << 20


class _StartOver(Exception):
    """The answer to a resume request cannot be appended; ask again from byte 0 at once."""


@dataclass
class _Job:
    """What every attempt of one download shares."""

    client: Opener
    req: DownloadRequest
    partial: Partial
    progress: ProgressCallback | None
    started: float
    attempts: int = 1


async def run_download(
    client: Opener, req: DownloadRequest, progress: ProgressCallback | None
) -> DownloadResult:
    """Carry out `req`; on failure the target is untouched and a resumable partial is kept."""
    req = with_rate_limit(req, client.config.limit_rate)
    safe_url = redact_url(req.url)
    preflight(req.path, no_clobber=req.no_clobber, url=safe_url)
    partial = Partial(req.path, url=redact_url(req.resume_key) if req.resume_key else safe_url)
    job = _Job(client, req, partial, progress, time.monotonic())
    await job.partial.open_waiting(req.wait_lock)
    try:
        return await _with_retries(job)
    except BaseException as exc:
        await _leave(job.partial, exc)
        raise


async def _with_retries(job: _Job) -> DownloadResult:
    async def attempt(n: int) -> DownloadResult:
        job.attempts = n
        return await _attempt(job)

    async def before_retry(exc: StreamerError, n: int) -> None:
        job.partial.notes.append(f"attempt {n} failed ({exc}); retrying")
        await job.partial.commit_now()  # the retry continues from what is durable

    may_retry = job.req.may_retry or (lambda _exc: True)
    return await with_retries(
        attempt, job.req.retry, may_retry=may_retry, before_retry=before_retry
    )


def with_rate_limit(req: DownloadRequest, rate: float | None) -> DownloadRequest:
    """`req` held to `rate` bytes/s (the client's --limit-rate) unless it has a throttle."""
    if rate is None or req.throttle is not None:
        return req
    return replace(req, throttle=rate_throttle(rate))


async def _leave(partial: Partial, exc: BaseException) -> None:
    """After a final failure: keep a resumable partial unless its bytes are known bad."""
    if isinstance(exc, (ChecksumMismatch, BodyTooLarge)):
        partial.discard()
    else:
        await partial.save()


async def _attempt(job: _Job) -> DownloadResult:
    """One attempt; a resume answer that cannot be appended is asked for again, whole, once."""
    req, partial = job.req, job.partial
    checksum = str(req.checksum) if req.checksum else None
    decode = job.client.config.accept_gzip if req.accept_gzip is None else req.accept_gzip
    for _ in range(2):
        # Ranges of an encoded body would be ranges of the encoding: resume only raw bodies.
        plan = partial.plan(checksum=checksum, resume=req.resume and not decode)
        try:
            return await _transfer(job, plan)
        except _StartOver as why:
            partial.notes.append(f"restarting from byte 0: {why}")
            partial.forget()
    raise ProtocolError("the server kept refusing a plain request", url=partial.url)


async def _transfer(job: _Job, plan: Plan) -> DownloadResult:
    req, partial, progress = job.req, job.partial, job.progress
    headers = {**req.headers, **plan.headers}
    decode = job.client.config.accept_gzip if req.accept_gzip is None else req.accept_gzip
    async with open_answer(
        job.client,
        req.url,
        headers,
        max_bytes=req.max_bytes,
        accept_gzip=req.accept_gzip,
        fast=usable(job.client, req.url, decode=decode),
        progress=progress,
    ) as stream:
        offset = _judge(partial, plan, stream)
        if stream.status == 304:
            return await _not_modified(job, stream, keep_partial=plan.action is Action.RESUME)
        if 300 <= stream.status < 400:
            partial.notes.append(f"HTTP {stream.status} without a Location: saved its body")
        # A -J name is decided (or refused) before a byte is written.
        target = final_target(req, stream.header_text("Content-Disposition") or "")
        if offset is None:  # 416 to a resume: we hold every byte (and maybe unrecorded junk)
            partial.part.truncate(plan.offset)
        verifier = await _prepare(req, partial, stream, offset)
        if offset is None:
            offset = plan.offset
        else:
            stream.progress_base = offset
            await _pump(stream, partial, verifier, req)
        _check_length(partial, stream)
        if verifier is not None:
            verifier.check()
        _report(progress, stream, Phase.FINALIZING, partial.part.size)
        no_clobber = req.no_clobber or (target != req.path and not req.clobber)
        await partial.publish(no_clobber=no_clobber, target=target, durable=req.durable)
    _report(progress, stream, Phase.DONE, partial.part.size)
    return _result(job, stream, target, offset if plan.action is Action.RESUME else 0)


def _result(job: _Job, stream: Answer, target: Path, resumed_from: int) -> DownloadResult:
    partial = job.partial
    return DownloadResult(
        url=partial.url,
        final_url=redact_url(stream.final_url),
        path=target,
        status=stream.status,
        size=partial.part.size,
        elapsed=time.monotonic() - job.started,
        length_verified=stream.length_verified or partial.state is not None,
        content_type=stream.headers.get("Content-Type"),
        checksum=str(job.req.checksum) if job.req.checksum else None,
        redirects=stream.redirects,
        resumed_from=resumed_from,
        attempts=job.attempts,
        notes=tuple(partial.notes),
        validator=_validator(stream),
        body_path="raw" if isinstance(stream, FastStream) else "engine",
        direct_io=isinstance(stream, FastStream) and stream.direct_bytes > 0,
    )


def _validator(stream: Answer) -> str | None:
    """The strong validator of the saved body (RFC 9110 8.8.1), for the bulk journal."""
    etag, last_modified = strong_validators(stream.headers)
    return etag or last_modified


async def _not_modified(job: _Job, stream: Answer, *, keep_partial: bool) -> DownloadResult:
    """304 to a conditional request (the caller's If-None-Match or If-Modified-Since, -z): the
    file we have is current (RFC 9110 15.4.5), so it is kept as it is, not emptied; without a
    file nothing is created (as curl), and a partial being resumed stays for the next run."""
    path = job.req.path
    if keep_partial:
        await job.partial.save()
    else:
        job.partial.discard()
    exists = path.is_file()
    outcome = f"kept the existing file {path}" if exists else "no file written"
    return DownloadResult(
        url=job.partial.url,
        final_url=redact_url(stream.final_url),
        path=path,
        status=304,
        size=path.stat().st_size if exists else 0,
        elapsed=time.monotonic() - job.started,
        length_verified=False,
        content_type=None,
        checksum=None,
        redirects=stream.redirects,
        resumed_from=0,
        attempts=job.attempts,
        notes=(*job.partial.notes, f"304 Not Modified: {outcome}"),
    )


def _judge(partial: Partial, plan: Plan, stream: Answer) -> int | None:
    """Where to write the body: an offset, or None when a 416 says we are already complete."""
    resuming = plan.action is Action.RESUME
    if stream.status >= 400 and not (resuming and stream.status == 416):
        raise status_error(
            stream.url, stream.status, stream.reason, stream.headers, now=time.time()
        )
    if not resuming:
        if stream.status == 206:
            raise ProtocolError("206 Partial Content to a request without Range", url=stream.url)
        return 0
    judgement = judge_response(plan, partial.state, stream.status, stream.headers)
    if judgement.verdict is Verdict.RETRY_FRESH:
        raise _StartOver(judgement.reason)
    if judgement.verdict is Verdict.RESTART:
        partial.notes.append(f"restarting from byte 0: {judgement.reason}")
        return 0
    if judgement.verdict is Verdict.COMPLETE:
        return None
    partial.notes.append(f"resumed at byte {plan.offset}")
    return plan.offset


async def _prepare(
    req: DownloadRequest, partial: Partial, stream: Answer, offset: int | None
) -> Verifier | None:
    """Set the partial file and resume state for writing at `offset`; hash what we keep."""
    total = resource_total(stream.status, stream.headers) if stream.status != 416 else None
    if offset is not None:
        if req.max_bytes is not None and total is not None and total > req.max_bytes:
            stream.limit.check_declared(total)
        stream.limit.feed(offset)
        if total is not None and total - offset >= FREE_SPACE_CHECK_MIN:
            check_free_space(req.path.parent, total - offset, partial.url)
        await partial.begin(offset, _new_state(req, partial, stream, total))
    verifier = None
    if isinstance(req.checksum, Checksum):
        verifier = Verifier(req.checksum, url=partial.url)
    kept = partial.part.size if offset is None else offset
    if verifier is not None and kept:
        await asyncio.to_thread(partial.part.hash_prefix, verifier.update, kept)
    return verifier


def _new_state(
    req: DownloadRequest, partial: Partial, stream: Answer, total: int | None
) -> ResumeState | None:
    """The resume state for this body, or None when a partial of it could not be trusted."""
    if stream.decoding:
        return None
    etag, last_modified = strong_validators(stream.headers)
    checksum = str(req.checksum) if req.checksum else None
    if etag is None and last_modified is None and checksum is None:
        return None
    return ResumeState(
        url=partial.url,
        final_url=redact_url(stream.final_url),
        etag=etag,
        last_modified=last_modified,
        total=total,
        checksum=checksum,
    )


async def _pump(
    stream: Answer, partial: Partial, verifier: Verifier | None, req: DownloadRequest
) -> None:
    """Response chunks into the file (and the hash): the hot loop, kept free of extra work."""
    if isinstance(stream, FastStream):
        await stream.pump(partial, verifier, durable=req.durable, throttle=req.throttle)
        return
    throttle = req.throttle
    write = partial.part.write
    checkpoint = partial.maybe_checkpoint
    update = verifier.update if verifier is not None else None
    async for chunk in stream:
        if update is not None:
            update(chunk)
        write(chunk)
        checkpoint()
        if throttle is not None:
            await stream.pay(throttle, len(chunk))  # our pacing: not the peer's slowness
    await partial.settle()


def final_target(req: DownloadRequest, disposition: str) -> Path:
    """`req.path`, or with remote_name the safe Content-Disposition name in the same directory.

    `name_from_content_disposition` keeps only one safe path component (RFC 6266 section 4.3),
    so the file always lands in the directory that was asked for.
    """
    if not req.remote_name:
        return req.path
    name = name_from_content_disposition(disposition)
    if not name:
        return req.path
    why = reserved_reason(name)
    if why is not None:  # e.g. "x.part.json": publishing it would then delete it as a sidecar
        raise FileError(
            f"server-chosen name refused: {why}",
            path=str(req.path.parent / name),
            result=Result.DOWNLOAD_FILE_CANT_OPEN,
            url=redact_url(req.url),
        )
    return req.path.parent / name


def _check_length(partial: Partial, stream: Answer) -> None:
    """The file must hold the whole resource (a 206 may legally end early: that is a retry)."""
    state = partial.state
    total = state.total if state is not None else None
    if total is not None and partial.part.size != total:
        raise BodyTruncatedError(
            f"file holds {partial.part.size} bytes, {total - partial.part.size} more expected",
            url=stream.url,
            received=partial.part.size,
            expected=total,
        )


def _report(progress: ProgressCallback | None, stream: Answer, phase: Phase, done: int) -> None:
    if progress is not None:
        progress(Progress(stream.url, phase, done, stream.progress_total))
