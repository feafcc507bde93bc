"""Resume keeps its progress: what a killed or stopped download held is what the re-run skips.

A real ``python -m streamer get`` against `tests.range_origin.Origin`: a deterministic body
with a strong ETag and byte ranges, rate-limited or holding each response after some bytes.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.faults import data
from tests.helpers import MIB, file_digest, finish, kill, spawn, streamer, wait_for
from tests.range_origin import Origin, serving
from tests.slow_server import body_digest


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


async def test_kill9_resumes_within_seconds_of_data(tmp_path: Path) -> None:
    """kill -9 of a rate-limited 64 MiB download: the re-run asks for a Range starting at or
    after what the .part held 2 s before the kill (progress is checkpointed by time too)."""
    size, rate = 64 * MIB, 5e6
    target = tmp_path / "big.bin"
    part = tmp_path / "big.bin.part"
    async with serving(Origin(size, rate=rate)) as origin:
        proc = await spawn("get", origin.url, "-o", str(target), "-q")
        samples: list[tuple[float, int]] = []

        def passed() -> bool:
            samples.append((time.monotonic(), _size(part)))
            return samples[-1][1] >= 14 * MIB

        try:
            await wait_for(passed, "14 MiB in the .part", timeout=60)
            killed_at = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            await finish(proc)
        finally:
            kill(proc)
        held = max(s for t, s in samples if t <= killed_at - 2.0)
        assert held > 0  # the check below means something
        origin.rate = None
        again = await streamer("get", origin.url, "-o", str(target), "--json")
    assert again.rc == 0, again
    resumed = again.json()["resumed_from"]
    assert origin.ranges[1] == f"bytes={resumed}-"
    assert resumed >= held, (resumed, held)
    assert file_digest(target) == body_digest(size)


@pytest.mark.parametrize(("sig", "rc"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_split_stop_commits_every_segment_exactly(
    tmp_path: Path, sig: signal.Signals, rc: int
) -> None:
    """--split stopped by SIGTERM/SIGINT records each segment's exact position; the re-run
    asks each segment from there and JSON resumed_from counts every byte it kept."""
    size, parts, hold = 4 * MIB, 4, 300_000
    target = tmp_path / "s.bin"
    part = tmp_path / "s.bin.part"
    seg = size // parts
    async with serving(Origin(size, hold=hold)) as origin:
        proc = await spawn("get", origin.url, "-o", str(target), "-q", "--split", str(parts))
        try:

            def all_arrived() -> bool:
                if _size(part) != size:
                    return False
                with part.open("rb") as f:
                    for i in range(parts):
                        # the probe's segment starts at 0, the others at i * seg (+ hold bytes)
                        f.seek(i * seg)
                        if f.read(hold) != data(hold, i * seg):
                            return False
                return True

            await wait_for(all_arrived, "the held bytes of every segment in the .part")
            proc.send_signal(sig)
            stopped = await finish(proc)
        finally:
            kill(proc)
        assert stopped.rc == rc, stopped
        doc = json.loads((tmp_path / "s.bin.part.json").read_text())
        assert [s[2] for s in doc["segments"]] == [hold] * parts
        first = len(origin.ranges)
        origin.release.set()
        origin.hold = None
        again = await streamer("get", origin.url, "-o", str(target), "--json", "--split", "4")
    assert again.rc == 0, again
    assert again.json()["resumed_from"] == hold * parts
    starts = sorted(r.partition("=")[2].partition("-")[0] for r in origin.ranges[first:] if r)
    assert starts == sorted(str(i * seg + hold) for i in range(parts))
    assert file_digest(target) == body_digest(size)
