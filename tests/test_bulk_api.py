"""Client.download_many and the per-host request rate, against the built-in server."""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import time
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from streamer import BulkOptions, Client, Job, Result
from streamer.server.app import running_server


def _files(root: Path, n: int) -> list[str]:
    root.mkdir()
    for i in range(n):
        (root / f"f{i}.txt").write_bytes(f"file {i}\n".encode() * 50)
    return [f"f{i}.txt" for i in range(n)]


async def test_download_many_takes_plain_urls_and_journals(tmp_path: Path) -> None:
    """Plain URL strings work as jobs; with a journal, a second run makes no request."""
    names = _files(tmp_path / "srv", 12)
    out = tmp_path / "out"
    out.mkdir()
    journal = tmp_path / "journal.jsonl"
    async with running_server(tmp_path / "srv") as base, Client(trust_env=False) as client:
        urls: list[str | Job] = [base + n for n in names] + [base + "missing.txt"]
        first = [r async for r in client.download_many(urls, out, journal=journal)]
        (tmp_path / "srv" / "f0.txt").unlink()  # a request for it now would fail
        second = [r async for r in client.download_many(urls, out, journal=journal)]
    assert [r.result for r in first if not r.ok] == [Result.HTTP_ERROR]
    assert sum(r.ok for r in first) == 12
    for name in names:
        assert (out / name).read_bytes() == (f"file {name[1:-4]}\n".encode() * 50)
    assert sum(r.skipped for r in second) == 12  # f0 included: skipped, not fetched


async def _timed_origin(
    aiohttp_server: AiohttpServer, delay: float = 0.0
) -> tuple[str, list[float]]:
    """An origin answering any /NAME with a small body after `delay`, recording when each
    request arrived (monotonic seconds)."""
    arrived: list[float] = []

    async def handle(_request: web.Request) -> web.Response:
        arrived.append(time.monotonic())
        if delay:
            await asyncio.sleep(delay)
        return web.Response(body=b"x" * 100)

    app = web.Application()
    app.router.add_get("/{name}", handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("/")), arrived


async def test_host_request_rate_spaces_requests(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    """host_request_rate=10 spaces the requests to one host at least 0.1 s apart, as the
    server sees them arrive (a small allowance for the two clocks' scheduling)."""
    base, arrived = await _timed_origin(aiohttp_server)
    opts = BulkOptions(jobs=8, host_request_rate=10.0)
    async with Client(trust_env=False) as client:
        urls = [f"{base}f{i}.bin" for i in range(6)]
        async with client.download_many(urls, tmp_path / "out", opts) as run:
            results = [r async for r in run]
    assert all(r.ok for r in results)
    gaps = [b - a for a, b in itertools.pairwise(sorted(arrived))]
    assert len(gaps) == 5
    assert min(gaps) >= 0.09, gaps


async def test_leaving_the_results_early_stops_every_transfer(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    """Breaking out of `async with client.download_many(...)` after the first result stops the
    workers: no further request reaches the server, and no stray partial file is left."""
    base, arrived = await _timed_origin(aiohttp_server, delay=0.2)
    out = tmp_path / "out"
    async with Client(trust_env=False) as client:
        urls = [f"{base}f{i}.bin" for i in range(30)]
        async with client.download_many(urls, out, BulkOptions(jobs=2)) as run:
            async for _first in run:
                break
        stopped_at = len(arrived)
        await asyncio.sleep(0.8)  # four more rounds of the server's delay
    assert len(arrived) == stopped_at, "a request arrived after the consumer stopped"
    assert stopped_at <= 4
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


async def test_dry_run_plans_every_job_without_a_request(tmp_path: Path) -> None:
    """dry_run: every job is planned (targets, duplicates, journal) and no request is made."""
    out = tmp_path / "out"
    out.mkdir()
    # Port 9 on loopback: nothing listens, so any request would fail with CANT_CONNECT.
    urls: list[str | Job] = [f"http://127.0.0.1:9/d/f{i}.bin" for i in range(500)]
    urls.append(Job(url="http://127.0.0.1:9/other/f7.bin", path="f7.bin"))  # same target
    opts = BulkOptions(dry_run=True)
    async with Client(trust_env=False) as client:
        results = [r async for r in client.download_many(urls, out, opts)]
    planned = [r for r in results if r.planned]
    assert len(planned) == 500 and all(r.ok for r in planned)
    assert [r.result for r in results if not r.ok] == [Result.INVALID_INPUT]
    assert list(out.iterdir()) == []  # nothing was written


async def test_download_many_closes_its_journal(tmp_path: Path) -> None:
    """The journal that Client.download_many opens is closed when the run ends (no fd leak)."""
    names = _files(tmp_path / "srv", 3)
    out = tmp_path / "out"
    out.mkdir()
    journal = tmp_path / "journal.jsonl"

    def journal_fds() -> int:
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if _target(fd) == str(journal))

    async with running_server(tmp_path / "srv") as base, Client(trust_env=False) as client:
        urls: list[str | Job] = [base + n for n in names]
        results = [r async for r in client.download_many(urls, out, journal=journal)]
    assert all(r.ok for r in results)
    assert journal_fds() == 0
    assert len(journal.read_text().splitlines()) == 3  # flushed before closing


def _target(fd: Path) -> str:
    try:
        return str(fd.readlink())
    except OSError:
        return ""


async def test_a_slow_consumer_gets_every_result_once_and_holds_the_workers(
    tmp_path: Path,
) -> None:
    """Results wait for a slow consumer in a bounded hand-over: every job's result arrives
    exactly once, and the workers stop starting jobs while too many results are unread."""
    names = _files(tmp_path / "srv", 40)
    out = tmp_path / "out"
    opts = BulkOptions(jobs=2)
    got: list[str] = []
    ahead = 0
    async with running_server(tmp_path / "srv") as base, Client(trust_env=False) as client:
        jobs = [base + n for n in names]
        async for res in client.download_many(jobs, out, opts):
            got.append(res.path.name)
            finished = sum(1 for p in out.iterdir() if not p.name.endswith(".part"))
            ahead = max(ahead, finished - len(got))
            await asyncio.sleep(0.01)
    assert sorted(got) == sorted(names)
    # The hand-over holds up to 2 x jobs results, plus one per worker waiting to add its own
    # (3 x jobs - 1); the consumer may be working through a batch of that size too; and each
    # worker may have renamed a file it has not reported yet: 2 x 5 + 2 = 12, not 40.
    assert ahead <= 2 * (3 * 2 - 1) + 2, ahead


async def test_journal_on_another_file_system_records_and_skips(tmp_path: Path) -> None:
    """--journal on another file system (tmpfs) than the files: the run journals every file
    (both file systems are synced first) and the next run skips them all."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a file system of its own")
    names = _files(tmp_path / "srv", 6)
    out = tmp_path / "out"
    with tempfile.TemporaryDirectory(dir=shm) as where:
        journal = Path(where) / "journal.jsonl"
        async with running_server(tmp_path / "srv") as base, Client(trust_env=False) as client:
            urls = [base + n for n in names]
            first = [r async for r in client.download_many(urls, out, journal=journal)]
            second = [r async for r in client.download_many(urls, out, journal=journal)]
        records = journal.read_text().splitlines()
    assert all(r.ok for r in first)
    assert len(records) == 6
    assert sum(r.skipped for r in second) == 6
