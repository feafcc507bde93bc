"""A multipart upload through presigned URLs: no credentials here, the plan's URLs carry them.

The plan is checked against the file before a byte is sent (its parts must cover the file
exactly). Each part is streamed from its offset, in parallel, retried alone; with a
``complete_url`` the CompleteMultipartUpload XML is posted there, else the caller gets the
parts' ETags to complete it elsewhere. The URLs' signed query is never shown: errors carry
redacted URLs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.retry import RetryPolicy
from ..core.s3 import Part, check_presigned_plan, complete_xml, parse_complete
from ..errors import FileError, Result
from ..http.bodies import BytesBody, FileBody, file_identity
from ..results import S3UploadResult
from .retrying import with_retries
from .s3 import etag_of, exchange, run_parallel

if TYPE_CHECKING:
    from .opener import Opener


async def upload_presigned_parts(
    client: Opener, path: Path, plan: Mapping[str, Any], parallel: int, retry: RetryPolicy
) -> S3UploadResult:
    started = time.monotonic()
    try:
        identity = file_identity(os.stat(path))
    except OSError as exc:
        raise FileError(
            f"cannot read {path}: {exc.strerror}", path=str(path), result=Result.SOURCE_READ_ERROR
        ) from exc
    checked = check_presigned_plan(plan, identity[0])
    sent = 0

    async def send(part: Part) -> str:
        url = checked.urls[part.number - 1]

        async def attempt(_n: int) -> str:
            nonlocal sent
            body = FileBody(path, start=part.offset, length=part.length, identity=identity)
            _status, headers, _ = await exchange(client, "PUT", url, {}, body)
            sent += part.length
            return etag_of(headers, url)

        return await with_retries(attempt, retry)

    etags = await run_parallel(checked.parts(identity[0]), parallel, send)
    parts = sorted(etags.items())
    etag = None
    if checked.complete_url is not None:
        complete_url = checked.complete_url

        async def complete(_n: int) -> str:
            body = BytesBody(complete_xml(parts), "application/xml")
            _status, _headers, answer = await exchange(client, "POST", complete_url, {}, body)
            return parse_complete(answer)

        etag = await with_retries(complete, retry)
    return S3UploadResult(
        url=str(path),
        etag=etag,
        size=identity[0],
        parts=tuple(parts),
        sent=sent,
        elapsed=time.monotonic() - started,
    )
