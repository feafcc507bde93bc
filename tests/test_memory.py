"""Flat memory: the peak RSS of a real `streamer get` process does not grow with the body size.

The server runs on its own event loop in a thread of the test process; the download runs in a
process of its own, whose peak RSS comes from ``os.wait4`` in a tiny launcher (see
tests.helpers.LAUNCHER for why not straight from pytest).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ThreadedServer, peak_rss

MIB = 1 << 20
BIG_MIB = 512
SMALL_MIB = 32
PEAK_LIMIT = 64 * MIB
GROWTH_LIMIT = 8 * MIB
CHILD_TIMEOUT = 60.0


def make_file(path: Path, mib: int) -> None:
    """`mib` MiB: one random MiB repeated, each copy stamped with its index (order matters)."""
    block = bytearray(os.urandom(MIB))
    with path.open("wb") as f:
        for i in range(mib):
            block[:8] = i.to_bytes(8, "big")
            f.write(block)


def same_stamps(path: Path, mib: int) -> bool:
    """Whether `path` is `mib` MiB long with block i starting with stamp i (spot checks)."""
    if path.stat().st_size != mib * MIB:
        return False
    with path.open("rb") as f:
        for i in sorted({0, 1, mib // 3, mib // 2, mib - 2, mib - 1}):
            f.seek(i * MIB)
            if f.read(8) != i.to_bytes(8, "big"):
                return False
    return True


def peak_rss_of_download(url: str, out: Path, log: Path) -> int:
    """Run ``python -m streamer get URL -o OUT --no-progress -q``; its own peak RSS in bytes."""
    cmd = [sys.executable, "-m", "streamer", "get", url, "-o", str(out), "--no-progress", "-q"]
    report = peak_rss(cmd, CHILD_TIMEOUT, log)
    assert not report.timed_out, f"download did not finish in {CHILD_TIMEOUT} s"
    assert report.rc == 0, log.read_text(errors="replace")
    peak = report.maxrss_kib * 1024  # Linux reports KiB
    launcher = report.launcher_kib * 1024
    assert launcher < peak / 2, f"the launcher ({launcher} B) could dominate the peak ({peak} B)"
    return peak


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Path]:
    """tmp/srv with big.bin (512 MiB) and small.bin (32 MiB); everything removed afterwards."""
    srv = tmp_path / "srv"
    srv.mkdir()
    try:
        make_file(srv / "big.bin", BIG_MIB)
        make_file(srv / "small.bin", SMALL_MIB)
        yield srv
    finally:
        for path in (*srv.iterdir(), *tmp_path.glob("*.bin*")):
            path.unlink(missing_ok=True)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units are Linux's")
def test_peak_rss_flat_in_body_size(files: Path, tmp_path: Path) -> None:
    """Downloading 512 MiB peaks at <= 64 MiB RSS, < 8 MiB more than downloading 32 MiB."""
    with ThreadedServer(files, name="memory-server") as base:
        small_out, big_out = tmp_path / "small.bin", tmp_path / "big.bin"
        small_peak = peak_rss_of_download(base + "small.bin", small_out, tmp_path / "small.log")
        assert same_stamps(small_out, SMALL_MIB)
        small_out.unlink()
        big_peak = peak_rss_of_download(base + "big.bin", big_out, tmp_path / "big.log")
        assert same_stamps(big_out, BIG_MIB)
        big_out.unlink()
    report = f"peak RSS: {SMALL_MIB} MiB body {small_peak / MIB:.1f} MiB, "
    report += f"{BIG_MIB} MiB body {big_peak / MIB:.1f} MiB"
    assert big_peak <= PEAK_LIMIT, report
    assert big_peak - small_peak < GROWTH_LIMIT, report
