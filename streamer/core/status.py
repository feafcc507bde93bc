"""The error for an HTTP status >= 400, built whole, the same for the full engine and the lane."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import HTTPStatusError
from .retry import parse_retry_after
from .text import excerpt

__all__ = ["status_error"]


def _field(headers: Mapping[str, str], name: str) -> str | None:
    """A field by name; `headers` may be case-insensitive (aiohttp) or lower-cased (the lane)."""
    value = headers.get(name)
    return headers.get(name.lower()) if value is None else value


def status_error(
    url: str,
    status: int,
    reason: str,
    headers: Mapping[str, str],
    body: bytes = b"",
    *,
    now: float,
    doing: str = "",
    note: str = "",
) -> HTTPStatusError:
    """The error for `status`, complete when constructed: the server's Retry-After (RFC 9110
    10.2.3, relative to `now`, POSIX seconds) and, when it is short text, the body on one line.

    `doing` names the step that got the answer ("creating the upload"), `note` adds what we
    know besides. `url` is already redacted; `reason` is kept as sent (printing escapes it)."""
    message = f"HTTP {status} {reason}".rstrip()
    if doing:
        message = f"{doing}: {message}"
    shown = excerpt(body, _field(headers, "Content-Type")) if body else ""
    if shown:
        message = f"{message}: {shown}"
    if note:
        message = f"{message} ({note})"
    return HTTPStatusError(
        message,
        url=url,
        status=status,
        reason=reason,
        retry_after=parse_retry_after(_field(headers, "Retry-After"), now),
    )
