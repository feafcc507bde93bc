"""Byte ranges: Content-Range parsing, Range parsing for the server, and formatting."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.ranges import (
    ByteRange,
    ContentRange,
    RangeNotSatisfiable,
    format_content_range,
    format_range,
    format_unsatisfied,
    parse_content_range,
    parse_range,
)
from streamer.errors import ProtocolError

# --- Content-Range (client side) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-9/100", ContentRange(0, 9, 100)),
        ("bytes 0-0/1", ContentRange(0, 0, 1)),
        ("bytes 99-99/100", ContentRange(99, 99, 100)),
        ("bytes 0-9/*", ContentRange(0, 9, None)),
        ("bytes */100", ContentRange(None, None, 100)),
        ("bytes */0", ContentRange(None, None, 0)),
        ("BYTES 1-2/3", ContentRange(1, 2, 3)),
        ("  bytes 5-6/7 ", ContentRange(5, 6, 7)),
        ("bytes 0-1099511627775/1099511627776", ContentRange(0, 2**40 - 1, 2**40)),
    ],
)
def test_parse_content_range_valid(value: str, expected: ContentRange) -> None:
    """Well-formed Content-Range values parse to inclusive start/end and the complete length."""
    assert parse_content_range(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bytes",
        "bytes ",
        "items 0-9/100",
        "bytes 9-0/100",
        "bytes 0-100/100",
        "bytes 0-200/100",
        "bytes -1-9/100",
        "bytes 0--9/100",
        "bytes 0-9/-100",
        "bytes 0-9",
        "bytes 0-/100",
        "bytes -9/100",
        "bytes */*",
        "bytes */",
        "bytes 0-9/100x",
        "bytes 0-9/100,bytes 0-9/100",
        "bytes=0-9/100",
        "bytes  0-9/100",
        "bytes 0 - 9/100",
        "bytes 0-9 / 100",
        "bytes \uff10-9/100",
        "bytes 1.5-9/100",
        "bytes 0x1-9/100",
        "bytes 0-9/" + "9" * 5000,
    ],
)
def test_parse_content_range_malformed(value: str) -> None:
    """Anything that is not 'bytes F-L/N', 'bytes F-L/*' or 'bytes */N' is a ProtocolError."""
    with pytest.raises(ProtocolError):
        parse_content_range(value)


def test_parse_content_range_error_names_url() -> None:
    """The ProtocolError carries the URL it concerns."""
    with pytest.raises(ProtocolError) as info:
        parse_content_range("junk", url="http://example.test/f")
    assert info.value.url == "http://example.test/f"


def test_content_range_length() -> None:
    """length is end - start + 1, and None for an unsatisfied range."""
    assert ContentRange(0, 9, 100).length == 10
    assert ContentRange(5, 5, None).length == 1
    assert ContentRange(None, None, 100).length is None


@given(st.integers(0, 2**64), st.integers(0, 2**64), st.integers(1, 2**64))
def test_format_parse_content_range_round_trip(a: int, b: int, extra: int) -> None:
    """parse_content_range(format_content_range(s, e, n)) gives back s, e, n."""
    start, end = min(a, b), max(a, b)
    complete = end + extra
    parsed = parse_content_range(format_content_range(start, end, complete))
    assert parsed == ContentRange(start, end, complete)


@given(st.integers(0, 2**64))
def test_format_parse_unsatisfied_round_trip(complete: int) -> None:
    """parse_content_range(format_unsatisfied(n)) is the unsatisfied range of n."""
    assert parse_content_range(format_unsatisfied(complete)) == ContentRange(None, None, complete)


@pytest.mark.parametrize(("start", "end", "complete"), [(-1, 0, 1), (5, 4, 10), (0, 10, 10)])
def test_format_content_range_rejects_invalid(start: int, end: int, complete: int) -> None:
    """format_content_range refuses what parse_content_range would reject."""
    with pytest.raises(ValueError):
        format_content_range(start, end, complete)


def test_format_unsatisfied() -> None:
    """An unsatisfied range is 'bytes */LENGTH'."""
    assert format_unsatisfied(1234) == "bytes */1234"
    with pytest.raises(ValueError):
        format_unsatisfied(-1)


# --- Range (client formats, server parses) ---------------------------------------------------


def test_format_range() -> None:
    """format_range gives 'bytes=N-' when open and 'bytes=N-M' when closed."""
    assert format_range(0) == "bytes=0-"
    assert format_range(100) == "bytes=100-"
    assert format_range(0, 99) == "bytes=0-99"
    assert format_range(7, 7) == "bytes=7-7"


@pytest.mark.parametrize(("start", "end"), [(-1, None), (5, 4), (-3, -1)])
def test_format_range_rejects_invalid(start: int, end: int | None) -> None:
    """A negative start or an end before the start is a ValueError."""
    with pytest.raises(ValueError):
        format_range(start, end)


SIZE = 1000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=999-999", ByteRange(999, 999)),
        ("bytes=100-", ByteRange(100, 999)),
        ("bytes=0-", ByteRange(0, 999)),
        ("bytes=-500", ByteRange(500, 999)),
        ("bytes=-1", ByteRange(999, 999)),
        ("bytes=-1000", ByteRange(0, 999)),
        ("bytes=-5000", ByteRange(0, 999)),
        ("bytes=500-5000", ByteRange(500, 999)),
        ("bytes=0-" + "9" * 30, ByteRange(0, 999)),
        ("Bytes=1-2", ByteRange(1, 2)),
        ("bytes= 1-2 ", ByteRange(1, 2)),
        ("bytes=1-2,", ByteRange(1, 2)),
        ("bytes=,1-2", ByteRange(1, 2)),
    ],
)
def test_parse_range_single(value: str, expected: ByteRange) -> None:
    """A single range is resolved against the size: open, suffix, clamped end."""
    assert parse_range(value, SIZE) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=,",
        "items=0-9",
        "0-9",
        "bytes=abc",
        "bytes=5-4",
        "bytes=1-2-3",
        "bytes=1",
        "bytes=+1-2",
        "bytes=1 - 2",
        "bytes=0x1-2",
        "bytes=\uff11-2",
        "bytes=0-9,20-29",
        "bytes=0-9, 5000-",
        "bytes=-1,-2",
        "bytes=0-" + "9" * 5000,
    ],
)
def test_parse_range_ignored(value: str) -> None:
    """Malformed values, other units and multiple ranges are ignored (None: serve 200)."""
    assert parse_range(value, SIZE) is None


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("bytes=1000-", 1000),
        ("bytes=1000-2000", 1000),
        ("bytes=5000-", 1000),
        ("bytes=-0", 1000),
        ("bytes=0-", 0),
        ("bytes=0-0", 0),
        ("bytes=-5", 0),
    ],
)
def test_parse_range_not_satisfiable(value: str, size: int) -> None:
    """A start at or past the size, an empty suffix, or an empty file is 416."""
    with pytest.raises(RangeNotSatisfiable):
        parse_range(value, size)


def test_byte_range_length() -> None:
    """ByteRange.length counts both inclusive ends."""
    assert ByteRange(0, 0).length == 1
    assert ByteRange(10, 19).length == 10


@given(st.integers(1, 2**48), st.data())
def test_format_range_parse_range_round_trip(size: int, data: st.DataObject) -> None:
    """A closed range inside the file survives format_range -> parse_range unchanged."""
    start = data.draw(st.integers(0, size - 1))
    end = data.draw(st.integers(start, size - 1))
    assert parse_range(format_range(start, end), size) == ByteRange(start, end)


@given(st.integers(1, 2**48), st.data())
def test_parse_range_always_inside(size: int, data: st.DataObject) -> None:
    """Whatever single range is asked, a returned range lies within 0..size-1 and is non-empty."""
    first = data.draw(st.one_of(st.none(), st.integers(0, 2**50)))
    last = data.draw(st.one_of(st.none(), st.integers(0, 2**50)))
    value = f"bytes={'' if first is None else first}-{'' if last is None else last}"
    try:
        got = parse_range(value, size)
    except RangeNotSatisfiable:
        return
    if got is not None:
        assert 0 <= got.start <= got.end < size
        assert got.length >= 1


@given(st.text(max_size=40), st.integers(0, 10**6))
def test_parse_range_never_crashes(value: str, size: int) -> None:
    """Arbitrary text gives a range, None or RangeNotSatisfiable, never another exception."""
    with contextlib.suppress(RangeNotSatisfiable):
        parse_range(value, size)


@given(st.text(max_size=40))
def test_parse_content_range_only_protocol_error(value: str) -> None:
    """Arbitrary text either parses or raises ProtocolError, never another exception."""
    with contextlib.suppress(ProtocolError):
        parse_content_range(value)
