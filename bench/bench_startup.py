#!/usr/bin/env python3
"""Start-up benchmark: how long tiny streamer commands take, against the earlier code (--prev).

A small file is served by the built-in server (`streamer serve`, tus at /files/) on 127.0.0.1;
each case is one short command: `streamer --version` (the console script), `get --help`, a
16 KiB `get`, a `put` and a `put --tus` of the same size, with `python -c pass` and `curl` as
the floors. Cases and code versions alternate within each round. Wall, CPU (user+sys) and peak
RSS per command; ratios of medians. See bench/README.md.

    python bench/bench_startup.py --runs 20 --prev /tmp/streamer_before
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
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
from _loopback import _free_port, wait_quiet
from bench_download import fill, measure, stop

# Case: command template. `python -P`: the cwd never shadows the streamer measured;
# {cli} the console script next to the interpreter. Each streamer case also runs on --prev.
CASES = {
    "python": "{python} -P -c pass",
    "version": "{cli} --version",
    "help": "{python} -P -m streamer get --help",
    "get": "{python} -P -m streamer get {url}/small.bin -o {out} -q --no-progress",
    "put": "{python} -P -m streamer put {src} {url}/up/ -q --no-progress",
    "put-tus": "{python} -P -m streamer put --tus {src} {url}/files/ -q --no-progress",
    "curl-get": "curl -s -o {out} {url}/small.bin",
}
FLOORS = ("python", "curl-get")  # not streamer: run once per round, no --prev row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20, help="rounds (20)")
    p.add_argument("--size", type=int, default=16 << 10, help="bytes of the file (16384)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma list ({','.join(CASES)})")
    p.add_argument("--python", default=sys.executable, help="interpreter for streamer")
    p.add_argument("--json", type=Path, help="write all runs and the summary here")
    p.add_argument("--keep-dir", type=Path, help="work in DIR and keep it")
    p.add_argument("--no-wait", action="store_true", help="do not wait for other benchmarks")
    add_prev_option(p)  # adds a CASE-prev row for every streamer case
    return p.parse_args(argv)


def template(case: str, python: str) -> str:
    """CASES[case] with {cli} as the `streamer` script installed beside `python`, else as
    `python -P -m streamer`."""
    script = Path(python).parent / "streamer"
    cli = str(script) if script.exists() else "{python} -P -m streamer"
    return CASES[case].replace("{cli}", cli)


def rows(args: argparse.Namespace) -> list[tuple[str, str, dict[str, str]]]:
    """(row name, case, extra environment) in the order of one round."""
    out = []
    for case in filter(None, (c.strip() for c in args.cases.split(","))):
        if case not in CASES:
            sys.exit(f"unknown case {case!r}; choose from {', '.join(CASES)}")
        out.append((case, case, {}))
        if args.prev_path and case not in FLOORS:
            out.append((f"{case}-prev", case, {"PYTHONPATH": args.prev_path}))
    return out


def one_run(row: tuple[str, str, dict[str, str]], rnd: int, args: argparse.Namespace) -> Run:
    name, case, env = row
    work: Path = args.work
    python = args.python
    values = dict(python=python, url=args.url, out=work / "out.bin", src=work / "src.bin")
    cmd = fill(template(case, python), **values)
    if env:
        cmd = ["env", *(f"{k}={v}" for k, v in env.items()), *cmd]
    status, wall, cpu, rss = measure(cmd, 60.0, work / "rss.txt")
    (work / "out.bin").unlink(missing_ok=True)
    return Run(name, rnd, status == 0, wall, cpu, rss, f"exit status {status}" if status else "")


def run_all(args: argparse.Namespace) -> list[Run]:
    order, runs = rows(args), list[Run]()
    for rnd in range(args.runs):
        if not args.no_wait:
            wait_quiet()
        for row in order if rnd % 2 == 0 else reversed(order):
            runs.append(run := one_run(row, rnd, args))
            note = "" if run.ok else f"  FAILED: {run.error}"
            line = f"{1000 * run.wall_s:7.1f} ms  cpu {1000 * run.cpu_s:6.1f} ms"
            print(f"round {rnd + 1} {run.tool:14}{line}{note}", file=sys.stderr)
    return runs


def summarize(runs: list[Run]) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r.tool for r in runs):
        good = [r for r in runs if r.tool == name and r.ok]
        row: dict[str, float] = {"runs": len(good)}
        row["failed"] = sum(r.tool == name for r in runs) - len(good)
        if good:
            walls = [1000 * r.wall_s for r in good]
            row |= dict(wall_ms=med(walls), wall_min_ms=min(walls), wall_max_ms=max(walls))
            row |= dict(cpu_ms=med([1000 * r.cpu_s for r in good]))
            row |= dict(peak_rss_mib=max(r.rss_mib for r in good))
        summary[name] = row
    return summary


# fmt: off
COLUMNS = (
    ("runs", "runs", ".0f"), ("failed", "fail", ".0f"), ("wall_ms", "wall med ms", ".1f"),
    ("wall_min_ms", "min", ".1f"), ("wall_max_ms", "max", ".1f"), ("cpu_ms", "cpu med ms", ".1f"),
    ("peak_rss_mib", "RSS MiB", ".1f"),
)
# fmt: on


def serve(args: argparse.Namespace, www: Path) -> subprocess.Popen[bytes]:
    """`streamer serve` (this checkout's) on a free port; sets args.url once it answers."""
    port = _free_port()
    cmd = [args.python, "-P", "-m", "streamer", "serve", str(www), "--port", str(port)]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, start_new_session=True)
    args.url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        probe = ["curl", "-sf", "-o", os.devnull, f"{args.url}/small.bin"]
        if subprocess.run(probe, check=False).returncode == 0:
            return proc
        time.sleep(0.05)
    stop(proc)
    sys.exit("streamer serve did not answer within 10 s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with work_dir(args.keep_dir, "bench-startup-") as work:
        args.work = work
        www = work / "www"
        (www / "up").mkdir(parents=True, exist_ok=True)
        (www / "small.bin").write_bytes(os.urandom(args.size))
        (work / "src.bin").write_bytes(os.urandom(args.size))
        os.environ["XDG_STATE_HOME"] = str(work / "state")  # put --tus remembers uploads there
        args.prev_path = prepare_prev(args.prev, args.python, work) if args.prev else None
        server = serve(args, www)
        try:
            runs = run_all(args)
        finally:
            stop(server)
    summary = summarize(runs)
    pairs = [(f"{c}", f"{c}-prev") for c in CASES if c not in FLOORS]
    pairs += [("get", "curl-get"), ("get-prev", "curl-get")]
    rel = {k: ratio_lines(summary, k, pairs) for k in ("wall_ms", "cpu_ms")}
    print(banner(f"tiny commands, {args.size} B files, {args.runs} rounds"))
    print_rows(summary, COLUMNS)
    print_ratios(rel["wall_ms"], "wall (median)")
    print_ratios(rel["cpu_ms"], "cpu (median)")
    if args.json:
        report = {"summary": summary, "ratios": rel, "runs": [asdict(r) for r in runs]}
        write_report(args.json, args, report)
    return 0 if runs and all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
