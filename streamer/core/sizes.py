"""Byte sizes as people type them ("1.5M", "10 MiB", "2GB") and as we print them.

The single-letter suffixes are binary, as in curl's ``--max-filesize`` and ``--limit-rate``
(K = 1024), because that is what users of download tools expect. The IEC spellings (KiB...)
are binary by definition; the SI spellings with a B (kB, KB, MB...) are decimal (1000-based),
as IEC 80000-13 defines them. Parsing is exact: decimals go through `fractions.Fraction`, so
"0.1K" is 102 bytes, never 102.39999 rounded the wrong way.
"""

from __future__ import annotations

import math
import re

from streamer.errors import UsageError

_BINARY = {"k": 1, "m": 2, "g": 3, "t": 4}

# Suffix (lowercased) -> multiplier. Lowercasing makes "kb" and "KB" the same decimal unit;
# nobody downloading files means millibytes by "mB".
_SUFFIXES: dict[str, int] = {"": 1, "b": 1}
for _letter, _power in _BINARY.items():
    _SUFFIXES[_letter] = 1024**_power
    _SUFFIXES[_letter + "ib"] = 1024**_power
    _SUFFIXES[_letter + "b"] = 1000**_power

# Digits with an optional fraction, then an optional alphabetic suffix. No sign, no exponent:
# "nan", "inf" and "1e3" therefore fail here instead of slipping through float().
_SIZE_RE = re.compile(r"(?P<num>\d+(?:\.\d*)?|\.\d+)\s*(?P<suffix>[A-Za-z]*)")

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def parse_size(text: str) -> int:
    """Parse a size such as "1024", "1.5M", "10 MiB" or "2GB" into a whole number of bytes.

    Fractions of a byte are floored. Raises `UsageError` quoting `text` when it is empty,
    negative, not a number (NaN, inf) or has an unknown suffix.
    """
    stripped = text.strip()
    if not stripped:
        raise UsageError(f"empty size: {text!r}")
    if stripped.startswith("-"):
        raise UsageError(f"size must not be negative: {text!r}")
    match = _SIZE_RE.fullmatch(stripped)
    if match is None:
        raise UsageError(f"not a size: {text!r} (expected e.g. 1024, 1.5M, 10MiB, 2GB)")
    suffix = match["suffix"].lower()
    multiplier = _SUFFIXES.get(suffix)
    if multiplier is None:
        raise UsageError(
            f"unknown size suffix {match['suffix']!r} in {text!r} "
            "(use K, M, G, T, KiB, MiB, GiB, TiB, kB, MB, GB, TB or B)"
        )
    from fractions import Fraction  # decimal and numbers: only when a size has a fraction

    return math.floor(Fraction(match["num"]) * multiplier)


def format_size(n: int) -> str:
    """Format a byte count for people: "0 B", "512 B", "1.5 KiB", "2.0 GiB" (binary units)."""
    if n < 0:
        return "-" + format_size(-n)
    if n < 1024:
        return f"{n} B"
    value = float(n)
    unit = 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    # 1048575 bytes is 1023.999 KiB, which would print as "1024.0 KiB"; promote it instead.
    if round(value, 1) >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{value:.1f} {_UNITS[unit]}"
