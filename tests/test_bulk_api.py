"""Client.download_many and the per-host request rate, against the built-in server."""

from __future__ import annotations

import time
from pathlib import Path

from streamer import BulkOptions, Client, Job, Result
from streamer.server import running_server


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


async def test_host_request_rate_spaces_requests(tmp_path: Path) -> None:
    """host_request_rate=N starts at most about N requests per second to one host."""
    names = _files(tmp_path / "srv", 8)
    out = tmp_path / "out"
    out.mkdir()
    opts = BulkOptions(jobs=8, host_request_rate=10.0)
    started = time.monotonic()
    async with running_server(tmp_path / "srv") as base, Client(trust_env=False) as client:
        results = [r async for r in client.download_many([base + n for n in names], out, opts)]
    assert all(r.ok for r in results)
    # A burst of 1 then 10/s: the 8th request waits about 0.7 s (lower bound only).
    assert time.monotonic() - started >= 0.6


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
