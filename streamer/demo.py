"""`streamer demo`: the main job end to end with no internet.

Generates a file (1 GiB by default), serves it with the built-in server on 127.0.0.1, downloads
it with a real `streamer get` child process (progress bar, checksum), and reports bytes, time and
the child's peak memory, measured by the kernel (``wait4``'s ru_maxrss).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .core.sizes import format_size
from .errors import UsageError
from .server import running_server

BLOCK = 1 << 20


def make_payload(path: Path, size: int) -> str:
    """Write `size` bytes of incompressible data and return "sha256:<hex>".

    One random MiB is repeated with a block counter mixed in, so every block differs (a server
    or client that splices blocks would be caught) without paying for `size` bytes of urandom.
    """
    block = bytearray(os.urandom(BLOCK))
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        written, n = 0, 0
        while written < size:
            block[:8] = n.to_bytes(8, "little")
            piece = memoryview(block)[: min(BLOCK, size - written)]
            out.write(piece)
            digest.update(piece)
            written += len(piece)
            n += 1
    return f"sha256:{digest.hexdigest()}"


@contextmanager
def server_in_thread(root: Path) -> Iterator[str]:
    """The built-in server on its own thread and loop; yields its base URL."""
    ready: list[str] = []
    started = threading.Event()
    stop: list[asyncio.Event] = []
    loop_box: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        loop_box.append(asyncio.get_running_loop())
        async with running_server(root) as base_url:
            ready.append(base_url)
            started.set()
            await stop[0].wait()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    if not started.wait(10):
        raise UsageError("the built-in server did not start within 10 s")
    try:
        yield ready[0]
    finally:
        loop_box[0].call_soon_threadsafe(stop[0].set)
        thread.join(10)


def run_child(argv: list[str]) -> tuple[int, float, int]:
    """Run a child; return (exit code, wall seconds, peak RSS in bytes of that child alone)."""
    started = time.monotonic()
    child = subprocess.Popen(argv)
    _pid, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, time.monotonic() - started, usage.ru_maxrss * 1024


def run_demo(args: argparse.Namespace) -> int:
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="streamer-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    served, out = work / "served", work / "downloads"
    served.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    try:
        return _demo(served, out, args.size)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


def _demo(served: Path, out: Path, size: int) -> int:
    say(f"1/3 generating {format_size(size)} of data in {served} ...")
    checksum = make_payload(served / "payload.bin", size)
    say(f"    {checksum}")
    with server_in_thread(served) as base_url:
        url = f"{base_url}payload.bin"
        say(f"2/3 built-in server at {base_url}; downloading with `streamer get` ...")
        argv = [sys.executable, "-m", "streamer", "get", url, "-o", str(out / "payload.bin"),
                "--checksum", checksum, "--progress"]  # fmt: skip
        code, wall, rss = run_child(argv)
    if code != 0:
        say(f"download failed with exit code {code}")
        return code
    got = (out / "payload.bin").stat().st_size
    say(f"3/3 downloaded {got:,} bytes ({format_size(got)}) in {wall:.2f} s "
        f"({format_size(int(got / wall))}/s), checksum verified while streaming")  # fmt: skip
    say(f"    peak memory (RSS) of the downloading process: {format_size(rss)}")
    return 0 if got == size else 1


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
