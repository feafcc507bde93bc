"""The pure rules of streamer/core/segments.py: cutting a resource into ranges, trusting a 206,
reading a segment map back from a sidecar."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.segments import (
    MIN_SEGMENT,
    Segment,
    check_segment_response,
    decode,
    encode,
    split,
)

totals = st.integers(min_value=1, max_value=10**13)
parts = st.integers(min_value=1, max_value=64)
min_sizes = st.integers(min_value=0, max_value=10**8)


@given(totals, parts, min_sizes)
def test_split_tiles_exactly(total: int, count: int, min_size: int) -> None:
    """split() covers [0, total) with contiguous, non-empty, fresh segments, at most `parts`."""
    segs = split(total, count, min_size)
    assert 1 <= len(segs) <= count
    assert segs[0].start == 0
    assert segs[-1].end == total
    for a, b in pairwise(segs):
        assert a.end == b.start
    assert all(s.end > s.start and s.done == 0 for s in segs)
    assert sum(s.end - s.start for s in segs) == total


@given(totals, parts, min_sizes)
def test_split_is_even_and_as_fine_as_allowed(total: int, count: int, min_size: int) -> None:
    """Segments differ by <= 1 byte, are >= min_size (if several), and are as many as allowed."""
    segs = split(total, count, min_size)
    lengths = [s.end - s.start for s in segs]
    assert max(lengths) - min(lengths) <= 1
    if len(segs) > 1:
        assert min(lengths) >= min_size
    if len(segs) < count:
        assert (len(segs) + 1) * max(min_size, 1) > total


@pytest.mark.parametrize("total", [0, -1, -(10**6)])
def test_split_nothing(total: int) -> None:
    """Nothing to fetch: no segments."""
    assert split(total, 4) == ()


def test_split_default_minimum() -> None:
    """The default minimum segment is MIN_SEGMENT: 3.5 of them make 3 segments, not 4."""
    assert len(split(7 * MIN_SEGMENT // 2, 4)) == 3
    assert len(split(4 * MIN_SEGMENT, 4)) == 4
    assert len(split(MIN_SEGMENT - 1, 4)) == 1


def test_segment_progress() -> None:
    """A segment asks for the bytes it still lacks, and never advances past its end."""
    seg = Segment(1000, 2000, 100)
    assert seg.offset == 1100 and seg.remaining == 900 and not seg.complete
    assert seg.range_header() == "bytes=1100-1999"
    assert seg.advanced(50).done == 150
    done = seg.advanced(10_000)
    assert done.done == 1000 and done.complete and done.remaining == 0


# --- check_segment_response ------------------------------------------------------------------

SEG = Segment(1000, 2000, 100)  # asks for bytes=1100-1999
TOTAL = 10_000
ETAG = '"v1"'


def _headers(content_range: str | None, etag: str | None = ETAG) -> dict[str, str]:
    headers = {}
    if content_range is not None:
        headers["Content-Range"] = content_range
    if etag is not None:
        headers["ETag"] = etag
    return headers


@pytest.mark.parametrize(
    ("status", "content_range", "etag"),
    [
        (206, "bytes 1100-1999/10000", ETAG),
        (206, "bytes 1100-1500/10000", ETAG),  # a 206 may end early: the rest is a retry
        (206, "bytes 1100-1999/10000", None),  # no ETag in the answer: If-Range vouched for it
    ],
    ids=["exact", "shorter", "no-etag"],
)
def test_segment_response_accepted(status: int, content_range: str, etag: str | None) -> None:
    """A 206 for the bytes asked for, of the recorded length and ETag, is written."""
    assert check_segment_response(SEG, status, _headers(content_range, etag), TOTAL, ETAG) is None


@pytest.mark.parametrize(
    ("status", "content_range", "etag", "why"),
    [
        (200, None, ETAG, "expected 206"),
        (200, "bytes 1100-1999/10000", ETAG, "expected 206"),
        (416, "bytes */10000", ETAG, "expected 206"),
        (206, "bytes 1000-1999/10000", ETAG, "asked for"),  # wrong start (earlier)
        (206, "bytes 1101-1999/10000", ETAG, "asked for"),  # wrong start (later)
        (206, "bytes 1100-2000/10000", ETAG, "asked for"),  # end beyond the segment
        (206, "bytes */10000", ETAG, "asked for"),
        (206, "bytes 1100-1999/10001", ETAG, "resource is now"),  # other complete length
        (206, "bytes 1100-1999/*", ETAG, "resource is now"),  # unknown complete length
        (206, "bytes 1100-1999/10000", '"v2"', "ETag changed"),
        (206, "bytes 1100-1999/10000", 'W/"v1"', "ETag changed"),
        (206, None, ETAG, "unusable Content-Range"),
        (206, "bytes 1100-1999", ETAG, "unusable Content-Range"),
        (206, "items 1100-1999/10000", ETAG, "unusable Content-Range"),
        (206, "bytes 1999-1100/10000", ETAG, "unusable Content-Range"),
        (206, "bytes 1100-1999/10000, bytes 0-1/10000", ETAG, "unusable Content-Range"),
    ],
)
def test_segment_response_refused(
    status: int, content_range: str | None, etag: str | None, why: str
) -> None:
    """Anything but exactly the asked bytes of the same resource is refused, with a reason."""
    reason = check_segment_response(SEG, status, _headers(content_range, etag), TOTAL, ETAG)
    assert reason is not None and why in reason, reason


def test_segment_response_without_recorded_etag() -> None:
    """With no ETag recorded (a checksum or Last-Modified identifies it) any ETag is fine."""
    headers = _headers("bytes 1100-1999/10000", '"whatever"')
    assert check_segment_response(SEG, 206, headers, TOTAL, None) is None


# --- decode ------------------------------------------------------------------------------------


def test_decode_valid_map() -> None:
    """A map tiling [0, total) with done counts within each segment reads back."""
    raw = [[0, 10, 3], [10, 20, 10], [20, 25, 0]]
    assert decode(raw, 25) == (Segment(0, 10, 3), Segment(10, 20, 10), Segment(20, 25, 0))


@pytest.mark.parametrize(
    ("raw", "total"),
    [
        ([[0, 10, 0], [11, 20, 0]], 20),  # gap
        ([[0, 10, 0], [9, 20, 0]], 20),  # overlap
        ([[0, 10, 0], [0, 10, 0]], 10),  # the same segment twice
        ([[1, 10, 0]], 10),  # does not start at 0
        ([[0, 10, 0]], 20),  # stops short of the total
        ([[0, 10, 0], [10, 20, 0]], 15),  # runs past the total
        ([[0, 10, 11]], 10),  # done beyond the segment
        ([[0, 10, -1]], 10),  # negative done
        ([[0, 0, 0], [0, 10, 0]], 10),  # empty segment
        ([[10, 0, 0]], 10),  # reversed
        ([[0, 10]], 10),  # wrong arity
        ([[0, 10, 0, 0]], 10),
        ([(0, 10, 0)], 10),  # not a list
        ([[0, 10.0, 0]], 10),  # not ints
        ([[0, 10, True]], 10),  # bools are not ints here
        ([[0, "10", 0]], 10),
        ({"0": [0, 10, 0]}, 10),
        ("[[0, 10, 0]]", 10),
        ([[0, 10, 0]], None),  # no total to tile
        ([], 10),
    ],
)
def test_decode_refuses_bad_maps(raw: object, total: int | None) -> None:
    """Gaps, overlaps, segments outside [0, total) and malformed entries give None."""
    assert decode(raw, total) is None


def test_decode_empty_map_of_empty_resource() -> None:
    """An empty map tiles an empty resource."""
    assert decode([], 0) == ()


@given(totals, parts, st.data())
def test_encode_decode_round_trip(total: int, count: int, draw: st.DataObject) -> None:
    """A map with any progress survives encode() then decode()."""
    segs = split(total, count, 1)
    segs = tuple(
        s.advanced(draw.draw(st.integers(min_value=0, max_value=s.end - s.start))) for s in segs
    )
    assert decode(encode(segs), total) == segs
