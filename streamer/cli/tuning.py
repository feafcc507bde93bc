"""Process-wide tuning for the command line (not applied to programs that import streamer).

glibc serves each 1 MiB read buffer with a fresh mmap by default (its dynamic threshold starts
at 128 KiB), so every page of a download is faulted in anew: measured on 2 GiB, about 540,000
page faults and twice the CPU time. Raising the mmap and trim thresholds keeps those buffers
in the heap and reuses them (bench/README.md has the figures).
"""

from __future__ import annotations

import contextlib
import ctypes
import sys

# mallopt parameters from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_malloc(mmap_threshold: int = 32 << 20, trim_threshold: int = 128 << 20) -> bool:
    """Set glibc's malloc thresholds; True when applied (False elsewhere: musl, macOS...)."""
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError):
        # The running process's own symbols, libc's included: `ctypes.util.find_library`
        # would import subprocess and run ldconfig (about 20 ms of start-up).
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
        return bool(ok and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1)
    return False
