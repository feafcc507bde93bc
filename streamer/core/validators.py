"""Validators: entity tags, HTTP dates and the ``If-Range`` decision (RFC 9110 sections 8.8, 13).

Pure functions over strings and numbers; the caller supplies every timestamp (this module never
reads the clock). Timestamps are POSIX seconds as floats; HTTP dates have whole-second
resolution, so formatting drops the fraction.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

# RFC 9110 5.6.7: day and month names are case-sensitive and locale-independent.
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_DAY = "|".join(_DAYS)
_MONTH = "|".join(_MONTHS)
_TIME = r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"

# RFC 9110 5.6.7: IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
_IMF_FIXDATE = re.compile(
    rf"(?:{_DAY}), (?P<day>[0-9]{{2}}) (?P<month>{_MONTH}) (?P<year>[0-9]{{4}}) {_TIME} GMT",
    re.ASCII,
)
# RFC 9110 5.6.7: obsolete rfc850-date, e.g. "Sunday, 06-Nov-94 08:49:37 GMT".
_RFC850 = re.compile(
    rf"(?:{'|'.join(_LONG_DAYS)}), (?P<day>[0-9]{{2}})-(?P<month>{_MONTH})-(?P<year>[0-9]{{2}})"
    rf" {_TIME} GMT",
    re.ASCII,
)
# RFC 9110 5.6.7: obsolete asctime-date, e.g. "Sun Nov  6 08:49:37 1994".
_ASCTIME = re.compile(
    rf"(?:{_DAY}) (?P<month>{_MONTH}) (?P<day>[0-9]{{2}}| [0-9]) {_TIME} (?P<year>[0-9]{{4}})",
    re.ASCII,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# RFC 9110 8.8.2.2: a Last-Modified at least this long before Date is a strong validator.
STRONG_LAST_MODIFIED_SECONDS = 60


def is_weak_etag(etag: str) -> bool:
    """True for a weak entity tag, ``W/"..."`` (RFC 9110 8.8.3, the case-sensitive W/ prefix)."""
    return etag.startswith("W/")


def strong_etag_match(a: str | None, b: str | None) -> bool:
    """Strong comparison (RFC 9110 8.8.3.2): both present, both not weak, and identical."""
    if a is None or b is None or is_weak_etag(a) or is_weak_etag(b):
        return False
    return a == b


def weak_etag_match(a: str, b: str) -> bool:
    """Weak comparison (RFC 9110 8.8.3.2): the opaque tags are equal, ignoring any W/ prefix."""
    return a.removeprefix("W/") == b.removeprefix("W/")


def etag_in_list(value: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` value names ``etag`` (RFC 9110 13.1.2, weak comparison).

    ``*`` matches any current representation. Tags are quoted and may contain commas, so
    the list is scanned tag by tag (RFC 9110 8.8.3 entity-tag grammar) rather than split.
    """
    if value.strip(" \t") == "*":
        return True
    tags = re.findall(r'(?:W/)?"[^"]*"', value)
    return any(weak_etag_match(tag, etag) for tag in tags)


def make_etag(size: int, mtime_ns: int, inode: int) -> str:
    """A strong, quoted entity tag (RFC 9110 8.8.3) from a file's identity, not its content.

    Any change of size, modification time or inode (a replaced file) changes the tag.
    """
    return f'"{inode:x}-{mtime_ns:x}-{size:x}"'


def format_http_date(ts: float) -> str:
    """POSIX seconds as an IMF-fixdate (RFC 9110 5.6.7), the fraction of a second dropped."""
    when = _EPOCH + timedelta(seconds=math.floor(ts))
    day = _DAYS[when.weekday()]
    month = _MONTHS[when.month - 1]
    return f"{day}, {when.day:02d} {month} {when.year:04d} {when:%H:%M:%S} GMT"


def _two_digit_year(yy: int, now: float | None) -> int:
    """Expand an rfc850-date year (RFC 9110 5.6.7).

    With ``now``: the RFC rule, a year more than 50 years in the future is taken as the most
    recent past year with those digits. Without it (no clock here): 70-99 are 19xx, else 20xx.
    """
    if now is None:
        return 1900 + yy if yy >= 70 else 2000 + yy
    this_year = (_EPOCH + timedelta(seconds=math.floor(now))).year
    year = this_year - this_year % 100 + yy
    if year > this_year + 50:
        year -= 100
    elif year <= this_year - 50:
        year += 100
    return year


def _match_date(value: str) -> tuple[re.Match[str], bool] | None:
    for pattern in (_IMF_FIXDATE, _RFC850, _ASCTIME):
        match = pattern.fullmatch(value)
        if match is not None:
            return match, pattern is _RFC850
    return None


def parse_http_date(value: str, *, now: float | None = None) -> float | None:
    """POSIX seconds from an HTTP-date (RFC 9110 5.6.7), or None if it is not one.

    Accepts IMF-fixdate and the obsolete rfc850-date and asctime-date forms. ``now`` only
    matters for the two-digit years of rfc850-date (see `_two_digit_year`).
    """
    found = _match_date(value.strip(" \t"))
    if found is None:
        return None
    match, short_year = found
    year = int(match["year"])
    if short_year:
        year = _two_digit_year(year, now)
    second = int(match["second"])
    if second > 60:
        return None
    # RFC 9110 5.6.7 allows second 60 (a leap second); count it as the next second.
    try:
        when = datetime(
            year,
            _MONTHS.index(match["month"]) + 1,
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            min(second, 59),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return (when - _EPOCH).total_seconds() + (second - min(second, 59))


def last_modified_is_strong(last_modified: float, date: float) -> bool:
    """RFC 9110 8.8.2.2: Last-Modified is strong if at least 60 s before the Date sent with it."""
    return date - last_modified >= STRONG_LAST_MODIFIED_SECONDS


def if_range_matches(
    if_range: str,
    etag: str | None,
    last_modified: float | None,
    *,
    date: float | None = None,
) -> bool:
    """Whether an ``If-Range`` condition holds, so the Range may be honoured (RFC 9110 13.1.5).

    An entity-tag matches only by strong comparison with the current ``etag`` (a weak tag never
    does). An HTTP-date matches only if exactly equal, to the second, to ``last_modified``; if
    ``date`` (the Date of this response) is given, it must also make Last-Modified strong
    (RFC 9110 8.8.2.2). Anything else does not match, and the whole representation is sent.
    """
    value = if_range.strip(" \t")
    # RFC 9110 13.1.5: an entity-tag is told from an HTTP-date by its DQUOTE (or W/ prefix).
    if value.startswith(('"', "W/")):
        return strong_etag_match(value, etag)
    when = parse_http_date(value)
    if when is None or last_modified is None:
        return False
    if date is not None and not last_modified_is_strong(last_modified, date):
        return False
    return when == math.floor(last_modified)


__all__ = [
    "STRONG_LAST_MODIFIED_SECONDS",
    "etag_in_list",
    "format_http_date",
    "if_range_matches",
    "is_weak_etag",
    "last_modified_is_strong",
    "make_etag",
    "parse_http_date",
    "strong_etag_match",
    "weak_etag_match",
]
