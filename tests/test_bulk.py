"""Bulk downloads (`download_many`, `streamer get -i`): many files, bounded, restartable.

The rules (streamer/bulk.py, journal.py, cli_bulk.py): every job gets one result and one failing
job never stops the others; concurrency is bounded per host, globally (``jobs``) and by the
memory budget; ``--limit-rate`` holds the whole run to a byte rate; a re-run skips what the
journal says is done (and still on disk with its size); two jobs writing one target are both
refused before either starts (in the streamed stdin mode: the second one); bad manifest lines
are reported with their line numbers and skipped; the exit status is 0 only when every job
succeeded, else the code of the most frequent failure, and 2 when only manifest lines were bad.

Origins are `Farm`s on 127.0.0.1: ``/f/NAME?size=N`` answers N deterministic bytes,
``/cut/NAME?size=N`` cuts the connection after half of them, anything else is a 404. A farm
records every request and counts the requests in flight in its handlers (`Gauge`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from streamer import Client, Result
from streamer.core.manifest import Job
from streamer.errors import exit_code
from streamer.server.app import running_server
from streamer.storage.journal import JOURNAL_NAME, Journal
from streamer.transfer.bulk import BulkOptions, JobResult, download_many
from tests.helpers import (
    ENV,
    Run,
    app_servers,
    finish,
    kill,
    peak_rss,
    spawn,
    streamer,
    wait_for,
)

MIB = 1 << 20
SUMMARY = re.compile(r"(\d+) ok \((\d+) already done\); (\d+) failed")


# --- the origin ---------------------------------------------------------------------------------


def body_for(name: str, size: int = 2048) -> bytes:
    """The deterministic body of ``/f/NAME?size=SIZE``."""
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


async def serve_file(request: web.Request) -> web.Response:
    """``/f/NAME?size=N``: N bytes of `body_for`, whole."""
    size = int(request.query.get("size", "2048"))
    body = body_for(request.match_info["name"], size)
    return web.Response(body=body, content_type="application/octet-stream")


async def serve_cut(request: web.Request) -> web.StreamResponse:
    """``/cut/NAME?size=N``: declares N bytes of `body_for`, sends half, then closes."""
    size = int(request.query.get("size", "2048"))
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    resp.content_length = size
    await resp.prepare(request)
    await resp.write(body_for(request.match_info["name"], size)[: size // 2])
    await asyncio.sleep(0.02)  # let the half body reach the client before the cut
    assert request.transport is not None
    request.transport.close()
    return resp


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Gauge:
    """Requests in flight in the handlers, and the most seen at once."""

    now: int = 0
    peak: int = 0

    def enter(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1


@dataclass
class Hit:
    path: str
    headers: dict[str, str]


@dataclass
class Farm:
    """A light origin; see the module docstring. ``delay`` seconds are spent in every handler
    (``slow_delay`` from request number ``slow_after`` + 1 on)."""

    shared: Gauge | None = None  # also counted here (concurrency over several farms)
    delay: float = 0.0
    slow_after: int | None = None
    slow_delay: float = 0.0
    gauge: Gauge = field(default_factory=Gauge)
    hits: list[Hit] = field(default_factory=list)
    server: TestServer | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    def fetched(self, prefix: str = "/f/") -> list[str]:
        """The NAMEs requested under `prefix`, in order (query strings dropped)."""
        return [h.path.split("?")[0][len(prefix) :] for h in self.hits if h.path.startswith(prefix)]

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/f/{name}", serve_file)
        app.router.add_get("/cut/{name}", serve_cut)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.hits.append(Hit(request.path_qs, dict(request.headers)))
        wait = self.delay
        if self.slow_after is not None and len(self.hits) > self.slow_after:
            wait = max(wait, self.slow_delay)
        gauges = [self.gauge] + ([self.shared] if self.shared is not None else [])
        for g in gauges:
            g.enter()
        try:
            if wait:
                await asyncio.sleep(wait)
            return await handler(request)
        finally:
            for g in gauges:
                g.leave()


FarmFactory = Callable[..., Awaitable[Farm]]


@pytest.fixture
async def make_farm() -> AsyncIterator[FarmFactory]:
    """``farm = await make_farm(delay=0.1, shared=gauge)``; stopped at teardown."""
    async with app_servers() as serve:

        async def start(**kw: Any) -> Farm:
            farm = Farm(**kw)
            farm.server = await serve(farm.app())
            return farm

        yield start


@pytest.fixture
async def farm(make_farm: FarmFactory) -> Farm:
    return await make_farm()


# --- helpers --------------------------------------------------------------------------------------


def write_manifest(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def json_line(**fields: object) -> str:
    return json.dumps(fields)


async def run_many(
    client: Client,
    todo: list[Job],
    out: Path,
    journal: Journal | None = None,
    **opts: Any,
) -> list[JobResult]:
    out.mkdir(parents=True, exist_ok=True)
    return [r async for r in download_many(client, todo, out, BulkOptions(**opts), journal)]


def jobs_for(urls: list[str]) -> list[Job]:
    return [Job(url, line=i) for i, url in enumerate(urls, start=1)]


def records(run: Run) -> list[dict[str, Any]]:
    """The --json lines of a run."""
    return [json.loads(line) for line in run.out.splitlines() if line.strip()]


def summary(run: Run) -> tuple[int, int, int]:
    """(ok, already done, failed) from the summary line on stderr."""
    found = SUMMARY.search(run.err)
    assert found is not None, run.err
    ok, done, failed = (int(g) for g in found.groups())
    return ok, done, failed


def journaled(path: Path) -> set[str]:
    """The targets a journal file records as done (a line torn by kill -9 is skipped, as the
    journal itself does)."""
    done = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("t") == "done":
            done.add(rec["target"])
    return done


def check_dir(out: Path, expected: dict[str, bytes]) -> None:
    """`out` holds exactly the expected files (journal aside), each with the right sha256."""
    present = {
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != JOURNAL_NAME
    }
    assert present == set(expected)
    for name, body in expected.items():
        assert sha((out / name).read_bytes()) == sha(body), name


async def get_stdin(manifest: Path, *args: str) -> Run:
    """``streamer get -i - ARGS`` with the manifest on stdin."""
    with manifest.open("rb") as f:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamer",
            "get",
            "-i",
            "-",
            *args,
            env=ENV,
            stdin=f,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    return await finish(proc)


# --- volume ---------------------------------------------------------------------------------------


async def test_two_thousand_files_all_correct(client: Client, tmp_path: Path) -> None:
    """2,000 small files from the built-in server all arrive byte for byte, each journaled."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    expected = {}
    for i in range(2000):
        name = f"f{i:04d}.bin"
        expected[name] = body_for(name)
        (src / name).write_bytes(expected[name])
    journal = Journal(tmp_path / "journal.jsonl")
    journal.open()
    async with running_server(src) as base:
        results = await run_many(
            client,
            jobs_for([base + name for name in expected]),
            out,
            journal,
            jobs=32,
            max_per_host=32,
        )
    await journal.close()
    assert len(results) == 2000
    assert [r for r in results if not r.ok] == []
    assert sorted(r.job.line for r in results) == list(range(1, 2001))
    check_dir(out, expected)
    assert journaled(tmp_path / "journal.jsonl") == set(expected)


async def test_cli_two_hundred_files(farm: Farm, tmp_path: Path) -> None:
    """`streamer get -i` over 200 URLs: every file correct, summary "200 ok", exit 0."""
    names = [f"c{i:03d}.bin" for i in range(200)]
    manifest = write_manifest(tmp_path / "m.txt", [farm.url(f"/f/{n}") for n in names])
    out = tmp_path / "out"
    out.mkdir()
    run = await streamer("get", "-i", str(manifest), "-d", str(out), "-j", "8")
    assert run.rc == 0, run.err
    assert summary(run) == (200, 0, 0)
    check_dir(out, {n: body_for(n) for n in names})
    assert sorted(farm.fetched()) == names


# --- failures are per job -------------------------------------------------------------------------


def mixed_manifest(fast: Farm, slow: Farm) -> tuple[list[str], dict[int, Result], dict[str, bytes]]:
    """Good files on two hosts (one slow) with two 404s first, then three truncated bodies."""
    lines, bad, good = [], {}, {}
    for i in range(2):
        lines.append(fast.url(f"/missing/m{i}.bin"))
        bad[len(lines)] = Result.HTTP_ERROR
    for i in range(12):
        farm = slow if i % 4 == 0 else fast
        name = f"g{i:02d}.bin"
        lines.append(farm.url(f"/f/{name}"))
        good[name] = body_for(name)
        if i % 4 == 1:
            lines.append(fast.url(f"/cut/t{i}.bin?size=65536"))
            bad[len(lines)] = Result.PARTIAL_BODY
    return lines, bad, good


async def test_failures_do_not_stop_the_others(
    client: Client, make_farm: FarmFactory, tmp_path: Path
) -> None:
    """404s, cut bodies and a slow host: each bad job has its Result, every good file is whole."""
    fast, slow = await make_farm(), await make_farm(delay=0.3)
    lines, bad, good = mixed_manifest(fast, slow)
    results = await run_many(client, jobs_for(lines), tmp_path / "out", jobs=4)
    assert len(results) == len(lines)
    by_line = {r.job.line: r for r in results}
    for line, result in bad.items():
        assert by_line[line].result is result, by_line[line]
        assert by_line[line].error is not None
    assert by_line[1].status == 404
    assert sum(r.ok for r in results) == len(good)
    check_dir(tmp_path / "out", good)


async def test_cli_exit_code_is_the_most_frequent_failure(
    make_farm: FarmFactory, tmp_path: Path
) -> None:
    """Two 404s seen first, three cut bodies: exit 18 (PARTIAL_BODY); --json: one line per job."""
    fast, slow = await make_farm(), await make_farm(delay=0.3)
    lines, bad, good = mixed_manifest(fast, slow)
    manifest = write_manifest(tmp_path / "m.txt", lines)
    out = tmp_path / "out"
    out.mkdir()
    run = await streamer("get", "-i", str(manifest), "-d", str(out), "-j", "4", "--json")
    assert run.rc == exit_code(Result.PARTIAL_BODY) == 18, run.err
    recs = records(run)
    assert sorted(r["line"] for r in recs) == list(range(1, len(lines) + 1))
    for rec in recs:
        want = bad.get(rec["line"], Result.SUCCESS)
        assert rec["result"] == want.value, rec
        assert rec["ok"] is (want is Result.SUCCESS)
    check_dir(out, good)


# --- concurrency ----------------------------------------------------------------------------------


async def test_cli_max_per_host(make_farm: FarmFactory, tmp_path: Path) -> None:
    """--max-per-host 3 with -j 16: the server never sees more than 3 requests at once."""
    farm = await make_farm(delay=0.1)
    names = [f"h{i:02d}.bin" for i in range(24)]
    manifest = write_manifest(tmp_path / "m.txt", [farm.url(f"/f/{n}") for n in names])
    out = tmp_path / "out"
    out.mkdir()
    run = await streamer(
        "get", "-i", str(manifest), "-d", str(out), "-j", "16", "--max-per-host", "3"
    )
    assert run.rc == 0, run.err
    assert 1 < farm.gauge.peak <= 3
    check_dir(out, {n: body_for(n) for n in names})


async def test_each_host_has_its_own_cap(
    client: Client, make_farm: FarmFactory, tmp_path: Path
) -> None:
    """Two hosts, max_per_host=3: each stays within 3 while together they exceed 3."""
    total = Gauge()
    a, b = await make_farm(delay=0.1, shared=total), await make_farm(delay=0.1, shared=total)
    urls = [
        farm.url(f"/f/{farm_name}{i:02d}.bin")
        for i in range(12)
        for farm_name, farm in (("a", a), ("b", b))
    ]
    results = await run_many(client, jobs_for(urls), tmp_path / "out", jobs=16, max_per_host=3)
    assert all(r.ok for r in results)
    assert 1 < a.gauge.peak <= 3
    assert 1 < b.gauge.peak <= 3
    assert total.peak > 3


async def test_jobs_caps_total_concurrency(
    client: Client, make_farm: FarmFactory, tmp_path: Path
) -> None:
    """jobs=4 over two hosts (16 each allowed): never more than 4 requests at once in all."""
    total = Gauge()
    a, b = await make_farm(delay=0.1, shared=total), await make_farm(delay=0.1, shared=total)
    urls = [farm.url(f"/f/{n}{i:02d}.bin") for i in range(10) for n, farm in (("a", a), ("b", b))]
    results = await run_many(client, jobs_for(urls), tmp_path / "out", jobs=4, max_per_host=16)
    assert all(r.ok for r in results)
    assert 1 < total.peak <= 4


async def test_memory_budget_caps_concurrency(
    client: Client, make_farm: FarmFactory, tmp_path: Path
) -> None:
    """A memory budget of two transfers' buffers (3 x chunk each) allows 2 at once, not 16."""
    farm = await make_farm(delay=0.1)
    urls = [farm.url(f"/f/m{i:02d}.bin") for i in range(12)]
    budget = 2 * 3 * client.config.chunk_size
    results = await run_many(
        client, jobs_for(urls), tmp_path / "out", jobs=16, memory_budget=budget
    )
    assert all(r.ok for r in results)
    assert farm.gauge.peak == 2


async def test_cli_limit_rate(farm: Farm, tmp_path: Path) -> None:
    """--limit-rate 4M over 3 MiB in 12 files takes at least (3 MiB - 1 MiB burst) / 4 MiB/s."""
    size = 256 * 1024
    names = [f"r{i:02d}.bin" for i in range(12)]
    urls = [farm.url(f"/f/{n}?size={size}") for n in names]
    manifest = write_manifest(tmp_path / "m.txt", urls)
    out = tmp_path / "out"
    out.mkdir()
    started = time.monotonic()
    run = await streamer("get", "-i", str(manifest), "-d", str(out), "--limit-rate", "4M")
    wall = time.monotonic() - started
    assert run.rc == 0, run.err
    found = re.search(r" in ([0-9.]+) s ", run.err)
    assert found is not None, run.err
    floor = (12 * size - MIB) / (4 * MIB)  # the bucket starts full with rate / 4 tokens
    assert float(found[1]) >= floor * 0.95, run.err
    assert wall >= floor
    check_dir(out, {n: body_for(n, size) for n in names})


async def test_limit_rate_in_process(client: Client, farm: Farm, tmp_path: Path) -> None:
    """limit_rate=4 MiB/s over 3 MiB takes >= 0.5 s and every file is still whole."""
    size = 256 * 1024
    names = [f"p{i:02d}.bin" for i in range(12)]
    started = time.monotonic()
    results = await run_many(
        client,
        jobs_for([farm.url(f"/f/{n}?size={size}") for n in names]),
        tmp_path / "out",
        limit_rate=4 * MIB,
    )
    elapsed = time.monotonic() - started
    assert all(r.ok for r in results)
    assert elapsed >= (12 * size - MIB) / (4 * MIB)
    check_dir(tmp_path / "out", {n: body_for(n, size) for n in names})


# --- restartable runs -----------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_rerun_skips_journaled_files(
    make_farm: FarmFactory, tmp_path: Path, sig: signal.Signals
) -> None:
    """A re-run never refetches journaled files, except ones deleted or truncated since."""
    farm = await make_farm(slow_after=15, slow_delay=0.25)
    names = [f"k{i:02d}.bin" for i in range(40)]
    manifest = write_manifest(tmp_path / "m.txt", [farm.url(f"/f/{n}") for n in names])
    out = tmp_path / "out"
    out.mkdir()
    journal = out / JOURNAL_NAME
    proc = await spawn("get", "-i", str(manifest), "-d", str(out), "-j", "2")
    try:
        await wait_for(lambda: journal.exists() and journal.stat().st_size > 0, "a journal record")
        await asyncio.sleep(0.3)
        proc.send_signal(sig)
        first = await finish(proc)
    finally:
        kill(proc)
    assert first.rc != 0
    done = journaled(journal)
    assert 2 < len(done) < len(names), first.err
    for name in done:  # journaled means durable and complete
        assert sha((out / name).read_bytes()) == sha(body_for(name))
    deleted, truncated, *kept = sorted(done)
    (out / deleted).unlink()
    with (out / truncated).open("r+b") as f:
        f.truncate(100)
    farm.hits.clear()
    farm.slow_after = None
    second = await streamer("get", "-i", str(manifest), "-d", str(out), "-j", "2")
    assert second.rc == 0, second.err
    fetched = set(farm.fetched())
    assert fetched.isdisjoint(kept)
    assert {deleted, truncated} <= fetched
    assert fetched == set(names) - set(kept)
    assert summary(second) == (len(names), len(kept), 0)
    check_dir(out, {n: body_for(n) for n in names})


# --- duplicates, bad lines, per-job options -------------------------------------------------------


def duplicate_manifest(farm: Farm) -> list[str]:
    return [
        farm.url("/f/a.bin"),  # 1: a.bin
        farm.url("/f/b.bin"),  # 2
        json_line(url=farm.url("/f/other.bin"), path="a.bin"),  # 3: a.bin again
        farm.url("/f/c.bin"),  # 4
        json_line(url=farm.url("/f/x.bin"), path="sub/d.bin"),  # 5: sub/d.bin
        json_line(url=farm.url("/f/y.bin"), path="./sub//d.bin"),  # 6: sub/d.bin again
    ]


async def test_cli_duplicates_refused_before_either_starts(farm: Farm, tmp_path: Path) -> None:
    """From a manifest file, both jobs of each clash are refused and neither file is written."""
    manifest = write_manifest(tmp_path / "m.txt", duplicate_manifest(farm))
    out = tmp_path / "out"
    out.mkdir()
    run = await streamer("get", "-i", str(manifest), "-d", str(out), "--json")
    by_line = {r["line"]: r for r in records(run)}
    assert sorted(by_line) == [1, 2, 3, 4, 5, 6]
    for line in (1, 3, 5, 6):
        assert by_line[line]["result"] == Result.INVALID_INPUT.value
        assert "two jobs write" in by_line[line]["error"]
    assert by_line[2]["ok"] and by_line[4]["ok"]
    assert sorted(farm.fetched()) == ["b.bin", "c.bin"]
    check_dir(out, {"b.bin": body_for("b.bin"), "c.bin": body_for("c.bin")})
    assert run.rc == exit_code(Result.INVALID_INPUT)


async def test_stdin_duplicates_refuse_the_second(farm: Farm, tmp_path: Path) -> None:
    """With -i - (streamed, no prescan) the first job of a clash runs, the second is refused."""
    manifest = write_manifest(tmp_path / "m.txt", duplicate_manifest(farm))
    out = tmp_path / "out"
    out.mkdir()
    run = await get_stdin(manifest, "-d", str(out), "--json")
    by_line = {r["line"]: r for r in records(run)}
    assert sorted(by_line) == [1, 2, 3, 4, 5, 6]
    assert [line for line, r in sorted(by_line.items()) if not r["ok"]] == [3, 6]
    assert by_line[3]["result"] == by_line[6]["result"] == Result.INVALID_INPUT.value
    assert sorted(farm.fetched()) == ["a.bin", "b.bin", "c.bin", "x.bin"]
    check_dir(
        out,
        {
            "a.bin": body_for("a.bin"),
            "b.bin": body_for("b.bin"),
            "c.bin": body_for("c.bin"),
            "sub/d.bin": body_for("x.bin"),
        },
    )
    assert run.rc == exit_code(Result.INVALID_INPUT)


async def test_in_process_duplicate_refused(client: Client, farm: Farm, tmp_path: Path) -> None:
    """download_many refuses the second job writing a target already claimed in the run."""
    jobs = [Job(farm.url("/f/a.bin"), line=1), Job(farm.url("/g/a.bin"), line=2)]
    results = await run_many(client, jobs, tmp_path / "out")
    by_line = {r.job.line: r for r in results}
    assert by_line[1].ok
    assert by_line[2].result is Result.INVALID_INPUT
    assert farm.fetched() == ["a.bin"]
    assert [h.path for h in farm.hits] == ["/f/a.bin"]


def bad_lines_manifest(farm: Farm) -> tuple[list[str], list[int]]:
    lines = [
        "# a comment",  # 1
        farm.url("/f/good1.bin"),  # 2
        "ftp://example.invalid/x",  # 3 bad: scheme
        "",  # 4
        "not a url",  # 5 bad
        json_line(url=farm.url("/f/good9.bin"), chekcsum="sha256:00"),  # 6 bad: unknown key
        '{"url": 1}',  # 7 bad: url type
        farm.url("/f/good2.bin"),  # 8
        json_line(url=farm.url("/f/evil.bin"), path="../evil.bin"),  # 9 bad: unsafe path
        '{"url": "http://127.0.0.1:1/x", ',  # 10 bad: invalid JSON
    ]
    return lines, [3, 5, 6, 7, 9, 10]


async def test_cli_bad_lines_reported_and_skipped(farm: Farm, tmp_path: Path) -> None:
    """Bad lines are reported by line number and skipped, good ones run; only bad lines: exit 2."""
    lines, bad = bad_lines_manifest(farm)
    manifest = write_manifest(tmp_path / "m.txt", lines)
    out = tmp_path / "out"
    out.mkdir()
    run = await streamer("get", "-i", str(manifest), "-d", str(out))
    assert run.rc == 2, run.err
    reported = [int(n) for n in re.findall(r"manifest line (\d+):", run.err)]
    assert reported == bad
    assert "6 bad manifest lines" in run.err
    assert summary(run) == (2, 0, 0)
    check_dir(out, {"good1.bin": body_for("good1.bin"), "good2.bin": body_for("good2.bin")})
    assert sorted(farm.fetched()) == ["good1.bin", "good2.bin"]


async def test_cli_bad_lines_json_and_a_failure(farm: Farm, tmp_path: Path) -> None:
    """--json reports each bad line by number; a failed job's code beats the bad lines' 2."""
    lines, bad = bad_lines_manifest(farm)
    lines.append(farm.url("/missing/nope.bin"))  # 11: a 404
    manifest = write_manifest(tmp_path / "m.txt", lines)
    out = tmp_path / "out"
    out.mkdir()
    run = await streamer("get", "-i", str(manifest), "-d", str(out), "--json")
    assert run.rc == exit_code(Result.HTTP_ERROR), run.err
    recs = records(run)
    assert sorted(r["line"] for r in recs if r["result"] == "bad_manifest_line") == bad
    jobs = {r["line"]: r["result"] for r in recs if r["result"] != "bad_manifest_line"}
    assert jobs == {2: "success", 8: "success", 11: Result.HTTP_ERROR.value}


async def test_cli_json_lines_job_options(farm: Farm, tmp_path: Path) -> None:
    """Per-job checksum, headers, max_bytes and path: each applies to its own job only."""
    lines = [
        json_line(url=farm.url("/f/ok.bin"), checksum="sha256:" + sha(body_for("ok.bin"))),
        json_line(url=farm.url("/f/bad.bin"), checksum="sha256:" + sha(b"something else")),
        json_line(url=farm.url("/f/h.bin"), headers={"X-Token": "abc 123"}),
        json_line(url=farm.url("/f/big.bin?size=10000"), max_bytes=4096),
        json_line(url=farm.url("/f/small.bin?size=4096"), max_bytes="4K"),
        json_line(url=farm.url("/f/deep.bin"), path="sub/dir/deep.bin"),
    ]
    manifest = write_manifest(tmp_path / "m.txt", lines)
    out = tmp_path / "out"
    out.mkdir()
    run = await streamer("get", "-i", str(manifest), "-d", str(out), "--json")
    results = {r["line"]: r["result"] for r in records(run)}
    assert results == {
        1: "success",
        2: Result.CHECKSUM_MISMATCH.value,
        3: "success",
        4: Result.BODY_SIZE_LIMIT_EXCEEDED.value,
        5: "success",
        6: "success",
    }
    assert run.rc in (
        exit_code(Result.CHECKSUM_MISMATCH),
        exit_code(Result.BODY_SIZE_LIMIT_EXCEEDED),
    )
    tokens = {h.path: h.headers.get("X-Token") for h in farm.hits}
    assert tokens["/f/h.bin"] == "abc 123"
    assert [p for p, t in tokens.items() if t is not None] == ["/f/h.bin"]
    check_dir(
        out,
        {
            "ok.bin": body_for("ok.bin"),
            "h.bin": body_for("h.bin"),
            "small.bin": body_for("small.bin", 4096),
            "sub/dir/deep.bin": body_for("deep.bin"),
        },
    )
    assert not list(out.glob("*.part*"))


# --- memory over a million lines ------------------------------------------------------------------

# A bare interpreter starts the command, prints its pid, reaps it with os.wait4 and prints that
# rusage: started straight from pytest, the child's ru_maxrss would include pytest's own RSS
# (Linux keeps the high-water mark of the mm left at exec).
LAUNCHER = r"""
import os, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
print(pid, flush=True)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, flush=True)
"""
MILLION = 1_000_000
RSS_LIMIT = 150 * MIB


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units are Linux's")
async def test_million_line_manifest_peak_rss(aiohttp_server: Any, tmp_path: Path) -> None:
    """1M-line manifest + 1M-record journal, then real downloads: peak RSS under 150 MiB."""
    served = 0

    async def empty(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        return web.Response(body=b"")

    app = web.Application()
    app.router.add_get("/{name}", empty)
    server = await aiohttp_server(app, host="127.0.0.1")
    base = str(server.make_url("/"))
    manifest, out = tmp_path / "m.txt", tmp_path / "out"
    journal = tmp_path / "journal.jsonl"
    out.mkdir()

    def write_inputs() -> None:  # 2 x 1M lines: in a thread, not on the test's loop
        with manifest.open("w") as m, journal.open("w") as j:
            for i in range(MILLION):
                m.write(f"{base}f{i:07d}\n")
                # The done set a finished million-job run leaves (the files have since gone).
                j.write(
                    f'{{"t": "done", "target": "f{i:07d}", "size": 1, "checksum": null, '
                    f'"url": "{base}f{i:07d}"}}\n'
                )

    await asyncio.to_thread(write_inputs)
    cmd = [
        sys.executable,
        "-m",
        "streamer",
        "get",
        "-i",
        str(manifest),
        "-d",
        str(out),
        "-q",
        "--journal",
        str(journal),
        "-j",
        "16",
    ]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-S",
        "-c",
        LAUNCHER,
        *cmd,
        env=ENV,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    pid, report = 0, b""
    try:
        pid = int(await asyncio.wait_for(proc.stdout.readline(), 10))
        await wait_for(lambda: served >= 2000, "2,000 downloads", timeout=45)
        os.kill(pid, signal.SIGTERM)
        report = await asyncio.wait_for(proc.stdout.readline(), 15)
        await asyncio.wait_for(proc.wait(), 5)
    finally:
        if pid and not report:  # not reaped by the launcher yet: the pid is still the child's
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        kill(proc)
        await proc.wait()
    peak = int(report.split()[1]) * 1024
    print(f"peak RSS {peak / MIB:.1f} MiB after {served} downloads")
    assert peak < RSS_LIMIT, f"peak RSS {peak / MIB:.1f} MiB after {served} downloads"
    assert len(os.listdir(out)) > 1000  # the run really was downloading


@pytest.mark.slow
def test_dry_run_of_a_large_manifest_keeps_memory_flat(tmp_path: Path) -> None:
    """`get -i --dry-run` plans 300,000 lines (prescan, duplicates, journal) in flat memory."""
    manifest = tmp_path / "m.txt"
    with manifest.open("w") as f:
        for i in range(300_000):
            f.write(f"http://127.0.0.1:9/d{i // 1000}/f{i}.bin\n")
    out = tmp_path / "out"
    out.mkdir()
    peak = peak_rss(
        [
            sys.executable,
            "-m",
            "streamer",
            "get",
            "-i",
            str(manifest),
            "-d",
            str(out),
            "--dry-run",
            "-q",
        ],
        timeout=120,
        log=tmp_path / "log.txt",
    )
    assert peak.rc == 0 and not peak.timed_out, (tmp_path / "log.txt").read_text()
    assert peak.maxrss_kib < 100 * 1024  # measured ~65 MiB; 1,000,000 lines measured 72 MiB
    assert list(out.iterdir()) == []
