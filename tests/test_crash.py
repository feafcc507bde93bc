"""Crash safety of `streamer get`, with real child processes killed mid-body.

The rules (streamer/partial.py): the target appears only as a whole, verified file; a killed
download leaves the locked `.part` and a sidecar that never claims more than the `.part`
holds; a re-run resumes with ``Range`` + ``If-Range``; one process writes a target at a time.
The origin is `tests.slow_server.SlowServer`, which pauses its body at a chosen offset until
the client goes away, so a signal always lands mid-body.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streamer.cli.main import main as cli_main
from streamer.storage.partial import CHECKPOINT_BYTES
from tests.helpers import (
    file_digest,
    finish,
    kill,
    running_slow_server,
    spawn,
    streamer,
    wait_for,
)
from tests.slow_server import MIB, Resource, SlowServer, body_digest, sidecar_committed


@pytest.fixture
async def slow() -> AsyncIterator[SlowServer]:
    async with running_slow_server() as server:
        yield server


def part_of(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def sidecar_of(target: Path) -> Path:
    return target.with_name(target.name + ".part.json")


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


async def test_kill9_after_checkpoint_keeps_partial_and_rerun_resumes(
    slow: SlowServer, tmp_path: Path
) -> None:
    """kill -9 mid-body: no target, sidecar committed <= .part; a re-run resumes with If-Range."""
    size = CHECKPOINT_BYTES + 24 * MIB
    slow.resources["big"] = Resource(size=size, stall_at=CHECKPOINT_BYTES + 8 * MIB)
    target = tmp_path / "big.bin"
    proc = await spawn("get", slow.url("big"), "-o", str(target), "-q")
    try:
        # The first checkpoint (fsync, then sidecar) is the only thing that records progress.
        await wait_for(lambda: (sidecar_committed(sidecar_of(target)) or 0) > 0, "a checkpoint")
        proc.send_signal(signal.SIGKILL)
        run = await finish(proc)
    finally:
        kill(proc)
    assert run.rc == -signal.SIGKILL
    assert not target.exists()
    committed = sidecar_committed(sidecar_of(target))
    assert committed is not None
    assert CHECKPOINT_BYTES <= committed <= size_of(part_of(target)) < size
    assert stat.S_IMODE(sidecar_of(target).stat().st_mode) == 0o600

    again = await streamer("get", slow.url("big"), "-o", str(target), "--json")
    assert again.rc == 0, again
    assert again.json()["resumed_from"] == committed
    assert file_digest(target) == body_digest(size)
    assert not part_of(target).exists() and not sidecar_of(target).exists()
    second = slow.requests_for("big")[1]
    assert second.headers.get("Range") == f"bytes={committed}-"
    assert second.headers.get("If-Range") == '"v1"'
    assert second.sent == size - committed


async def test_kill9_leaves_old_target_intact(slow: SlowServer, tmp_path: Path) -> None:
    """kill -9 mid-body never touches an existing target: the old version stays byte for byte."""
    size = 8 * MIB
    slow.resources["doc"] = Resource(size=size, stall_at=3 * MIB)
    target = tmp_path / "doc.bin"
    old = b"the old version\n" * 65536
    target.write_bytes(old)
    proc = await spawn("get", slow.url("doc"), "-o", str(target), "-q")
    try:
        await wait_for(lambda: size_of(part_of(target)) == 3 * MIB, "3 MiB in the .part")
        proc.send_signal(signal.SIGKILL)
        run = await finish(proc)
    finally:
        kill(proc)
    assert run.rc == -signal.SIGKILL
    assert target.read_bytes() == old
    assert part_of(target).exists()

    again = await streamer("get", slow.url("doc"), "-o", str(target), "-q")
    assert again.rc == 0, again
    assert file_digest(target) == body_digest(size)


@pytest.mark.parametrize(
    ("signum", "rc", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["SIGINT", "SIGTERM"],
)
async def test_signal_keeps_partial_and_rerun_resumes(
    slow: SlowServer, tmp_path: Path, signum: int, rc: int, word: str
) -> None:
    """SIGINT -> 130, SIGTERM -> 143: one stderr line, .part + sidecar saved, re-run resumes."""
    size, stop = 8 * MIB, 3 * MIB
    slow.resources["f"] = Resource(size=size, stall_at=stop)
    target = tmp_path / "f.bin"
    proc = await spawn("get", slow.url("f"), "-o", str(target))
    try:
        await wait_for(lambda: size_of(part_of(target)) == stop, "the body up to the stall")
        os.kill(proc.pid, signum)
        run = await finish(proc, timeout=15)
    finally:
        kill(proc)
    assert run.rc == rc, run
    assert "Traceback" not in run.err
    assert len(run.err_lines) == 1, run.err
    assert run.err_lines[0].startswith("streamer: ") and word in run.err_lines[0]
    assert not target.exists()
    # A clean stop records everything it wrote: committed == the .part size.
    assert sidecar_committed(sidecar_of(target)) == size_of(part_of(target)) == stop

    again = await streamer("get", slow.url("f"), "-o", str(target), "--json")
    assert again.rc == 0, again
    assert again.json()["resumed_from"] == stop
    assert file_digest(target) == body_digest(size)
    second = slow.requests_for("f")[1]
    assert second.headers.get("Range") == f"bytes={stop}-"
    assert second.headers.get("If-Range") == '"v1"'


async def test_second_writer_of_same_target_fails_fast_with_82(
    slow: SlowServer, tmp_path: Path
) -> None:
    """Two `get -o SAME` at once: the second exits 82 naming the target, the first finishes."""
    size = 6 * MIB
    slow.resources["one"] = Resource(size=size, stall_at=2 * MIB)
    target = tmp_path / "one.bin"
    first = await spawn("get", slow.url("one"), "-o", str(target), "-q")
    try:
        await asyncio.wait_for(slow.stalled.wait(), 20)
        second = await streamer("get", slow.url("one"), "-o", str(target), timeout=15)
        assert first.returncode is None, "the first writer must still be running"
        slow.release.set()
        done = await finish(first)
    finally:
        kill(first)
    assert second.rc == 82, second
    assert len(second.err_lines) == 1, second.err
    assert str(target) in second.err_lines[0]
    assert "another download" in second.err_lines[0]
    assert done.rc == 0, done
    assert file_digest(target) == body_digest(size)
    # The loser never asked the server for anything.
    assert len(slow.requests_for("one")) == 1
    assert not part_of(target).exists() and not sidecar_of(target).exists()


async def test_second_writer_with_wait_lock_waits_then_completes(
    slow: SlowServer, tmp_path: Path
) -> None:
    """`--wait-lock S`: the second writer waits for the first, then ends with the whole file."""
    size = 6 * MIB
    slow.resources["w"] = Resource(size=size, stall_at=2 * MIB)
    target = tmp_path / "w.bin"
    first = await spawn("get", slow.url("w"), "-o", str(target), "-q")
    try:
        await asyncio.wait_for(slow.stalled.wait(), 20)
        second_task = asyncio.ensure_future(
            streamer("get", slow.url("w"), "-o", str(target), "--wait-lock", "20", timeout=30)
        )
        await asyncio.sleep(1.0)  # the second one is waiting on the lock by now
        assert not second_task.done()
        assert len(slow.requests_for("w")) == 1  # and has sent nothing
        slow.release.set()
        done = await finish(first)
        second = await second_task
    finally:
        kill(first)
    assert done.rc == 0, done
    assert second.rc == 0, second
    assert file_digest(target) == body_digest(size)
    assert not part_of(target).exists() and not sidecar_of(target).exists()


HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


async def test_cli_main_in_a_worker_thread_still_downloads(
    slow: SlowServer, tmp_path: Path
) -> None:
    """cli.main() off the main thread (no SIGTERM hook possible there) still downloads."""
    slow.resources["t"] = Resource(size=1000)
    target = tmp_path / "t.bin"
    rc = await asyncio.to_thread(cli_main, ["get", slow.url("t"), "-o", str(target), "-q"])
    assert rc == 0
    assert file_digest(target) == body_digest(1000)
