#!/usr/bin/env python3
"""Split benchmark: one file over N connections (streamer --split, aria2c -x/-s) against one
stream, from nginx with a per-connection rate limit (limit_rate), over loopback.

With every connection held to `--rate`, one stream takes size/rate seconds and N connections
ideally size/(N x rate): the speed-up shows how well the segments run in parallel. Helpers come
from bench_download.py. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
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
    write_report,
)
from _loopback import running_nginx, wait_quiet
from bench_download import (
    PAYLOAD,
    MiB,
    check_output,
    clear,
    ensure_payload,
    fill,
    measure,
    parse_size,
)

SPLIT = "{python} -P -m streamer get {url} -o {out} --split {n} --no-progress -q"
TOOLS = {
    "streamer-split": SPLIT,
    "streamer-1": "{python} -P -m streamer get {url} -o {out} --no-progress -q",
    # --prev: the same --split on the earlier code (a compiled copy, see _common.prepare_prev).
    "streamer-split-prev": "env PYTHONPATH={prev} " + SPLIT,
    "aria2c-split": (
        "aria2c -q -x{n} -s{n} -k1M --file-allocation=none --console-log-level=error"
        " --auto-file-renaming=false --allow-overwrite=true -d {dir} -o {name} {url}"
    ),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=parse_size, default=256 * MiB, help="payload size (256MiB)")
    p.add_argument("--rate", default="20m", help="nginx limit_rate per connection (20m)")
    p.add_argument("--split", type=int, default=8, help="connections for the split tools (8)")
    p.add_argument("--runs", type=int, default=3, help="runs per tool (3)")
    p.add_argument("--tools", default=",".join(TOOLS), help=f"comma list ({','.join(TOOLS)})")
    p.add_argument("--json", type=Path, help="write all runs and the summary here")
    p.add_argument("--python", default=sys.executable, help="interpreter for streamer")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per run (120)")
    p.add_argument("--settle", type=float, default=1.0, help="pause after each run's sync (1)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for other benchmarks")
    add_prev_option(p)  # adds the streamer-split-prev row
    return p.parse_args(argv)


def one_run(name: str, rnd: int, args: argparse.Namespace, target: tuple[str, Path, str]) -> Run:
    """One timed download of `target` (url, output dir, sha256; checked in round 0)."""
    url, out_dir, digest = target
    out = out_dir / f"{name}.out"
    values = dict(python=args.python, url=url, out=out, dir=out_dir, name=out.name)
    cmd = fill(TOOLS[name], **values, n=args.split, prev=args.prev_path)
    if not args.no_wait:
        wait_quiet()
    status, wall, cpu, rss = measure(cmd, args.timeout, out_dir.parent / "rss.txt", out_dir)
    if status:
        error = "timed out" if wall >= args.timeout else f"exit status {status}"
    else:
        error = check_output(out, args.size, digest if rnd == 0 else None)
    clear(out_dir)
    time.sleep(args.settle)
    return Run(name, rnd, not error, wall, cpu, rss, error)


def summarize(runs: list[Run], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r.tool for r in runs):
        good = [r for r in runs if r.tool == name and r.ok]
        row: dict[str, float] = {"runs": len(good), "failed": sum(r.tool == name for r in runs)}
        row["failed"] -= len(good)
        if good:
            wall = med([r.wall_s for r in good])
            row |= dict(
                wall_median_s=wall,
                wall_min_s=min(r.wall_s for r in good),
                wall_max_s=max(r.wall_s for r in good),
                mib_per_s=args.size / MiB / wall,
                cpu_median_s=med([r.cpu_s for r in good]),
                peak_rss_mib=max(r.rss_mib for r in good),
            )
        summary[name] = row
    return summary


def ratios(summary: dict[str, dict[str, float]]) -> dict[str, float]:
    """Median walls: the speed-up over one stream, and --split against aria2c and the earlier
    code (below 1.00x: streamer is faster)."""
    speed_up = "speed-up split/1 stream (streamer-1 wall / streamer-split wall)"
    one = ratio_lines(summary, "wall_median_s", [("streamer-1", "streamer-split")])
    out = {speed_up: one["streamer-1 / streamer-split"]} if one else {}
    pairs = [("streamer-split", "aria2c-split"), ("streamer-split", "streamer-split-prev")]
    pairs.append(("streamer-split-prev", "aria2c-split"))
    return out | {f"wall {k}": v for k, v in ratio_lines(summary, "wall_median_s", pairs).items()}


# fmt: off
COLUMNS = (
    ("runs", "runs", ".0f"), ("failed", "fail", ".0f"), ("wall_median_s", "wall med s", ".2f"),
    ("wall_min_s", "min", ".2f"), ("wall_max_s", "max", ".2f"), ("mib_per_s", "MiB/s", ".1f"),
    ("cpu_median_s", "cpu med s", ".2f"), ("peak_rss_mib", "RSS MiB", ".1f"),
)
# fmt: on


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if args.prev and "streamer-split-prev" not in tools:
        tools.append("streamer-split-prev")
    if "streamer-split-prev" in tools and not args.prev:
        sys.exit("streamer-split-prev needs --prev DIR (the earlier code to compare)")
    if unknown := [t for t in tools if t not in TOOLS]:
        sys.exit(f"unknown tools {unknown}; choose from {', '.join(TOOLS)}")
    if args.json:
        args.json = args.json.resolve()
    home = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="bench-split-", dir=os.environ.get("BENCH_TMP")) as d:
        work = Path(d)
        os.chdir(work)  # `python -m streamer` imports from the cwd first
        www, out_dir = work / "www", work / "out"
        www.mkdir()
        out_dir.mkdir()
        digest = ensure_payload(www, args.size)
        args.prev_path = prepare_prev(args.prev, args.python, work) if args.prev else None
        runs: list[Run] = []
        location = f"limit_rate {args.rate};"
        with running_nginx(work, www, f"/{PAYLOAD}", location_extra=location) as base:
            url = f"{base}/{PAYLOAD}"
            for rnd in range(args.runs):
                for name in tools if rnd % 2 == 0 else reversed(tools):
                    run = one_run(name, rnd, args, (url, out_dir, digest))
                    note = "" if run.ok else f"  FAILED: {run.error}"
                    print(
                        f"round {rnd + 1} {name:15}{run.wall_s:7.2f} s  cpu {run.cpu_s:5.2f} s"
                        f"  rss {run.rss_mib:6.1f} MiB{note}",
                        file=sys.stderr,
                    )
                    runs.append(run)
        os.chdir(home)
    summary = summarize(runs, args)
    rel = ratios(summary)
    what = (
        f"{args.size / MiB:.0f} MiB from nginx (limit_rate {args.rate} per connection), "
        f"--split {args.split}, {args.runs} runs/tool"
    )
    print(banner(what))
    print_rows(summary, COLUMNS)
    print_ratios(rel, "")
    if args.json:
        runs_ = [asdict(r) for r in runs]
        write_report(args.json, args, {"summary": summary, "ratios": rel, "runs": runs_})
    return 0 if runs and all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
