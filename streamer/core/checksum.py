"""Expected checksums ("sha256:<hex>") and the verifier that hashes a body as it streams.

The body is hashed piece by piece as it is written, so verifying never needs a second read of
the file nor the whole body in memory.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from typing import Protocol

from streamer.errors import ChecksumMismatch, UsageError

ALGORITHMS: tuple[str, ...] = ("md5", "sha1", "sha256", "sha512")

# md5 and sha1 are broken for security but still fine to catch corruption, and many mirrors
# publish only those. Marking them not-for-security keeps them usable on FIPS-mode OpenSSL.
_WEAK = frozenset({"md5", "sha1"})

_HEX = frozenset(string.hexdigits)


class Hasher(Protocol):
    """The part of a hashlib object that verifying needs."""

    @property
    def digest_size(self) -> int: ...

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


def _normalize(algorithm: str) -> str:
    """ "SHA-256" and "sha256" name the same thing; hashlib only knows the second spelling."""
    return algorithm.strip().lower().replace("-", "")


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hashlib object for one of `ALGORITHMS` (any case, "sha-256" spelling too)."""
    name = _normalize(algorithm)
    if name not in ALGORITHMS:
        raise UsageError(
            f"unknown checksum algorithm {algorithm!r} (supported: {', '.join(ALGORITHMS)})"
        )
    return hashlib.new(name, usedforsecurity=name not in _WEAK)


@dataclass(frozen=True)
class Checksum:
    """An expected digest: the algorithm (one of `ALGORITHMS`) and lowercase hex."""

    algorithm: str
    hexdigest: str

    def __post_init__(self) -> None:
        # Validate here rather than only in parse() so that no invalid Checksum can exist.
        algorithm = _normalize(self.algorithm)
        hasher = new_hasher(algorithm)
        hexdigest = self.hexdigest.strip().lower()
        if not hexdigest or not _HEX.issuperset(hexdigest):
            raise UsageError(f"checksum is not hexadecimal: {self.hexdigest!r}")
        if len(hexdigest) != 2 * hasher.digest_size:
            raise UsageError(
                f"a {algorithm} checksum has {2 * hasher.digest_size} hex digits, "
                f"got {len(hexdigest)}: {self.hexdigest!r}"
            )
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(self, "hexdigest", hexdigest)

    @classmethod
    def parse(cls, text: str) -> Checksum:
        """Parse "algorithm:hex", e.g. "sha256:e3b0..." or "SHA-256:E3B0..."."""
        algorithm, colon, hexdigest = text.strip().partition(":")
        if not colon:
            raise UsageError(f"checksum must look like 'sha256:<hex>', got {text!r}")
        return cls(algorithm, hexdigest)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


class Verifier:
    """Hash a body as it streams and compare the result with an expected `Checksum`."""

    def __init__(self, checksum: Checksum, url: str = "") -> None:
        self.checksum = checksum
        self.url = url
        self._hasher = new_hasher(checksum.algorithm)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Add the next piece of the body."""
        self._hasher.update(data)

    def hexdigest(self) -> str:
        """The digest of everything fed so far (may be called repeatedly)."""
        return self._hasher.hexdigest()

    def check(self) -> None:
        """Raise `ChecksumMismatch` unless the body fed so far has the expected digest."""
        actual = self.hexdigest()
        expected = self.checksum.hexdigest
        if actual != expected:
            raise ChecksumMismatch(
                f"{self.checksum.algorithm} mismatch: expected {expected}, got {actual}",
                expected=expected,
                actual=actual,
                url=self.url,
            )
