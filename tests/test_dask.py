"""Bulk downloads on a real Dask cluster (streamer/distributed.py, streamer/cli/dask.py).

The rules: ``get -i --dask`` writes every job's file exactly (sha256) and a rerun makes no
request (the shards' journals); a worker killed mid-run (its whole process group, as a lost
machine) costs no file, and files finished seconds before the kill are not fetched again; an
unreachable scheduler is exit 7 in one line; 404s are results (exit 22); a shard whose journal
cannot be written fails its own jobs only (exit 23); a second submission into the same DIR is
refused (exit 82) and never writes; --json lines carry "worker"; without ``distributed``,
``--dask`` is a usage error naming the extra; options that cannot apply are refused (exit 2).

The cluster is ``dask scheduler`` and two ``dask worker --nthreads 1`` processes on 127.0.0.1,
each in its own process group, started once for the module and stopped by group at its end.
The origin is an aiohttp server in this process that counts GETs per path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from streamer.distributed import LOCK_NAME
from streamer.transfer.shard import shard_journal
from tests.helpers import ENV, closed_port, finish, one_error_line, spawn, streamer, wait_for
from tests.test_bulk import body_for, records, summary, write_manifest

DASK = Path(sys.executable).parent / "dask"
START_TIMEOUT = 90.0  # seconds for the scheduler and both workers on a busy machine


# --- the cluster ----------------------------------------------------------------------------------


@dataclass
class Cluster:
    address: str
    procs: list[subprocess.Popen[bytes]]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=ENV,
            start_new_session=True,  # its own process group: a test can take it away whole
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    # Whatever the group still holds (a nanny's worker) goes with it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _wait_for_workers(address: str, n: int) -> None:
    script = (
        "import sys; from distributed import Client\n"
        "with Client(sys.argv[1], timeout=60) as c:\n"
        "    c.wait_for_workers(int(sys.argv[2]), timeout=60)\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, address, str(n)],
        env=ENV,
        check=True,
        timeout=START_TIMEOUT,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not DASK.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{DASK} is missing: .ci/setup installs streamer[dask]")
        pytest.skip(f"{DASK} is missing (pip install 'streamer[dask]'); CI fails here")
    logs = tmp_path_factory.mktemp("dask")
    sched_file = logs / "scheduler.json"
    scheduler = _start(
        [
            str(DASK),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(sched_file),
        ],
        logs / "scheduler.log",
    )
    found = Cluster("", [scheduler])
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not sched_file.exists() or not sched_file.read_text().strip():
            assert scheduler.poll() is None, (logs / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        found.address = json.loads(sched_file.read_text())["address"]
        for i in range(2):
            worker = _start(
                [
                    str(DASK),
                    "worker",
                    found.address,
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                ],
                logs / f"worker{i}.log",
            )
            found.workers.append(worker)
            found.procs.append(worker)
        _wait_for_workers(found.address, 2)
        yield found
    finally:
        for proc in reversed(found.procs):
            _stop(proc)


# --- the origin ---------------------------------------------------------------------------------


@dataclass
class Origin:
    server: TestServer
    gets: Counter[str] = field(default_factory=Counter)
    finished: dict[str, list[float]] = field(default_factory=dict)  # path -> GET end times
    delay: float = 0.0
    gate: asyncio.Event | None = None  # when given, every GET waits for it

    def url(self, name: str) -> str:
        return str(self.server.make_url(f"/f/{name}"))


async def start_origin(aiohttp_server: Any, delay: float = 0.0) -> Origin:
    """``/f/NAME``: `body_for(NAME)` after `delay` s; names starting "missing" are 404s."""
    origin: Origin

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        origin.gets[name] += 1
        if origin.delay:
            await asyncio.sleep(origin.delay)
        if origin.gate is not None:
            await origin.gate.wait()
        if name.startswith("missing"):
            return web.Response(status=404)
        resp = web.Response(body=body_for(name), content_type="application/octet-stream")
        origin.finished.setdefault(name, []).append(time.monotonic())
        return resp

    app = web.Application()
    app.router.add_get("/f/{name}", handle)
    origin = Origin(await aiohttp_server(app, host="127.0.0.1"), delay=delay)
    return origin


def manifest_of(tmp_path: Path, origin: Origin, names: list[str]) -> Path:
    return write_manifest(tmp_path / "m.txt", [origin.url(name) for name in names])


def check_files(out: Path, names: list[str]) -> None:
    """Every name is in `out` with its exact body; no partial file is left."""
    for name in names:
        assert (out / name).read_bytes() == body_for(name), name
    assert not list(out.glob("*.part*"))


def dask_get(cluster: Cluster, manifest: Path, out: Path, *extra: str) -> tuple[str, ...]:
    return ("get", "-i", str(manifest), "-d", str(out), "--dask", cluster.address, *extra)


# --- runs ---------------------------------------------------------------------------------------


async def test_run_then_rerun_fetches_nothing(
    cluster: Cluster, aiohttp_server: Any, tmp_path: Path
) -> None:
    """Every file is exact and reported once with its worker; a rerun makes zero requests."""
    origin = await start_origin(aiohttp_server)
    names = [f"f{i:03d}.bin" for i in range(300)]
    manifest, out = manifest_of(tmp_path, origin, names), tmp_path / "out"
    out.mkdir()
    run = await streamer(*dask_get(cluster, manifest, out, "--json"), timeout=120)
    assert run.rc == 0, run.err
    got = records(run)
    assert sorted(r["path"] for r in got) == sorted(str(out / n) for n in names)
    assert all(r["ok"] and r["worker"].startswith("tcp://127.0.0.1:") for r in got)
    assert len({r["worker"] for r in got}) == 2  # 8 shards over two workers
    assert len(list(out.glob(".streamer-journal.shard-*.jsonl"))) == 8  # 4 per worker
    check_files(out, names)
    assert set(origin.gets.values()) == {1}
    rerun = await streamer(*dask_get(cluster, manifest, out), timeout=120)
    assert rerun.rc == 0, rerun.err
    assert summary(rerun) == (300, 300, 0)
    assert origin.gets.total() == 300  # no request at all


async def test_404s_are_results(cluster: Cluster, aiohttp_server: Any, tmp_path: Path) -> None:
    """A 404 is one job's result (http_error, exit 22); the other jobs complete."""
    origin = await start_origin(aiohttp_server)
    names = [f"missing{i}" if i % 5 == 0 else f"g{i}.bin" for i in range(20)]
    manifest, out = manifest_of(tmp_path, origin, names), tmp_path / "out"
    out.mkdir()
    run = await streamer(*dask_get(cluster, manifest, out, "--json"), timeout=120)
    assert run.rc == 22, run.err
    by_result = Counter(r["result"] for r in records(run))
    assert by_result == {"success": 16, "http_error": 4}
    check_files(out, [n for n in names if not n.startswith("missing")])


async def test_a_shard_whose_journal_cannot_be_written(
    cluster: Cluster, aiohttp_server: Any, tmp_path: Path
) -> None:
    """Shard 0's journal path is a directory: its jobs fail (exit 23), shard 1's complete."""
    origin = await start_origin(aiohttp_server)
    names = [f"h{i:02d}.bin" for i in range(20)]
    manifest, out = manifest_of(tmp_path, origin, names), tmp_path / "out"
    out.mkdir()
    shard_journal(out, 0).mkdir()
    run = await streamer(*dask_get(cluster, manifest, out, "--shards", "2", "--json"))
    assert run.rc == 23, run.err
    got = {Path(r["path"]).name: r for r in records(run)}
    assert {got[n]["result"] for n in names[:10]} == {"download_file_cant_open"}
    assert all("journal" in got[n]["error"] for n in names[:10])
    assert all(got[n]["ok"] for n in names[10:])
    check_files(out, names[10:])
    assert not any((out / n).exists() for n in names[:10])


async def test_the_same_manifest_twice_at_once(
    cluster: Cluster, aiohttp_server: Any, tmp_path: Path
) -> None:
    """While one run writes into DIR, a second one is refused (exit 82) and fetches nothing."""
    origin = await start_origin(aiohttp_server)
    origin.gate = asyncio.Event()  # the first run's requests wait until the second has ended
    names = [f"s{i:02d}.bin" for i in range(60)]
    manifest, out = manifest_of(tmp_path, origin, names), tmp_path / "out"
    out.mkdir()
    first = await spawn(*dask_get(cluster, manifest, out, "-j", "2"))
    try:
        await wait_for(lambda: origin.gets.total() > 0, "the first run's requests", timeout=60)
        second = await streamer(*dask_get(cluster, manifest, out))
    finally:
        origin.gate.set()
        done = await finish(first, timeout=120)
    one_error_line(second, 82, "another streamer --dask run", str(out))
    assert done.rc == 0, done.err
    check_files(out, names)
    assert set(origin.gets.values()) == {1}  # each file fetched once: by the first run
    assert (out / LOCK_NAME).exists()


async def test_an_unreachable_scheduler_is_exit_7(tmp_path: Path) -> None:
    """No scheduler at the address: exit 7, one line naming it."""
    manifest = write_manifest(tmp_path / "m.txt", ["http://127.0.0.1:9/a.bin"])
    address = f"tcp://127.0.0.1:{closed_port()}"
    run = await streamer(
        "get",
        "-i",
        str(manifest),
        "-d",
        str(tmp_path),
        "--dask",
        address,
        "--connect-timeout",
        "2",
    )
    one_error_line(run, 7, "cannot reach the Dask scheduler", address)


async def test_options_that_cannot_apply_are_refused(tmp_path: Path) -> None:
    """--processes, --journal, --limit-rate and -i - are refused with --dask (exit 2), named."""
    manifest = write_manifest(tmp_path / "m.txt", ["http://127.0.0.1:9/a.bin"])
    base = ("get", "-d", str(tmp_path), "--dask", "tcp://127.0.0.1:9")
    for extra, name in (
        (("-i", str(manifest), "--processes", "2"), "--processes"),
        (("-i", str(manifest), "--journal", str(tmp_path / "j")), "--journal"),
        (("-i", str(manifest), "--limit-rate", "1M"), "--limit-rate"),
        (("-i", "-"), "-i -"),
    ):
        run = await streamer(*base, *extra)
        assert run.rc == 2, run
        assert name in run.err and "--dask" in run.err, run.err


def test_the_run_files_are_no_job_targets() -> None:
    """A job's path may not name a shard journal, the lock or the plan of a Dask run (a name
    taken from a URL never starts with a dot)."""
    from streamer import Job, UsageError
    from streamer.distributed import PLAN_NAME

    for name in (shard_journal(Path("d"), 12).name, LOCK_NAME, PLAN_NAME, PLAN_NAME + ".tmp"):
        with pytest.raises(UsageError, match="reserved"):
            Job("http://h/x", path=f"sub/{name}")
    assert Job("http://h/x", path=".streamer-dask.lock.txt").path  # only the exact names


async def test_without_the_extra_dask_is_a_usage_error(tmp_path: Path) -> None:
    """With ``distributed`` not importable, --dask is exit 2 naming streamer[dask]."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'distributed' or name.startswith('distributed.'):\n"
        "            raise ImportError('blocked for the test: ' + name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    manifest = write_manifest(tmp_path / "m.txt", ["http://127.0.0.1:9/a.bin"])
    env = {
        **ENV,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(blocker), ENV.get("PYTHONPATH")])),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer",
        "get",
        "-i",
        str(manifest),
        "-d",
        str(tmp_path),
        "--dask",
        "tcp://127.0.0.1:9",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    run = await finish(proc)
    one_error_line(run, 2, "streamer[dask]")


async def test_the_python_api_with_an_existing_client(
    cluster: Cluster, aiohttp_server: Any, tmp_path: Path
) -> None:
    """download_many(jobs, DIR, client=Client(...)) returns one JobResult per job, and
    as_completed yields the same for a manifest path (a script in its own process)."""
    origin = await start_origin(aiohttp_server)
    names = [f"api{i}.bin" for i in range(12)]
    manifest, out = manifest_of(tmp_path, origin, names), tmp_path / "out"
    out.mkdir()
    script = (
        "import json, sys\n"
        "from distributed import Client\n"
        "from streamer import BulkOptions, Job, JobResult\n"
        "from streamer import distributed as sd\n"
        "addr, out, manifest = sys.argv[1:4]\n"
        "jobs = [Job(line.strip()) for line in open(manifest)]\n"
        "with Client(addr, timeout=30) as client:\n"
        "    got = sd.download_many(jobs, out, client=client, shards=3,\n"
        "                           options=BulkOptions(jobs=2))\n"
        "    again = list(sd.as_completed(manifest, out, client=client))\n"
        "print(json.dumps([[r.ok, r.skipped, isinstance(r, JobResult)] for r in got + again]))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        cluster.address,
        str(out),
        str(manifest),
        env=ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    run = await finish(proc, timeout=120)
    assert run.rc == 0, run.err
    flags = json.loads(run.out)
    assert flags == [[True, False, True]] * 12 + [[True, True, True]] * 12
    check_files(out, names)


# Last: it takes a worker away for good.
async def test_a_worker_killed_mid_run(
    cluster: Cluster, aiohttp_server: Any, tmp_path: Path
) -> None:
    """Kill one worker's process group mid-run: every file ends exact, and no file finished
    more than 3 s before the kill is fetched again (the shard's journal)."""
    origin = await start_origin(aiohttp_server, delay=0.02)
    names = [f"k{i:03d}.bin" for i in range(800)]
    manifest, out = manifest_of(tmp_path, origin, names), tmp_path / "out"
    out.mkdir()
    proc = await spawn(*dask_get(cluster, manifest, out, "-j", "2", "--shards", "8"))
    try:
        await wait_for(lambda: len(origin.finished) >= 350, "350 files served", timeout=120)
        killed_at = time.monotonic()
        victim = cluster.workers[0]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(10)
    finally:
        run = await finish(proc, timeout=180)
    assert run.rc == 0, run.err
    check_files(out, names)
    again = {n: times for n, times in origin.finished.items() if len(times) > 1}
    early = {n: t for n, t in again.items() if t[0] < killed_at - 3.0}
    assert not early, f"fetched again though done before the kill: {sorted(early)[:5]}"
    assert len(origin.finished) == 800
    print(f"{len(again)} files fetched again after the kill")
