#!/usr/bin/env python3
"""tus benchmark: `streamer put --tus` against one `curl -X PATCH` and tuspy, to @tus/server.

One file to the real tus server (tests/peers/tus_server.mjs, installed by .ci/setup) on
loopback: wall time, CPU s and peak RSS of each tool, the stored file checked by SHA-256.
curl gets the upload created first (not timed) and then sends the same bytes in one PATCH;
tuspy (``pip install tuspy``, not a test dependency) uses 64 MiB chunks. Then a streamer
upload through a counting relay is killed (SIGKILL) at 40 % and run again: the bytes the server
received over both runs, against the file size. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Run,
    add_prev_option,
    banner,
    med,
    prepare_prev,
    print_ratios,
    print_rows,
    ratio_lines,
    work_dir,
    write_report,
)
from bench_download import MiB, make_payload, measure, parse_size

ROOT = Path(__file__).resolve().parent.parent
MODULES = ROOT / ".peers" / "tus" / "node_modules"
LAUNCHER = ROOT / "tests" / "peers" / "tus_server.mjs"
TUSPY = (
    "import sys; from tusclient import client; "
    "client.TusClient(sys.argv[1]).uploader(sys.argv[2], chunk_size=64 << 20, "
    "metadata={'filename': 'payload.bin'}).upload()"
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=parse_size, default=1 << 30)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--python", default=sys.executable, help="the Python that has streamer")
    p.add_argument("--tools", default="streamer,curl,tuspy")
    p.add_argument("--kill-at", type=float, default=0.4, help="fraction sent before SIGKILL")
    p.add_argument("--keep-dir", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--timeout", type=float, default=300.0)
    add_prev_option(p)  # adds the streamer-prev row
    return p.parse_args(argv)


@contextmanager
def tus_server(store: Path) -> Iterator[str]:
    """The launcher on a free port; yields its creation endpoint; killed by pid."""
    store.mkdir(parents=True, exist_ok=True)
    cmd = ["node", str(LAUNCHER), str(MODULES), str(store), "0", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline().decode() if ready else ""
        if not line.startswith("listening "):
            raise SystemExit(f"the tus launcher did not start: {line!r}")
        yield f"http://127.0.0.1:{line.split()[1]}/files"
    finally:
        proc.kill()
        proc.wait()


class Relay:
    """A threaded TCP relay to `port` that counts the bytes clients send to the server."""

    def __init__(self, port: int) -> None:
        self.port, self.count = port, 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.endpoint_port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.port))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
                if counted:
                    with self._lock:
                        self.count += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def close(self) -> None:
        self._sock.close()


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def curl_create(endpoint: str, size: int) -> str:
    """POST the creation request with curl; the upload URL from its Location."""
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-X",
            "POST",
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            f"Upload-Length: {size}",
            endpoint,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return next(
        line.split(" ", 1)[1].strip()
        for line in out.splitlines()
        if line.lower().startswith("location:")
    )


def one_run(tool: str, args: argparse.Namespace, src: Path, endpoint: str, work: Path) -> Run:
    store = work / "store"
    before = set(store.iterdir())
    if tool.startswith("streamer"):  # -P: the cwd never shadows the streamer measured
        cmd = [args.python, "-P", "-m", "streamer", "put", "--tus", str(src), endpoint, "-q"]
        if tool == "streamer-prev":
            cmd = ["env", f"PYTHONPATH={args.prev_path}", *cmd]
    elif tool == "curl":
        url = curl_create(endpoint, src.stat().st_size)
        cmd = [
            "curl",
            "-s",
            "-T",
            str(src),
            "-X",
            "PATCH",
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            "Upload-Offset: 0",
            "-H",
            "Content-Type: application/offset+octet-stream",
            url,
        ]
    else:
        cmd = [args.python, "-c", TUSPY, endpoint, str(src)]
    status, wall, cpu, rss = measure(cmd, args.timeout, work / "rss.txt")
    new = [p for p in set(store.iterdir()) - before if p.suffix != ".json"]
    error = "" if status == 0 else f"exit {status}"
    if not error and (len(new) != 1 or sha256(new[0]) != args.digest):
        error = "stored file differs"
    for p in new:
        p.unlink()
        p.with_name(p.name + ".json").unlink(missing_ok=True)
    return Run(tool, args.round, not error, wall, cpu, rss, error)


def killed_and_rerun(
    args: argparse.Namespace, src: Path, endpoint: str, work: Path
) -> dict[str, float]:
    """SIGKILL a streamer upload at `kill_at` of the file, run it again; server-side bytes."""
    port = int(endpoint.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    relay = Relay(port)
    via = f"http://127.0.0.1:{relay.endpoint_port}/files"
    size = src.stat().st_size
    env = {**os.environ, "XDG_STATE_HOME": str(work / "state-kill")}
    cmd = [args.python, "-P", "-m", "streamer", "put", "--tus", str(src), via, "-q"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    while relay.count < args.kill_at * size and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = relay.count
    time.sleep(1.0)  # the server finishes the broken PATCH
    t0 = time.perf_counter()
    rerun = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    relay.close()
    return {
        "rc": rerun.returncode,
        "at_kill": at_kill,
        "server_bytes": relay.count,
        "ratio": relay.count / size,
        "rerun_wall_s": wall,
        "rerun": rerun.stdout.strip(),
    }


def run_rounds(
    tools: list[str], args: argparse.Namespace, src: Path, endpoint: str, work: Path
) -> list[Run]:
    """`runs` rounds against one server; odd rounds in reverse order (no tool always first)."""
    runs: list[Run] = []
    for rnd in range(args.runs):
        for tool in tools if rnd % 2 == 0 else reversed(tools):
            args.round = rnd
            run = one_run(tool, args, src, endpoint, work)
            print(
                f"round {rnd + 1} {tool:14} {run.wall_s:6.2f} s  cpu {run.cpu_s:5.2f} s"
                f"  rss {run.rss_mib:6.1f} MiB {run.error}",
                file=sys.stderr,
            )
            runs.append(run)
    return runs


def summarize(runs: list[Run], tools: list[str]) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for tool in tools:
        good = [r for r in runs if r.tool == tool and r.ok]
        rows[tool] = {"runs": len(good), "failed": sum(r.tool == tool for r in runs) - len(good)}
        if good:
            walls = [r.wall_s for r in good]
            rows[tool] |= {
                "wall": med(walls),
                "wall_min": min(walls),
                "wall_max": max(walls),
                "cpu": med([r.cpu_s for r in good]),
                "rss": max(r.rss_mib for r in good),
            }
    return rows


# fmt: off
COLUMNS = (
    ("runs", "runs", ".0f"), ("failed", "fail", ".0f"), ("wall", "wall med s", ".2f"),
    ("wall_min", "min", ".2f"), ("wall_max", "max", ".2f"), ("cpu", "cpu med s", ".2f"),
    ("rss", "RSS MiB", ".1f"),
)
# fmt: on


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools = [t for t in args.tools.split(",") if t]
    if "curl" in tools and shutil.which("curl") is None:
        tools.remove("curl")
    if args.prev and "streamer-prev" not in tools:
        tools.append("streamer-prev")
    if "streamer-prev" in tools and not args.prev:
        sys.exit("streamer-prev needs --prev DIR (the earlier code to compare)")
    with work_dir(args.keep_dir, "bench-tus-") as work:
        os.environ["XDG_STATE_HOME"] = str(work / "state")  # streamer's remembered uploads
        src = work / "payload.bin"
        args.digest = make_payload(src, args.size)
        args.prev_path = prepare_prev(args.prev, args.python, work) if args.prev else None
        with tus_server(work / "store") as endpoint:
            runs = run_rounds(tools, args, src, endpoint, work)
            kill = killed_and_rerun(args, src, endpoint, work)
    rows = summarize(runs, tools)
    mine = [t for t in tools if t.startswith("streamer")]
    pairs = [(s, p) for s in mine for p in tools if p not in mine] + [("streamer", "streamer-prev")]
    rel = {k: ratio_lines(rows, k, pairs) for k in ("wall", "cpu")}
    print(banner(f"{args.size / MiB:.0f} MiB to @tus/server on 127.0.0.1, {args.runs} runs/tool"))
    print_rows(rows, COLUMNS)
    print_ratios(rel["wall"], "wall (median)")
    print_ratios(rel["cpu"], "cpu (median)")
    print(
        f"killed at {kill['at_kill'] / MiB:.0f} MiB and rerun: server received "
        f"{kill['ratio']:.3f}x the file (rerun rc {kill['rc']}: {kill['rerun']})"
    )
    if args.json is not None:
        sections = {"runs": [asdict(r) for r in runs], "summary": rows, "ratios": rel}
        write_report(args.json, args, sections | {"kill": kill})
    return 0 if runs and all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
