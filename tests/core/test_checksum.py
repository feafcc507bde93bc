"""Tests for streamer.core.checksum: parsing expected digests and verifying streamed bodies."""

from __future__ import annotations

import hashlib
import itertools
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.checksum import ALGORITHMS, Checksum, Verifier, new_hasher
from streamer.errors import ChecksumMismatch, Result, UsageError

BODY = b"The quick brown fox jumps over the lazy dog"
SHA256 = hashlib.sha256(BODY).hexdigest()


def test_algorithms_are_the_four_promised() -> None:
    """The supported algorithms are exactly md5, sha1, sha256 and sha512."""
    assert ALGORITHMS == ("md5", "sha1", "sha256", "sha512")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_parse_each_algorithm_and_str_round_trips(algorithm: str) -> None:
    """'alg:hex' parses for every algorithm and str() gives the same text back."""
    digest = hashlib.new(algorithm, BODY).hexdigest()
    checksum = Checksum.parse(f"{algorithm}:{digest}")
    assert checksum == Checksum(algorithm, digest)
    assert str(checksum) == f"{algorithm}:{digest}"


@pytest.mark.parametrize("spelling", ["SHA256", "sha-256", "SHA-256", "Sha256", " sha256"])
def test_algorithm_spelling_is_normalized(spelling: str) -> None:
    """Algorithm names are case-insensitive and accept the 'sha-256' spelling."""
    checksum = Checksum.parse(f"{spelling}:{SHA256}")
    assert checksum.algorithm == "sha256"


def test_hex_is_lowercased() -> None:
    """Uppercase hex is accepted and stored lowercase."""
    checksum = Checksum.parse(f"sha256:{SHA256.upper()}")
    assert checksum.hexdigest == SHA256
    assert str(checksum) == f"sha256:{SHA256}"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (SHA256, "sha256:<hex>"),  # missing colon
        (f"crc32:{SHA256}", "unknown checksum algorithm"),
        (f"sha3_256:{SHA256}", "unknown checksum algorithm"),
        (f":{SHA256}", "unknown checksum algorithm"),
        ("sha256:", "not hexadecimal"),
        (f"sha256:{SHA256[:-1]}g", "not hexadecimal"),
        (f"sha256:{SHA256[:-1]}", "64 hex digits, got 63"),
        (f"sha256:{SHA256}0", "64 hex digits, got 65"),
        (f"md5:{SHA256}", "32 hex digits, got 64"),
        (f"sha512:{SHA256}", "128 hex digits, got 64"),
    ],
)
def test_bad_checksums_raise_usage_error(text: str, fragment: str) -> None:
    """Missing colon, unknown algorithm, non-hex or wrong-length digests are UsageErrors."""
    with pytest.raises(UsageError, match=fragment.replace("<", ".").replace(">", ".")):
        Checksum.parse(text)


def test_direct_construction_is_validated_too() -> None:
    """A Checksum built without parse() is normalized and validated the same way."""
    assert Checksum("SHA-256", SHA256.upper()) == Checksum("sha256", SHA256)
    with pytest.raises(UsageError):
        Checksum("sha256", "abc")


def test_checksum_is_frozen() -> None:
    """A Checksum cannot be changed after creation."""
    checksum = Checksum("sha256", SHA256)
    with pytest.raises(AttributeError):
        checksum.hexdigest = "0" * 64  # type: ignore[misc]


def test_new_hasher_matches_hashlib_and_rejects_unknown() -> None:
    """new_hasher gives a working hashlib object; unknown names are UsageErrors."""
    hasher = new_hasher("SHA-1")
    hasher.update(BODY)
    assert hasher.hexdigest() == hashlib.sha1(BODY).hexdigest()
    with pytest.raises(UsageError, match="whirlpool"):
        new_hasher("whirlpool")


def test_verifier_accepts_matching_body() -> None:
    """check() passes when the streamed body has the expected digest."""
    verifier = Verifier(Checksum("sha256", SHA256))
    verifier.update(BODY)
    verifier.check()
    assert verifier.hexdigest() == SHA256


def test_verifier_accepts_all_buffer_types() -> None:
    """update() takes bytes, bytearray and memoryview alike."""
    verifier = Verifier(Checksum("sha256", SHA256))
    verifier.update(BODY[:10])
    verifier.update(bytearray(BODY[10:20]))
    verifier.update(memoryview(BODY)[20:])
    verifier.check()


def test_verifier_mismatch_by_one_byte_reports_both_digests() -> None:
    """One extra byte is a ChecksumMismatch whose message and fields show both digests."""
    verifier = Verifier(Checksum("sha256", SHA256), url="https://example.com/f")
    verifier.update(BODY + b"!")
    actual = hashlib.sha256(BODY + b"!").hexdigest()
    with pytest.raises(ChecksumMismatch) as info:
        verifier.check()
    err = info.value
    assert err.expected == SHA256
    assert err.actual == actual
    assert SHA256 in err.message
    assert actual in err.message
    assert err.url == "https://example.com/f"
    assert err.result is Result.CHECKSUM_MISMATCH
    assert pickle.loads(pickle.dumps(err)).actual == actual


def test_verifier_mismatch_on_truncated_body() -> None:
    """A body missing its last byte fails the check."""
    verifier = Verifier(Checksum("sha256", SHA256))
    verifier.update(BODY[:-1])
    with pytest.raises(ChecksumMismatch):
        verifier.check()


def test_empty_body_digest() -> None:
    """An empty body verifies against the digest of no bytes, and nothing else."""
    empty = hashlib.md5(b"").hexdigest()
    Verifier(Checksum("md5", empty)).check()
    with pytest.raises(ChecksumMismatch):
        Verifier(Checksum("md5", "0" * 32)).check()


@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0, max_value=2000)))
def test_any_split_gives_the_same_digest(data: bytes, cuts: list[int]) -> None:
    """Feeding a body in any pieces gives the digest of the whole body."""
    verifier = Verifier(Checksum("sha512", hashlib.sha512(data).hexdigest()))
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    for start, end in itertools.pairwise(bounds):
        verifier.update(data[start:end])
    verifier.check()
