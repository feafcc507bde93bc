#!/usr/bin/env python3
"""Planning a huge manifest: `streamer get -i M -d DIR --dry-run -q` over N generated lines.

Lines are ``http://127.0.0.1:9/dK/fNNNNNNNN.bin`` (1,000 per directory, all distinct, nothing
is fetched). The command runs under GNU time (``/usr/bin/time -f "%e s %M KiB %U %S"``): wall time
and peak RSS of the whole run (the duplicate scan, the job count, the journal check and the
planning of every job). See bench/README.md.

    python bench/bench_manifest.py --lines 10000000
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    add_prev_option,
    banner,
    med,
    prepare_prev,
    print_ratios,
    print_rows,
    ratio_lines,
    write_report,
)

TIME = shutil.which("time", path="/usr/bin:/bin")
Result = tuple[float, float, int, int]  # wall s, CPU s, peak RSS KiB, exit code


def write_manifest(path: Path, lines: int) -> None:
    with path.open("w", encoding="ascii") as f:
        for start in range(0, lines, 100_000):
            stop = min(lines, start + 100_000)
            f.write(
                "".join(
                    f"http://127.0.0.1:9/d{i // 1000}/f{i:08d}.bin\n" for i in range(start, stop)
                )
            )


def measure(python: str, manifest: Path, out: Path, prev: str | None = None) -> Result:
    """(wall seconds, CPU seconds, peak RSS KiB, exit code) of one dry run; with `prev`, of
    the earlier streamer at that PYTHONPATH (-P: the cwd never shadows it)."""
    if TIME is None:
        sys.exit("GNU time (/usr/bin/time) is needed")
    env = {**os.environ, "PYTHONPATH": prev} if prev else None
    cmd = [TIME, "-f", "%e s %M KiB %U %S", python, "-P", "-m", "streamer", "get"]
    cmd += ["-i", str(manifest), "-d", str(out), "--dry-run", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    found = re.search(r"([\d.]+) s (\d+) KiB ([\d.]+) ([\d.]+)", proc.stderr)
    if found is None:
        sys.exit(f"no figures from GNU time: {proc.stderr[-500:]}")
    cpu = float(found.group(3)) + float(found.group(4))
    return float(found.group(1)), cpu, int(found.group(2)), proc.returncode


def summarize(
    results: dict[str, list[tuple[float, float, int, int]]],
) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for name, got in results.items():
        walls = [g[0] for g in got]
        rows[name] = {
            "runs": len(got),
            "failed": sum(g[3] != 0 for g in got),
            "wall": med(walls),
            "wall_min": min(walls),
            "wall_max": max(walls),
            "cpu": med([g[1] for g in got]),
            "rss": max(g[2] for g in got) / 1024,
        }
    return rows


# fmt: off
COLUMNS = (
    ("runs", "runs", ".0f"), ("failed", "fail", ".0f"), ("wall", "wall med s", ".1f"),
    ("wall_min", "min", ".1f"), ("wall_max", "max", ".1f"), ("cpu", "cpu med s", ".1f"),
    ("rss", "peak RSS MiB", ".1f"),
)
# fmt: on


def run_rounds(args: argparse.Namespace, manifest: Path, tmp: Path) -> dict[str, list[Result]]:
    """`runs` rounds of each row; odd rounds in reverse order, so no row always runs first."""
    rows: list[tuple[str, str | None]] = [("streamer", None)]
    if args.prev:
        rows.append(("streamer-prev", prepare_prev(args.prev, args.python, tmp)))
    results: dict[str, list[Result]] = {name: [] for name, _ in rows}
    for rnd in range(args.runs):
        for name, prev in rows if rnd % 2 == 0 else reversed(rows):
            out = tmp / f"out-{rnd}-{name}"
            out.mkdir()
            wall, cpu, kib, rc = got = measure(args.python, manifest, out, prev)
            results[name].append(got)
            line = f"{wall:.1f} s, {cpu:.1f} s CPU, {kib / 1024:.1f} MiB, exit {rc}"
            print(f"round {rnd + 1} {name}: {line}", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--keep", type=Path, help="reuse/keep the manifest at this path")
    parser.add_argument("--runs", type=int, default=1, help="dry runs per row (1)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for streamer")
    parser.add_argument("--json", type=Path, help="write the runs and the summary here")
    add_prev_option(parser)  # adds the streamer-prev row
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-manifest-") as tmp:
        manifest = args.keep or Path(tmp) / "m.txt"
        if not manifest.exists():
            write_manifest(manifest, args.lines)
        results = run_rounds(args, manifest, Path(tmp))
    summary = summarize(results)
    pairs = [("streamer", "streamer-prev")]
    rel = {key: ratio_lines(summary, key, pairs) for key in ("wall", "cpu", "rss")}
    print(banner(f"{args.lines:,} lines, get -i --dry-run -q, {args.runs} runs/row"))
    print_rows(summary, COLUMNS)
    for key, what in (("wall", "wall (median)"), ("cpu", "cpu (median)"), ("rss", "peak RSS")):
        print_ratios(rel[key], what)
    if args.json:
        write_report(args.json, args, {"summary": summary, "ratios": rel, "runs": results})
    return 0 if all(r["failed"] == 0 for r in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
