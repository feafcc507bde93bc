"""Resumable uploads with tus 1.0.0: OPTIONS, POST (creation), HEAD, PATCH, DELETE (termination).

One run: ask OPTIONS for the server's extensions; resume the remembered upload of this file to
this endpoint (HEAD for its Upload-Offset) or create one (POST with Upload-Length and
Upload-Metadata) and remember its URL at once; then PATCH from the server's offset, each PATCH
a slice of the file streamed from disk with an exact Content-Length (at most ``chunk_size``
bytes). The server's offset is the truth: after a broken PATCH (next attempt of the one retry
loop), a 409 or a 423, HEAD asks it again and only the rest is sent. The decisions are in
`streamer.core.tus`; the remembered URLs in `streamer.storage.upload_state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from multidict import CIMultiDict

from ..core import tus
from ..core.checksum import new_hasher
from ..core.events import Phase, Progress, ProgressCallback
from ..core.redact import redact_url
from ..core.retry import RetryPolicy
from ..core.status import status_error
from ..errors import (
    BodyTooLarge,
    ChecksumMismatch,
    FileError,
    HTTPStatusError,
    ProtocolError,
    Result,
    SourceChangedError,
    StreamerError,
    UsageError,
)
from ..http.bodies import Body, BytesBody, FileBody
from ..lane.keepalive import RawPool
from ..results import TusResult
from ..storage.upload_state import drop_state, load_state, save_state
from .deadline import FileDeadline, bounded
from .rawsend import send_body
from .retrying import with_retries
from .throttle import RateThrottle, rate_throttle
from .upload import expect_headers

if TYPE_CHECKING:
    from .opener import Opener

KIND = "tus"
# A tus answer carries no meaningful body; an error's first bytes are kept for its message.
ANSWER_LIMIT = 64 << 10
# 409 (offset mismatch) and 423 (locked) are resolved by asking HEAD again, at most this many
# times per attempt, so a server that keeps answering them cannot hold a run forever.
MAX_RESYNCS = 8
LOCKED_WAIT_CAP = 5.0
# tus 1.0.0 PATCH: a removed upload "SHOULD" get 404 Not Found or 410 Gone (403 may be an
# authorization failure, which must not make streamer forget the upload).
_GONE = frozenset({404, 410})


@dataclass(frozen=True)
class TusRequest:
    endpoint: str
    path: Path
    chunk_size: int | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    checksum: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass
class _Run:
    """What one run knows so far (mutable: the attempts of the retry loop share it)."""

    req: TusRequest
    size: int
    mtime_ns: int
    key: dict[str, str]
    url: str | None = None
    info: tus.ServerInfo | None = None
    resumed_from: int | None = None
    sent: int = 0
    notes: list[str] = field(default_factory=list)
    # Over plain http every request of the run goes the raw way on one kept connection.
    pool: RawPool = field(default_factory=RawPool)
    throttle: RateThrottle | None = None  # one rate for every PATCH of the run

    @property
    def safe(self) -> str:
        return redact_url(self.url or self.req.endpoint)


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: str
    headers: CIMultiDict[str]
    body: bytes  # of an error answer (status >= 400), else b""

    def error(self, url: str, what: str, note: str = "") -> HTTPStatusError:
        return status_error(
            url,
            self.status,
            self.reason,
            self.headers,
            self.body,
            now=time.time(),
            doing=what,
            note=note,
        )


async def _call(
    client: Opener,
    method: str,
    url: str,
    headers: Mapping[str, str],
    *,
    pool: RawPool,
    body: Body | None = None,
    on_sent: object = None,
    throttle: RateThrottle | None = None,
) -> _Answer:
    """One request; the answer's status, headers and (for errors) the start of its body."""
    async with send_body(
        client,
        method,
        url,
        body=body,
        headers=headers,
        max_bytes=ANSWER_LIMIT,
        on_sent=on_sent,
        pool=pool,
        throttle=throttle,
    ) as stream:
        data = b""
        if method != "HEAD":
            # Read a small answer whole, so the connection can carry the next request.
            with contextlib.suppress(BodyTooLarge):
                data = await stream.read()
        shown = data if stream.status >= 400 else b""
        return _Answer(stream.status, stream.reason, CIMultiDict(stream.headers), shown)


def _base_headers(run: _Run) -> dict[str, str]:
    return {**run.req.headers, "Tus-Resumable": tus.TUS_VERSION}


def _not_tus(run: _Run, what: str) -> StreamerError:
    return StreamerError(
        f"{what} is not a tus 1.0.0 answer (no Tus-Resumable or Location); nothing more is sent",
        url=run.safe,
        result=Result.NOT_RESUMABLE,
    )


async def _options(client: Opener, run: _Run) -> tus.ServerInfo:
    """The server's extensions (tus 1.0.0 OPTIONS); an endpoint refusing OPTIONS has none."""
    answer = await _call(client, "OPTIONS", run.req.endpoint, run.req.headers, pool=run.pool)
    if answer.status >= 400:
        return tus.ServerInfo()  # the POST will tell whether a tus endpoint is there
    if not tus.speaks_tus(answer.headers):
        raise _not_tus(run, "the OPTIONS answer")
    info = tus.server_info(answer.headers)
    if run.req.checksum is not None:
        tus.check_checksum_support(info, run.req.checksum)
    return info


async def _create(client: Opener, run: _Run) -> str:
    """POST (tus 1.0.0 creation): the new upload's URL, remembered before a byte is sent."""
    headers = _base_headers(run) | {"Upload-Length": str(run.size)}
    metadata = tus.encode_metadata(run.req.metadata)
    if metadata:
        headers["Upload-Metadata"] = metadata
    answer = await _call(
        client, "POST", run.req.endpoint, headers, pool=run.pool, body=BytesBody(b"")
    )
    if answer.status >= 400:
        limit = run.info.max_size if run.info is not None else None
        note = ""
        if answer.status == 413 and limit is not None:
            note = f"the server's Tus-Max-Size is {limit}, the file {run.size}"
        raise answer.error(run.safe, "creating the upload", note)
    url = tus.upload_url(run.req.endpoint, answer.headers.get("Location"))
    if url is None or not tus.speaks_tus(answer.headers):
        raise _not_tus(run, "the creation answer")
    record = tus.state_record(url, run.size, run.mtime_ns)
    await asyncio.to_thread(save_state, KIND, run.key, record)  # fsyncs: off the loop
    return url


async def _head(client: Opener, run: _Run, url: str) -> int | None:
    """The server's offset of the upload (tus 1.0.0 HEAD); None when the server holds another
    length for it (then a new upload is made)."""
    answer = await _call(client, "HEAD", url, _base_headers(run), pool=run.pool)
    if answer.status in _GONE:
        drop_state(KIND, run.key)
        raise StreamerError(
            f"the server no longer has the upload (HTTP {answer.status}); it is forgotten, "
            "the next run starts a new upload",
            url=redact_url(url),
            result=Result.UPLOAD_EXPIRED,
        )
    if answer.status >= 400:
        raise answer.error(redact_url(url), "asking the upload's offset")
    if not tus.speaks_tus(answer.headers):
        raise _not_tus(run, "the HEAD answer")
    length = tus.parse_count(answer.headers.get("Upload-Length"))
    if length is not None and length != run.size:
        run.notes.append(
            f"the server holds {length} bytes for the remembered upload, not {run.size}; "
            "starting a new upload"
        )
        return None
    return tus.check_offset(
        tus.parse_count(answer.headers.get("Upload-Offset")), run.size, redact_url(url)
    )


async def _start(client: Opener, run: _Run) -> int:
    """The offset this attempt continues from: the server's, or 0 for a new upload."""
    if run.info is None:
        run.info = await _options(client, run)
    if run.url is not None:
        offset = await _head(client, run, run.url)
        if offset is not None:
            return offset
    run.url = await _create(client, run)
    return 0


def _check_unchanged(run: _Run) -> None:
    try:
        st = os.stat(run.req.path)
    except OSError as exc:
        raise FileError(
            f"cannot read {run.req.path}: {exc.strerror}",
            path=str(run.req.path),
            result=Result.SOURCE_READ_ERROR,
        ) from exc
    if (st.st_size, st.st_mtime_ns) != (run.size, run.mtime_ns):
        raise SourceChangedError(
            f"{run.req.path} changed since the upload began (size or mtime); the next run "
            "starts a new upload",
            path=str(run.req.path),
        )


async def _digest(path: Path, start: int, length: int, algorithm: str) -> str:
    """Upload-Checksum of a slice: it is a header, so it is known before the body goes; the
    slice is hashed by one streaming read (from the page cache, usually) before it is sent."""
    hasher = new_hasher(algorithm)
    async for chunk in FileBody(path, start=start, length=length).open():
        hasher.update(chunk)
    return tus.checksum_header(algorithm, bytes.fromhex(hasher.hexdigest()))


async def _patch(
    client: Opener, run: _Run, url: str, offset: int, progress: ProgressCallback | None
) -> _Answer:
    """One PATCH of the next slice from `offset`, streamed from disk."""
    length = tus.next_chunk(offset, run.size, run.req.chunk_size)
    _check_unchanged(run)
    body = FileBody(run.req.path, tus.OFFSET_CONTENT_TYPE, start=offset, length=length)
    headers = _base_headers(run) | {"Upload-Offset": str(offset)}
    if run.req.checksum is not None:
        headers["Upload-Checksum"] = await _digest(run.req.path, offset, length, run.req.checksum)
    before = run.sent
    safe = redact_url(url)

    def on_sent(done: int) -> None:
        run.sent = before + done
        if progress is not None:
            progress(Progress(safe, Phase.UPLOADING, offset + done, run.size))

    headers = expect_headers(headers, body, None, client.config.omit_headers)
    return await _call(
        client,
        "PATCH",
        url,
        headers,
        pool=run.pool,
        body=body,
        on_sent=on_sent,
        throttle=run.throttle,
    )


async def _send_rest(
    client: Opener, run: _Run, offset: int, progress: ProgressCallback | None
) -> None:
    """PATCH until the server holds the whole file; 409 and 423 make it ask HEAD again."""
    assert run.url is not None
    url, resyncs = run.url, 0
    while offset < run.size:
        answer = await _patch(client, run, url, offset, progress)
        if answer.status in (409, 423) and resyncs < MAX_RESYNCS:
            resyncs += 1
            if answer.status == 423:  # locked by another request: wait for it to let go
                await asyncio.sleep(min(LOCKED_WAIT_CAP, 0.25 * 2**resyncs))
            head = await _head(client, run, url)
            if head is None:
                raise ProtocolError("the server changed the upload's length", url=run.safe)
            offset = head
            continue
        offset = _accepted(run, answer, offset)


def _accepted(run: _Run, answer: _Answer, offset: int) -> int:
    """The new offset from a PATCH answer, or the error it stands for."""
    safe = run.safe
    if answer.status == 460:  # tus 1.0.0 Checksum: the bytes arrived damaged; send again
        raise ChecksumMismatch(
            f"the server found the checksum of the chunk at {offset} wrong (HTTP 460)",
            expected="",
            actual="",
            url=safe,
            retryable=True,
        )
    if answer.status in _GONE:
        drop_state(KIND, run.key)
        raise StreamerError(
            f"the server no longer has the upload (HTTP {answer.status}); it is forgotten",
            url=safe,
            result=Result.UPLOAD_EXPIRED,
        )
    if answer.status >= 400:
        raise answer.error(safe, f"sending bytes from {offset}")
    if not tus.speaks_tus(answer.headers):
        raise _not_tus(run, "the PATCH answer")
    new = tus.check_offset(tus.parse_count(answer.headers.get("Upload-Offset")), run.size, safe)
    if new <= offset:
        raise ProtocolError(f"the server took no bytes at offset {offset}", url=safe)
    return new


def _open_run(req: TusRequest) -> _Run:
    """The file's size and mtime, and what is remembered about its upload to this endpoint."""
    try:
        st = os.stat(req.path)
    except OSError as exc:
        raise FileError(
            f"cannot read {req.path}: {exc.strerror}",
            path=str(req.path),
            result=Result.SOURCE_READ_ERROR,
        ) from exc
    if not req.path.is_file():
        raise FileError(
            f"cannot upload {req.path}: not a regular file",
            path=str(req.path),
            result=Result.SOURCE_READ_ERROR,
        )
    key = tus.state_key(req.endpoint, str(req.path.resolve()))
    run = _Run(req, st.st_size, st.st_mtime_ns, key)
    record, note = load_state(KIND, key)
    if note is not None:
        run.notes.append(f"{note}; starting a new upload")
    if record is not None:
        run.url, why = tus.resume_url(record, run.size, run.mtime_ns)
        if run.url is None:
            run.notes.append(why)
    return run


async def run_tus(client: Opener, req: TusRequest, progress: ProgressCallback | None) -> TusResult:
    """Upload `req.path` to the tus endpoint, resuming the remembered upload when there is one."""
    if req.chunk_size is not None and req.chunk_size <= 0:
        raise UsageError(f"chunk size must be positive: {req.chunk_size}")
    started = time.monotonic()
    run = _open_run(req)
    run.throttle = rate_throttle(client.config.limit_rate)

    async def attempt(_n: int) -> None:
        # One --max-time for all the requests of the attempt (OPTIONS, POST, HEAD, PATCHes);
        # past it the PATCH in flight is cut and the remembered URL stays for a rerun.
        deadline = FileDeadline.start(client.config.total_timeout)
        async with bounded(deadline, run.safe, "upload"):
            offset = await _start(client, run)
            if run.resumed_from is None:
                run.resumed_from = offset
            await _send_rest(client, run, offset, progress)

    with run.pool:
        await with_retries(attempt, req.retry)
    drop_state(KIND, run.key)
    assert run.url is not None
    if progress is not None:
        progress(Progress(run.safe, Phase.DONE, run.size, run.size))
    return TusResult(
        url=redact_url(run.url),
        size=run.size,
        resumed_from=run.resumed_from or 0,
        sent=run.sent,
        elapsed=time.monotonic() - started,
        notes=tuple(run.notes),
    )


async def abort_tus(client: Opener, req: TusRequest) -> str:
    """Terminate the remembered upload (tus 1.0.0 termination: DELETE) and forget it."""
    key = tus.state_key(req.endpoint, str(req.path.resolve()))
    record, note = load_state(KIND, key)
    url = record.get("url") if record is not None else None
    if not isinstance(url, str):
        why = f" ({note})" if note else ""
        raise UsageError(
            f"no remembered tus upload of {req.path} to this endpoint{why}",
            url=redact_url(req.endpoint),
        )
    headers = {**req.headers, "Tus-Resumable": tus.TUS_VERSION}
    with RawPool() as pool:
        answer = await _call(client, "DELETE", url, headers, pool=pool)
    if answer.status >= 400 and answer.status not in _GONE:
        raise answer.error(redact_url(url), "terminating the upload")
    drop_state(KIND, key)
    return redact_url(url)


__all__ = ["TusRequest", "abort_tus", "run_tus"]
