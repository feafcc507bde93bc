#!/usr/bin/env python3
"""S3 upload benchmark: streamer put s3:// against boto3 `upload_file` (and `aws s3 cp` when
installed), 1 GiB to a real SeaweedFS on loopback; then a run killed at 40 % and resumed,
counting every request byte with a relay.

boto3 runs with 64 MiB x 4 parts and AWS_REQUEST_CHECKSUM_CALCULATION=when_required (its
default per-part CRC32 halves its throughput here). boto3/awscli are not streamer's
dependencies: give the Python that has them with --boto-python (a separate venv is best, as
awscli pins its own botocore). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.seaweed

from _common import work_dir, write_report
from bench_download import MiB, ensure_payload, measure

from tests.seaweed import ACCESS_KEY, SECRET_KEY, Relay, Seaweed, running_seaweed

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "bench"
BOTO = """
import sys, boto3
from boto3.s3.transfer import TransferConfig
cfg = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20,
                     max_concurrency=4, use_threads=True)
boto3.client("s3", endpoint_url=sys.argv[1]).upload_file(sys.argv[2], "bench", sys.argv[3],
                                                        Config=cfg)
"""


def commands(args: argparse.Namespace, endpoint: str, payload: Path) -> dict[str, list[str]]:
    out = {
        "streamer": [
            sys.executable,
            "-m",
            "streamer",
            "put",
            str(payload),
            f"s3://{BUCKET}/streamer.bin",
            "--endpoint-url",
            endpoint,
            "-q",
            *args.streamer_args.split(),
        ],
    }
    if args.boto_python:
        out["boto3"] = [args.boto_python, "-c", BOTO, endpoint, str(payload), "boto3.bin"]
        aws = Path(args.boto_python).parent / "aws"
        if aws.exists():
            out["aws s3 cp"] = [
                str(aws),
                "s3",
                "cp",
                str(payload),
                f"s3://{BUCKET}/aws.bin",
                "--endpoint-url",
                endpoint,
                "--only-show-errors",
            ]
    return out


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, its waited-for children included) of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime (proc(5))
    return ticks / os.sysconf("SC_CLK_TCK")


def timed_runs(args: argparse.Namespace, server: Seaweed, payload: Path, work: Path) -> list[Any]:
    """Each tool in turn, `rounds` times: its wall, CPU and peak RSS, and the CPU the server
    spent meanwhile (the server's share shows whether the client or the server is the limit).

    One untimed upload first: a fresh server grows its volumes on the first gigabyte, a cost
    that would fall on whichever tool came first. Each round starts with the next tool, so no
    tool always follows the same one."""
    rows = []
    cmds = commands(args, server.endpoint, payload)
    assert server.proc is not None
    measure(cmds["streamer"], 600, work / "rss.txt")
    order = list(cmds.items())
    for rnd in range(args.rounds):
        for tool, cmd in order[rnd % len(order) :] + order[: rnd % len(order)]:
            before = process_cpu(server.proc.pid)
            rc, wall, cpu, rss = measure(cmd, 600, work / "rss.txt")
            rows.append(
                {
                    "tool": tool,
                    "round": rnd,
                    "rc": rc,
                    "wall_s": round(wall, 3),
                    "cpu_s": round(cpu, 3),
                    "server_cpu_s": round(process_cpu(server.proc.pid) - before, 3),
                    "rss_mib": round(rss, 1),
                }
            )
            print(rows[-1], file=sys.stderr)
    return rows


class RelayThread:
    """The byte-counting relay of tests/seaweed.py on its own event loop in a thread."""

    def __init__(self, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.relay = Relay(port)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self.relay.start(), self.loop).result()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.relay.stop(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


def kill_and_resume(seaweed_port: int, payload: Path, size: int) -> dict[str, Any]:
    """Kill -9 at 40 % of the bytes through the relay, rerun, and count all bytes sent."""
    relay = RelayThread(seaweed_port)
    endpoint = f"http://127.0.0.1:{relay.port}"
    cmd = [
        sys.executable,
        "-m",
        "streamer",
        "put",
        str(payload),
        f"s3://{BUCKET}/resume.bin",
        "--endpoint-url",
        endpoint,
        "-q",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while relay.relay.sent < 0.4 * size and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    at_kill = relay.relay.sent
    while relay.relay.active and time.monotonic() < deadline:
        time.sleep(0.01)  # what the relay still holds reaches the server, and is counted
    first = relay.relay.sent
    t0 = time.perf_counter()
    rc = subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    total = relay.relay.sent
    relay.stop()
    return {
        "bytes_at_kill": at_kill,
        "bytes_first_run": first,
        "bytes_rerun": total - first,
        "bytes_total": total,
        "ratio_total": round(total / size, 4),
        "rerun_rc": rc.returncode,
        "rerun_wall_s": round(wall, 3),
        "rerun_json": rc.stdout.strip()[:300],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=1024, help="MiB (default 1024)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--boto-python", help="a Python with boto3 (and awscli's `aws` beside it)")
    p.add_argument("--keep", type=Path, help="work directory to keep")
    p.add_argument("--streamer-args", default="", help="extra options, e.g. '-j 8 --part-size 8M'")
    p.add_argument("--no-kill-test", action="store_true", help="skip the kill-at-40 % run")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "s3.json")
    args = p.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REQUEST_CHECKSUM_CALCULATION="when_required",
        AWS_RESPONSE_CHECKSUM_VALIDATION="when_required",
    )
    size = args.size * MiB
    with work_dir(args.keep, "bench-s3-") as work:
        www = work / "www"
        www.mkdir(exist_ok=True)
        ensure_payload(www, size)
        payload = next(www.iterdir())
        os.environ["XDG_STATE_HOME"] = str(work / "state")
        with running_seaweed(work / "seaweed") as server:
            assert server.request("PUT", f"/{BUCKET}") == 200
            rows = timed_runs(args, server, payload, work)
            resume = {}
            if not args.no_kill_test:
                resume = kill_and_resume(int(server.endpoint.rsplit(":", 1)[1]), payload, size)
        shutil.rmtree(work / "seaweed", ignore_errors=True)
    print(resume, file=sys.stderr)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_report(args.json, args, {"runs": rows, "kill_at_40_and_resume": resume})
    summary(rows)


def summary(rows: list[dict[str, Any]]) -> None:
    tools = sorted({r["tool"] for r in rows})
    for tool in tools:
        ok = [r for r in rows if r["tool"] == tool and r["rc"] == 0]
        rss = max((r["rss_mib"] for r in rows if r["tool"] == tool), default=0)
        wall, cpu, server = (
            _median([r[k] for r in ok]) for k in ("wall_s", "cpu_s", "server_cpu_s")
        )
        print(
            f"{tool:10} median wall {wall:7.2f} s  CPU {cpu:5.2f} s  server CPU {server:5.2f} s"
            f"  peak RSS {rss:6.1f} MiB  ok {len(ok)}"
        )


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2] if values else float("nan")


if __name__ == "__main__":
    main()
