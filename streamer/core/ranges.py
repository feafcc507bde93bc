"""Byte ranges: the ``Range`` request header and the ``Content-Range`` response header.

Pure functions over strings and integers (RFC 9110 section 14). Positions are zero-based and
``end`` is inclusive everywhere, as on the wire: ``bytes 0-9/100`` is the first ten bytes.

Client side: `format_range` builds a request header; `parse_content_range` checks what a server
answered and raises `ProtocolError` on anything malformed. Server side: `parse_range` reads a
request header against the representation size and `format_content_range` /
`format_unsatisfied` build the reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streamer.errors import ProtocolError

# RFC 9110 5.6.1 / 5.6.3: list elements are separated by "," with optional whitespace (OWS).
_OWS = " \t"
# A download resumes and splits with range requests (RFC 9110 14.2, 13.1.5): -H cannot remove
# these fields, which streamer sends for nothing else (core.headers.refuse_omitting).
RANGE_NEEDS = {
    "range": "resuming and --split ask for byte ranges with it (RFC 9110 14.2)",
    "if-range": "a resumed range must come from the same file (RFC 9110 13.1.5)",
}

# RFC 9110 14.4: Content-Range = range-unit SP ( range-resp / unsatisfied-range ), with
# range-resp = incl-range "/" ( complete-length / "*" ) and unsatisfied-range = "*/" length.
_CONTENT_RANGE = re.compile(
    r"(?P<unit>[!#$%&'*+.^_`|~0-9A-Za-z-]+) "
    r"(?:(?P<first>[0-9]+)-(?P<last>[0-9]+)/(?P<complete>[0-9]+|\*)|\*/(?P<unsat>[0-9]+))",
    re.ASCII,
)

# RFC 9110 14.1.1: int-range = first-pos "-" [ last-pos ]; suffix-range = "-" suffix-length.
_RANGE_SPEC = re.compile(r"(?P<first>[0-9]*)-(?P<last>[0-9]*)", re.ASCII)


@dataclass(frozen=True)
class ContentRange:
    """A parsed ``Content-Range``: ``start``/``end`` inclusive, ``complete`` the full length.

    ``bytes */L`` (RFC 9110 14.4, unsatisfied-range) has ``start = end = None``;
    ``bytes S-E/*`` (complete length unknown) has ``complete = None``.
    """

    start: int | None
    end: int | None
    complete: int | None

    @property
    def length(self) -> int | None:
        """How many bytes the range covers, or None for an unsatisfied range."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start + 1


@dataclass(frozen=True)
class ByteRange:
    """One satisfiable range a server will send: ``start`` to ``end``, both inclusive."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """How many bytes the range covers (never zero: RFC 9110 14.1.1 ranges are non-empty)."""
        return self.end - self.start + 1


class RangeNotSatisfiable(ValueError):
    """The single requested range lies wholly beyond the representation (RFC 9110 15.5.17)."""


def _int(digits: str) -> int | None:
    """Decimal digits to int; None if Python refuses (more digits than int() will convert)."""
    try:
        return int(digits)
    except ValueError:
        return None


def _is_bytes_unit(unit: str) -> bool:
    # RFC 9110 14.1: range units are compared case-insensitively.
    return unit.lower() == "bytes"


def parse_content_range(value: str, url: str = "") -> ContentRange:
    """Parse a ``Content-Range`` field value (RFC 9110 14.4); `ProtocolError` if malformed."""

    def bad(why: str) -> ProtocolError:
        return ProtocolError(f"bad Content-Range {value!r}: {why}", url=url)

    match = _CONTENT_RANGE.fullmatch(value.strip(_OWS))
    if match is None:
        raise bad("not 'bytes FIRST-LAST/LENGTH' or 'bytes */LENGTH'")
    if not _is_bytes_unit(match["unit"]):
        raise bad("range unit is not bytes")
    if match["unsat"] is not None:
        complete = _int(match["unsat"])
        if complete is None:
            raise bad("number too long")
        return ContentRange(None, None, complete)
    first, last = _int(match["first"]), _int(match["last"])
    complete = None if match["complete"] == "*" else _int(match["complete"])
    if first is None or last is None or (complete is None and match["complete"] != "*"):
        raise bad("number too long")
    # RFC 9110 14.4: invalid if last-pos < first-pos or complete-length <= last-pos.
    if last < first:
        raise bad("last position before first")
    if complete is not None and last >= complete:
        raise bad("last position not below the complete length")
    return ContentRange(first, last, complete)


def format_content_range(start: int, end: int, complete: int) -> str:
    """``bytes START-END/COMPLETE`` for a 206 response (RFC 9110 14.4); end is inclusive."""
    if not 0 <= start <= end < complete:
        raise ValueError(f"invalid range {start}-{end} of {complete}")
    return f"bytes {start}-{end}/{complete}"


def format_unsatisfied(complete: int) -> str:
    """``bytes */COMPLETE`` for a 416 response (RFC 9110 14.4, 15.5.17)."""
    if complete < 0:
        raise ValueError(f"negative length {complete}")
    return f"bytes */{complete}"


def format_range(start: int, end: int | None = None) -> str:
    """A ``Range`` request header value (RFC 9110 14.2): ``bytes=START-`` or ``bytes=START-END``."""
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid range {start}-{end}")
    return f"bytes={start}-" if end is None else f"bytes={start}-{end}"


def _single_spec(value: str) -> str | None:
    """The one range-spec of a bytes ``Range`` value, or None if absent, foreign or several."""
    unit, eq, range_set = value.partition("=")
    if not eq or not _is_bytes_unit(unit.strip(_OWS)):
        return None
    # RFC 9110 5.6.1: a recipient ignores empty list elements ("bytes=0-9," has one range).
    specs = [spec.strip(_OWS) for spec in range_set.split(",")]
    specs = [spec for spec in specs if spec]
    # RFC 9110 14.2: a server MAY ignore Range; we do so for several ranges and serve a 200
    # rather than multipart/byteranges.
    return specs[0] if len(specs) == 1 else None


def parse_range(value: str, size: int) -> ByteRange | None:
    """The range a server should send for ``Range: value`` over ``size`` bytes (RFC 9110 14.2).

    None means ignore the header and send the whole representation with 200: malformed,
    another unit, or more than one range. Raises `RangeNotSatisfiable` (answer 416) when
    the single range starts at or beyond ``size``, is an empty suffix, or ``size`` is 0.
    """
    spec = _single_spec(value)
    match = None if spec is None else _RANGE_SPEC.fullmatch(spec)
    if match is None or (not match["first"] and not match["last"]):
        return None
    first = _int(match["first"]) if match["first"] else None
    last = _int(match["last"]) if match["last"] else None
    if (match["first"] and first is None) or (match["last"] and last is None):
        return None
    if first is None:
        # RFC 9110 14.1.3: suffix-range, the last N bytes; more than the size means all.
        assert last is not None
        if last == 0 or size == 0:
            raise RangeNotSatisfiable(f"suffix of {last} bytes of {size}")
        return ByteRange(max(size - last, 0), size - 1)
    # RFC 9110 14.1.1: invalid if last-pos < first-pos; the whole header is then ignored.
    if last is not None and last < first:
        return None
    # RFC 9110 14.1.3: satisfiable iff first-pos < size; last-pos is clamped to size - 1.
    if first >= size:
        raise RangeNotSatisfiable(f"range starts at {first} of {size}")
    return ByteRange(first, size - 1 if last is None else min(last, size - 1))


__all__ = [
    "RANGE_NEEDS",
    "ByteRange",
    "ContentRange",
    "RangeNotSatisfiable",
    "format_content_range",
    "format_range",
    "format_unsatisfied",
    "parse_content_range",
    "parse_range",
]
