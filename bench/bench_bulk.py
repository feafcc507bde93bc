#!/usr/bin/env python3
"""Bulk benchmark: many small files, streamer get -i against curl --parallel, aria2c -i, wget -i.

nginx (keep-alive, no access log) serves N generated files on 127.0.0.1; each tool fetches all
of them into an emptied directory, alternating tools within each round: wall time, files/s,
CPU s (user+sys), peak RSS. Helpers come from bench_download.py. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
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
    tree_memory,
    write_report,
)
from _loopback import running_nginx, wait_quiet
from bench_download import MiB, fill, measure, parse_size

JOURNAL = ".streamer-journal.jsonl"  # streamer's default journal in -d DIR
STREAMER = (
    "{python} -P -m streamer get -i {list} -d {out} -j {jobs} --max-per-host {jobs}"
    " --no-progress -q"
)
CURL = "curl --parallel --parallel-max {jobs} --output-dir {out} --remote-name-all -K {config} -s"
TOOLS = {  # name: (command template, extra environment)
    "streamer": (STREAMER, {}),
    "streamer+uvloop": (STREAMER, {"STREAMER_LOOP": "uvloop"}),
    "streamer-1proc": (STREAMER + " --processes 1", {}),
    "curl": (CURL, {}),
    # Durable against durable: curl, then the output's file system synced (syncfs, as
    # streamer's journal does once per batch), timed together.
    "curl+sync": (
        'sh -c \'curl --parallel --parallel-max "$1" --output-dir "$0" --remote-name-all'
        ' -K "$2" -s && sync -f "$0"\' {out} {jobs} {config}',
        {},
    ),
    "aria2c": (
        "aria2c -i {list} -j{jobs} -d {out} -q --file-allocation=none --console-log-level=error"
        " --auto-file-renaming=false --allow-overwrite=true",
        {},
    ),
    "wget": ("wget -i {list} -P {out} -q", {}),
}
DEFAULT_TOOLS = "streamer,streamer+uvloop,curl,curl+sync,aria2c,wget"


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    out: Path
    digests: dict[str, str]  # file name -> sha256
    verified: set[str]  # tools whose output was checked by sha256 already


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=5000, help="number of files (5000)")
    p.add_argument("--size", type=parse_size, default=16 << 10, help="size of each (16KiB)")
    p.add_argument("--jobs", type=int, default=16, help="transfers at once, every tool (16)")
    p.add_argument("--runs", type=int, default=5, help="runs per tool (5)")
    p.add_argument("--tools", default=DEFAULT_TOOLS, help=f"comma list ({DEFAULT_TOOLS})")
    p.add_argument("--json", type=Path, help="write all runs and the summary here")
    p.add_argument("--python", default=sys.executable, help="interpreter for streamer")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run (300)")
    p.add_argument("--settle", type=float, default=1.0, help="pause after each run's sync (1)")
    p.add_argument("--budget", type=float, default=1800.0, help="start no run after this (s)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for other benchmarks")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE[,VAR=VALUE]",
        help="one more streamer row run with these environment variables, e.g."
        " orig:PYTHONPATH=/tmp/streamer_orig (repeatable)",
    )
    p.add_argument(
        "--tree-memory",
        action="store_true",
        help="one more, untimed run per tool sampling the summed RSS and PSS of all"
        " its processes (streamer's workers included)",
    )
    p.add_argument(
        "--reuse-out",
        action="store_true",
        help="empty one output directory between runs instead of a fresh one per run"
        " (slows every tool's file creation on ext4; see README)",
    )
    add_prev_option(p)  # adds the streamer-prev row
    return p.parse_args(argv)


def add_variants(specs: list[str]) -> list[str]:
    """Register `streamer-NAME` rows: streamer's command with extra environment variables."""
    names = []
    for spec in specs:
        name, _, assignments = spec.partition(":")
        env = dict(a.split("=", 1) for a in assignments.split(",") if "=" in a)
        if not name or not env:
            sys.exit(f"bad --variant {spec!r}: want NAME:VAR=VALUE[,VAR=VALUE]")
        TOOLS[f"streamer-{name}"] = (STREAMER, env)
        names.append(f"streamer-{name}")
    return names


def select_tools(text: str) -> list[str]:
    chosen = []
    for name in filter(None, (t.strip() for t in text.split(","))):
        if name not in TOOLS:
            sys.exit(f"unknown tool {name!r}; choose from {', '.join(TOOLS)}")
        program = "python" if name.startswith("streamer") else name.split("+")[0]
        if program != "python" and not shutil.which(program):
            print(f"skipping {name}: not found on PATH", file=sys.stderr)
            continue
        chosen.append(name)
    if not chosen:
        sys.exit("no tool to run")
    return chosen


def make_files(www: Path, count: int, size: int) -> dict[str, str]:
    """`count` files of random bytes; returns name -> sha256."""
    digests = {}
    for i in range(count):
        name = f"f{i:06d}.bin"
        data = os.urandom(size)
        (www / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def write_lists(work: Path, base: str, names: list[str]) -> None:
    urls = [f"{base}/{name}" for name in names]
    (work / "urls.txt").write_text("".join(u + "\n" for u in urls))
    (work / "curl.cfg").write_text("".join(f'url = "{u}"\n' for u in urls))


def clear(out: Path) -> None:
    for entry in os.scandir(out):
        shutil.rmtree(entry.path) if entry.is_dir() else os.unlink(entry.path)
    os.sync()


def check_output(out: Path, b: Bench, *, with_sha: bool) -> str:
    """Every file there with the right size (and sha256), nothing else but streamer's journal."""
    want, size = b.digests, b.args.size
    seen, extra, bad = 0, [], []
    for entry in os.scandir(out):
        if entry.name == JOURNAL:
            continue
        if entry.name not in want or not entry.is_file():
            extra.append(entry.name)
            continue
        seen += 1
        if entry.stat().st_size != size:
            bad.append(f"{entry.name}: size {entry.stat().st_size}")
        elif with_sha:
            with open(entry.path, "rb") as f:
                if hashlib.file_digest(f, "sha256").hexdigest() != want[entry.name]:
                    bad.append(f"{entry.name}: bad sha256")
    problems = []
    if seen != len(want):
        problems.append(f"{seen} of {len(want)} files")
    if extra:
        problems.append(f"{len(extra)} unexpected entries, e.g. {extra[0]}")
    if bad:
        problems.append(f"{len(bad)} bad files, e.g. {bad[0]}")
    return "; ".join(problems)


@contextmanager
def environment(extra: dict[str, str]) -> Iterator[None]:
    """Run a tool with STREAMER_LOOP set only when asked (measure() passes our environment)."""
    saved = {key: os.environ.pop(key) for key in {"STREAMER_LOOP", *extra} if key in os.environ}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key in extra:
            os.environ.pop(key, None)
        os.environ.update(saved)


def run_dir(name: str, rnd: int, b: Bench) -> Path:
    """The run's empty output directory: `out/` emptied (--reuse-out), or a fresh one.

    Fresh by default: ext4 will not hand out an inode freed in the last minutes
    (recently_deleted() in its allocator scans past each one), so creating 5000 files right
    after deleting 5000 costs every tool ~0.3 ms more per file. The old runs' files are only
    deleted with the work directory at the end.
    """
    if b.args.reuse_out:
        return b.out
    out = b.out / f"{rnd}-{name}"
    out.mkdir()
    os.sync()
    return out


def one_run(name: str, rnd: int, b: Bench) -> Run:
    args = b.args
    out = run_dir(name, rnd, b)
    template, env = TOOLS[name]
    values = dict(
        python=args.python,
        list=b.work / "urls.txt",
        config=b.work / "curl.cfg",
        out=out,
        jobs=args.jobs,
    )
    cmd = fill(template, **values)
    if not args.no_wait:
        wait_quiet()
    with environment(env):
        status, wall, cpu, rss = measure(cmd, args.timeout, b.work / "rss.txt")
    if status:
        error = "timed out" if wall >= args.timeout else f"exit status {status}"
    else:
        error = check_output(out, b, with_sha=name not in b.verified)
        if not error:
            b.verified.add(name)
    if args.reuse_out:
        clear(out)
    else:
        os.sync()  # this run's write-back is not the next run's cost
    time.sleep(args.settle)
    return Run(name, rnd, not error, wall, cpu, rss, error)


def run_all(tools: list[str], b: Bench) -> list[Run]:
    """`runs` rounds; odd rounds go in reverse order so that no tool always runs first."""
    deadline, runs = time.monotonic() + b.args.budget, list[Run]()
    for rnd in range(b.args.runs):
        for name in tools if rnd % 2 == 0 else reversed(tools):
            if time.monotonic() > deadline:
                print("budget spent; stopping early", file=sys.stderr)
                return runs
            run = one_run(name, rnd, b)
            note = "" if run.ok else f"  FAILED: {run.error}"
            n = b.args.files
            line = f"{run.wall_s:7.2f} s {n / run.wall_s:7.0f} files/s  cpu {run.cpu_s:6.2f} s"
            print(
                f"round {rnd + 1} {name:16}{line}  rss {run.rss_mib:6.1f} MiB{note}",
                file=sys.stderr,
            )
            runs.append(run)
    return runs


def memory_runs(tools: list[str], b: Bench) -> dict[str, dict[str, float]]:
    """One untimed run per tool with its processes' memory summed (see tree_memory)."""
    peaks = {}
    for name in tools:
        marker = str(b.out / f"{b.args.runs}-{name}")  # the directory one_run will use
        with tree_memory(marker) as peak:
            run = one_run(name, b.args.runs, b)
        if run.ok:
            peaks[name] = dict(peak)
            print(
                f"memory {name:16} summed RSS {peak['tree_rss_mib']:6.1f} MiB, "
                f"PSS {peak['tree_pss_mib']:6.1f} MiB",
                file=sys.stderr,
            )
    return peaks


def summarize(runs: list[Run], files: int, size: int) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r.tool for r in runs):
        good = [r for r in runs if r.tool == name and r.ok]
        row: dict[str, float] = {"runs": len(good), "failed": sum(r.tool == name for r in runs)}
        row["failed"] -= len(good)
        if good:
            wall = med([r.wall_s for r in good])
            cpu = med([r.cpu_s for r in good])
            row |= dict(
                wall_median_s=wall,
                wall_min_s=min(r.wall_s for r in good),
                wall_max_s=max(r.wall_s for r in good),
                files_per_s=files / wall,
                mib_per_s=files * size / MiB / wall,
                cpu_median_s=cpu,
                cpu_ms_per_file=1000 * cpu / files,
                peak_rss_mib=max(r.rss_mib for r in good),
            )
        summary[name] = row
    return summary


def ratios(summary: dict[str, dict[str, float]]) -> dict[str, float]:
    """files/s (median wall) of each streamer row over each peer's and the earlier code's."""
    rows = [n for n in summary if n.startswith("streamer")]
    peers = ("aria2c", "curl", "curl+sync", "wget", "streamer-prev")
    pairs = [(n, peer) for n in rows for peer in peers if n != peer]
    return ratio_lines(summary, "files_per_s", pairs)


# fmt: off
COLUMNS = (
    ("runs", "runs", ".0f"), ("failed", "fail", ".0f"), ("wall_median_s", "wall med s", ".2f"),
    ("wall_min_s", "min", ".2f"), ("wall_max_s", "max", ".2f"), ("files_per_s", "files/s", ".0f"),
    ("mib_per_s", "MiB/s", ".1f"), ("cpu_median_s", "cpu med s", ".2f"),
    ("cpu_ms_per_file", "cpu ms/f", ".3f"), ("peak_rss_mib", "RSS MiB", ".1f"),
    ("tree_rss_mib", "sum RSS", ".1f"), ("tree_pss_mib", "sum PSS", ".1f"),
)
# fmt: on


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools = select_tools(args.tools) + add_variants(args.variant)
    tmp = os.environ.get("BENCH_TMP")
    if args.json:
        args.json = args.json.resolve()
    home = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="bench-bulk-", dir=tmp) as d:
        work = Path(d)
        # `python -m streamer` puts the cwd first on sys.path: run from the work dir so that
        # a --variant's PYTHONPATH (or the installed package) is what gets imported.
        os.chdir(work)
        www, out = work / "www", work / "out"
        www.mkdir()
        out.mkdir()
        t0 = time.perf_counter()
        digests = make_files(www, args.files, args.size)
        print(
            f"{args.files} files of {args.size} B in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
        names = sorted(digests)
        if args.prev:  # the earlier code in the same rounds (a compiled copy, see _common)
            TOOLS["streamer-prev"] = (
                STREAMER,
                {"PYTHONPATH": prepare_prev(args.prev, args.python, work)},
            )
            tools.append("streamer-prev")
        with running_nginx(work, www, f"/{names[0]}") as base:
            write_lists(work, base, names)
            bench = Bench(args, work, out, digests, set())
            runs = run_all(tools, bench)
            peaks = memory_runs(tools, bench) if args.tree_memory else {}
        os.chdir(home)
    os.sync()  # deleted inodes stay "recent" to ext4 for 60 s after this, 360 s while unsynced
    summary = summarize(runs, args.files, args.size)
    for name, peak in peaks.items():
        summary[name] |= peak
    rel = ratios(summary)
    what = (
        f"{args.files} files x {args.size} B from nginx on 127.0.0.1, -j {args.jobs}, "
        f"{args.runs} runs/tool"
    )
    print(banner(what))
    print_rows(summary, COLUMNS)
    print_ratios(rel, "files/s")
    if args.json:
        runs_ = [asdict(r) for r in runs]
        write_report(args.json, args, {"summary": summary, "ratios": rel, "runs": runs_})
    return 0 if runs and all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
