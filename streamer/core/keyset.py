"""Duplicate targets among millions of jobs, in 8 bytes per claimed name.

A manifest's targets are checked before any job starts: every name a job writes (see
`claimed_keys`) is reduced to its 64-bit key and appended to one of 256 flat arrays chosen by
the key's top byte. Each array is then sorted on its own (a short-lived list of a 256th of the
keys) and equal neighbours are the duplicates. Ten million names cost ~84 MB; a hash table at
most half full, as `DuplicateFinder` is, costs 16-32 bytes per name and twice that while it
grows.

Two different names with one key (a 2**-64 matter per pair) would refuse both jobs, so every
key found twice is checked again by name in a second pass, unless there are so many that they
cannot all be real collisions (MAX_RECHECK).
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .manifest import BadLine, Job, parse_manifest, target_for
from .targets import PARTIAL_SUFFIXES, claimed_keys, key_of_normal, normal_path

BUCKET_BITS = 8
FIRST_CHUNK_KEYS = 256  # a bucket's chunks double from 2 KiB...
CHUNK_KEYS = 4096  # ...up to 32 KiB
MAX_RECHECK = 100_000  # duplicate keys checked by name; past this they are taken as real


@dataclass(frozen=True)
class Scan:
    """What one read of a manifest found: the jobs, the keys claimed twice, the first bad line,
    and every parsed line when there were at most `keep` (see `scan_lines`), else None."""

    jobs: int
    duplicates: set[int]
    bad_lines: int
    first_bad: BadLine | None
    kept: tuple[Job | BadLine, ...] | None = None


class KeyCounter:
    """Collects 64-bit keys in 8 bytes each; `repeated` lists the keys added more than once.

    Each bucket is a list of chunks of a few fixed sizes, filled in place: growing arrays would be
    reallocated again and again, and the holes they leave in the heap (the command line keeps
    freed memory for reuse, see cli/tuning.py) would cost as much as the keys themselves.
    """

    def __init__(self) -> None:
        buckets = 1 << BUCKET_BITS
        self._chunks: list[list[array[int]]] = [[] for _ in range(buckets)]
        self._fill = [0] * buckets  # next free place in the bucket's last chunk
        self._room = [0] * buckets  # the size of the bucket's last chunk
        self._shift = 64 - BUCKET_BITS

    def add(self, key: int) -> None:
        bucket = key >> self._shift
        place = self._fill[bucket]
        if place == self._room[bucket]:  # full: the next chunk is twice as big, up to a cap
            room = min(CHUNK_KEYS, 2 * place) or FIRST_CHUNK_KEYS
            self._chunks[bucket].append(array("Q", [0]) * room)
            self._room[bucket], place = room, 0
        self._chunks[bucket][-1][place] = key
        self._fill[bucket] = place + 1

    def __len__(self) -> int:
        return sum(
            sum(map(len, chunks[:-1])) + fill
            for chunks, fill in zip(self._chunks, self._fill, strict=True)
            if chunks
        )

    def repeated(self) -> set[int]:
        """The keys added twice or more; the counter is emptied bucket by bucket as it goes."""
        found: set[int] = set()
        for i, chunks in enumerate(self._chunks):
            if not chunks:
                continue
            keys: list[int] = []
            for chunk in chunks[:-1]:
                keys.extend(chunk)
            keys.extend(chunks[-1][: self._fill[i]])
            self._chunks[i], self._fill[i], self._room[i] = [], 0, 0
            keys.sort()
            found.update(a for a, b in itertools.pairwise(keys) if a == b)
        return found


def _names(job: Job) -> Iterator[tuple[int, str]]:
    """(key, normal name) of each name `job` writes, as `claimed_keys` gives the keys: its
    target, and for a name like ``a.part`` (another target's partial file) also ``a``."""
    for normal in _normal_names(target_for(job)):
        yield key_of_normal(normal), normal


def _normal_names(rel: str) -> Iterator[str]:
    """The `normal_path` of each name a job for `rel` writes (see `_names`)."""
    yield normal_path(rel)
    for suffix in PARTIAL_SUFFIXES:
        if rel.endswith(suffix) and len(rel) > len(suffix):
            yield normal_path(rel[: -len(suffix)])
            return


def _repeated_names(items: Iterable[Job | BadLine]) -> set[int]:
    """The keys of the names two jobs claim, found by name: exact, with no second reading (for
    a manifest kept in memory, whose names fit a set)."""
    seen: set[str] = set()
    repeated: set[int] = set()
    for item in items:
        if isinstance(item, Job):
            for name in _normal_names(target_for(item)):
                if name in seen:
                    repeated.add(key_of_normal(name))
                else:
                    seen.add(name)
    return repeated


def scan_lines(open_lines: Callable[[], Iterable[str]], keep: int = 0) -> Scan:
    """Count the jobs of the manifest `open_lines()` gives and find the keys claimed twice.

    `open_lines` is called once, and a second time only when some key was claimed twice. A
    manifest of at most `keep` parsed lines (jobs and bad lines) is also kept whole (~300 bytes
    a line), so that its run need not read and parse it a second time; its duplicates are then
    found by name, in one reading."""
    items = parse_manifest(open_lines())
    head = list(itertools.islice(items, keep + 1)) if keep > 0 else []
    if keep > 0 and len(head) <= keep:  # kept whole: its duplicates are found by name
        bads = [item for item in head if isinstance(item, BadLine)]
        first = bads[0] if bads else None
        return Scan(len(head) - len(bads), _repeated_names(head), len(bads), first, tuple(head))
    counter = KeyCounter()
    jobs = bad = 0
    first_bad: BadLine | None = None
    for item in _emptied(head, items):
        if isinstance(item, BadLine):
            bad += 1
            first_bad = first_bad or item
            continue
        jobs += 1
        for key in claimed_keys(target_for(item)):
            counter.add(key)
    candidates = counter.repeated()
    del counter
    if candidates and len(candidates) <= MAX_RECHECK:
        candidates = _recheck(open_lines(), candidates)
    return Scan(jobs, candidates, bad, first_bad)


def _emptied(head: list[Job | BadLine], rest: Iterator[Job | BadLine]) -> Iterator[Job | BadLine]:
    """`head`'s items, each let go as it is given (a long manifest is not held), then `rest`."""
    head.reverse()
    while head:
        yield head.pop()
    yield from rest


def in_shard(kept: Iterable[Job | BadLine], shard: tuple[int, int]) -> Iterator[Job | BadLine]:
    """The kept lines `parse_manifest(lines, shard)` would give: those whose line number is k
    modulo n (a bad CSV header included, which only its owner reports)."""
    k, n = shard
    return (item for item in kept if item.line % n == k)


def _recheck(lines: Iterable[str], candidates: set[int]) -> set[int]:
    """The candidate keys that two jobs claim by the same name (not just the same hash)."""
    first: dict[int, str] = {}
    real: set[int] = set()
    for item in parse_manifest(lines):
        if not isinstance(item, Job):
            continue
        for key, name in _names(item):
            if key not in candidates:
                continue
            seen = first.get(key)
            if seen is None:
                first[key] = name
            elif seen == name:
                real.add(key)
    return real


__all__ = ["MAX_RECHECK", "KeyCounter", "Scan", "in_shard", "scan_lines"]
