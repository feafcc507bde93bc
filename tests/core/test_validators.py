"""Validators: entity tags, HTTP dates, Last-Modified strength and If-Range."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.validators import (
    etag_in_list,
    format_http_date,
    if_range_matches,
    is_weak_etag,
    last_modified_is_strong,
    make_etag,
    parse_http_date,
    strong_etag_match,
    weak_etag_match,
)

# RFC 9110 5.6.7's example instant, Sun, 06 Nov 1994 08:49:37 GMT.
EXAMPLE = 784111777.0


# --- entity tags ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("etag", "weak"),
    [('"abc"', False), ('W/"abc"', True), ('w/"abc"', False), ('""', False), ('W/""', True)],
)
def test_is_weak_etag(etag: str, weak: bool) -> None:
    """Only the case-sensitive W/ prefix makes a tag weak."""
    assert is_weak_etag(etag) is weak


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ('"1"', '"1"', True),
        ('"1"', '"2"', False),
        ('W/"1"', 'W/"1"', False),
        ('W/"1"', '"1"', False),
        ('"1"', 'W/"1"', False),
        (None, '"1"', False),
        ('"1"', None, False),
        (None, None, False),
    ],
)
def test_strong_etag_match(a: str | None, b: str | None, match: bool) -> None:
    """Strong comparison: both present, neither weak, identical (RFC 9110 8.8.3.2 table)."""
    assert strong_etag_match(a, b) is match


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [('"1"', '"1"', True), ('W/"1"', 'W/"1"', True), ('W/"1"', '"1"', True), ('"1"', '"2"', False)],
)
def test_weak_etag_match(a: str, b: str, match: bool) -> None:
    """Weak comparison ignores the W/ prefix (RFC 9110 8.8.3.2 table)."""
    assert weak_etag_match(a, b) is match


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("*", True),
        (" * ", True),
        ('"x"', True),
        ('W/"x"', True),
        ('"a", "x"', True),
        ('"a,b", W/"x"', True),
        ('"a", "b"', False),
        ('"a,"x""', False),
        ("", False),
        ("x", False),
    ],
)
def test_etag_in_list(value: str, match: bool) -> None:
    """If-None-Match: '*' or any listed tag equal to '"x"' by weak comparison."""
    assert etag_in_list(value, '"x"') is match


def test_make_etag_is_strong_and_quoted() -> None:
    """make_etag gives a strong tag: DQUOTE, etagc only, DQUOTE."""
    tag = make_etag(123, 1_700_000_000_123_456_789, 42)
    assert tag.startswith('"') and tag.endswith('"') and not is_weak_etag(tag)
    inner = tag[1:-1]
    assert '"' not in inner
    assert all(0x21 <= ord(ch) <= 0x7E for ch in inner)


@given(
    st.tuples(st.integers(0, 2**63), st.integers(-(2**63), 2**63), st.integers(0, 2**64)),
    st.tuples(st.integers(0, 2**63), st.integers(-(2**63), 2**63), st.integers(0, 2**64)),
)
def test_make_etag_changes_with_identity(a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
    """Two file identities share a tag only if size, mtime and inode are all equal."""
    assert (make_etag(*a) == make_etag(*b)) == (a == b)


# --- HTTP dates --------------------------------------------------------------------------------


def test_format_http_date_rfc_example() -> None:
    """format_http_date gives the IMF-fixdate of RFC 9110 5.6.7."""
    assert format_http_date(EXAMPLE) == "Sun, 06 Nov 1994 08:49:37 GMT"


def test_format_http_date_drops_fraction() -> None:
    """Fractions of a second are dropped, not rounded."""
    assert format_http_date(EXAMPLE + 0.999) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Sun Nov 06 08:49:37 1994",
        "  Sun, 06 Nov 1994 08:49:37 GMT ",
    ],
)
def test_parse_http_date_three_forms(value: str) -> None:
    """IMF-fixdate, rfc850-date and asctime-date all parse to the same instant."""
    assert parse_http_date(value) == EXAMPLE


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 gmt",
        "sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 06 Nov 1994 08:49 GMT",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 0000 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT+1",
        "Sun, 06-Nov-94 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 94",
        "784111777",
        "Sun, \uff106 Nov 1994 08:49:37 GMT",
    ],
)
def test_parse_http_date_invalid(value: str) -> None:
    """Anything else, including impossible dates and wrong case, is None."""
    assert parse_http_date(value) is None


def test_parse_http_date_leap_second() -> None:
    """Second 60 is accepted (RFC 9110 5.6.7 grammar) as the following second."""
    assert parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT") == 1483228800.0


@pytest.mark.parametrize(
    ("yy", "now_year", "year"),
    [("94", 2025, 1994), ("25", 2025, 2025), ("75", 2025, 2075), ("76", 2025, 1976)],
)
def test_parse_http_date_rfc850_year_with_now(yy: str, now_year: int, year: int) -> None:
    """With a clock, a two-digit year more than 50 years ahead is in the past century."""
    now = parse_http_date(f"Wed, 01 Jan {now_year} 00:00:00 GMT")
    got = parse_http_date(f"Sunday, 06-Nov-{yy} 08:49:37 GMT", now=now)
    assert got is not None
    assert format_http_date(got).split()[3] == str(year)


@pytest.mark.parametrize(("yy", "year"), [("69", 2069), ("70", 1970), ("99", 1999), ("00", 2000)])
def test_parse_http_date_rfc850_year_without_now(yy: str, year: int) -> None:
    """Without a clock, two-digit years pivot at 70: 70-99 are 19xx, 00-69 are 20xx."""
    got = parse_http_date(f"Sunday, 06-Nov-{yy} 08:49:37 GMT")
    assert got is not None
    assert format_http_date(got).split()[3] == str(year)


@given(st.integers(0, 253402300799))
def test_format_parse_http_date_round_trip(ts: int) -> None:
    """parse_http_date(format_http_date(t)) == t for whole seconds 1970..9999."""
    assert parse_http_date(format_http_date(ts)) == ts


@given(st.floats(0, 253402300799, allow_nan=False))
def test_format_http_date_truncates_floats(ts: float) -> None:
    """A fractional timestamp round-trips to its floor."""
    parsed = parse_http_date(format_http_date(ts))
    assert parsed is not None
    assert parsed <= ts < parsed + 1


@given(st.text(max_size=40))
def test_parse_http_date_never_crashes(value: str) -> None:
    """Arbitrary text gives a float or None, never an exception."""
    assert parse_http_date(value) is None or isinstance(parse_http_date(value), float)


# --- Last-Modified strength and If-Range ------------------------------------------------------


@pytest.mark.parametrize(
    ("last_modified", "date", "strong"),
    [(0, 60, True), (0, 59.9, False), (0, 1000, True), (100, 100, False), (100, 50, False)],
)
def test_last_modified_is_strong(last_modified: float, date: float, strong: bool) -> None:
    """Last-Modified is strong only when Date is at least 60 s later (RFC 9110 8.8.2.2)."""
    assert last_modified_is_strong(last_modified, date) is strong


ETAG = '"abc-123"'
LM = EXAMPLE + 0.25
LM_TEXT = "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize(
    ("if_range", "match"),
    [
        (ETAG, True),
        (f" {ETAG} ", True),
        ('"abc-124"', False),
        (f"W/{ETAG}", False),
        ('"abc-123', False),
        (LM_TEXT, True),
        ("Sunday, 06-Nov-94 08:49:37 GMT", True),
        ("Sun, 06 Nov 1994 08:49:38 GMT", False),
        ("Sun, 06 Nov 1994 08:49:36 GMT", False),
        ("not a date", False),
        ("", False),
    ],
)
def test_if_range_matches(if_range: str, match: bool) -> None:
    """If-Range holds for a strongly equal tag or the exact Last-Modified second, nothing else."""
    assert if_range_matches(if_range, ETAG, LM) is match


def test_if_range_weak_current_etag_never_matches() -> None:
    """A weak current ETag cannot satisfy If-Range, even when the tags are equal."""
    assert not if_range_matches('W/"x"', 'W/"x"', None)
    assert not if_range_matches('"x"', 'W/"x"', None)


def test_if_range_without_validators() -> None:
    """With no current ETag or Last-Modified, If-Range never holds."""
    assert not if_range_matches(ETAG, None, None)
    assert not if_range_matches(LM_TEXT, None, None)


def test_if_range_date_must_be_strong() -> None:
    """Given the response Date, a Last-Modified under 60 s old is weak and fails If-Range."""
    assert if_range_matches(LM_TEXT, ETAG, LM, date=LM + 60)
    assert not if_range_matches(LM_TEXT, ETAG, LM, date=LM + 30)
