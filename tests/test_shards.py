"""`streamer get -i` over worker processes (streamer/cli_shards.py, cli_bulk.py), for real.

The rules: worker k of N takes the manifest lines whose number is k modulo N, with 1/N of every
shared limit, so that together the workers keep each limit (``--max-per-host 3`` means at most
3 requests at the server); every job gets exactly one result (one ``--json`` line) and every bad
manifest line is reported once; the parent merges the workers' counts into ONE summary and the
exit status of the whole run (the most frequent failure over all workers; 2 when only manifest
lines were bad); the journal records each finished file, so a re-run fetches nothing. Without
``--processes`` a manifest FILE of at least AUTO_MIN_JOBS jobs is split (one process per CPU, up
to 4) and stdin never is. SIGTERM to the parent reaches every worker (exit 143), Ctrl-C (SIGINT
to the process group) stops every worker (exit 130); neither leaves a worker running or a
partial body in a target (partials stay in ``.part`` files). A worker that dies without
reporting makes the run fail with a message; a worker whose parent is killed gets SIGTERM.

The CLI is a child process (``python -m streamer``); origins are servers on 127.0.0.1 in this
process; the workers are found as the CLI's children in /proc (pid and start time, so that a
reused pid is never mistaken for a worker). Any worker still running at a test's end is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from streamer import Result
from streamer.cli.shards import AUTO_MIN_JOBS
from streamer.core.workers import RSS_BUDGET
from streamer.errors import exit_code
from streamer.storage.files import part_path, sidecar_path
from streamer.storage.journal import JOURNAL_NAME
from tests.helpers import (
    ENV,
    Run,
    app_servers,
    file_digest,
    finish,
    kill,
    running_slow_server,
    sigint_inherited_as_default,
    wait_for,
)
from tests.slow_server import MIB, Resource, SlowServer, body_digest, sidecar_committed
from tests.test_bulk import (
    SUMMARY,
    body_for,
    check_dir,
    records,
    serve_cut,
    serve_file,
    summary,
    write_manifest,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="workers are found in Linux's /proc"
)

CPUS = len(os.sched_getaffinity(0))


# --- worker processes, as /proc shows them ------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """A process: its pid and its start time (clock ticks since boot) against pid reuse."""

    pid: int
    start: int


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) from /proc/PID/stat; None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    return fields[0], int(fields[1]), int(fields[19])


def tree_rss(parent: int) -> int:
    """The summed VmRSS (bytes) of `parent` and its live children, as /proc shows them now."""
    total = 0
    for pid in [parent, *(p.pid for p in children(parent))]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def children(parent: int) -> list[Proc]:
    """The live (not zombie) child processes of `parent`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[1] == parent and stat[0] != "Z":
                found.append(Proc(int(entry), stat[2]))
    return found


def running(proc: Proc) -> bool:
    """`proc` still exists (os.kill(pid, 0)), is the same process, and is no zombie."""
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return False
    stat = _stat(proc.pid)
    return stat is not None and stat[2] == proc.start and stat[0] != "Z"


@dataclass
class Cli:
    """A running ``python -m streamer`` and the workers found under it."""

    proc: asyncio.subprocess.Process
    workers: list[Proc] = field(default_factory=list)

    async def find_workers(self, n: int, timeout: float = 15.0) -> list[Proc]:
        """Wait (bounded) until the CLI has `n` children; remember and return them."""
        await wait_for(lambda: len(children(self.proc.pid)) >= n, f"{n} workers", timeout)
        self.workers = children(self.proc.pid)
        assert len(self.workers) == n, self.workers
        return self.workers

    def left_running(self) -> list[Proc]:
        return [w for w in self.workers if running(w)]


@contextlib.asynccontextmanager
async def cli(*args: str, stdin: Any = None, new_session: bool = False) -> AsyncIterator[Cli]:
    """Start ``python -m streamer ARGS`` (stdin: a file object, else /dev/null); at the end
    kill whatever is left of it and of the workers found under it."""
    with sigint_inherited_as_default():
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamer",
            *args,
            env=ENV,
            stdin=stdin if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=new_session,
        )
    run = Cli(proc)
    try:
        yield run
    finally:
        for worker in run.left_running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
        kill(proc)
        if proc.returncode is None:
            with contextlib.suppress(Exception):
                await finish(proc, 10)


async def run_cli(
    *args: str, origin: Origin | None = None, stdin: Any = None, also: tuple[Origin, ...] = ()
) -> Run:
    """Run the CLI to its end; `origin` (if given) and those in `also` watch its pid for
    workers."""
    async with cli(*args, stdin=stdin) as c:
        for watcher in (origin, *also) if origin is not None else also:
            watcher.watch = c.proc.pid  # before any await: no request can have come in yet
        return await finish(c.proc)


# --- the origin ---------------------------------------------------------------------------------


@dataclass
class Origin:
    """``/f/NAME?size=N``: N deterministic bytes (`body_for`); ``/cut/NAME?size=N``: half of
    them, then the connection is cut; anything else: 404. Counts requests in flight (``peak``:
    the most at once, after ``delay`` s in each); records every path; while a CLI is watched,
    the first few requests record how many worker processes that CLI has at that moment."""

    delay: float = 0.0
    watch: int = 0  # pid of the CLI whose workers are counted
    workers_seen: list[int] = field(default_factory=list)
    pids_seen: set[int] = field(default_factory=set)  # the watched CLI's workers, by pid
    rss_seen: list[int] = field(default_factory=list)  # tree_rss of the watched CLI, sampled
    hits: list[str] = field(default_factory=list)
    now: int = 0
    peak: int = 0
    server: TestServer | None = None

    def most_workers(self) -> int:
        """The most worker processes the watched CLI had during a request (-1: no request)."""
        return max(self.workers_seen, default=-1)

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/f/{name}", serve_file)
        app.router.add_get("/cut/{name}", serve_cut)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.hits.append(request.path_qs)
        if self.watch and len(self.workers_seen) < 4:
            workers = children(self.watch)
            self.workers_seen.append(len(workers))
            self.pids_seen.update(w.pid for w in workers)
        if self.watch and len(self.hits) % 50 == 1:
            self.rss_seen.append(tree_rss(self.watch))
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return await handler(request)
        finally:
            self.now -= 1


OriginFactory = Callable[..., Awaitable[Origin]]


@pytest.fixture
async def make_origin() -> AsyncIterator[OriginFactory]:
    """``origin = await make_origin(delay=0.3)``; stopped at teardown."""
    async with app_servers() as serve:

        async def start(**kw: Any) -> Origin:
            origin = Origin(**kw)
            origin.server = await serve(origin.app())
            return origin

        yield start


@pytest.fixture
async def origin(make_origin: OriginFactory) -> Origin:
    return await make_origin()


@pytest.fixture
async def slow() -> AsyncIterator[SlowServer]:
    async with running_slow_server() as server:
        yield server


def small_files(
    origin: Origin, count: int, prefix: str = "s"
) -> tuple[list[str], dict[str, bytes]]:
    """`count` URLs of 2 KiB files and the bodies expected under their names."""
    names = [f"{prefix}{i:05d}.bin" for i in range(count)]
    return [origin.url(f"/f/{n}") for n in names], {n: body_for(n) for n in names}


def done_records(journal: Path) -> list[str]:
    """The target of every done record of a journal, repeats included."""
    targets = []
    for line in journal.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("t") == "done":
            targets.append(rec["target"])
    return targets


def out_dir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


# --- volume, journal, re-run --------------------------------------------------------------------


async def test_two_processes_1200_files_one_summary_and_rerun_fetches_nothing(
    origin: Origin, tmp_path: Path
) -> None:
    """--processes 2 over 1,200 files: two workers really run, every file arrives byte for byte,
    exit 0, ONE summary line ("1200 ok"), one journal done record per file; a second identical
    run sends no request at all and reports the 1,200 as already done, exit 0."""
    urls, expected = small_files(origin, 1200)
    manifest = write_manifest(tmp_path / "m.txt", urls)
    out = out_dir(tmp_path)
    args = ("get", "-i", str(manifest), "-d", str(out), "--processes", "2")
    first = await run_cli(*args, origin=origin)
    assert first.rc == 0, first.err
    assert origin.most_workers() == 2, origin.workers_seen
    assert len(first.err_lines) == 1, first.err  # the summary, and nothing else
    assert len(SUMMARY.findall(first.err)) == 1, first.err
    assert summary(first) == (1200, 0, 0)
    check_dir(out, expected)
    assert sorted(done_records(out / JOURNAL_NAME)) == sorted(expected)  # each exactly once
    assert len(origin.hits) == 1200

    origin.hits.clear()
    origin.workers_seen.clear()
    second = await run_cli(*args)
    assert second.rc == 0, second.err
    assert origin.hits == []
    assert len(second.err_lines) == 1, second.err
    assert summary(second) == (1200, 1200, 0)
    check_dir(out, expected)


# --- shared limits ------------------------------------------------------------------------------


async def test_max_per_host_is_kept_by_the_workers_together(
    make_origin: OriginFactory, tmp_path: Path
) -> None:
    """--processes 2 -j 16 --max-per-host 3: the server never has more than 3 requests in
    flight (the cap is split 2 + 1, not given whole to each worker), and at some point 2 or
    more (the cap is not collapsed to 1)."""
    origin = await make_origin(delay=0.1)
    urls, expected = small_files(origin, 24, "h")
    manifest = write_manifest(tmp_path / "m.txt", urls)
    out = out_dir(tmp_path)
    run = await run_cli(
        "get",
        "-i",
        str(manifest),
        "-d",
        str(out),
        "--processes",
        "2",
        "-j",
        "16",
        "--max-per-host",
        "3",
        origin=origin,
    )
    assert run.rc == 0, run.err
    assert origin.most_workers() == 2, origin.workers_seen
    assert 2 <= origin.peak <= 3, origin.peak
    check_dir(out, expected)


async def test_jobs_limit_is_kept_by_the_workers_together(
    make_origin: OriginFactory, tmp_path: Path
) -> None:
    """--processes 2 -j 3 (per-host cap 16): at most 3 requests in flight over both workers."""
    origin = await make_origin(delay=0.1)
    urls, expected = small_files(origin, 24, "j")
    manifest = write_manifest(tmp_path / "m.txt", urls)
    out = out_dir(tmp_path)
    run = await run_cli(
        "get", "-i", str(manifest), "-d", str(out), "--processes", "2", "-j", "3", origin=origin
    )
    assert run.rc == 0, run.err
    assert origin.most_workers() == 2, origin.workers_seen
    assert 2 <= origin.peak <= 3, origin.peak
    check_dir(out, expected)


async def test_host_request_rate_with_processes_is_refused(origin: Origin, tmp_path: Path) -> None:
    """--host-request-rate keeps its spacing exact only in one process, so --processes 2 with it
    is refused up front (exit 2, naming both) instead of being silently ignored."""
    urls, _ = small_files(origin, 6, "r")
    manifest = write_manifest(tmp_path / "m.txt", urls)
    out = out_dir(tmp_path)
    run = await run_cli(
        "get",
        "-i",
        str(manifest),
        "-d",
        str(out),
        "--processes",
        "2",
        "--host-request-rate",
        "40",
        origin=origin,
    )
    assert run.rc == 2, run.err
    assert "--processes" in run.err and "--host-request-rate" in run.err
    assert origin.workers_seen == [], "no request is made"
    assert not any(out.iterdir())


async def test_limit_rate_is_shared_by_the_workers(origin: Origin, tmp_path: Path) -> None:
    """--limit-rate 4M with --processes 2: each worker gets 2 MiB/s, so 6 MiB in 24 files take
    at least (6 MiB - 1 MiB of initial bursts) / 4 MiB/s = 1.25 s by the run's own clock; each
    worker at the whole rate would take 0.5 s."""
    size = 256 * 1024
    names = [f"l{i:02d}.bin" for i in range(24)]
    manifest = write_manifest(
        tmp_path / "m.txt", [origin.url(f"/f/{n}?size={size}") for n in names]
    )
    out = out_dir(tmp_path)
    run = await run_cli(
        "get",
        "-i",
        str(manifest),
        "-d",
        str(out),
        "--processes",
        "2",
        "--limit-rate",
        "4M",
        origin=origin,
    )
    assert run.rc == 0, run.err
    assert origin.most_workers() == 2, origin.workers_seen
    took = re.search(r" in ([0-9.]+) s ", run.err)
    assert took is not None, run.err
    floor = (24 * size - MIB) / (4 * MIB)  # each worker's bucket starts full with its rate / 4
    assert float(took[1]) >= floor * 0.95, run.err
    check_dir(out, {n: body_for(n, size) for n in names})


# --- --json, bad lines, merged failures ---------------------------------------------------------


async def test_json_one_line_per_job_and_bad_lines_once_exit_2(
    origin: Origin, tmp_path: Path
) -> None:
    """--json --processes 2: exactly one parseable JSON line per job (their "line" values are
    the job lines), each bad manifest line (of either parity, line 1 included) reported once as
    "bad_manifest_line"; every job succeeded but bad lines existed: exit 2."""
    lines: list[str] = []
    bad: list[int] = []
    jobs: list[int] = []
    expected = {}
    for i in range(40):
        if i in (0, 6, 12, 25, 30):  # lines 1, 10, 17, 33, 39
            lines.append("not a url" if i % 2 else "ftp://example.invalid/x")
            bad.append(len(lines))
        if i in (5, 20):
            lines.append("# a comment")
            lines.append("")
        name = f"x{i:02d}.bin"
        lines.append(origin.url(f"/f/{name}"))
        jobs.append(len(lines))
        expected[name] = body_for(name)
    manifest = write_manifest(tmp_path / "m.txt", lines)
    out = out_dir(tmp_path)
    run = await run_cli(
        "get", "-i", str(manifest), "-d", str(out), "--processes", "2", "--json", origin=origin
    )
    assert {n % 2 for n in bad} == {n % 2 for n in jobs} == {0, 1}  # both workers have some
    assert run.rc == 2, run
    assert origin.most_workers() == 2, origin.workers_seen
    assert run.err_lines == [], run.err  # bad lines go to stdout as JSON, not also to stderr
    recs = records(run)  # every stdout line parses as JSON
    assert len(recs) == len(run.out.splitlines()) == len(jobs) + len(bad)
    assert sorted(r["line"] for r in recs if r["result"] == "bad_manifest_line") == bad
    job_recs = [r for r in recs if r["result"] != "bad_manifest_line"]
    assert sorted(r["line"] for r in job_recs) == jobs  # one each, none repeated
    assert all(r["ok"] for r in job_recs), job_recs
    check_dir(out, expected)


async def test_bad_csv_header_is_reported_once(origin: Origin, tmp_path: Path) -> None:
    """A CSV header with an unknown column is one bad manifest line: reported once and counted
    once with --processes 2, as it is in one process."""
    names = [f"c{i:02d}.bin" for i in range(6)]
    lines = ["url,path,color"] + [f"{origin.url('/f/' + n)},{n},red" for n in names]
    manifest = write_manifest(tmp_path / "m.txt", lines)
    out = out_dir(tmp_path)
    run = await run_cli("get", "-i", str(manifest), "-d", str(out), "--processes", "2")
    assert run.rc == 2, run
    assert run.err.count("manifest line 1:") == 1, run.err
    assert "; 1 bad manifest lines" in run.err, run.err
    check_dir(out, {n: body_for(n) for n in names})


async def test_csv_manifest_header_read_by_every_worker(origin: Origin, tmp_path: Path) -> None:
    """A CSV manifest (header on line 1, worker 1's line): both workers read the header, so the
    rows of both parities are jobs with their own paths; exit 0, nothing reported bad."""
    names = [f"v{i:02d}.bin" for i in range(10)]
    lines = ["url,path"] + [f"{origin.url('/f/' + n)},sub/{n}" for n in names]
    manifest = write_manifest(tmp_path / "m.txt", lines)
    out = out_dir(tmp_path)
    run = await run_cli(
        "get", "-i", str(manifest), "-d", str(out), "--processes", "2", "--json", origin=origin
    )
    assert run.rc == 0, run
    assert origin.most_workers() == 2, origin.workers_seen
    assert sorted(r["line"] for r in records(run)) == list(range(2, 12))
    check_dir(out, {f"sub/{n}": body_for(n) for n in names})


async def test_duplicate_targets_on_both_workers_are_both_refused(
    origin: Origin, tmp_path: Path
) -> None:
    """Two jobs writing one target on lines of different parities (different workers): the
    parent's prescan refuses both before either starts; neither file is fetched."""
    lines = [
        origin.url("/f/a.bin"),  # 1: worker 1, a.bin
        json.dumps({"url": origin.url("/f/other.bin"), "path": "a.bin"}),  # 2: worker 0, a.bin
        origin.url("/f/b.bin"),  # 3
        origin.url("/f/c.bin"),  # 4
    ]
    manifest = write_manifest(tmp_path / "m.txt", lines)
    out = out_dir(tmp_path)
    run = await run_cli(
        "get", "-i", str(manifest), "-d", str(out), "--processes", "2", "--json", origin=origin
    )
    assert origin.most_workers() == 2, origin.workers_seen
    by_line = {r["line"]: r for r in records(run)}
    assert sorted(by_line) == [1, 2, 3, 4]
    for line in (1, 2):
        assert by_line[line]["result"] == Result.INVALID_INPUT.value, by_line[line]
    assert by_line[3]["ok"] and by_line[4]["ok"]
    assert sorted(origin.hits) == ["/f/b.bin", "/f/c.bin"]
    assert run.rc == exit_code(Result.INVALID_INPUT)
    check_dir(out, {"b.bin": body_for("b.bin"), "c.bin": body_for("c.bin")})


async def test_failures_of_all_workers_are_merged(origin: Origin, tmp_path: Path) -> None:
    """404s on lines of both parities and cut bodies on one: the summary counts every failure
    of both workers, and the exit code is the most frequent failure over the whole run (22,
    http_error: 4 against 2 partial_body), though worker 0 alone saw more cut bodies."""
    lines: list[str] = []
    expected = {}
    for i in range(30):
        name = f"g{i:02d}.bin"
        lines.append(origin.url(f"/f/{name}"))
        expected[name] = body_for(name)
    # 1-based line numbers: even ones go to worker 0, odd ones to worker 1.
    lines[1] = origin.url("/cut/t1.bin?size=65536")  # line 2
    lines[3] = origin.url("/cut/t3.bin?size=65536")  # line 4
    lines[5] = origin.url("/missing/m5.bin")  # line 6
    for i in (8, 16, 24):  # lines 9, 17, 25
        lines[i] = origin.url(f"/missing/m{i}.bin")
    for i in (1, 3, 5, 8, 16, 24):
        del expected[f"g{i:02d}.bin"]
    manifest = write_manifest(tmp_path / "m.txt", lines)
    out = out_dir(tmp_path)
    run = await run_cli(
        "get", "-i", str(manifest), "-d", str(out), "--processes", "2", origin=origin
    )
    assert run.rc == exit_code(Result.HTTP_ERROR) == 22, run.err
    assert origin.most_workers() == 2, origin.workers_seen
    assert summary(run) == (24, 0, 6)
    assert "failures: 4 http_error, 2 partial_body" in run.err, run.err
    assert len(SUMMARY.findall(run.err)) == 1, run.err
    check_dir(out, expected)


BAR_SIZE = re.compile(r"; ([0-9.]+ [KMG]?i?B) in [0-9.]+ s")


async def test_progress_bar_counts_each_byte_and_failure_once(
    make_origin: OriginFactory, tmp_path: Path
) -> None:
    """--progress --processes 2: the one bar ends at N/N showing the bytes of the summary and
    the one failure, even when one worker ends (with the failure) long before the other."""
    fast, slow = await make_origin(), await make_origin(delay=0.3)
    lines = []
    for i in range(5):  # odd lines (worker 1): slow; even lines (worker 0): fast
        lines += [slow.url(f"/f/w{i}.bin"), fast.url(f"/f/q{i}.bin")]
    lines[1] = fast.url("/missing/q0.bin")  # line 2: worker 0's one failure
    manifest = write_manifest(tmp_path / "m.txt", lines)
    out = out_dir(tmp_path)
    run = await run_cli(
        "get",
        "-i",
        str(manifest),
        "-d",
        str(out),
        "--processes",
        "2",
        "--progress",
        "--max-per-host",
        "2",
        origin=slow,
        also=(fast,),
    )
    assert run.rc == exit_code(Result.HTTP_ERROR), run.err
    # Two worker processes ran: each origin is asked by its own worker, which is alive while
    # it asks (the fast one may be gone before the slow one's first request, on a loaded
    # machine, so no one moment need show both).
    assert len(slow.pids_seen | fast.pids_seen) == 2, (slow.pids_seen, fast.pids_seen)
    assert summary(run) == (9, 0, 1)
    size = BAR_SIZE.search(run.err)
    assert size is not None, run.err
    bars = [part for part in re.split(r"[\r\n]", run.err) if "|" in part]
    assert bars and "10/10" in bars[-1], bars
    assert f"{size[1]}, 1 failed" in bars[-1], (size[1], bars[-1])


# --- automatic mode -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jobs", "workers"),
    [(AUTO_MIN_JOBS - 1, 0), (AUTO_MIN_JOBS, 2 if CPUS > 1 else 0)],
    ids=["below", "at-threshold"],
)
async def test_automatic_processes_for_a_large_manifest_file(
    origin: Origin, tmp_path: Path, jobs: int, workers: int
) -> None:
    """No --processes: a manifest file of AUTO_MIN_JOBS jobs or more is split over worker
    processes (core/workers.py: one per CPU while a ~28 MiB CLI and its parent-sized workers fit
    in 100 MiB: 2 here), one job fewer stays in
    one process (comment lines do not count); both fetch every file, exit 0, and the CLI with
    its workers never holds more than RSS_BUDGET resident."""
    urls, expected = small_files(origin, jobs, "a")
    lines = ["# comment"] * (AUTO_MIN_JOBS - jobs) + urls  # same line count both ways
    manifest = write_manifest(tmp_path / "m.txt", lines)
    out = out_dir(tmp_path)
    run = await run_cli("get", "-i", str(manifest), "-d", str(out), origin=origin)
    assert run.rc == 0, run.err
    if workers:  # 2 here; 3 or more only where the CLI is under 25 MiB and the CPUs allow
        assert workers <= origin.most_workers() <= CPUS, origin.workers_seen
    else:
        assert origin.most_workers() == 0, origin.workers_seen
    assert summary(run) == (jobs, 0, 0)
    check_dir(out, expected)
    assert origin.rss_seen and max(origin.rss_seen) <= RSS_BUDGET, origin.rss_seen


async def test_stdin_manifest_stays_in_one_process(origin: Origin, tmp_path: Path) -> None:
    """-i - with AUTO_MIN_JOBS jobs: no worker process (stdin cannot be read twice), every
    file arrives, exit 0."""
    urls, expected = small_files(origin, AUTO_MIN_JOBS, "i")
    manifest = write_manifest(tmp_path / "m.txt", urls)
    out = out_dir(tmp_path)
    with manifest.open("rb") as f:
        run = await run_cli("get", "-i", "-", "-d", str(out), origin=origin, stdin=f)
    assert run.rc == 0, run.err
    assert origin.most_workers() == 0, origin.workers_seen
    assert summary(run) == (AUTO_MIN_JOBS, 0, 0)
    check_dir(out, expected)


# --- signals and dead workers -------------------------------------------------------------------

BIG, STALL, SMALL = 4 * MIB, 1 * MIB, 64 * 1024


def slow_manifest(slow: SlowServer, tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    """Four big files that stall after 1 MiB (every request: the small-file lane's first try
    too) and four small ones, in pairs (big, big, small, small, ...) so that each of two
    workers (odd and even lines) has two of each; (manifest, big names, small names)."""
    bigs, smalls, lines = [], [], []
    for i in range(4):
        big, small = f"big{i}", f"small{i}"
        slow.resources[big] = Resource(size=BIG, stall_at=STALL, once=False)
        slow.resources[small] = Resource(size=SMALL)
        bigs.append(big)
        smalls.append(small)
    for i in (0, 2):
        lines += [slow.url(bigs[i]), slow.url(bigs[i + 1])]
        lines += [slow.url(smalls[i]), slow.url(smalls[i + 1])]
    return write_manifest(tmp_path / "m.txt", lines), bigs, smalls


async def all_stalled(slow: SlowServer, out: Path, bigs: list[str]) -> None:
    """Wait until every big file has its first MiB in its .part (each worker is mid-body)."""

    def ready() -> bool:
        sizes = []
        for name in bigs:
            try:
                sizes.append(part_path(out / name).stat().st_size)
            except FileNotFoundError:
                return False
        return all(s == STALL for s in sizes)

    await wait_for(ready, "every big file stalled mid-body", timeout=15)


def check_no_partial_targets(out: Path, bigs: list[str], smalls: list[str]) -> None:
    """Every target present is whole; each stalled big file is only a .part whose sidecar
    records all of it (a clean stop saved it for resuming)."""
    for name in smalls:
        target = out / name
        if target.exists():
            assert file_digest(target) == body_digest(SMALL), name
    for name in bigs:
        target = out / name
        assert not target.exists(), name
        assert part_path(target).stat().st_size == STALL, name
        assert sidecar_committed(sidecar_path(target)) == STALL, name


@pytest.mark.parametrize(
    ("group", "rc"), [(False, 143), (True, 130)], ids=["SIGTERM-parent", "SIGINT-group"]
)
async def test_signal_stops_every_worker_and_keeps_partials(
    slow: SlowServer, tmp_path: Path, group: bool, rc: int
) -> None:
    """SIGTERM to the parent (passed on to the workers) exits 143; SIGINT to the whole process
    group (Ctrl-C) exits 130; either within a few seconds, no worker left running, no partial
    body in any target, each stalled download saved in its .part for resuming."""
    manifest, bigs, smalls = slow_manifest(slow, tmp_path)
    out = out_dir(tmp_path)
    args = ("get", "-i", str(manifest), "-d", str(out), "--processes", "2")
    async with cli(*args, new_session=group) as c:
        await c.find_workers(2)
        await all_stalled(slow, out, bigs)
        if group:
            os.killpg(c.proc.pid, signal.SIGINT)
        else:
            os.kill(c.proc.pid, signal.SIGTERM)
        run = await finish(c.proc, timeout=15)
        left = c.left_running()
    assert run.rc == rc, run
    assert left == []
    assert "Traceback" not in run.err, run.err
    check_no_partial_targets(out, bigs, smalls)


async def test_worker_killed_makes_the_run_fail_with_a_message(
    slow: SlowServer, tmp_path: Path
) -> None:
    """A worker killed with SIGKILL mid-run: the other finishes, the parent exits non-zero
    (request_failed, 55) saying a worker ended without a report, and no worker is left."""
    manifest, bigs, _ = slow_manifest(slow, tmp_path)
    out = out_dir(tmp_path)
    args = ("get", "-i", str(manifest), "-d", str(out), "--processes", "2")
    async with cli(*args) as c:
        victim, _other = await c.find_workers(2)
        await all_stalled(slow, out, bigs)
        os.kill(victim.pid, signal.SIGKILL)
        await wait_for(lambda: not running(victim), "the killed worker gone", timeout=10)
        slow.release.set()  # the surviving worker's downloads go on to their end
        run = await finish(c.proc, timeout=20)
        left = c.left_running()
    assert run.rc == exit_code(Result.REQUEST_FAILED), run
    assert "1 worker(s) ended without a report" in run.err, run.err
    assert "Traceback" not in run.err, run.err
    assert left == []
    assert sum((out / name).exists() for name in bigs) == 2  # the survivor's two big files
    for name in bigs:
        if (out / name).exists():
            assert file_digest(out / name) == body_digest(BIG), name


async def test_workers_of_a_killed_parent_stop_and_save(slow: SlowServer, tmp_path: Path) -> None:
    """The parent killed with SIGKILL: the kernel sends each worker SIGTERM (PR_SET_PDEATHSIG),
    so within a few seconds none is running and each saved its partials (sidecar == .part)."""
    manifest, bigs, smalls = slow_manifest(slow, tmp_path)
    out = out_dir(tmp_path)
    args = ("get", "-i", str(manifest), "-d", str(out), "--processes", "2")
    async with cli(*args) as c:
        await c.find_workers(2)
        await all_stalled(slow, out, bigs)
        os.kill(c.proc.pid, signal.SIGKILL)
        await wait_for(lambda: c.left_running() == [], "no worker running", timeout=5)
        run = await finish(c.proc, timeout=10)  # the pipes close once the workers are gone
    assert run.rc == -signal.SIGKILL
    check_no_partial_targets(out, bigs, smalls)


@pytest.mark.parametrize(
    ("signum", "word"),
    [
        (signal.SIGINT, "interrupted"),
        (signal.SIGTERM, "terminated"),
    ],
    ids=["SIGINT", "SIGTERM"],
)
async def test_a_stop_is_told_in_one_line(
    slow: SlowServer, tmp_path: Path, signum: int, word: str
) -> None:
    """Stopped by SIGINT (to the group) or SIGTERM (to the parent), the run says so in exactly
    one stderr line, as a one-process run does ("streamer: interrupted; ..." / "terminated")."""
    manifest, bigs, _ = slow_manifest(slow, tmp_path)
    out = out_dir(tmp_path)
    args = ("get", "-i", str(manifest), "-d", str(out), "--processes", "2")
    async with cli(*args, new_session=True) as c:
        await c.find_workers(2)
        await all_stalled(slow, out, bigs)
        if signum == signal.SIGINT:
            os.killpg(c.proc.pid, signum)
        else:
            os.kill(c.proc.pid, signum)
        run = await finish(c.proc, timeout=15)
    assert run.rc in (130, 143), run
    assert len(run.err_lines) == 1, run.err
    assert run.err_lines[0].startswith("streamer: ") and word in run.err_lines[0], run.err


async def test_sigint_to_the_parent_alone_stops_the_workers(
    slow: SlowServer, tmp_path: Path
) -> None:
    """SIGINT sent to the parent only (kill -INT PID, not Ctrl-C): the run still stops within
    a few seconds, exit 130, no worker left running, the stalled downloads saved as .part."""
    manifest, bigs, smalls = slow_manifest(slow, tmp_path)
    out = out_dir(tmp_path)
    args = ("get", "-i", str(manifest), "-d", str(out), "--processes", "2")
    async with cli(*args, new_session=True) as c:
        await c.find_workers(2)
        await all_stalled(slow, out, bigs)
        os.kill(c.proc.pid, signal.SIGINT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(c.proc.wait(), 5)
        assert c.proc.returncode == 130, "the parent still runs 5 s after SIGINT"
        run = await finish(c.proc, timeout=10)
        left = c.left_running()
    assert run.rc == 130, run
    assert left == []
    check_no_partial_targets(out, bigs, smalls)


def test_automatic_processes_follow_the_cpus_this_process_may_use() -> None:
    """Automatic mode counts the CPUs of the process's affinity mask (taskset, a container's
    cpuset), not the machine's: pinned to one CPU, a large manifest stays in one process."""
    from argparse import Namespace

    from streamer.cli.shards import auto_processes, shard_count

    args = Namespace(
        dry_run=False,
        input_file="m.txt",
        host_request_rate=None,
        processes=None,
        jobs=16,
        max_per_host=16,
    )
    mask = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(mask)})
        assert shard_count(args, AUTO_MIN_JOBS) == 1
    finally:
        os.sched_setaffinity(0, mask)
    assert shard_count(args, AUTO_MIN_JOBS) == auto_processes() <= len(mask)
    assert shard_count(args, AUTO_MIN_JOBS - 1) == 1
    assert shard_count(Namespace(**{**vars(args), "processes": 3}), 10) == 3
