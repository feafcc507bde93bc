"""S3 uploads: one PutObject for a small file, else a resumable, parallel multipart upload.

CreateMultipartUpload, then UploadPart requests in parallel (each part streamed from the file
at its offset with an exact Content-Length, retried alone), then CompleteMultipartUpload. The
UploadId is remembered (`storage.upload_state`, kind "s3") under a key of endpoint, bucket,
key, absolute path, size and mtime; a rerun lists the parts already stored (ListParts) and
sends only the others. A failure that a rerun could not resume (the file changed, the service
refused) aborts the upload, so no orphan parts are left to be billed; so does a new upload of
a path whose remembered upload (same endpoint, bucket, key and path) was of the file before it
changed, since that one can never be resumed.

The object is created with a Content-Type (`s3_wire.object_headers`), and progress reports
count the bytes of confirmed parts only (`s3_wire.Confirmed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from ..core.events import ProgressCallback
from ..core.retry import RetryPolicy
from ..core.s3 import (
    DEFAULT_PART_SIZE,
    Credentials,
    Endpoint,
    ListedPart,
    Part,
    S3Location,
    choose_part_size,
    complete_xml,
    parse_complete,
    parse_list_parts,
    parse_s3_url,
    parse_upload_id,
    plan_parts,
    resolve_credentials,
    resolve_endpoint,
)
from ..errors import (
    FileError,
    HTTPStatusError,
    NetworkError,
    ProtocolError,
    Result,
    S3Error,
    SourceChangedError,
    StreamerError,
    evolve,
)
from ..http.bodies import BytesBody, FileBody, file_identity
from ..http.s3sign import require_signer, sign_headers
from ..lane.keepalive import RawPool
from ..results import S3UploadResult
from ..storage.upload_state import drop_state, find_states, load_state, save_state
from .deadline import FileDeadline, bounded
from .retrying import with_retries
from .s3_wire import Answer, Confirmed, etag_of, exchange, object_headers, run_parallel
from .throttle import RateThrottle, rate_throttle

if TYPE_CHECKING:
    from .opener import Opener

_MAX_LIST_PAGES = 20  # 10,000 parts at 1,000 a page, with room
# Parts are read in smaller chunks than a single upload: with `parallel` parts in flight,
# each holds about two chunks (the one held back until the file is checked, the one sent).
PART_READ_SIZE = 256 << 10


@dataclass(frozen=True)
class S3Target:
    endpoint: Endpoint
    location: S3Location
    creds: Credentials


def s3_target(
    url: str,
    *,
    endpoint_url: str | None,
    region: str | None,
    access_key: str | None = None,
    secret_key: str | None = None,
    session_token: str | None = None,
) -> S3Target:
    """Where ``s3://B/K`` goes and with which keys (arguments first, then the environment).
    Without botocore (the extra) or without credentials this is a UsageError, before any I/O."""
    location = parse_s3_url(url)
    require_signer()
    endpoint = resolve_endpoint(endpoint_url, region, os.environ, location.bucket)
    creds = resolve_credentials(access_key, secret_key, session_token, os.environ)
    return S3Target(endpoint, location, creds)


@dataclass(frozen=True)
class S3UploadRequest:
    path: Path
    target: S3Target
    part_size: int = DEFAULT_PART_SIZE
    parallel: int = 4
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    resume: bool = True
    content_type: str | None = None  # else from `headers`, else guessed from the file name
    headers: Mapping[str, str] = field(default_factory=dict)  # sent when creating the object
    progress: ProgressCallback | None = None


@dataclass
class _Run:
    """One run's moving parts: the client, what was sent, the file as it was at the start."""

    client: Opener
    req: S3UploadRequest
    identity: tuple[int, int, int, int]
    sent: int = 0
    notes: list[str] = field(default_factory=list)
    confirmed: Confirmed | None = None
    # The client's limit_rate for the whole upload: all the parts in flight share it, as the
    # segments of a --split download share theirs.
    throttle: RateThrottle | None = None

    @property
    def headers(self) -> dict[str, str]:
        return object_headers(self.req.path, self.req.content_type, self.req.headers)

    def confirm(self, length: int) -> None:
        if self.confirmed is not None:
            self.confirmed.add(length)


async def upload_s3(client: Opener, req: S3UploadRequest) -> S3UploadResult:
    """Upload ``req.path`` to ``req.target``; see the module docstring."""
    started = time.monotonic()
    try:
        st = os.stat(req.path)
    except OSError as exc:
        raise FileError(
            f"cannot read {req.path}: {exc.strerror}",
            path=str(req.path),
            result=Result.SOURCE_READ_ERROR,
        ) from exc
    run = _Run(client, req, file_identity(st), throttle=rate_throttle(client.config.limit_rate))
    size = st.st_size
    part_size = choose_part_size(size, req.part_size)
    if size <= part_size:
        run.confirmed = Confirmed(str(req.target.location), size, req.progress)
        etag = await _put_object(run)
        run.confirmed.finish()
        return _result(run, etag, (), 0, started)
    # One --max-time for create, every part in flight (and its retries) and complete; past
    # it the parts in flight are cut and the upload is kept for a rerun, as on SIGTERM.
    deadline = FileDeadline.start(client.config.total_timeout)
    async with bounded(deadline, str(req.target.location), "upload"):
        etag, parts, resumed = await _multipart(run, part_size)
    if run.confirmed is not None:
        run.confirmed.finish()
    return _result(run, etag, parts, resumed, started)


def _result(
    run: _Run, etag: str, parts: Sequence[tuple[int, str]], resumed: int, started: float
) -> S3UploadResult:
    return S3UploadResult(
        url=str(run.req.target.location),
        etag=etag,
        size=run.identity[0],
        parts=tuple(parts),
        sent=run.sent,
        resumed_parts=resumed,
        elapsed=time.monotonic() - started,
        notes=tuple(run.notes),
        content_type=run.headers["Content-Type"],
    )


async def _put_object(run: _Run) -> str:
    target = run.req.target
    url = target.endpoint.object_url(target.location)

    async def attempt(_n: int) -> str:
        body = FileBody(run.req.path, identity=run.identity)
        headers = sign_headers(
            "PUT", url, target.creds, target.endpoint.region, headers=run.headers
        )
        _status, answer_headers, _ = await exchange(
            run.client, "PUT", url, headers, body, throttle=run.throttle
        )
        run.sent += body.length or 0
        return etag_of(answer_headers, url)

    return await with_retries(attempt, run.req.retry)


def _state_key(run: _Run) -> dict[str, str | int]:
    target = run.req.target
    return {
        "endpoint": target.endpoint.url,
        "bucket": target.location.bucket,
        "key": target.location.key,
        "path": str(run.req.path.absolute()),
        "size": run.identity[0],
        "mtime": run.identity[1],
    }


async def _multipart(run: _Run, part_size: int) -> tuple[str, list[tuple[int, str]], int]:
    key = _state_key(run)
    upload_id, part_size, listed = await _open_upload(run, key, part_size)
    plan = plan_parts(run.identity[0], part_size)
    try:
        done = {p.number: listed[p.number].etag for p in plan if _fits(listed.get(p.number), p)}
        missing = [p for p in plan if p.number not in done]
        stored = run.identity[0] - sum(p.length for p in missing)
        location = str(run.req.target.location)
        run.confirmed = Confirmed(location, run.identity[0], run.req.progress, stored)
        done.update(await _send_parts(run, upload_id, missing))
        _check_unchanged(run)
        parts = sorted(done.items())
        etag = await _complete(run, upload_id, parts)
    except BaseException as exc:
        if not _resumable(exc):
            await _abort(run, upload_id)
            drop_state("s3", key)
        raise
    drop_state("s3", key)
    return etag, parts, len(plan) - len(missing)


async def _open_upload(
    run: _Run, key: dict[str, str | int], part_size: int
) -> tuple[str, int, dict[int, ListedPart]]:
    """The remembered upload (its part size and the parts the server lists), or a new one
    (remembered before any part is sent). ``resume=False`` aborts a remembered one first."""
    record, note = load_state("s3", key)
    if note:
        run.notes.append(note)
    upload_id = record.get("upload_id") if record else None
    if isinstance(upload_id, str) and run.req.resume:
        if record and isinstance(record.get("part_size"), int):
            part_size = record["part_size"]
        try:
            return upload_id, part_size, await _list_parts(run, upload_id)
        except S3Error as exc:
            if exc.result is not Result.UPLOAD_EXPIRED:
                raise
            drop_state("s3", key)
            gone = f"{exc.message}; the remembered upload is gone, run again to start over"
            raise evolve(exc, message=gone) from None
    if isinstance(upload_id, str):
        await _abort(run, upload_id)
        drop_state("s3", key)
    await _abort_stale(run, key)
    upload_id = await _create(run)
    save_state("s3", key, {"upload_id": upload_id, "part_size": part_size})
    return upload_id, part_size, {}


async def _abort_stale(run: _Run, key: Mapping[str, str | int]) -> None:
    """Abort the remembered uploads to this object from this path whose file has changed
    since (another size or mtime): no rerun can resume them, so they are only orphans."""
    same = {name: key[name] for name in ("endpoint", "bucket", "key", "path")}
    for other, record in find_states("s3", same):
        upload_id = record.get("upload_id")
        if other != key and isinstance(upload_id, str):
            await _abort(run, upload_id)
            drop_state("s3", other)
            run.notes.append("aborted the remembered upload of this file before it changed")


def _fits(listed: ListedPart | None, part: Part) -> bool:
    """A listed part counts when its size is the plan's; its ETag is the server's word."""
    return listed is not None and listed.size == part.length


def _resumable(exc: BaseException) -> bool:
    """Whether a rerun of the same command could continue this upload (then it is kept)."""
    if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
        return True
    if isinstance(exc, (SourceChangedError, FileError)):
        return False
    if isinstance(exc, HTTPStatusError):
        return exc.retryable
    return isinstance(exc, (NetworkError, ProtocolError))


def _check_unchanged(run: _Run) -> None:
    try:
        now = file_identity(os.stat(run.req.path))
    except OSError:
        now = None
    if now != run.identity:
        raise SourceChangedError(
            f"{run.req.path} changed during the upload; the multipart upload was aborted",
            path=str(run.req.path),
        )


def _url(run: _Run, query: str) -> str:
    target = run.req.target
    return target.endpoint.object_url(target.location, query)


async def _signed(
    run: _Run,
    method: str,
    query: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """A small signed request (payload hashed), retried under the policy."""
    target = run.req.target
    url = _url(run, query)
    region = target.endpoint.region

    async def attempt(_n: int) -> Answer:
        signed = sign_headers(method, url, target.creds, region, body=body or b"", headers=headers)
        sent = BytesBody(body or b"") if body is not None or method == "POST" else None
        return await exchange(run.client, method, url, signed, sent)

    return await with_retries(attempt, run.req.retry)


async def _create(run: _Run) -> str:
    _status, _headers, answer = await _signed(run, "POST", "uploads", headers=run.headers)
    return parse_upload_id(answer)


async def _list_parts(run: _Run, upload_id: str) -> dict[int, ListedPart]:
    listed: dict[int, ListedPart] = {}
    marker: int | None = 0
    for _page in range(_MAX_LIST_PAGES):
        query = f"part-number-marker={marker}&uploadId={quote(upload_id, safe='')}"
        _s, _h, answer = await _signed(run, "GET", query if marker else query.partition("&")[2])
        page = parse_list_parts(answer)
        listed.update((p.number, p) for p in page.parts)
        marker = page.next_marker
        if marker is None:
            return listed
    raise ProtocolError(f"ListParts did not end after {_MAX_LIST_PAGES} pages")


async def _abort(run: _Run, upload_id: str) -> None:
    """AbortMultipartUpload, best effort: its failure must not hide the error that led here."""
    with contextlib.suppress(StreamerError):
        await asyncio.shield(_signed(run, "DELETE", f"uploadId={quote(upload_id, safe='')}"))


async def _complete(run: _Run, upload_id: str, parts: Sequence[tuple[int, str]]) -> str:
    query = f"uploadId={quote(upload_id, safe='')}"
    _s, _h, answer = await _signed(run, "POST", query, complete_xml(parts))
    return parse_complete(answer)


async def _send_parts(run: _Run, upload_id: str, parts: Sequence[Part]) -> dict[int, str]:
    target = run.req.target

    async def send(part: Part) -> str:
        url = _url(run, f"partNumber={part.number}&uploadId={quote(upload_id, safe='')}")

        async def attempt(_n: int) -> str:
            body = FileBody(
                run.req.path,
                start=part.offset,
                length=part.length,
                identity=run.identity,
                read_size=PART_READ_SIZE,
            )
            headers = sign_headers("PUT", url, target.creds, target.endpoint.region)
            _status, answer_headers, _ = await exchange(
                run.client, "PUT", url, headers, body, pool=pool, throttle=run.throttle
            )
            run.sent += part.length
            return etag_of(answer_headers, url)

        etag = await with_retries(attempt, run.req.retry)
        run.confirm(part.length)
        return etag

    with RawPool(run.req.parallel) as pool:  # plain http: parts on kept connections
        return await run_parallel(parts, run.req.parallel, send)
