"""Tests for streamer.core.retry: Retry-After parsing and the curl-style retry policy."""

from __future__ import annotations

import dataclasses
import math
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.retry import RetryPolicy, parse_retry_after
from streamer.errors import (
    BodyTooLarge,
    BodyTruncatedError,
    CertificateError,
    ChecksumMismatch,
    ConnectError,
    ConnectionLostError,
    FileError,
    HTTPStatusError,
    ResolveError,
    Result,
    StreamerError,
    TLSError,
    TooManyRedirects,
    TooSlowError,
    TransferTimeout,
    UnsafeRedirect,
    UsageError,
)

# "Sun, 06 Nov 1994 08:49:37 GMT", the example date of RFC 9110 5.6.7, in POSIX seconds.
DATE = 784111777.0

CONNECT = ConnectError("connection refused", url="u")
S503 = HTTPStatusError("503 Service Unavailable", status=503, url="u")
S404 = HTTPStatusError("404 Not Found", status=404)


# --- parse_retry_after --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("1", 1.0),
        ("120", 120.0),
        ("3600", 3600.0),
        ("007", 7.0),
        ("000", 0.0),
        (" 5\t", 5.0),
        ("99999999999999999999999999", math.inf),
        ("0000000000000000000000000009", 9.0),
    ],
)
def test_delay_seconds(value: str, expected: float) -> None:
    """Delay-seconds is 1*DIGIT: any non-negative decimal integer, leading zeros allowed."""
    assert parse_retry_after(value, now=DATE) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "-1",
        "+5",
        "1.5",
        "1.0",
        ".5",
        "1e3",
        "0x10",
        "5 s",
        "5s",
        "1_000",
        "1 000",
        "\u0661\u0662",  # Arabic-Indic digits: str.isdigit() says yes, RFC 5234 DIGIT says no
        "\u00b2",  # superscript two
        "inf",
        "nan",
        "soon",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 25:49:37 GMT",
        "Sun, 31 Feb 1994 08:49:37 GMT",
    ],
)
def test_not_a_retry_after_value(value: str) -> None:
    """Signs, fractions, non-ASCII digits, units and malformed dates are not Retry-After values."""
    assert parse_retry_after(value, now=DATE) is None


def test_none_is_none() -> None:
    """An absent header gives None."""
    assert parse_retry_after(None, now=DATE) is None


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (DATE - 30, 30.0),
        (DATE - 0.5, 0.5),
        (DATE, 0.0),
        (DATE + 1, 0.0),
        (DATE + 86400, 0.0),
    ],
)
def test_imf_fixdate(now: float, expected: float) -> None:
    """An HTTP-date is the time left until it; a date now or in the past means 0.0."""
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now=now) == expected


@pytest.mark.parametrize(
    "value",
    [
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        " Sun, 06 Nov 1994 08:49:37 GMT",
    ],
)
def test_obsolete_date_forms(value: str) -> None:
    """The obsolete rfc850 and asctime forms (RFC 9110 5.6.7) are accepted too."""
    assert parse_retry_after(value, now=DATE - 10) == 10.0


# --- RetryPolicy: construction -------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"retries": -1},
        {"attempts": 0},
        {"attempts": -3},
        {"delay": -0.1},
        {"delay": math.nan},
        {"backoff": -1.0},
        {"max_backoff": -1.0},
        {"max_time": -5.0},
        {"retry_after_cap": -1.0},
        {"retry_after_cap": math.nan},
    ],
)
def test_negative_settings_are_usage_errors(kwargs: dict[str, float]) -> None:
    """Negative (or NaN) counts and durations, and fewer than one attempt, are UsageError."""
    with pytest.raises(UsageError, match="retry"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_zero_settings_are_allowed() -> None:
    """Zero is a valid count and a valid duration everywhere."""
    policy = RetryPolicy(retries=0, delay=0, backoff=0, max_backoff=0, max_time=0)
    assert policy.retry_after_cap == 120.0


def test_defaults() -> None:
    """The defaults: no retries, backoff from 1 s capped at 30 s, Retry-After capped at 120 s."""
    policy = RetryPolicy()
    assert (policy.retries, policy.delay, policy.backoff, policy.max_backoff) == (0, None, 1, 30)
    assert (policy.max_time, policy.retry_after_cap, policy.attempts) == (None, 120.0, 1)
    assert policy.history == ()


def test_policy_is_frozen() -> None:
    """A policy is a value: its fields cannot be assigned."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryPolicy().attempts = 5  # type: ignore[misc]


# --- RetryPolicy: which errors ---------------------------------------------------------------


RETRYABLE: list[StreamerError] = [
    CONNECT,
    ResolveError("no such host", url="u"),
    ConnectionLostError("reset", url="u"),
    TransferTimeout("read timed out", url="u"),
    TooSlowError("too slow", url="u"),
    BodyTruncatedError("b", received=1, expected=2),
    *(HTTPStatusError(str(s), status=s, url="u") for s in (408, 429, 500, 502, 503, 504)),
]

NOT_RETRYABLE: list[StreamerError] = [
    UsageError("bad url"),
    FileError("disk full", path="/tmp/x"),
    ChecksumMismatch("c", expected="a", actual="b"),
    BodyTooLarge("too big", limit=10),
    TooManyRedirects("loop"),
    UnsafeRedirect("https to http"),
    TLSError("handshake failed"),
    CertificateError("self-signed"),
    *(HTTPStatusError(str(s), status=s) for s in (400, 401, 403, 404, 410, 416, 501, 505)),
]


@pytest.mark.parametrize("error", RETRYABLE, ids=repr)
def test_retryable_errors(error: StreamerError) -> None:
    """Network errors, timeouts, stalls, truncated bodies and transient statuses are retried."""
    policy = RetryPolicy(retries=1)
    assert policy.is_retryable(error)
    assert policy.next_delay(error, elapsed=0, rand=0) is not None


@pytest.mark.parametrize("error", NOT_RETRYABLE, ids=repr)
def test_non_retryable_errors_never_retry(error: StreamerError) -> None:
    """Usage, file, checksum, size, redirect, TLS and other status errors are never retried."""
    policy = RetryPolicy(retries=10)
    assert not policy.is_retryable(error)
    assert policy.next_delay(error, elapsed=0, rand=0.5) is None
    assert policy.next_delay(error, elapsed=0, rand=0.5, retry_after=1) is None


def test_the_retryable_flag_decides() -> None:
    """The error's own flag is trusted, even against its class default."""
    policy = RetryPolicy(retries=1)
    assert not policy.is_retryable(ConnectError("x", url="u", retryable=False))
    assert policy.is_retryable(HTTPStatusError("418", status=418, retryable=True))


# --- RetryPolicy: how many ------------------------------------------------------------------


def test_zero_retries_never_retries() -> None:
    """retries=0 (the default) never allows a second attempt."""
    assert RetryPolicy().next_delay(CONNECT, elapsed=0, rand=0.5) is None
    assert RetryPolicy().next_delay(S503, elapsed=0, rand=0.5, retry_after=1) is None


def test_three_retries_allow_exactly_three() -> None:
    """retries=3 allows exactly three retries, so four attempts in all."""
    policy = RetryPolicy(retries=3, delay=1)
    waits = []
    while (wait := policy.next_delay(CONNECT, elapsed=0, rand=0.5)) is not None:
        waits.append(wait)
        policy = policy.increment(CONNECT)
    assert waits == [1.0, 1.0, 1.0]
    assert policy.attempts == 4
    assert policy.history == (Result.CANT_CONNECT,) * 3


def test_none_once_attempts_exceed_retries() -> None:
    """next_delay is None exactly when attempts > retries."""
    assert RetryPolicy(retries=3, attempts=3).next_delay(CONNECT, elapsed=0, rand=0) is not None
    assert RetryPolicy(retries=3, attempts=4).next_delay(CONNECT, elapsed=0, rand=0) is None


# --- RetryPolicy: how long ------------------------------------------------------------------


def test_fixed_delay() -> None:
    """A fixed delay is used as is, for every attempt, whatever the jitter."""
    for attempts in (1, 2, 5):
        policy = RetryPolicy(retries=9, delay=2.5, attempts=attempts)
        assert policy.next_delay(CONNECT, elapsed=0, rand=0.0) == 2.5
        assert policy.next_delay(CONNECT, elapsed=0, rand=0.99) == 2.5


def test_zero_fixed_delay_retries_at_once() -> None:
    """delay=0 retries immediately."""
    assert RetryPolicy(retries=1, delay=0).next_delay(CONNECT, elapsed=0, rand=0.5) == 0.0


def test_backoff_doubles_and_caps() -> None:
    """Without jitter's lower half (rand->1) the ceiling goes 1, 2, 4, 8, 16, then 30, 30."""
    ceilings = [
        RetryPolicy(retries=99, attempts=n).next_delay(CONNECT, elapsed=0, rand=1.0)
        for n in range(1, 8)
    ]
    assert ceilings == [1, 2, 4, 8, 16, 30, 30]


def test_backoff_scales_with_first_delay() -> None:
    """backoff is the first ceiling; max_backoff caps the doubling."""
    policy = RetryPolicy(retries=9, backoff=0.25, max_backoff=1.5)
    waits = []
    for _ in range(5):
        waits.append(policy.next_delay(CONNECT, elapsed=0, rand=1.0))
        policy = policy.increment(CONNECT)
    assert waits == [0.25, 0.5, 1.0, 1.5, 1.5]


def test_jitter_bounds() -> None:
    """Jitter spans [half, full] of the ceiling: rand=0 gives half, rand->1 approaches full."""
    policy = RetryPolicy(retries=9, attempts=3)  # ceiling 4 s
    assert policy.next_delay(CONNECT, elapsed=0, rand=0.0) == 2.0
    assert policy.next_delay(CONNECT, elapsed=0, rand=0.5) == 3.0
    almost = policy.next_delay(CONNECT, elapsed=0, rand=math.nextafter(1.0, 0.0))
    assert almost is not None
    assert 3.999 < almost <= 4.0  # 0.5 + rand / 2 may round up to 1.0 in binary floats


def test_jitter_never_zero() -> None:
    """With a positive backoff the jittered delay is never zero."""
    wait = RetryPolicy(retries=1, backoff=0.001).next_delay(CONNECT, elapsed=0, rand=0.0)
    assert wait == 0.0005


def test_huge_attempt_count_stays_capped() -> None:
    """Backoff never overflows: a huge attempt count just gives max_backoff."""
    policy = RetryPolicy(retries=10**6, attempts=10**5)
    assert policy.next_delay(CONNECT, elapsed=0, rand=1.0) == 30.0


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(0.0, 0.0), (7.0, 7.0), (120.0, 120.0), (121.0, 120.0), (math.inf, 120.0), (-3.0, 0.0)],
)
def test_retry_after_clamped(retry_after: float, expected: float) -> None:
    """Retry-After wins over backoff and fixed delay, clamped to [0, retry_after_cap]."""
    for policy in (RetryPolicy(retries=1), RetryPolicy(retries=1, delay=5)):
        assert policy.next_delay(S503, elapsed=0, rand=0.5, retry_after=retry_after) == expected


def test_retry_after_cap_is_configurable() -> None:
    """retry_after_cap sets the clamp; zero ignores the server's wish entirely."""
    assert RetryPolicy(retries=1, retry_after_cap=10).next_delay(
        S503, elapsed=0, rand=0, retry_after=60
    ) == (10.0)
    assert RetryPolicy(retries=1, retry_after_cap=0).next_delay(
        S503, elapsed=0, rand=0, retry_after=60
    ) == (0.0)


def test_retry_after_nan_is_no_wait() -> None:
    """A NaN Retry-After is treated as zero rather than propagated."""
    wait = RetryPolicy(retries=1).next_delay(S503, elapsed=0, rand=0, retry_after=math.nan)
    assert wait == 0.0


def test_parsed_header_feeds_the_policy() -> None:
    """parse_retry_after's output plugs into next_delay, and a huge value hits the cap."""
    after = parse_retry_after("999999999999999999999999", now=DATE)
    assert RetryPolicy(retries=1).next_delay(S503, elapsed=0, rand=0, retry_after=after) == 120


# --- RetryPolicy: max_time ------------------------------------------------------------------


def test_max_time_cuts_off() -> None:
    """No retry whose wait would end after max_time since the first attempt started."""
    policy = RetryPolicy(retries=9, delay=5, max_time=60)
    assert policy.next_delay(CONNECT, elapsed=50, rand=0.5) == 5.0
    assert policy.next_delay(CONNECT, elapsed=55, rand=0.5) == 5.0  # starts exactly at 60 s
    assert policy.next_delay(CONNECT, elapsed=55.001, rand=0.5) is None
    assert policy.next_delay(CONNECT, elapsed=70, rand=0.5) is None


def test_max_time_applies_to_retry_after() -> None:
    """A server asking for a wait beyond max_time means giving up, not retrying early."""
    policy = RetryPolicy(retries=9, max_time=30)
    assert policy.next_delay(S503, elapsed=10, rand=0.5, retry_after=20) == 20.0
    assert policy.next_delay(S503, elapsed=10, rand=0.5, retry_after=21) is None


def test_max_time_applies_to_jittered_backoff() -> None:
    """The jittered delay itself is compared against the time left."""
    policy = RetryPolicy(retries=9, attempts=3, max_time=10)  # backoff in [2, 4)
    assert policy.next_delay(CONNECT, elapsed=7, rand=0.0) == 2.0
    assert policy.next_delay(CONNECT, elapsed=7, rand=0.5) == 3.0  # ends at exactly 10 s
    assert policy.next_delay(CONNECT, elapsed=7, rand=0.6) is None  # 3.2 s would end at 10.2


def test_max_time_zero_allows_only_an_immediate_retry() -> None:
    """max_time=0 allows a retry only at elapsed 0 with no wait."""
    policy = RetryPolicy(retries=3, delay=0, max_time=0)
    assert policy.next_delay(CONNECT, elapsed=0, rand=0) == 0.0
    assert policy.next_delay(CONNECT, elapsed=0.1, rand=0) is None


@pytest.mark.parametrize(("elapsed", "rand"), [(-1.0, 0.5), (math.nan, 0.5), (0, -0.1), (0, 1.5)])
def test_bad_clock_or_random_is_usage_error(elapsed: float, rand: float) -> None:
    """A negative elapsed time or a rand outside [0, 1) is the caller's bug: UsageError."""
    with pytest.raises(UsageError):
        RetryPolicy(retries=1).next_delay(CONNECT, elapsed=elapsed, rand=rand)


# --- RetryPolicy: increment and the final message -------------------------------------------


def test_increment_leaves_the_original_untouched() -> None:
    """increment returns a new policy with one more attempt and a longer history."""
    first = RetryPolicy(retries=3, delay=1)
    second = first.increment(CONNECT)
    third = second.increment(S503)
    assert (first.attempts, first.history) == (1, ())
    assert (second.attempts, second.history) == (2, (Result.CANT_CONNECT,))
    assert (third.attempts, third.history) == (3, (Result.CANT_CONNECT, Result.HTTP_ERROR))
    assert (third.retries, third.delay) == (3, 1)


def test_policy_pickles() -> None:
    """A policy survives pickling (results may cross process boundaries)."""
    policy = RetryPolicy(retries=2).increment(TooSlowError("slow", url="u"))
    assert pickle.loads(pickle.dumps(policy)) == policy


def test_exhausted_message() -> None:
    """After retries the final text names the attempt count and the last error."""
    policy = RetryPolicy(retries=3, attempts=4)
    assert policy.exhausted_message(S503) == "gave up after 4 attempts: 503 Service Unavailable"


def test_exhausted_message_single_attempt() -> None:
    """With nothing retried, the error's own text is the final text."""
    assert RetryPolicy().exhausted_message(S404) == "404 Not Found"


# --- properties -----------------------------------------------------------------------------

durations = st.floats(min_value=0, max_value=1e6, allow_nan=False)
errors = st.sampled_from(RETRYABLE + NOT_RETRYABLE)


@given(
    retries=st.integers(min_value=0, max_value=20),
    attempts=st.integers(min_value=1, max_value=40),
    delay=st.none() | durations,
    backoff=durations,
    max_backoff=durations,
    max_time=st.none() | durations,
    cap=durations,
    error=errors,
    elapsed=durations,
    rand=st.floats(min_value=0, max_value=1, exclude_max=True),
    retry_after=st.none() | st.floats(allow_nan=False),
)
def test_delay_is_bounded_and_stops(
    *,
    retries: int,
    attempts: int,
    delay: float | None,
    backoff: float,
    max_backoff: float,
    max_time: float | None,
    cap: float,
    error: StreamerError,
    elapsed: float,
    rand: float,
    retry_after: float | None,
) -> None:
    """A delay is in [0, max(cap, max_backoff, delay)], fits max_time, None once exhausted."""
    policy = RetryPolicy(
        retries=retries,
        attempts=attempts,
        delay=delay,
        backoff=backoff,
        max_backoff=max_backoff,
        max_time=max_time,
        retry_after_cap=cap,
    )
    wait = policy.next_delay(error, elapsed=elapsed, rand=rand, retry_after=retry_after)
    if attempts > retries or not error.retryable:
        assert wait is None
    if wait is not None:
        assert 0 <= wait <= max(cap, max_backoff, delay or 0)
        if max_time is not None:
            assert elapsed + wait <= max_time


@given(
    retries=st.integers(min_value=0, max_value=10),
    error=st.sampled_from(RETRYABLE),
    rand=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_a_retry_loop_makes_retries_plus_one_attempts(
    retries: int, error: StreamerError, rand: float
) -> None:
    """Looping next_delay/increment on a retryable error ends after exactly retries + 1 tries."""
    policy = RetryPolicy(retries=retries)
    while policy.next_delay(error, elapsed=0, rand=rand) is not None:
        policy = policy.increment(error)
    assert policy.attempts == retries + 1
    assert policy.history == (error.result,) * retries


@given(value=st.text(max_size=40))
def test_parse_retry_after_never_raises(value: str) -> None:
    """Any string parses to None or a non-negative number, never an exception."""
    result = parse_retry_after(value, now=DATE)
    assert result is None or result >= 0
