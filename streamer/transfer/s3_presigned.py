"""A multipart upload through presigned URLs: no credentials here, the plan's URLs carry them.

The plan is checked against the file before a byte is sent (its parts must cover the file
exactly). Each part is streamed from its offset, in parallel, retried alone; with a
``complete_url`` the CompleteMultipartUpload XML is posted there, else the caller gets the
parts' ETags to complete it elsewhere. The URLs' signed query is never shown: errors carry
redacted URLs.

Each confirmed part's ETag is remembered at once (`storage.upload_state`, kind "s3plan"),
keyed by the plan's identity (`core.s3.plan_identity`: a hash of its part size and unsigned
URLs), the file's absolute path, size and mtime. A rerun with the same plan (or the same
upload's plan signed anew) and the same file sends only the parts not yet confirmed. No URL
is stored. The record is dropped on success, and when the file changed or the server no
longer knows the upload (then no rerun could use it); a record of the same plan and path
whose file has changed since is dropped when the next run begins.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.events import ProgressCallback
from ..core.retry import RetryPolicy
from ..core.s3 import (
    Part,
    PresignedPlan,
    check_presigned_plan,
    complete_xml,
    parse_complete,
    plan_identity,
)
from ..errors import FileError, Result, S3Error, SourceChangedError
from ..http.bodies import BytesBody, FileBody, file_identity
from ..lane.keepalive import RawPool
from ..results import S3UploadResult
from ..storage.upload_state import drop_state, find_states, load_state, save_state
from .deadline import FileDeadline, bounded
from .retrying import with_retries
from .s3_wire import Confirmed, etag_of, exchange, run_parallel
from .throttle import RateThrottle, rate_throttle

if TYPE_CHECKING:
    from .opener import Opener

KIND = "s3plan"


@dataclass
class _Plan:
    """One run of a plan: the file as it was at the start, and the ETags confirmed so far."""

    path: Path
    checked: PresignedPlan
    identity: tuple[int, int, int, int]
    key: dict[str, str | int]
    etags: dict[int, str] = field(default_factory=dict)
    sent: int = 0
    notes: list[str] = field(default_factory=list)
    throttle: RateThrottle | None = None  # one rate for all the parts (the client's limit)

    def remember(self, number: int, etag: str) -> None:
        self.etags[number] = etag
        record = {"part_size": self.checked.part_size, "parts": self._stored()}
        save_state(KIND, self.key, record)

    def _stored(self) -> dict[str, str]:
        return {str(n): e for n, e in sorted(self.etags.items())}


def _open(path: Path, plan: Mapping[str, Any]) -> _Plan:
    """The checked plan and the ETags a previous run of it on this same file confirmed."""
    try:
        identity = file_identity(os.stat(path))
    except OSError as exc:
        raise FileError(
            f"cannot read {path}: {exc.strerror}", path=str(path), result=Result.SOURCE_READ_ERROR
        ) from exc
    checked = check_presigned_plan(plan, identity[0])
    key: dict[str, str | int] = {
        "plan": plan_identity(checked),
        "path": str(path.absolute()),
        "size": identity[0],
        "mtime": identity[1],
    }
    run = _Plan(path, checked, identity, key)
    for other, _stale in find_states(KIND, {"plan": key["plan"], "path": key["path"]}):
        if other != key:  # parts of this file before it changed: no rerun can use them
            drop_state(KIND, other)
    record, note = load_state(KIND, key)
    if note:
        run.notes.append(note)
    stored = record.get("parts") if record else None
    if isinstance(stored, dict) and record and record.get("part_size") == checked.part_size:
        count = len(checked.urls)
        run.etags = {
            int(n): e
            for n, e in stored.items()
            if n.isdigit() and 1 <= int(n) <= count and isinstance(e, str) and e
        }
    return run


async def upload_presigned_parts(
    client: Opener,
    path: Path,
    plan: Mapping[str, Any],
    parallel: int,
    retry: RetryPolicy,
    *,
    progress: ProgressCallback | None = None,
) -> S3UploadResult:
    """Send the file's parts not yet confirmed to the plan's URLs, then complete the upload
    when the plan has a ``complete_url``; see the module docstring."""
    started = time.monotonic()
    run = _open(path, plan)
    run.throttle = rate_throttle(client.config.limit_rate)
    size = run.identity[0]
    missing = [p for p in run.checked.parts(size) if p.number not in run.etags]
    stored = size - sum(p.length for p in missing)
    confirmed = Confirmed(str(path), size, progress, stored)
    # One --max-time for every part in flight (and its retries) and complete (deadline.py).
    deadline = FileDeadline.start(client.config.total_timeout)
    try:
        async with bounded(deadline, str(path), "upload"):
            with RawPool(parallel) as pool:  # plain http: parts on kept connections
                send = _sender(client, run, retry, confirmed, pool)
                await run_parallel(missing, parallel, send)
            parts = sorted(run.etags.items())
            etag = await _complete(client, run.checked, parts, retry)
    except (SourceChangedError, FileError, S3Error) as exc:
        if not isinstance(exc, S3Error) or exc.result is Result.UPLOAD_EXPIRED:
            drop_state(KIND, run.key)
        raise
    drop_state(KIND, run.key)
    confirmed.finish()
    return S3UploadResult(
        url=str(path),
        etag=etag,
        size=size,
        parts=tuple(parts),
        sent=run.sent,
        elapsed=time.monotonic() - started,
        resumed_parts=len(run.checked.urls) - len(missing),
        notes=tuple(run.notes),
    )


def _sender(
    client: Opener, run: _Plan, retry: RetryPolicy, confirmed: Confirmed, pool: RawPool
) -> Callable[[Part], Awaitable[str]]:
    """The coroutine function that sends one part, remembers its ETag and reports it."""

    async def send(part: Part) -> str:
        url = run.checked.urls[part.number - 1]

        async def attempt(_n: int) -> str:
            body = FileBody(run.path, start=part.offset, length=part.length, identity=run.identity)
            _status, headers, _ = await exchange(
                client, "PUT", url, {}, body, pool=pool, throttle=run.throttle
            )
            run.sent += part.length
            return etag_of(headers, url)

        etag = await with_retries(attempt, retry)
        run.remember(part.number, etag)
        confirmed.add(part.length)
        return etag

    return send


async def _complete(
    client: Opener, checked: PresignedPlan, parts: list[tuple[int, str]], retry: RetryPolicy
) -> str | None:
    """POST the CompleteMultipartUpload XML to the plan's complete_url; None without one."""
    complete_url = checked.complete_url
    if complete_url is None:
        return None

    async def complete(_n: int) -> str:
        body = BytesBody(complete_xml(parts), "application/xml")
        _status, _headers, answer = await exchange(client, "POST", complete_url, {}, body)
        return parse_complete(answer)

    return await with_retries(complete, retry)
