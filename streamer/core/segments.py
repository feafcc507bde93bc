"""Segmented downloads without I/O: how to cut a resource into ranges and when to trust a 206.

A segment is ``[start, end)`` of the resource plus ``done`` bytes already written from its
start; it is asked for as ``Range: bytes=(start+done)-(end-1)`` (RFC 9110 14.1.2) with the
same strong validator in If-Range as a single-stream resume, and its 206 is checked the same
strict way before a byte is written (RFC 9110 14.4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ..errors import ProtocolError
from .ranges import format_range, parse_content_range

MIN_SEGMENT = 1 << 20


@dataclass(frozen=True)
class Segment:
    start: int
    end: int  # exclusive
    done: int = 0

    @property
    def offset(self) -> int:
        """Where the next byte of this segment goes."""
        return self.start + self.done

    @property
    def remaining(self) -> int:
        return self.end - self.offset

    @property
    def complete(self) -> bool:
        return self.offset >= self.end

    def range_header(self) -> str:
        return format_range(self.offset, self.end - 1)

    def advanced(self, n: int) -> Segment:
        return replace(self, done=min(self.done + n, self.end - self.start))


def split(total: int, parts: int, min_size: int = MIN_SEGMENT) -> tuple[Segment, ...]:
    """Cut ``total`` bytes into at most ``parts`` segments of at least ``min_size`` bytes."""
    if total <= 0:
        return ()
    count = max(1, min(parts, total // max(min_size, 1)))
    size, extra = divmod(total, count)
    segments, start = [], 0
    for i in range(count):
        length = size + (1 if i < extra else 0)
        segments.append(Segment(start, start + length))
        start += length
    return tuple(segments)


def check_segment_response(
    seg: Segment,
    status: int,
    headers: Mapping[str, str],
    total: int,
    etag: str | None,
    *,
    last_modified: str | None = None,
) -> str | None:
    """Why this answer to a segment request cannot be written at ``seg.offset``; None if it can.

    Anything but a 206 for exactly the bytes asked for, of a resource of the recorded length
    with the recorded ETag and Last-Modified, is refused: a 200 means the If-Range validator no
    longer matched (the resource changed) or the server ignores ranges. A server may ignore
    If-Range and answer 206 from a new version (RFC 9110 13.1.5 makes If-Range optional to
    honour), so the validators on the 206 itself are compared too: either one changing means
    the bytes are from another version and must not be spliced in.
    """
    if status != 206:
        return f"expected 206 for {seg.range_header()}, got {status}"
    try:
        cr = parse_content_range(headers.get("Content-Range", ""))
    except ProtocolError as exc:
        return f"unusable Content-Range: {exc.message}"
    if cr.start != seg.offset or cr.end is None or cr.end > seg.end - 1:
        return f"asked for {seg.range_header()}, got {headers.get('Content-Range')}"
    if cr.complete != total:
        return f"resource is now {cr.complete} bytes, not {total}"
    new_etag = headers.get("ETag")
    if etag is not None and new_etag is not None and new_etag != etag:
        return f"ETag changed from {etag} to {new_etag}"
    new_lm = headers.get("Last-Modified")
    if last_modified is not None and new_lm is not None and new_lm != last_modified:
        return f"Last-Modified changed from {last_modified} to {new_lm}"
    return None


def encode(segments: Sequence[Segment]) -> list[list[int]]:
    return [[s.start, s.end, s.done] for s in segments]


def decode(raw: object, total: int | None) -> tuple[Segment, ...] | None:
    """Segments from a sidecar, or None when they do not tile ``[0, total)`` exactly."""
    if not isinstance(raw, list) or total is None:
        return None
    segments: list[Segment] = []
    expected_start = 0
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3):
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in item):
            return None
        start, end, done = item
        if start != expected_start or end <= start or not 0 <= done <= end - start:
            return None
        segments.append(Segment(start, end, done))
        expected_start = end
    return tuple(segments) if expected_start == total else None
