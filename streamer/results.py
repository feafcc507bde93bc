"""What a finished transfer returns: plain frozen values, safe to print (URLs are redacted)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Result


@dataclass(frozen=True)
class DownloadResult:
    """A download that succeeded: the file is complete, verified and under its final name.

    ``resumed_from`` is the byte offset the last attempt continued from (0: whole body);
    ``notes`` say what happened on the way (resumed, restarted and why, retries).
    ``length_verified`` is False only for a body that declared no length and was ended by the
    server closing the connection (HTTP/1.0 style): such a body cannot be told from a truncated
    one, unless a checksum was given.
    """

    url: str
    final_url: str
    path: Path
    status: int
    size: int
    elapsed: float
    length_verified: bool
    content_type: str | None = None
    checksum: str | None = None
    redirects: int = 0
    resumed_from: int = 0
    attempts: int = 1
    notes: tuple[str, ...] = ()
    result: Result = Result.SUCCESS
    validator: str | None = None  # the strong ETag or Last-Modified of what was saved
    # How the body was read: "raw" (a socket into a reused buffer, transfer/fastpath.py) or
    # "engine" (aiohttp).
    body_path: str = "engine"
    # Whether body bytes went to disk with O_DIRECT (large raw-path bodies, storage/direct.py).
    direct_io: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "final_url": self.final_url,
            "path": str(self.path),
            "status": self.status,
            "size": self.size,
            "elapsed": round(self.elapsed, 6),
            "length_verified": self.length_verified,
            "content_type": self.content_type,
            "checksum": self.checksum,
            "redirects": self.redirects,
            "resumed_from": self.resumed_from,
            "attempts": self.attempts,
            "notes": list(self.notes),
            "result": self.result.value,
            "body_path": self.body_path,
            "direct_io": self.direct_io,
        }


@dataclass(frozen=True)
class FetchResult:
    """A body read into memory (never more than the limit that was asked)."""

    url: str
    final_url: str
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    elapsed: float
    length_verified: bool
    redirects: int = 0
    result: Result = field(default=Result.SUCCESS)

    def text(self, encoding: str = "utf-8") -> str:
        return self.body.decode(encoding, errors="replace")


@dataclass(frozen=True)
class UploadResult:
    """An upload the server accepted (status < 400), with its (bounded) answer."""

    url: str
    final_url: str
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    sent: int
    elapsed: float
    attempts: int = 1
    redirects: int = 0
    result: Result = Result.SUCCESS

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "final_url": self.final_url,
            "status": self.status,
            "reason": self.reason,
            "sent": self.sent,
            "elapsed": round(self.elapsed, 6),
            "attempts": self.attempts,
            "redirects": self.redirects,
            "result": self.result.value,
        }


@dataclass(frozen=True)
class TusResult:
    """A resumable (tus 1.0.0) upload the server holds whole.

    ``url`` is the upload's URL (redacted); ``resumed_from`` the server's offset when this run
    began (0: a new upload); ``sent`` the bytes of file this run put on the wire (more than
    ``size - resumed_from`` only when a broken PATCH had to be sent again in part).
    """

    url: str
    size: int
    resumed_from: int
    sent: int
    elapsed: float = 0.0
    notes: tuple[str, ...] = ()
    result: Result = Result.SUCCESS

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "size": self.size,
            "resumed_from": self.resumed_from,
            "sent": self.sent,
        }


@dataclass(frozen=True)
class S3UploadResult:
    """An S3 upload that the service completed (or, for a presigned plan without
    ``complete_url``, whose parts it all stored: then ``etag`` is None).

    ``parts`` are ``(part_number, etag)`` in order (empty for a single PutObject); ``sent`` is
    the bytes this run sent; ``resumed_parts`` the parts a previous run had already stored.
    """

    url: str
    etag: str | None
    size: int
    parts: tuple[tuple[int, str], ...]
    sent: int
    elapsed: float
    resumed_parts: int = 0
    notes: tuple[str, ...] = ()
    result: Result = Result.SUCCESS
    content_type: str | None = None  # the object's; None for a presigned plan's parts

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "etag": self.etag,
            "content_type": self.content_type,
            "size": self.size,
            "parts": [{"part_number": n, "etag": e} for n, e in self.parts],
            "sent": self.sent,
            "resumed_parts": self.resumed_parts,
            "elapsed": round(self.elapsed, 6),
            "notes": list(self.notes),
            "result": self.result.value,
        }
