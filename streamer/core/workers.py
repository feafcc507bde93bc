"""How many worker processes a large bulk run forks: from the CPUs and the memory, measured.

Pure: the caller reads the numbers (`cli.shards` reads /proc) and this decides. The rule:

    n = min(cpus,
            (RSS_BUDGET - parent) // worker,      # the run's summed RSS stays within budget
            available // AVAILABLE_SHARE // worker)  # never plan on more than half of MemAvailable
    worker = parent's RSS when the decision is made

A worker is forked from the parent after the manifest scan, so it starts as a copy of it and,
with its share of the jobs, peaks below it: 5,000 x 16 KiB measured a 28 MiB parent and two
22 MiB workers (72 MiB summed; three workers 94 MiB). Counting each worker as the parent's size
keeps the estimate on the safe side. One "worker" is no worker at all: the run stays in the
parent process (n = 1), as it does when a number is unknown and the CPUs allow only one.
"""

from __future__ import annotations

MIB = 1 << 20
# The summed RSS (parent and workers) a bulk run stays under (bench/README.md, issue 15).
RSS_BUDGET = 100 * MIB
# Plan on at most 1 / AVAILABLE_SHARE of the memory the kernel calls available.
AVAILABLE_SHARE = 2


def worker_count(cpus: int, parent_rss: int | None, available: int | None) -> int:
    """Processes for a large manifest (1: no worker). `parent_rss` is the deciding process's
    resident size and `available` the system's MemAvailable, both in bytes, None when unknown
    (then only the CPUs count)."""
    n = max(1, cpus)
    if parent_rss is not None and parent_rss > 0:
        n = min(n, (RSS_BUDGET - parent_rss) // parent_rss)
        if available is not None:
            n = min(n, available // AVAILABLE_SHARE // parent_rss)
    return max(1, n)


__all__ = ["AVAILABLE_SHARE", "MIB", "RSS_BUDGET", "worker_count"]
