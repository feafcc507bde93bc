"""Tests for streamer.core.limits: body size limits, declared and counted."""

from __future__ import annotations

import pytest

from streamer.core.limits import BodyLimit
from streamer.errors import BodyTooLarge, Result, UsageError


def test_exactly_the_limit_is_allowed() -> None:
    """A body of exactly max_bytes passes, with nothing remaining."""
    limit = BodyLimit(100)
    limit.feed(100)
    assert limit.count == 100
    assert limit.remaining == 0


def test_one_byte_over_the_limit_fails() -> None:
    """max_bytes + 1 bytes raise BodyTooLarge carrying the limit and URL."""
    limit = BodyLimit(100, url="https://example.com/big")
    limit.feed(100)
    with pytest.raises(BodyTooLarge) as info:
        limit.feed(1)
    err = info.value
    assert err.limit == 100
    assert err.url == "https://example.com/big"
    assert err.result is Result.BODY_SIZE_LIMIT_EXCEEDED
    assert "100 bytes" in err.message
    assert "exceeded" in err.message
    assert limit.count == 101


def test_byte_by_byte_trips_on_exactly_the_extra_byte() -> None:
    """Fed one byte at a time, the error comes on byte max_bytes + 1 and not before."""
    limit = BodyLimit(1000)
    for i in range(1000):
        limit.feed(1)
        assert limit.remaining == 999 - i
    with pytest.raises(BodyTooLarge):
        limit.feed(1)


@pytest.mark.parametrize("pieces", [[1001], [500, 501], [999, 0, 2], [1, 1000]])
def test_any_split_that_passes_the_limit_fails(pieces: list[int]) -> None:
    """However the bytes are split, passing the limit raises on the piece that passes it."""
    limit = BodyLimit(1000)
    for n in pieces[:-1]:
        limit.feed(n)
    with pytest.raises(BodyTooLarge):
        limit.feed(pieces[-1])


def test_zero_limit_allows_only_an_empty_body() -> None:
    """With max_bytes=0, empty feeds pass and the first byte fails."""
    limit = BodyLimit(0)
    limit.feed(0)
    limit.check_declared(0)
    with pytest.raises(BodyTooLarge):
        limit.feed(1)


def test_unlimited_never_raises() -> None:
    """max_bytes=None counts but never raises, and remaining is None."""
    limit = BodyLimit(None)
    limit.check_declared(10**18)
    limit.feed(10**15)
    limit.feed(10**15)
    assert limit.count == 2 * 10**15
    assert limit.remaining is None


def test_declared_length_at_limit_passes_and_over_fails() -> None:
    """A declared length equal to the limit passes; one more byte fails before reading."""
    limit = BodyLimit(2048, url="u")
    limit.check_declared(2048)
    limit.check_declared(None)
    with pytest.raises(BodyTooLarge) as info:
        limit.check_declared(2049)
    assert info.value.limit == 2048
    assert "2049" in info.value.message
    assert "2048" in info.value.message
    assert limit.count == 0


def test_negative_limit_is_usage_error() -> None:
    """A negative max_bytes is refused when the limit is built."""
    with pytest.raises(UsageError):
        BodyLimit(-1)


def test_negative_feed_is_usage_error() -> None:
    """Feeding a negative count is a caller bug and does not lower the count."""
    limit = BodyLimit(10)
    limit.feed(5)
    with pytest.raises(UsageError):
        limit.feed(-3)
    assert limit.count == 5


def test_remaining_never_negative_after_overrun() -> None:
    """Once the limit has been passed, remaining stays at 0."""
    limit = BodyLimit(10)
    with pytest.raises(BodyTooLarge):
        limit.feed(25)
    assert limit.remaining == 0
