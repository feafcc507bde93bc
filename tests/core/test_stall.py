"""Tests for streamer.core.stall: curl-style minimum speed over a time window."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.stall import BUCKETS_PER_WINDOW, OwnWaits, StallMonitor
from streamer.errors import Result, TooSlowError, UsageError

S = 1000.0  # the caller's monotonic clock at start
MIN = 100.0  # bytes/s
WINDOW = 16.0  # seconds; buckets are then exactly 1 s wide
NEED = int(MIN * WINDOW)  # bytes needed in any window


def monitor() -> StallMonitor:
    return StallMonitor(MIN, WINDOW, S, url="https://example.com/slow")


@pytest.mark.parametrize(
    ("min_speed", "window"),
    [(0, 10), (-1, 10), (100, 0), (100, -5), (math.nan, 10), (100, math.nan), (100, math.inf)],
)
def test_non_positive_speed_or_window_is_usage_error(min_speed: float, window: float) -> None:
    """min_speed and window must be positive finite numbers."""
    with pytest.raises(UsageError):
        StallMonitor(min_speed, window, S)


def test_never_judged_before_a_full_window() -> None:
    """With no bytes at all, nothing is raised until exactly one window after start."""
    m = monitor()
    m.check(S + WINDOW - 0.001)
    m.feed(0, S + WINDOW - 0.001)
    with pytest.raises(TooSlowError):
        m.check(S + WINDOW)


def test_exact_minimum_passes_and_one_byte_short_fails() -> None:
    """NEED bytes within the window is fast enough; NEED - 1 is too slow."""
    ok = monitor()
    ok.feed(NEED, S + 1)
    ok.check(S + WINDOW)
    short = monitor()
    short.feed(NEED - 1, S + 1)
    with pytest.raises(TooSlowError):
        short.check(S + WINDOW)


def test_bytes_leave_the_window_exactly_one_window_later() -> None:
    """Bytes received at t count while now < t + window and not at t + window."""
    m = monitor()
    m.feed(NEED, S + 1)
    m.check(S + 1 + WINDOW - 0.001)
    with pytest.raises(TooSlowError):
        m.check(S + 1 + WINDOW)


def test_steady_drip_at_the_minimum_never_trips() -> None:
    """MIN bytes every second for a long time is never too slow."""
    m = monitor()
    for k in range(1, 300):
        m.feed(int(MIN), S + k)
        assert m.deadline(S + k) > 0


def test_drip_one_byte_per_second_below_minimum_trips_at_first_judgment() -> None:
    """MIN - 1 bytes every second trips at the first full window and not before."""
    m = monitor()
    for k in range(1, int(WINDOW)):
        m.feed(int(MIN) - 1, S + k)
    with pytest.raises(TooSlowError):
        m.feed(int(MIN) - 1, S + WINDOW)


def test_slow_drip_after_fast_start_trips_when_burst_leaves_window() -> None:
    """A big early burst keeps the transfer alive for one window, then a drip fails."""
    m = monitor()
    m.feed(100 * NEED, S + 1)
    for k in range(2, 17):
        m.feed(1, S + k)
    with pytest.raises(TooSlowError) as info:
        m.feed(1, S + 17)
    assert "1.0 bytes/s" in info.value.message  # 16 single bytes over 16 s


def test_error_names_speed_minimum_window_and_url() -> None:
    """TooSlowError says the measured speed, the minimum and the window; it is a timeout."""
    m = monitor()
    m.feed(NEED // 2, S + 1)
    with pytest.raises(TooSlowError) as info:
        m.check(S + WINDOW)
    err = info.value
    assert "50.0 bytes/s" in err.message
    assert "minimum of 100 bytes/s" in err.message
    assert "last 16 s" in err.message
    assert err.url == "https://example.com/slow"
    assert err.result is Result.TOO_SLOW
    assert isinstance(err, TimeoutError)


def test_whole_feed_and_byte_by_byte_feed_agree() -> None:
    """Feeding NEED bytes at once or one at a time at the same instant gives the same verdict."""
    whole, single = monitor(), monitor()
    whole.feed(NEED, S + 3)
    for _ in range(NEED):
        single.feed(1, S + 3)
    for m in (whole, single):
        m.check(S + 3 + WINDOW - 0.01)
        assert m.deadline(S + 4) == pytest.approx(WINDOW - 1)
        with pytest.raises(TooSlowError):
            m.check(S + 3 + WINDOW)


def test_deadline_before_and_after_bytes() -> None:
    """deadline() is the time until check() would raise with no more bytes."""
    m = monitor()
    assert m.deadline(S) == WINDOW  # nothing judged before a full window
    assert m.deadline(S + 5) == WINDOW - 5
    m.feed(NEED, S + 2)
    assert m.deadline(S + 2) == WINDOW  # the bytes at S+2 leave at S+18
    assert m.deadline(S + 10) == 8
    m.feed(NEED, S + 4)
    assert m.deadline(S + 10) == 10  # the first batch leaving is not enough to fail


def test_deadline_is_zero_when_already_too_slow() -> None:
    """Once the last window is too slow, the deadline is 0 (never negative)."""
    m = monitor()
    assert m.deadline(S + WINDOW) == 0
    assert m.deadline(S + 10 * WINDOW) == 0


def test_memory_is_bounded_by_the_bucket_count() -> None:
    """A hundred thousand tiny reads keep at most about one window of buckets."""
    m = StallMonitor(1, WINDOW, S)
    for i in range(100_000):
        m.feed(1, S + i / 1000)
        assert len(m._buckets) <= BUCKETS_PER_WINDOW + 2
    # 100 seconds of 1000 bytes/s: never too slow for a 1 byte/s minimum.
    assert m.deadline(S + 100) > 0


def test_clock_stepping_back_does_not_break_order() -> None:
    """A 'now' earlier than a previous one is folded into the newest bucket."""
    m = monitor()
    m.feed(NEED, S + 5)
    m.feed(NEED, S + 3)
    assert len(m._buckets) == 1
    m.check(S + 5 + WINDOW - 0.01)


# Times on a 1/64 s grid are exact in binary floating point, so the reference computations
# below are free of rounding.
_feeds = st.lists(
    st.tuples(st.integers(min_value=0, max_value=64 * 40), st.integers(min_value=0, max_value=900)),
    max_size=60,
)


def _exact_count(history: list[tuple[float, int]], now: float, span: float) -> int:
    """Bytes received in (now - span, now]: the exact rule the monitor approximates."""
    return sum(n for t, n in history if t > now - span)


@given(_feeds)
def test_bucketing_is_never_harsher_and_at_most_one_bucket_lenient(
    feeds: list[tuple[int, int]],
) -> None:
    """Raises only if the exact rule would; must raise if even window + 1/16 was too slow."""
    m = monitor()
    width = WINDOW / BUCKETS_PER_WINDOW
    history: list[tuple[float, int]] = []
    for tick, n in sorted(feeds):
        now = S + tick / 64
        history.append((now, n))
        judged = now - S >= WINDOW
        exact_slow = judged and _exact_count(history, now, WINDOW) < NEED
        surely_slow = judged and _exact_count(history, now, WINDOW + width) < NEED
        try:
            m.feed(n, now)
        except TooSlowError:
            assert exact_slow
            return
        assert not surely_slow


@given(_feeds, st.integers(min_value=0, max_value=64 * 40))
def test_check_raises_exactly_at_the_deadline(feeds: list[tuple[int, int]], probe: int) -> None:
    """check() passes just before now + deadline(now) and raises at it."""
    m = StallMonitor(MIN, WINDOW, S)
    now = S
    try:
        for tick, n in sorted(feeds):
            now = S + tick / 64
            m.feed(n, now)
    except TooSlowError:
        return
    now = max(now, S + probe / 64)
    d = m.deadline(now)
    assert d >= 0
    if d > 0.001:
        copy.deepcopy(m).check(now + d - 0.001)
    with pytest.raises(TooSlowError):
        copy.deepcopy(m).check(now + d)


def test_own_waits_stop_the_window_clock() -> None:
    """OwnWaits.clock is the real time less our own waits, ended and ongoing; a second begin
    during a wait is part of it, an end without a begin changes nothing."""
    waits = OwnWaits()
    assert waits.clock(S) == S
    waits.begin(S + 1)
    waits.begin(S + 2)  # paid again while waiting: one wait
    assert waits.waiting and waits.clock(S + 3) == S + 1
    waits.end(S + 4)
    waits.end(S + 5)
    assert not waits.waiting and waits.clock(S + 10) == S + 7


def test_a_window_fed_through_own_waits_judges_only_the_peer() -> None:
    """A transfer that reads fast, then waits 10 windows for its own throttle, then reads
    again is not too slow; the same gap without the waits noted is."""
    waits, paced = OwnWaits(), StallMonitor(MIN, WINDOW, S)
    plain = StallMonitor(MIN, WINDOW, S)
    for m in (paced, plain):
        m.feed(NEED, S + WINDOW)  # a full window at the minimum: passes
    waits.begin(S + WINDOW)
    waits.end(S + 11 * WINDOW)
    paced.feed(NEED // 2, waits.clock(S + 11 * WINDOW))
    with pytest.raises(TooSlowError):
        plain.feed(NEED // 2, S + 11 * WINDOW)


async def test_own_waits_pay_counts_the_throttle_wait() -> None:
    """OwnWaits.pay awaits the throttle with the byte count and counts its time as ours."""
    ticks = iter([S, S + 3])
    paid: list[int] = []

    async def throttle(n: int) -> None:
        paid.append(n)

    waits = OwnWaits()
    await waits.pay(throttle, 42, lambda: next(ticks))
    assert paid == [42] and waits.clock(S + 5) == S + 2
