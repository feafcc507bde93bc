"""Tests for streamer.core.sizes: parsing and formatting byte sizes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.sizes import format_size, parse_size
from streamer.errors import UsageError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1", 1),
        ("1024", 1024),
        ("  42  ", 42),
        ("7B", 7),
        ("7 b", 7),
    ],
)
def test_plain_numbers_are_bytes(text: str, expected: int) -> None:
    """A bare number, or a number with a lone B, is a count of bytes."""
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1K", 1024),
        ("1k", 1024),
        ("2M", 2 * 1024**2),
        ("3g", 3 * 1024**3),
        ("4T", 4 * 1024**4),
        ("1KiB", 1024),
        ("1kib", 1024),
        ("5MiB", 5 * 1024**2),
        ("1GiB", 1024**3),
        ("1TiB", 1024**4),
    ],
)
def test_single_letters_and_iec_suffixes_are_binary(text: str, expected: int) -> None:
    """K/M/G/T (like curl) and KiB/MiB/GiB/TiB are powers of 1024."""
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1kB", 1000),
        ("1KB", 1000),
        ("2MB", 2_000_000),
        ("3GB", 3_000_000_000),
        ("1TB", 10**12),
    ],
)
def test_si_suffixes_with_b_are_decimal(text: str, expected: int) -> None:
    """kB/KB/MB/GB/TB are powers of 1000."""
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.5M", 1572864),
        ("0.5K", 512),
        ("0.1K", 102),  # 102.4 floored; exact arithmetic, no float drift
        (".5KiB", 512),
        ("1.", 1),
        ("2.9", 2),
        ("1.0000001K", 1024),
        ("1.5 GB", 1_500_000_000),
    ],
)
def test_decimals_are_floored_exactly(text: str, expected: int) -> None:
    """Fractional sizes are computed exactly and floored to whole bytes."""
    assert parse_size(text) == expected


@pytest.mark.parametrize(("text"), ["10 M", "10\tM", "10M", " 10 M "])
def test_whitespace_between_number_and_suffix_is_optional(text: str) -> None:
    """Spaces around the number and before the suffix do not change the value."""
    assert parse_size(text) == 10 * 1024**2


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-1", "negative"),
        ("-1K", "negative"),
        ("nan", "not a size"),
        ("inf", "not a size"),
        ("1e3", "not a size"),
        ("10X", "suffix"),
        ("10 KiBB", "suffix"),
        ("1PB", "suffix"),
        ("1.2.3", "not a size"),
        ("K", "not a size"),
        ("+5", "not a size"),
        ("1 0", "not a size"),
    ],
)
def test_bad_sizes_raise_usage_error_quoting_text(text: str, fragment: str) -> None:
    """Empty, negative, non-numeric or unknown-suffix input is a UsageError naming the input."""
    with pytest.raises(UsageError) as info:
        parse_size(text)
    assert fragment in info.value.message
    assert repr(text) in info.value.message


def test_usage_error_is_a_value_error() -> None:
    """Callers that catch ValueError also catch a bad size."""
    with pytest.raises(ValueError, match="bogus"):
        parse_size("bogus")


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (1024**2 - 1, "1.0 MiB"),  # 1023.999 KiB is promoted, not printed as "1024.0 KiB"
        (1024**2, "1.0 MiB"),
        (2 * 1024**3, "2.0 GiB"),
        (5 * 1024**4, "5.0 TiB"),
        (3 * 1024**6, "3.0 EiB"),
        (2048 * 1024**6, "2048.0 EiB"),
        (-1536, "-1.5 KiB"),
    ],
)
def test_format_size(n: int, expected: str) -> None:
    """Byte counts print in binary units with one decimal, bytes as a plain integer."""
    assert format_size(n) == expected


@given(st.integers(min_value=0, max_value=2**40))
def test_parse_round_trips_plain_and_kib(n: int) -> None:
    """Any byte count survives parse(str(n)), and n KiB is exactly n * 1024 bytes."""
    assert parse_size(str(n)) == n
    assert parse_size(f"{n}KiB") == n * 1024
