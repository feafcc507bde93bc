"""Tests for streamer.core.ratelimit: token buckets for byte and request rates."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.ratelimit import MIN_BURST, HostLimiter, TokenBucket, burst_for
from streamer.errors import UsageError

T0 = 1000.0  # the caller's monotonic clock at start
RATE = 1000.0  # tokens (bytes) per second
BURST = 4000.0


def bucket() -> TokenBucket:
    return TokenBucket(RATE, BURST, T0)


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(0, 1), (-1, 1), (1, 0), (1, -1), (math.nan, 1), (1, math.nan), (math.inf, 1), (1, math.inf)],
)
def test_rate_and_burst_must_be_positive_finite(rate: float, burst: float) -> None:
    """rate <= 0, burst <= 0, NaN or infinity is a UsageError."""
    with pytest.raises(UsageError):
        TokenBucket(rate, burst, T0)
    with pytest.raises(UsageError):
        HostLimiter(rate, burst)


@pytest.mark.parametrize("n", [-1.0, math.nan, math.inf])
def test_take_rejects_negative_or_non_finite(n: float) -> None:
    """Only a finite, non-negative number of tokens can be taken."""
    with pytest.raises(UsageError):
        bucket().take(n, T0)


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(1, MIN_BURST), (64 << 10, 64 << 10), (256 << 10, 64 << 10), (4 << 20, 1 << 20), (1e9, 250e6)],
)
def test_burst_is_a_quarter_second_and_at_least_64_kib(rate: float, burst: int) -> None:
    """burst_for (the bucket's size and an upload's largest slice): a quarter of a second's
    worth, never under 64 KiB; a rate that is not positive and finite is a UsageError."""
    assert burst_for(rate) == burst
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(UsageError):
            burst_for(bad)


def test_burst_allowed_at_start() -> None:
    """The bucket starts full: up to `burst` tokens go through without waiting."""
    b = bucket()
    assert b.take(1000, T0) == 0.0
    assert b.take(3000, T0) == 0.0
    assert b.take(1, T0) == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("n", "wait"),
    [(0, 0.0), (4000, 0.0), (4001, 0.001), (5000, 1.0), (12000, 8.0)],
)
def test_wait_covers_what_the_bucket_lacks(n: float, wait: float) -> None:
    """The wait is the refill time of the shortfall; n above burst is allowed and waits longer."""
    assert bucket().take(n, T0) == pytest.approx(wait)


def test_refill_is_continuous() -> None:
    """Tokens come back in proportion to elapsed time, not in steps."""
    b = bucket()
    b.take(BURST, T0)
    assert b.tokens(T0 + 0.25) == pytest.approx(250)
    assert b.take(250, T0 + 0.25) == 0.0
    assert b.take(100, T0 + 0.30) == pytest.approx(0.05)


def test_refill_is_capped_at_burst() -> None:
    """However long the bucket idles, at most `burst` tokens are saved."""
    b = bucket()
    b.take(BURST, T0)
    assert b.tokens(T0 + 3600) == BURST
    assert b.take(BURST + 1000, T0 + 3600) == pytest.approx(1.0)


def test_debt_is_shared() -> None:
    """A take behind someone else's unpaid take waits for both."""
    b = bucket()
    assert b.take(BURST + 100, T0) == pytest.approx(0.1)
    assert b.take(100, T0) == pytest.approx(0.2)
    assert b.take(0, T0 + 0.1) == pytest.approx(0.1)
    assert b.take(0, T0 + 0.2) == 0.0


def test_backwards_clock_is_no_time_passing() -> None:
    """A clock stepping back refills nothing and the bucket measures on from the new reading."""
    b = bucket()
    b.take(BURST, T0)
    assert b.take(0, T0 - 50) == 0.0  # empty, not in debt
    assert b.tokens(T0 - 50) == 0.0
    assert b.take(500, T0 - 60) == pytest.approx(0.5)  # no refill for going back again
    assert b.tokens(T0 - 59) == pytest.approx(500)  # one second after the new reading


@pytest.mark.parametrize(
    ("rate", "burst", "chunk", "seconds"),
    [
        (1000.0, 10.0, 1, 200),
        (1e6, 64 * 1024.0, 1500, 200),
        (1e6, 64 * 1024.0, 16 * 1024, 1000),
        (1e6, 64 * 1024.0, 1024 * 1024, 1000),  # chunks larger than the whole bucket
    ],
)
def test_long_run_average_equals_rate(rate: float, burst: float, chunk: int, seconds: int) -> None:
    """A caller that sleeps as told moves `rate` bytes/s on average (within 1%), any chunk size."""
    b = TokenBucket(rate, burst, T0)
    rng = random.Random(chunk)
    now, sent = T0, 0
    while now < T0 + seconds:
        sent += chunk
        now += b.take(chunk, now)
        # The caller's own work between chunks; short enough that the bucket can save what
        # refills meanwhile (a caller idle for longer is simply slower than the limit).
        now += rng.uniform(0, 0.2 * min(chunk, burst) / rate)
    assert sent / (now - T0) == pytest.approx(rate, rel=0.01)


def test_slow_caller_is_not_held_back() -> None:
    """A caller slower than the rate never waits (after it has spent the burst)."""
    b = bucket()
    now = T0
    for _ in range(1000):
        assert b.take(RATE / 2, now) == 0.0
        now += 1.0


_STEPS = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=1e7, allow_nan=False),
        st.floats(min_value=-100, max_value=100, allow_nan=False),
    ),
    max_size=50,
)


@given(
    st.floats(min_value=1e-3, max_value=1e9),
    st.floats(min_value=1e-3, max_value=1e9),
    _STEPS,
)
def test_waits_are_never_negative(
    rate: float, burst: float, steps: list[tuple[float, float]]
) -> None:
    """Whatever the amounts and clock steps (backwards too), a wait is finite and >= 0."""
    b = TokenBucket(rate, burst, T0)
    now = T0
    for n, dt in steps:
        now += dt
        wait = b.take(n, now)
        assert 0.0 <= wait < math.inf
        assert b.tokens(now) <= burst


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=40))
def test_waiting_as_told_never_exceeds_rate(amounts: list[float]) -> None:
    """After the burst, n tokens always cost at least n / rate seconds of waiting overall."""
    b = bucket()
    now = T0
    for n in amounts:
        now += b.take(n, now)
    assert sum(amounts) <= BURST + (now - T0) * RATE + 1e-6 * sum(amounts)


# ---- HostLimiter ----------------------------------------------------------------------------


def test_hosts_are_limited_independently() -> None:
    """Each host has its own bucket: one busy host does not slow another."""
    limiter = HostLimiter(rate=2.0, burst=2.0)
    assert limiter.take("a.example", T0) == 0.0
    assert limiter.take("a.example", T0) == 0.0
    assert limiter.take("a.example", T0) == pytest.approx(0.5)
    assert limiter.take("b.example", T0) == 0.0


def test_host_names_are_case_insensitive() -> None:
    """EXAMPLE.com and example.com share a bucket (RFC 3986 3.2.2: hosts are case-insensitive)."""
    limiter = HostLimiter(rate=1.0, burst=1.0)
    assert limiter.take("Example.COM", T0) == 0.0
    assert limiter.take("example.com", T0) == pytest.approx(1.0)
    assert len(limiter) == 1


def test_idle_hosts_are_forgotten() -> None:
    """Buckets of idle hosts are dropped, so a long crawl of many hosts keeps a small table."""
    limiter = HostLimiter(rate=10.0, burst=1.0)
    now = T0
    for i in range(10_000):
        assert limiter.take(f"h{i}.example", now) == 0.0
        now += 0.2  # every earlier host has refilled by the next take
    assert len(limiter) <= 128


def test_busy_hosts_are_kept() -> None:
    """A host still in debt keeps its bucket through a sweep, and its debt with it."""
    limiter = HostLimiter(rate=1.0, burst=1.0)
    limiter.take("busy.example", T0)
    limiter.take("busy.example", T0)  # one second of debt
    for i in range(500):
        limiter.take(f"h{i}.example", T0 + 0.5)
    assert limiter.take("busy.example", T0 + 0.5) == pytest.approx(1.5)
