"""The S3 methods of `Client`, kept in a mixin of their own so that client.py stays small.

Each is a thin facade: the requests, their signing, resume and retries are in
`streamer.transfer.s3` and `streamer.transfer.s3_presigned` (needing the extra
``streamer[s3]`` for botocore's signer, except for presigned plans).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .core.retry import RetryPolicy

if TYPE_CHECKING:
    from .core.events import ProgressCallback
    from .results import S3UploadResult
    from .transfer.opener import Opener


class S3Uploads:
    """``Client.upload_s3`` and ``Client.upload_presigned_parts`` (mixed into `Client`)."""

    async def upload_s3(
        self,
        path: str | os.PathLike[str],
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        part_size: int = 16 << 20,
        parallel: int = 4,
        retry: RetryPolicy | int | None = None,
        resume: bool = True,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> S3UploadResult:
        """Upload the file at `path` to ``s3://BUCKET/KEY``: one PutObject up to `part_size`,
        else a multipart upload of `parallel` parts at once that a rerun resumes (``resume=False``
        aborts a remembered upload and starts over). Credentials, endpoint and region default
        to the AWS environment variables. Needs the extra ``streamer[s3]``.

        `headers` go with the request that creates the object (``x-amz-meta-*``,
        Cache-Control...); its Content-Type is `content_type`, else the one in `headers`, else
        guessed from the file's name (application/octet-stream when unknown). `progress`
        hears of bytes once their part is stored.
        """
        from .transfer.s3 import S3UploadRequest, s3_target, upload_s3

        if retry is None or isinstance(retry, int):
            retry = RetryPolicy(retries=retry or 0)
        target = s3_target(
            url,
            endpoint_url=endpoint_url,
            region=region,
            access_key=access_key,
            secret_key=secret_key,
            session_token=session_token,
        )
        request = S3UploadRequest(
            Path(path),
            target,
            part_size=part_size,
            parallel=parallel,
            retry=retry,
            resume=resume,
            content_type=content_type,
            headers=dict(headers or {}),
            progress=progress,
        )
        return await upload_s3(cast("Opener", self), request)

    async def upload_presigned_parts(
        self,
        path: str | os.PathLike[str],
        plan: Mapping[str, Any],
        *,
        parallel: int = 4,
        retry: RetryPolicy | int | None = None,
        progress: ProgressCallback | None = None,
    ) -> S3UploadResult:
        """Upload the file's parts to the presigned URLs of `plan` (``{"part_size": N,
        "parts": [{"part_number": k, "url": U}, ...], "complete_url": U}``), then complete it
        when the plan has a ``complete_url`` (else ``.etag`` is None). Needs no credentials.
        A rerun with the same plan and file sends only the parts not yet confirmed."""
        from .transfer.s3_presigned import upload_presigned_parts

        if retry is None or isinstance(retry, int):
            retry = RetryPolicy(retries=retry or 0)
        return await upload_presigned_parts(
            cast("Opener", self), Path(path), plan, parallel, retry, progress=progress
        )
