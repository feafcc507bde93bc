"""Pieces shared by the benchmark scripts: one timed run, the work directory, the summary table
and its header, ratios and spread, the JSON report (its ``env`` block), and the earlier streamer
that --prev compares against in the same alternating run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GNU_TIME = shutil.which("time", path="/usr/bin:/bin")  # for peak RSS, see measure()


@dataclass
class Run:
    """One timed run of one tool."""

    tool: str
    round: int
    ok: bool
    wall_s: float
    cpu_s: float
    rss_mib: float
    error: str = ""


def med(values: list[float]) -> float:
    """The median, NaN for no values."""
    return statistics.median(values) if values else float("nan")


def print_rows(
    rows: dict[str, dict[str, float]],
    columns: tuple[tuple[str, str, str], ...],
    width: int | None = None,
) -> None:
    """The summary table: one row per tool, `columns` as (summary key, title, number format);
    the tool column is `width` wide (default: the longest name, at least 6)."""
    if width is None:
        width = max([len(n) for n in rows] + [6])
    print(f"{'tool':{width}}" + "".join(f" {title:>10}" for _, title, _ in columns))
    for name, row in rows.items():
        cells = [format(row[key], fmt) if key in row else "-" for key, _, fmt in columns]
        print(f"{name:{width}}" + "".join(f" {c:>10}" for c in cells))


def banner(what: str) -> str:
    """The lines that open every summary: what was measured, the exact command line, the date
    (UTC) and the load average, so that a figure quoted from it says how and when."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return f"\n{what}\ncommand: {shlex.join(sys.orig_argv)}\ndate: {when}, load average {load}"


def ratio_lines(
    summary: Mapping[str, Mapping[str, float]], key: str, pairs: list[tuple[str, str]]
) -> dict[str, float]:
    """``"a / b": summary[a][key] / summary[b][key]`` for each pair where both rows have `key`
    (medians: the tables beside them show each row's min-max spread)."""
    out: dict[str, float] = {}
    for a, b in pairs:
        top, base = summary.get(a, {}), summary.get(b, {})
        if key in top and key in base and base[key]:
            out[f"{a} / {b}"] = top[key] / base[key]
    return out


def print_ratios(ratios: Mapping[str, float], what: str) -> None:
    prefix = f"{what} " if what else ""
    for name, value in ratios.items():
        print(f"{prefix}{name}: {value:.2f}x")


def add_prev_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prev",
        metavar="DIR",
        help="an earlier streamer (DIR/streamer, e.g. /tmp/streamer_before): its rows run in"
        " the same alternating rounds; a compiled copy is made in the work directory",
    )


def prepare_prev(prev: str, python: str, work: Path) -> str:
    """The PYTHONPATH that runs `prev`'s streamer: a copy of DIR/streamer in `work`, compiled
    (where PYTHONDONTWRITEBYTECODE is set, an uncompiled tree recompiles at every start, which
    would charge the earlier code ~50 ms per command), and checked to be what ``python -P -m
    streamer`` then imports. Without that check a run from a checkout's root measured the
    checkout twice: ``-m`` puts the cwd before PYTHONPATH."""
    src = Path(prev).resolve() / "streamer"
    if not (src / "__init__.py").is_file():
        sys.exit(f"--prev {prev}: no streamer/ package there")
    dest = work / "prev"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest / "streamer", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([python, "-m", "compileall", "-q", str(dest)], check=True, capture_output=True)
    probe = [python, "-P", "-c", "import streamer; print(streamer.__file__)"]
    env = {**os.environ, "PYTHONPATH": str(dest)}
    found = subprocess.run(probe, env=env, capture_output=True, text=True, check=True).stdout
    if not Path(found.strip()).is_relative_to(dest):
        sys.exit(f"--prev {prev}: PYTHONPATH={dest} still imports {found.strip()}")
    return str(dest)


@contextmanager
def work_dir(keep: Path | None, prefix: str) -> Iterator[Path]:
    """`keep` (created, kept afterwards), else a temporary directory under $BENCH_TMP."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep.resolve()
        return
    with tempfile.TemporaryDirectory(prefix=prefix, dir=os.environ.get("BENCH_TMP")) as d:
        yield Path(d)


def write_report(path: Path, args: argparse.Namespace, sections: Mapping[str, Any]) -> None:
    """Write ``{"env": ..., **sections}`` as indented JSON to `path`."""
    env = {
        "command": sys.orig_argv,
        "args": vars(args),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "rss_from": "GNU time %M" if GNU_TIME else "wait4 ru_maxrss (floored by ours)",
        "machine": platform.platform(),
        "when": time.strftime("%FT%T%z"),
    }
    report = {"env": env, **sections}
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


@contextmanager
def tree_memory(marker: str, every: float = 0.01) -> Iterator[dict[str, float]]:
    """Peak summed RSS and PSS (MiB) of every process whose command line holds `marker`
    (the run's own output directory), sampled every `every` s while the block runs.

    For tools that fork workers (streamer get -i --processes) the largest single process,
    which GNU time reports, understates the memory used; RSS summed over the processes
    overstates it (pages shared after fork count once per process); PSS shares them out.
    Sampling costs CPU, so it is used on untimed runs only.
    """
    peak = {"tree_rss_mib": 0.0, "tree_pss_mib": 0.0}
    done = threading.Event()
    needle = marker.encode()

    def sample() -> None:
        while not done.wait(every):
            rss = pss = 0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if needle not in f.read():
                            continue
                    with open(f"/proc/{pid}/smaps_rollup") as f:
                        for line in f:
                            if line.startswith(("Rss:", "Pss:")):
                                kib = int(line.split()[1])
                                rss, pss = (
                                    (rss + kib, pss) if line[0:3] == "Rss" else (rss, pss + kib)
                                )
                except OSError:
                    continue  # gone meanwhile
            peak["tree_rss_mib"] = max(peak["tree_rss_mib"], rss / 1024)
            peak["tree_pss_mib"] = max(peak["tree_pss_mib"], pss / 1024)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()
