"""The tus methods of `Client`, kept in a mixin of their own so that client.py stays small.

Each is a thin facade: the creation, offset and PATCH requests, the remembered upload URL
and the retries are in `streamer.transfer.tus` (tus 1.0.0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from .core.retry import RetryPolicy

if TYPE_CHECKING:
    from .core.events import ProgressCallback
    from .results import TusResult
    from .transfer.opener import Opener


class TusUploads:
    """``Client.upload_resumable`` and ``Client.abort_resumable`` (mixed into `Client`)."""

    async def upload_resumable(
        self,
        endpoint: str,
        path: str | Path,
        *,
        chunk_size: int | None = None,
        metadata: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        checksum: str | None = None,
        retry: RetryPolicy | int | None = 3,
        headers: Mapping[str, str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> TusResult:
        """Upload a file to a tus 1.0.0 creation `endpoint`, resuming where the server stands.

        The upload's URL is remembered (see `streamer.storage.upload_state`), so calling this
        again after any interruption sends only what the server lacks. ``metadata`` goes into
        Upload-Metadata after ``filename`` (the file's base name); ``checksum`` (sha1, md5,
        sha256) adds Upload-Checksum to every PATCH. See `streamer.transfer.tus`.
        """
        from .core.tus import check_algorithm
        from .transfer.tus import TusRequest, run_tus

        self._refuse_broken()
        if retry is None or isinstance(retry, int):
            retry = RetryPolicy(retries=retry or 0)
        pairs = list(metadata.items()) if isinstance(metadata, Mapping) else list(metadata or [])
        path = Path(path)
        request = TusRequest(
            endpoint,
            path,
            chunk_size=chunk_size,
            metadata=(("filename", path.name), *pairs),
            checksum=None if checksum is None else check_algorithm(checksum),
            headers=dict(headers or {}),
            retry=retry,
        )
        return await run_tus(cast("Opener", self), request, progress)

    async def abort_resumable(
        self, endpoint: str, path: str | Path, *, headers: Mapping[str, str] | None = None
    ) -> str:
        """Terminate the remembered tus upload of `path` to `endpoint` (DELETE); its URL."""
        from .transfer.tus import TusRequest, abort_tus

        self._refuse_broken()
        return await abort_tus(
            cast("Opener", self), TusRequest(endpoint, Path(path), headers=dict(headers or {}))
        )

    def _refuse_broken(self) -> None:
        """UsageError when the client omits a field every tus request needs (curl's -H
        'Name:' on Tus-Resumable, Upload-Offset...): refused, not sent broken."""
        from .core.headers import refuse_omitting
        from .core.tus import TUS_NEEDS

        omit = cast("Opener", self).config.omit_headers
        refuse_omitting(omit, TUS_NEEDS, "streamer will not send a broken tus request")
