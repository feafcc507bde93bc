#!/usr/bin/env python3
"""Download benchmark: streamer against curl, wget and aria2c, over loopback, same disk.

Serves a real (non-sparse) payload with nginx or `streamer serve` and downloads it with
each tool in alternating order: wall time, CPU s (user+sys), peak RSS. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    GNU_TIME,
    Run,
    add_prev_option,
    banner,
    prepare_prev,
    print_ratios,
    print_rows,
    ratio_lines,
    work_dir,
    write_report,
)

MiB = 1 << 20
GiB = 1 << 30
PAYLOAD = "payload.bin"
UNITS = {"": 1, "k": 1 << 10, "m": MiB, "g": GiB, "t": 1 << 40}
# -P: `-m` would put the cwd first on sys.path, so that a run from a checkout's root measured
# that checkout in every streamer row, whatever --python or PYTHONPATH said.
TOOLS = {
    "streamer": "{python} -P -m streamer get {url} -o {out} --no-progress -q",
    "curl": "curl -s -o {out} {url}",
    # Durable against durable: streamer fsyncs before its rename; curl does not sync at all.
    "curl+sync": 'sh -c \'curl -s -o "$0" "$1" && sync "$0"\' {out} {url}',
    # Direct writes (O_DIRECT from aligned buffers, storage/direct.py), opt-in.
    "streamer-direct": (
        "env STREAMER_DIRECT_IO=1 {python} -P -m streamer get {url} -o {out} --no-progress -q"
    ),
    # The same streamer command on the earlier code of --prev (a compiled copy, see _common).
    "streamer-prev": (
        "env PYTHONPATH={prev} {python} -P -m streamer get {url} -o {out} --no-progress -q"
    ),
    "wget": "wget -q -O {out} {url}",
    "aria2c": "aria2c -q -x1 -s1 --file-allocation=none -d {dir} -o {name} {url}",
}
BUILTIN = "{python} -m streamer serve {www} --host 127.0.0.1 --port {port}"
NGINX = "{nginx} -p {prefix} -e {prefix}/error.log -c {prefix}/nginx.conf"


@dataclass
class Bench:
    args: argparse.Namespace
    url: str
    out_dir: Path
    digest: str


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size: {text!r} (try 2GiB, 512M, 1048576)")
    return int(float(m.group(1)) * UNITS[m.group(2)])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=parse_size, default=2 * GiB, help="payload size (2GiB)")
    p.add_argument("--runs", type=int, default=5, help="runs per tool (5)")
    p.add_argument("--server", choices=["nginx", "builtin"], default="nginx")
    p.add_argument(
        "--tools",
        default="streamer,curl,curl+sync,wget",
        help="comma list; also aria2c, streamer-direct, streamer-prev (added by --prev)",
    )
    p.add_argument("--keep-dir", type=Path, help="work in DIR and keep it (payload is reused)")
    p.add_argument("--json", type=Path, help="write all runs and the summary here")
    p.add_argument("--python", default=sys.executable, help="interpreter for streamer")
    add_prev_option(p)  # adds the streamer-prev row
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per run (120)")
    p.add_argument("--settle", type=float, default=2.0, help="pause after each run's sync (2)")
    p.add_argument("--budget", type=float, default=1800.0, help="start no run after this (s)")
    return p.parse_args(argv)


def make_payload(path: Path, size: int) -> str:
    """Write `size` bytes: one random MiB repeated, each copy stamped with its index."""
    block = bytearray(os.urandom(MiB))
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for i in range(0, size, MiB):
            block[:8] = (i // MiB).to_bytes(8, "little")
            piece = memoryview(block)[: min(MiB, size - i)]
            digest.update(piece)
            f.write(piece)
    return digest.hexdigest()


def ensure_payload(www: Path, size: int) -> str:
    """Reuse a payload of the right size (its hash is kept beside it), else write one."""
    path, stamp = www / PAYLOAD, www.parent / "payload.sha256"
    if path.exists() and path.stat().st_size == size and stamp.exists():
        return stamp.read_text().strip()
    t0 = time.perf_counter()
    digest = make_payload(path, size)
    stamp.write_text(digest + "\n")
    print(f"payload: {size / MiB:.0f} MiB in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return digest


def nginx_conf(work: Path, www: Path, port: int) -> str:
    ng = work / "nginx"
    user = "user root;\n" if os.geteuid() == 0 else ""  # else workers run as nobody
    temps = "".join(
        f"  {kind}_temp_path {ng / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"daemon off;\n{user}worker_processes 1;\npid {ng / 'nginx.pid'};\n"
        f"error_log {ng / 'error.log'} warn;\nevents {{ worker_connections 64; }}\n"
        f"http {{\n  access_log {ng / 'access.log'};\n{temps}"
        "  sendfile on;\n  tcp_nopush on;\n  default_type application/octet-stream;\n"
        f"  server {{ listen 127.0.0.1:{port}; root {www}; }}\n}}\n"
    )


def server_command(kind: str, work: Path, www: Path, port: int, python: str) -> list[str]:
    if kind == "builtin":
        return fill(BUILTIN, python=python, www=www, port=port)
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not nginx:
        sys.exit("nginx not found (apt-get install nginx-light), or use --server builtin")
    prefix = work / "nginx"
    prefix.mkdir(exist_ok=True)
    (prefix / "nginx.conf").write_text(nginx_conf(work, www, port))
    return fill(NGINX, nginx=nginx, prefix=prefix)


def wait_ready(proc: subprocess.Popen[bytes], port: int, size: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}; see its log in the work dir")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("HEAD", f"/{PAYLOAD}")
            resp = conn.getresponse()
            conn.close()
            if resp.status == 200 and resp.getheader("Content-Length") == str(size):
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("server did not answer within 20 s")


@contextmanager
def running_server(args: argparse.Namespace, work: Path, www: Path) -> Iterator[str]:
    with socket.socket() as sock:  # a free port; the tiny race is harmless here
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    cmd = server_command(args.server, work, www, port, args.python)
    with (work / f"{args.server}.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_ready(proc, port, args.size)
        yield f"http://127.0.0.1:{port}/{PAYLOAD}"
    finally:
        stop(proc)


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a process group that this script started (start_new_session=True)."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End the server and its workers: SIGTERM, then SIGKILL after 10 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        kill_group(proc.pid, sig)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(10)
            return


def fill(template: str, **values: object) -> list[str]:
    """Split first, then fill in: paths with spaces stay one argument (a quoted shell script,
    as in curl+sync, stays one argument too)."""
    return [word.format(**values) for word in shlex.split(template)]


def available(name: str, python: str, prev: str | None = None) -> str:
    """Empty string when the tool can run, else why it is skipped."""
    if name == "curl+sync":
        name = "curl"
    if name == "streamer-prev":
        return "" if prev else "give --prev DIR (a checkout's root whose streamer/ to compare)"
    if name not in ("streamer", "streamer-direct"):
        return "" if shutil.which(name) else f"{name} not found on PATH"
    cmd = [python, "-m", "streamer", "get", "--help"]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"streamer get unusable: {exc}"
    return "" if done.returncode == 0 else "`python -m streamer get` does not work yet"


def select_tools(args: argparse.Namespace) -> list[str]:
    chosen, names = [], [t.strip() for t in args.tools.split(",") if t.strip()]
    if args.prev and "streamer-prev" not in names:
        names.append("streamer-prev")
    for name in names:
        if name not in TOOLS:
            sys.exit(f"unknown tool {name!r}; choose from {', '.join(TOOLS)}")
        why = available(name, args.python, args.prev)
        if why:
            print(f"skipping {name}: {why}", file=sys.stderr)
        else:
            chosen.append(name)
    if not chosen:
        sys.exit("no tool to run")
    return chosen


def measure(
    cmd: list[str], timeout: float, rss_file: Path, cwd: Path | None = None
) -> tuple[int, float, float, float]:
    """Run cmd (in `cwd`); return (status, wall s, user+sys s, peak RSS MiB) of that child alone.

    Run from the output directory, not the checkout: ``python -m streamer`` puts the working
    directory first on sys.path, so from the repository's root streamer-prev would run the
    checkout's streamer instead of --prev's.

    ru_maxrss from wait4 is no good for RSS: Linux carries the peak RSS of the forking
    process (this Python) across exec, so curl would never show less than this script.
    A small forker (GNU time, ~2 MiB) gives the tool's own peak; wait4 gives the CPU.
    """
    if GNU_TIME:
        cmd = [GNU_TIME, "-f", "%M", "-o", str(rss_file), *cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True, cwd=cwd
    )
    timer = threading.Timer(timeout, kill_group, (proc.pid,))
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # Ctrl-C: the tool is in its own session, so end it here
        kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        timer.cancel()
    wall = time.perf_counter() - t0
    kill_group(proc.pid)  # anything the tool left running
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss_kib = usage.ru_maxrss  # Linux: KiB
    if GNU_TIME and rss_file.exists() and (lines := rss_file.read_text().split()):
        rss_kib = int(lines[-1]) if lines[-1].isdigit() else rss_kib
    return proc.returncode, wall, usage.ru_utime + usage.ru_stime, rss_kib / 1024


def clear(out_dir: Path) -> None:
    for entry in out_dir.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    os.sync()


def check_output(out: Path, size: int, digest: str | None) -> str:
    if not out.exists():
        return "no output file"
    if (got := out.stat().st_size) != size:
        return f"size {got} != {size}"
    if digest is not None:
        with out.open("rb") as f:
            return "" if hashlib.file_digest(f, "sha256").hexdigest() == digest else "bad sha256"
    return ""


def one_run(name: str, rnd: int, b: Bench) -> Run:
    """One timed download; round 0 also checks the sha256 of what each tool wrote."""
    out = b.out_dir / f"{name}.out"
    cmd = fill(
        TOOLS[name],
        python=b.args.python,
        url=b.url,
        out=out,
        dir=b.out_dir,
        name=out.name,
        prev=b.args.prev_path,
    )
    status, wall, cpu, rss = measure(cmd, b.args.timeout, b.out_dir.parent / "rss.txt", b.out_dir)
    want = b.digest if rnd == 0 else None
    if status:
        error = "timed out" if wall >= b.args.timeout else f"exit status {status}"
    else:
        error = check_output(out, b.args.size, want)
    clear(b.out_dir)
    time.sleep(b.args.settle)
    return Run(name, rnd, not error, wall, cpu, rss, error)


def run_all(tools: list[str], b: Bench) -> list[Run]:
    """`runs` rounds; odd rounds go in reverse order so no tool always runs first."""
    args = b.args
    deadline, runs = time.monotonic() + args.budget, list[Run]()
    for rnd in range(args.runs):
        order = list(tools) if rnd % 2 == 0 else list(reversed(tools))
        for name in order:
            if time.monotonic() > deadline:
                print("budget spent; stopping early", file=sys.stderr)
                return runs
            run = one_run(name, rnd, b)
            note = "" if run.ok else f"  FAILED: {run.error}"
            line = f"{run.wall_s:7.2f} s  cpu {run.cpu_s:6.2f} s  rss {run.rss_mib:6.1f} MiB"
            print(f"round {rnd + 1} {name:9}{line}{note}", file=sys.stderr)
            runs.append(run)
    return runs


def tool_summary(good: list[Run], size: int) -> dict[str, float]:
    walls = [r.wall_s for r in good]
    wall, cpu = statistics.median(walls), statistics.median(r.cpu_s for r in good)
    return dict(
        wall_median_s=wall,
        wall_min_s=min(walls),
        wall_max_s=max(walls),
        mib_per_s=size / MiB / wall,
        cpu_median_s=cpu,
        cpu_s_per_gib=cpu / (size / GiB),
        peak_rss_mib=max(r.rss_mib for r in good),
    )


def summarize(runs: list[Run], size: int) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r.tool for r in runs):
        good = [r for r in runs if r.tool == name and r.ok]
        row: dict[str, float] = {"runs": len(good), "failed": sum(r.tool == name for r in runs)}
        row["failed"] -= len(good)
        summary[name] = row | (tool_summary(good, size) if good else {})
    base = summary.get("curl", {}).get("wall_median_s")
    for row in summary.values():
        if base and "wall_median_s" in row:
            row["vs_curl"] = row["wall_median_s"] / base
    return summary


def ratios(summary: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Each streamer row's wall against curl as it is, against `curl && sync FILE` (durable
    against durable: streamer fsyncs before its rename) and against the earlier code; CPU
    against curl's."""
    rows = [n for n in summary if n.startswith("streamer")]
    pairs = [(n, peer) for n in rows for peer in ("curl", "curl+sync", "wget", "aria2c")]
    pairs += [("streamer", "streamer-prev"), ("streamer-direct", "streamer")]
    return {
        "wall": ratio_lines(summary, "wall_median_s", pairs),
        "cpu": ratio_lines(summary, "cpu_median_s", pairs),
    }


# fmt: off
COLUMNS = (  # summary key, column title, number format
    ("runs", "runs", ".0f"), ("failed", "fail", ".0f"), ("wall_median_s", "wall med s", ".2f"),
    ("wall_min_s", "min", ".2f"), ("wall_max_s", "max", ".2f"), ("mib_per_s", "MiB/s", ".0f"),
    ("cpu_median_s", "cpu med s", ".2f"), ("cpu_s_per_gib", "cpu s/GiB", ".2f"),
    ("peak_rss_mib", "RSS MiB", ".1f"), ("vs_curl", "wall/curl", ".2f"),
)
# fmt: on


def print_table(summary: dict[str, dict[str, float]]) -> None:
    print_rows(summary, COLUMNS)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools = select_tools(args)
    with work_dir(args.keep_dir, "bench-dl-") as work:
        www, out_dir = work / "www", work / "out"
        www.mkdir(exist_ok=True)
        out_dir.mkdir(exist_ok=True)
        clear(out_dir)
        digest = ensure_payload(www, args.size)
        args.prev_path = prepare_prev(args.prev, args.python, work) if args.prev else None
        with running_server(args, work, www) as url:
            runs = run_all(tools, Bench(args, url, out_dir, digest))
    summary = summarize(runs, args.size)
    rel = ratios(summary)
    print(
        banner(f"{args.size / MiB:.0f} MiB from {args.server} on 127.0.0.1, {args.runs} runs/tool")
    )
    print_table(summary)
    print_ratios(rel["wall"], "wall (median)")
    print_ratios(rel["cpu"], "cpu (median)")
    if args.json:
        runs_ = [asdict(r) for r in runs]
        write_report(args.json, args, {"summary": summary, "ratios": rel, "runs": runs_})
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
