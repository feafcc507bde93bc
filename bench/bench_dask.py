#!/usr/bin/env python3
"""Bulk downloads on Dask against a plain run: 20,000 x 16 KiB from nginx on 127.0.0.1.

One plain ``streamer get -i LIST -d OUT -j J`` run, then one ``--dask`` run on a scheduler and
two workers (one thread each) started on this machine beforehand (their start is not timed).
Both outputs are checked by sha256. The scheduler's overhead per shard is measured apart: empty
shards (no job) submitted one after the other through the same cluster, each a round trip from
the submitter through the scheduler to a worker (which starts and closes an empty bulk run) and
back. See bench/README.md.

    python bench/bench_dask.py [--files 20000] [--size 16384] [--jobs 16]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import banner
from _loopback import _free_port, _wait_ready, nginx_conf
from bench_download import NGINX, fill, stop

DASK = Path(sys.executable).parent / "dask"


def make_files(www: Path, count: int, size: int) -> dict[str, str]:
    digests = {}
    for i in range(count):
        data = os.urandom(size)
        name = f"f{i:06d}.bin"
        (www / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def check(out: Path, digests: dict[str, str]) -> None:
    for name, digest in digests.items():
        if hashlib.sha256((out / name).read_bytes()).hexdigest() != digest:
            sys.exit(f"{out / name} differs from the served file")


def start_cluster(work: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    sched_file = work / "scheduler.json"
    procs = []

    def start(args: list[str], log: str) -> None:
        with (work / log).open("wb") as f:
            procs.append(subprocess.Popen(args, stdout=f, stderr=f, start_new_session=True))

    start(
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
        "scheduler.log",
    )
    while not sched_file.exists() or not sched_file.read_text().strip():
        time.sleep(0.1)
    address = json.loads(sched_file.read_text())["address"]
    for i in range(2):
        start(
            [
                str(DASK),
                "worker",
                address,
                "--nthreads",
                "1",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
            ],
            f"worker{i}.log",
        )
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=120)
    return address, procs


def timed(cmd: list[str]) -> float:
    started = time.monotonic()
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{cmd[4:]} exited with {done.returncode}: {done.stderr[-2000:]}")
    return time.monotonic() - started


def shard_overhead(address: str, out: Path, rounds: int) -> float:
    """Seconds per empty shard, submitted and collected one at a time."""
    from distributed import Client

    from streamer.distributed import _task
    from streamer.transfer.shard import ShardTask

    with Client(address, timeout=60) as client:
        client.submit(_task, ShardTask(0, (), str(out)), pure=False).result()  # warm up
        started = time.monotonic()
        for k in range(rounds):
            client.submit(_task, ShardTask(k, (), str(out)), pure=False).result()
        return (time.monotonic() - started) / rounds


@contextmanager
def serving(work: Path, www: Path) -> Iterator[str]:
    """nginx as bench_bulk.py runs it, but caching at most 10,000 open files: 20,000 cached
    descriptors and the connections pass this machine's 20,000-descriptor limit (nginx then
    answers 500)."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not nginx:
        sys.exit("nginx not found (apt-get install nginx-light)")
    prefix = work / "nginx"
    prefix.mkdir()
    port = _free_port()
    conf = nginx_conf(prefix, www, port).replace(
        "open_file_cache max=20000", "open_file_cache max=10000"
    )
    (prefix / "nginx.conf").write_text(conf)
    with (work / "nginx.log").open("wb") as log:
        proc = subprocess.Popen(
            fill(NGINX, nginx=nginx, prefix=prefix), stdout=log, stderr=log, start_new_session=True
        )
    try:
        _wait_ready(proc, port, "/f000000.bin")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=20_000)
    p.add_argument("--size", type=int, default=16 << 10)
    p.add_argument("--jobs", type=int, default=16)
    p.add_argument("--rounds", type=int, default=50, help="empty shards for the overhead")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        work = Path(tmp)
        www = work / "www"
        www.mkdir()
        digests = make_files(www, args.files, args.size)
        with serving(work, www) as base:
            (work / "list.txt").write_text("".join(f"{base}/{n}\n" for n in digests))
            address, procs = start_cluster(work)
            try:
                run(args, work, address, digests)
            finally:
                for proc in procs:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def run(args: argparse.Namespace, work: Path, address: str, digests: dict[str, str]) -> None:
    common = [
        sys.executable,
        "-m",
        "streamer",
        "get",
        "-i",
        str(work / "list.txt"),
        "--no-progress",
        "-j",
        str(args.jobs),
        "--max-per-host",
        str(args.jobs),
    ]
    plain_out, dask_out = work / "plain", work / "dask"
    plain_out.mkdir()
    dask_out.mkdir()
    plain = timed([*common, "-d", str(plain_out)])
    check(plain_out, digests)
    subprocess.run(["sync"], check=True)
    on_dask = timed([*common, "-d", str(dask_out), "--dask", address])
    check(dask_out, digests)
    per_shard = shard_overhead(address, work / "empty", args.rounds) if args.rounds else 0.0
    mib = args.files * args.size / (1 << 20)
    print(
        banner(f"{args.files} x {args.size // 1024} KiB ({mib:.0f} MiB), -j {args.jobs}, one run:")
    )
    print(f"  plain get -i          {plain:7.2f} s  {args.files / plain:7.0f} files/s")
    print(
        f"  --dask, 2 workers     {on_dask:7.2f} s  {args.files / on_dask:7.0f} files/s"
        f"  ({on_dask / plain:.2f}x the plain wall)"
    )
    print(f"  empty shard round trip {per_shard * 1000:6.1f} ms (scheduler + worker overhead)")


if __name__ == "__main__":
    main()
