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
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TIME = shutil.which("time", path="/usr/bin:/bin")


def write_manifest(path: Path, lines: int) -> None:
    with path.open("w", encoding="ascii") as f:
        for start in range(0, lines, 100_000):
            stop = min(lines, start + 100_000)
            f.write(
                "".join(
                    f"http://127.0.0.1:9/d{i // 1000}/f{i:08d}.bin\n" for i in range(start, stop)
                )
            )


def measure(manifest: Path, out: Path) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, peak RSS KiB, exit code) of one dry run."""
    if TIME is None:
        sys.exit("GNU time (/usr/bin/time) is needed")
    cmd = [
        TIME,
        "-f",
        "%e s %M KiB %U %S",
        sys.executable,
        "-m",
        "streamer",
        "get",
        "-i",
        str(manifest),
        "-d",
        str(out),
        "--dry-run",
        "-q",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = re.search(r"([\d.]+) s (\d+) KiB ([\d.]+) ([\d.]+)", proc.stderr)
    if found is None:
        sys.exit(f"no figures from GNU time: {proc.stderr[-500:]}")
    cpu = float(found.group(3)) + float(found.group(4))
    return float(found.group(1)), cpu, int(found.group(2)), proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--keep", type=Path, help="reuse/keep the manifest at this path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-manifest-") as tmp:
        manifest = args.keep or Path(tmp) / "m.txt"
        if not manifest.exists():
            write_manifest(manifest, args.lines)
        out = Path(tmp) / "out"
        out.mkdir()
        wall, cpu, kib, rc = measure(manifest, out)
    print(
        f"{args.lines:,} lines: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {kib / 1024:.1f} MiB,"
        f" exit {rc}"
    )


if __name__ == "__main__":
    main()
