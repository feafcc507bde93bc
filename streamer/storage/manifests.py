"""Manifest files read from disk, as many times as a check needs (stdin can be read once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..core.keyset import Scan, scan_lines


def manifest_lines(path: Path) -> Iterator[str]:
    """The lines of a manifest file, read lazily (undecodable bytes replaced, ends kept)."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        yield from f


def scan_manifest(path: Path, keep: int = 0) -> Scan:
    """Jobs, duplicate target keys and bad lines of a manifest file, in bounded memory (and
    its parsed lines when there are at most `keep`: see `scan_lines`)."""
    return scan_lines(lambda: manifest_lines(path), keep)


__all__ = ["manifest_lines", "scan_manifest"]
