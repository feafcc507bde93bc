"""Flat memory: the peak RSS of a real `streamer get` process does not grow with the body size.

The server runs on its own event loop in a thread of the test process; the download runs in a
process of its own, whose peak RSS comes from ``os.wait4`` in a tiny launcher (see LAUNCHER for
why not straight from pytest).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from streamer.server import running_server

MIB = 1 << 20
BIG_MIB = 512
SMALL_MIB = 32
PEAK_LIMIT = 64 * MIB
GROWTH_LIMIT = 8 * MIB
CHILD_TIMEOUT = 60.0

_DROP = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
ENV = {k: v for k, v in os.environ.items() if k.lower() not in _DROP}


class ThreadedServer:
    """`running_server(root)` on its own event loop in a background thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="memory-server", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with running_server(self.root) as base:
                self.base = base
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def __enter__(self) -> str:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("server thread did not start in 10 s")
        if self._error is not None:
            raise self._error
        return self.base

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive(), "server thread did not stop"


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


# Why a launcher: subprocess.Popen forks with vfork (or fork), and Linux records the high-water
# RSS of the mm a process leaves at exec() in its ru_maxrss. Started straight from pytest, the
# child's ru_maxrss would be at least pytest's own RSS (measured: `python -c pass` reports 211 MiB
# under a parent holding 200 MiB). So a bare interpreter (-I -S, a few MiB) forks and execs the
# command, reaps it with os.wait4 and reports that rusage, with its own VmHWM as the bound on
# what it could have added.
LAUNCHER = r"""
import json, os, signal, sys, time
argv, log, timeout = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3])
pid = os.fork()
if pid == 0:
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
deadline = time.monotonic() + timeout
while True:
    got, status, usage = os.wait4(pid, os.WNOHANG)
    if got == pid:
        break
    if time.monotonic() > deadline:
        os.kill(pid, signal.SIGKILL)
        got, status, usage = os.wait4(pid, 0)
        break
    time.sleep(0.02)
with open("/proc/self/status") as f:
    hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss,
                  "launcher_hwm_kib": hwm, "timed_out": time.monotonic() > deadline}))
"""


def peak_rss_of_download(url: str, out: Path, log: Path) -> int:
    """Run ``python -m streamer get URL -o OUT --no-progress -q``; its own peak RSS in bytes."""
    cmd = [sys.executable, "-m", "streamer", "get", url, "-o", str(out), "--no-progress", "-q"]
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", LAUNCHER, json.dumps(cmd), str(log), str(CHILD_TIMEOUT)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=CHILD_TIMEOUT + 15,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert not report["timed_out"], f"download did not finish in {CHILD_TIMEOUT} s"
    assert report["rc"] == 0, log.read_text(errors="replace")
    peak = int(report["maxrss_kib"]) * 1024  # Linux reports KiB
    launcher = int(report["launcher_hwm_kib"]) * 1024
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
    with ThreadedServer(files) as base:
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
