"""Target paths as 64-bit keys: one spelling per file, duplicate detection in flat memory.

Pure functions over strings. A key is a hash of the normalised relative path ("./a//b" and
"a/b", or the NFC and NFD spellings of a name, are one key), so a manifest of millions of jobs
is checked for clashing targets in 16-32 bytes per job.
"""

from __future__ import annotations

import hashlib
import unicodedata
from array import array

from streamer.core.names import HELPER_SUFFIXES, JOURNAL_NAME, reserved_reason
from streamer.errors import UsageError


def components(path: str) -> list[str]:
    """The components of a "/"-separated path, without empty and "." ones."""
    return [part for part in path.split("/") if part not in ("", ".")]


# The names a download of T uses besides T itself (files.PART_SUFFIX, SIDECAR_SUFFIX and the
# sidecar's temporary file; a test keeps them in step with files.py).
PARTIAL_SUFFIXES = HELPER_SUFFIXES


def owner_key(relpath: str) -> int | None:
    """For a target named like another target's partial file (``a.part`` is the partial of
    ``a``): the key of that other target, which this job also claims; else None."""
    for suffix in PARTIAL_SUFFIXES:
        if relpath.endswith(suffix) and len(relpath) > len(suffix):
            return target_key(relpath[: -len(suffix)])
    return None


def normal_path(relpath: str) -> str:
    """The spelling `target_key` hashes: components joined by "/", NFC (see target_key)."""
    if relpath.isascii() and "/" not in relpath and relpath != ".":
        return relpath  # already normal: one component, and NFC leaves ASCII alone
    return unicodedata.normalize("NFC", "/".join(components(relpath)))


def target_key(relpath: str) -> int:
    """A 64-bit hash of the normalised relative path, for cheap duplicate checks.

    Case-sensitive; "./a//b" and "a/b" are one key, and so are the NFC and NFD spellings of
    a name (macOS file systems treat those as the same file). Collisions between distinct
    paths are a 2**-64 matter per pair.
    """
    return key_of_normal(normal_path(relpath))


def key_of_normal(normal: str) -> int:
    """The 64-bit key of a path already in `normal_path` form."""
    digest = hashlib.blake2b(normal.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


_MAX_KEY = 2**64 - 1
_FIBONACCI = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: spreads structured keys (Knuth 6.4)


class DuplicateFinder:
    """A set of 64-bit keys in a flat array: 16-32 bytes per key instead of ~70 for a set.

    Open addressing with linear probing, at most half full. Key 0 marks a free slot, so
    whether 0 itself was added is kept apart.
    """

    def __init__(self) -> None:
        self._bits = 10
        self._slots = array("Q", [0]) * (1 << self._bits)
        self._count = 0  # non-zero keys stored
        self._has_zero = False

    def __len__(self) -> int:
        return self._count + self._has_zero

    def add(self, key: int) -> bool:
        """Record `key`; True if it had been added before."""
        if not 0 <= key <= _MAX_KEY:
            raise UsageError(f"key must be an unsigned 64-bit integer: {key}")
        if key == 0:
            seen, self._has_zero = self._has_zero, True
            return seen
        if self._insert(key):
            return True
        self._count += 1
        if 2 * self._count > len(self._slots):
            self._grow()
        return False

    def _insert(self, key: int) -> bool:
        """Put `key` in its slot; True if it was already there."""
        slots, mask = self._slots, len(self._slots) - 1
        i = ((key * _FIBONACCI) & _MAX_KEY) >> (64 - self._bits)
        while True:
            current = slots[i]
            if current == key:
                return True
            if current == 0:
                slots[i] = key
                return False
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = self._slots
        self._bits += 1
        self._slots = array("Q", [0]) * (1 << self._bits)
        for key in old:
            if key:
                self._insert(key)


def claimed_keys(relpath: str) -> tuple[int, ...]:
    """The keys of the names a job for `relpath` writes: its own, and for ``a.part`` (a name
    another job's download of ``a`` uses for its partial file) also ``a``'s."""
    owner = owner_key(relpath)
    key = target_key(relpath)
    return (key,) if owner is None else (key, owner)


__all__ = [
    "HELPER_SUFFIXES",
    "JOURNAL_NAME",
    "PARTIAL_SUFFIXES",
    "DuplicateFinder",
    "claimed_keys",
    "components",
    "key_of_normal",
    "normal_path",
    "owner_key",
    "reserved_reason",
    "target_key",
]
