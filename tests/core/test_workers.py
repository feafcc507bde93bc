"""The automatic worker count of a large bulk run (streamer/core/workers.py), number by number."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.workers import AVAILABLE_SHARE, MIB, RSS_BUDGET, worker_count

GIB = 1024 * MIB


@pytest.mark.parametrize(
    ("cpus", "parent", "available", "expected"),
    [
        (2, 26 * MIB, 20 * GIB, 2),  # this machine: the CPUs bind
        (8, 26 * MIB, 20 * GIB, 2),  # 26 + 2 x 26 = 78 MiB; a third would make 104
        (8, 24 * MIB, 20 * GIB, 3),  # 24 + 3 x 24 = 96 MiB fits
        (8, 25 * MIB, 20 * GIB, 3),  # 25 + 3 x 25 = 100 MiB: the budget itself is allowed
        (8, 34 * MIB, 20 * GIB, 1),  # 34 + 2 x 34 = 102 MiB: the run stays in the parent
        (2, 26 * MIB, 80 * MIB, 1),  # half of 80 MiB holds one 26 MiB worker: none is forked
        (2, 26 * MIB, 104 * MIB, 2),  # half of 104 MiB holds two
        (2, 26 * MIB, 103 * MIB, 1),
        (1, 26 * MIB, 20 * GIB, 1),  # one CPU
        (0, 26 * MIB, 20 * GIB, 1),  # never fewer than one process
        (4, None, 20 * GIB, 4),  # RSS unknown (no /proc): the CPUs alone
        (4, 26 * MIB, None, 2),  # MemAvailable unknown: the budget still counts
        (4, None, None, 4),
        (4, 0, 20 * GIB, 4),  # a zero RSS is no measurement
        (4, 200 * MIB, 20 * GIB, 1),  # a parent over the budget already
    ],
)
def test_worker_count_table(
    cpus: int, parent: int | None, available: int | None, expected: int
) -> None:
    """min(cpus, (RSS_BUDGET - parent) // parent, available // 2 // parent), at least 1; an
    unknown number leaves its term out."""
    assert worker_count(cpus, parent, available) == expected


@given(
    st.integers(0, 256),
    st.integers(1 * MIB, 200 * MIB),
    st.integers(0, 64 * GIB),
)
def test_worker_count_keeps_both_memory_bounds(cpus: int, parent: int, available: int) -> None:
    """Whenever workers are forked (n > 1), the parent plus n parent-sized workers fit in
    RSS_BUDGET and n workers in 1/AVAILABLE_SHARE of MemAvailable; never more than the CPUs;
    one more worker would break a bound or pass the CPUs."""
    n = worker_count(cpus, parent, available)
    assert n >= 1
    if n > 1:
        assert n <= cpus
        assert parent + n * parent <= RSS_BUDGET
        assert n * parent * AVAILABLE_SHARE <= available
    more = n + 1
    assert (
        more > max(cpus, 1)
        or parent + more * parent > RSS_BUDGET
        or more * parent > available // AVAILABLE_SHARE
    )
