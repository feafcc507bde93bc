"""The compact duplicate scan (streamer/core/keyset.py).

The rules: it finds exactly the keys `prescan` finds (a target claimed twice, by its own name
or as another target's partial file), counts jobs and bad lines, reads the lines a second time
only when some key was claimed twice, and then keeps only the keys two jobs claim by the same
name (a hash collision between two names refuses neither); its memory is 8 bytes per claimed
name plus a constant.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterable, Iterator

from streamer.core import keyset
from streamer.core.keyset import KeyCounter, scan_lines
from streamer.core.manifest import prescan
from streamer.core.targets import target_key


class Reads:
    """Lines given anew at each call; counts the calls."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines = list(lines)
        self.calls = 0

    def __call__(self) -> Iterator[str]:
        self.calls += 1
        return iter(self.lines)


# Names that normalise alike or not: "./x//a" and "x/a", NFC and NFD, a partial's owner.
NAMES = [
    '{"url": "http://h/1", "path": "./x//a"}',
    '{"url": "http://h/2", "path": "x/a"}',
    '{"url": "http://h/3", "path": "caf\u00e9"}',
    '{"url": "http://h/4", "path": "cafe\u0301"}',
    '{"url": "http://h/5", "path": "d/e.part.json.tmp"}',
    '{"url": "http://h/6", "path": "d/e"}',
    "http://h/q/.",
    "http://h/%2e",
    "not a url",
]

CASES = [
    [
        "https://a.example/x/file.bin",
        "https://b.example/y/file.bin?mirror=2",
        '{"url": "https://c.example/z", "path": "./out/z"}',
        '{"url": "https://d.example/q", "path": "out//z"}',
        "https://a.example/unique.bin",
        "ftp://bad/file.bin",
    ],
    ["http://h/a.part", "http://h/a"],
    ["http://h/a", '{"url": "http://h/1", "path": "x/a.part.json"}'],
    ['{"url": "http://h/1", "path": "b"}', "http://h/b.part.json"],
    [f"https://cdn.example/f{i}.bin" for i in range(2000)],
]


def test_finds_what_prescan_finds() -> None:
    """Same duplicate keys and job count as `prescan`, and the bad lines counted; a manifest
    kept whole (found by name) and one a line too long to keep (by key) alike."""
    for lines in [*CASES, NAMES]:
        scan = scan_lines(Reads(lines))
        assert (scan.duplicates, scan.jobs) == prescan(lines), lines
        for keep in (len(lines), len(lines) - 1):
            other = scan_lines(Reads(lines), keep=keep)
            assert (other.duplicates, other.jobs) == prescan(lines), (keep, lines)
            assert (other.bad_lines, other.first_bad) == (scan.bad_lines, scan.first_bad)
    first = scan_lines(Reads(CASES[0]))
    assert first.bad_lines == 1 and first.first_bad is not None and first.first_bad.line == 6


def test_a_second_read_only_for_duplicates() -> None:
    """Without a key claimed twice the lines are read once; with one, twice."""
    clean, clashing = Reads(CASES[4]), Reads(["http://h/a", "http://g/a"])
    scan_lines(clean)
    scan_lines(clashing)
    assert (clean.calls, clashing.calls) == (1, 2)


def test_a_kept_manifest_is_read_once_even_with_duplicates() -> None:
    """A manifest kept whole has its duplicates found by name, without a second reading."""
    clashing = Reads(["http://h/a", "http://g/a", "http://h/b"])
    scan = scan_lines(clashing, keep=3)
    assert clashing.calls == 1 and scan.duplicates == {target_key("a")}


def test_a_hash_collision_is_not_a_duplicate(monkeypatch: object) -> None:
    """Two different names sharing a key (forced here: every name hashes to 7) are not a
    duplicate; two jobs with the very same name still are."""
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(keyset, "claimed_keys", lambda rel: (7,))
    monkeypatch.setattr(keyset, "key_of_normal", lambda normal: 7)
    assert scan_lines(Reads(["http://h/a", "http://h/b"])).duplicates == set()
    assert scan_lines(Reads(["http://h/a", "http://h/b", "http://g/a"])).duplicates == {7}


def test_key_counter_edges() -> None:
    """Keys 0 and 2**64-1, and keys sharing a bucket, are counted exactly."""
    counter = KeyCounter()
    keys = [0, 0, 2**64 - 1, 2**64 - 1, 2**56, 2**56 + 1, 5]
    for key in keys:
        counter.add(key)
    assert len(counter) == len(keys)
    assert counter.repeated() == {0, 2**64 - 1}
    assert len(counter) == 0  # emptied as it went


def test_memory_is_eight_bytes_a_name() -> None:
    """Scanning 50,000 distinct jobs peaks under 12 bytes per job plus 64 KiB (the keys, and the
    chunks' room left; a half-full hash table of 64-bit keys, as before, peaks at 24-48)."""
    n = 50_000
    lines = (f"http://127.0.0.1:9/d{i // 1000}/f{i:08d}.bin\n" for i in range(n))
    tracemalloc.start()
    try:
        scan = scan_lines(lambda: lines)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scan.jobs == n and scan.duplicates == set()
    assert peak < 12 * n + (64 << 10), peak
    assert target_key("f00000000.bin") != 0


SHARDED = [
    "# comment\n",
    "url,path\n",
    "http://h/a,a\n",
    "\n",
    "http://h/b,b\n",
    "ftp://h/c,c\n",
    "http://h/d,\n",
    "http://h/e,e\n",
]


def test_kept_lines_are_the_parsed_lines_and_shard_like_a_reread() -> None:
    """A manifest of at most `keep` lines is kept as `parse_manifest` gives it, and `in_shard`
    gives worker k of n what `parse_manifest(lines, (k, n))` gives it (a bad CSV header only
    to its owner); one line more than `keep` keeps nothing."""
    from streamer.core.keyset import in_shard
    from streamer.core.manifest import parse_manifest

    cases = [*CASES[:4], SHARDED, ["url,bogus\n", "http://h/a\n", "http://h/b\n", "http://h/c"]]
    for lines in cases:
        kept = scan_lines(Reads(lines), keep=len(lines)).kept
        assert kept is not None and list(kept) == list(parse_manifest(lines)), lines
        for n in (1, 2, 3):
            for k in range(n):
                assert list(in_shard(kept, (k, n))) == list(parse_manifest(lines, (k, n)))
    assert scan_lines(Reads(CASES[4]), keep=1999).kept is None
    assert scan_lines(Reads(CASES[4])).kept is None  # nothing kept unless asked
