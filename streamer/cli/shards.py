"""`streamer get -i` over several worker processes: one event loop per CPU for large manifests.

Small files make a bulk run CPU-bound in the interpreter (a few tens of microseconds of Python
per file), so one process cannot keep up with the link on loopback or a LAN. The parent reads
the manifest once (duplicates, count, journal), then forks N workers before any event loop or
thread exists; a short manifest is kept parsed from that reading (cli/bulk.py KEEP_PARSED), so
the workers neither read nor parse it again. Worker k takes the jobs whose manifest line number
is k modulo N, with 1/N of every shared limit (jobs, per-host cap, byte rate, memory budget),
and appends to the same journal (O_APPEND, whole batches per write). Workers print their own
--json lines and errors; they report counts to the parent through a pipe, which draws the one
bar and the summary.

Signals: workers ignore SIGINT; Ctrl-C or SIGTERM to the parent makes it send each worker one
SIGTERM, on which the worker cancels its run and saves its partials. A worker whose parent
dies is sent SIGTERM by the kernel (PR_SET_PDEATHSIG), so none is left running alone.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import selectors
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from types import FrameType
from typing import Any, TextIO

from ..core.redact import redact_text
from ..core.text import printable
from ..core.workers import worker_count
from ..errors import Result, StreamerError, exit_code
from ..transfer.bulk import BulkOptions

# Below this many jobs one process is enough (a worker costs a fork and a few ms).
AUTO_MIN_JOBS = 1000
PROGRESS_EVERY = 0.2  # seconds between a worker's progress messages (only with a bar)
_PR_SET_PDEATHSIG = 1

Counts = dict[str, Any]
Child = Callable[[BulkOptions, tuple[int, int], int], Counts]


def shard_count(args: argparse.Namespace, total: int | None) -> int:
    """How many worker processes: --processes, or automatic for a large manifest file."""
    if args.dry_run or args.input_file == "-" or args.host_request_rate is not None:
        return 1  # nothing to spread, no second reading, or a per-host spacing to keep exact
    wanted: int | None = args.processes
    if wanted is None:
        enough = total is not None and total >= AUTO_MIN_JOBS
        wanted = auto_processes() if enough else 1
    caps: list[int] = [wanted, args.jobs, args.max_per_host, total or 1]
    return max(1, min(caps))


def auto_processes() -> int:
    """The automatic worker count for a large manifest: `core.workers.worker_count` of the
    usable CPUs, this process's RSS now (after the manifest scan) and MemAvailable.
    --processes N chooses instead."""
    return worker_count(_usable_cpus(), _self_rss(), _mem_available())


def _self_rss() -> int | None:
    """This process's resident set size in bytes (VmRSS), None where /proc cannot tell."""
    return _kib_field("/proc/self/status", "VmRSS:")


def _mem_available() -> int | None:
    """The memory the kernel estimates available without swapping (MemAvailable), in bytes."""
    return _kib_field("/proc/meminfo", "MemAvailable:")


def _kib_field(path: str, name: str) -> int | None:
    """The "NAME: N kB" line of a /proc file, in bytes."""
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. under taskset or a container
    cpuset), not all the machine has."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def share(opts: BulkOptions, k: int, n: int) -> BulkOptions:
    """Worker k's part of the run's limits: together the workers keep every limit."""

    def part(value: int, least: int = 1) -> int:
        return max(least, value // n + (k < value % n))

    return replace(
        opts,
        jobs=part(opts.jobs),
        max_per_host=part(opts.max_per_host),
        limit_rate=None if opts.limit_rate is None else opts.limit_rate / n,
        memory_budget=max(1, opts.memory_budget // n),
        retry_budget=None if opts.retry_budget is None else part(opts.retry_budget, 0),
    )


def run_sharded(
    opts: BulkOptions,
    n: int,
    child: Child,
    on_counts: Callable[[Counts], None],
    forked: Callable[[], None] = lambda: None,
) -> int:
    """Fork `n` workers running `child`, then call `forked`; feed their messages to
    `on_counts`; 0 or the exit code for workers that died without reporting."""
    workers: dict[int, int] = {}  # read fd -> pid
    for k in range(n):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_fd)
            for other in workers:
                os.close(other)
            _worker(child, (share(opts, k, n), (k, n), write_fd))
        os.close(write_fd)
        workers[read_fd] = pid
    stop = _Stop(list(workers.values()))
    previous = signal.signal(signal.SIGTERM, stop.on_signal)
    try:
        forked()
        reported = _collect(workers, on_counts)
    except KeyboardInterrupt:
        stop.now()  # Ctrl-C: the workers ignore SIGINT and stop on the SIGTERM sent here
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        statuses = [os.waitpid(pid, 0)[1] for pid in stop.pids]
    return _outcome(statuses, reported, n)


def _worker(child: Child, argv: tuple[BulkOptions, tuple[int, int], int]) -> None:
    """Run one worker and leave with os._exit (never return into the parent's code)."""
    code, write_fd = 0, argv[2]
    # Ctrl-C reaches the whole process group; a worker leaves it to the parent, which sends
    # one SIGTERM (so a worker is never stopped twice), and the kernel sends it if the parent
    # dies (PR_SET_PDEATHSIG).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    try:
        counts = child(*argv)
        send(write_fd, {"t": "done", "k": argv[1][0], **counts})
    except KeyboardInterrupt:
        code = 130
    except StreamerError as exc:  # a run-wide failure, e.g. the journal cannot be written
        emit(sys.stderr, f"streamer: {exc}")
        code = exc.exit_code
    except BaseException as exc:  # a worker must never unwind into the parent's stack
        code = 143 if type(exc).__name__ == "CancelledError" else 1
        if code == 1:
            emit(sys.stderr, f"streamer: worker failed: {exc!r}")
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def emit(stream: TextIO, line: str) -> None:
    """One line in one write, flushed: lines of several workers sharing a pipe or terminal
    never interleave (print writes the end of line separately when output is unbuffered)."""
    stream.write(printable(redact_text(line)) + "\n")
    stream.flush()


def send(write_fd: int, message: Counts) -> None:
    """One message to the parent: a JSON line (pipe writes under PIPE_BUF are atomic)."""
    os.write(write_fd, (json.dumps(message) + "\n").encode())


def _collect(workers: dict[int, int], on_counts: Callable[[Counts], None]) -> int:
    """Read every worker's messages until all pipes close; returns how many sent "done"."""
    done = 0
    buffers = {fd: b"" for fd in workers}
    with selectors.DefaultSelector() as sel:
        for fd in workers:
            sel.register(fd, selectors.EVENT_READ)
        while buffers:
            for key, _ in sel.select():
                fd = int(key.fd)
                data = os.read(fd, 65536)
                if not data:
                    sel.unregister(fd)
                    os.close(fd)
                    del buffers[fd]
                    continue
                *lines, buffers[fd] = (buffers[fd] + data).split(b"\n")
                for line in lines:
                    message = json.loads(line)
                    done += message.get("t") == "done"
                    on_counts(message)
    return done


class _Stop:
    """Stops the workers exactly once, with SIGTERM (each then cancels its run and saves its
    partials; a second signal during that cleanup could cut it short, so none is sent)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.sent = False

    def on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.now()

    def now(self) -> None:
        if self.sent:
            return
        self.sent = True
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _outcome(statuses: list[int], reported: int, n: int) -> int:
    """0 when every worker reported; else how the first unreported one ended (130, 143...)."""
    if reported == n:
        return 0
    codes = [os.waitstatus_to_exitcode(s) for s in statuses]
    for code in codes:
        if code in (130, 143, -signal.SIGINT, -signal.SIGTERM):
            return 130 if code in (130, -signal.SIGINT) else 143
    for code in codes:
        if code > 1:  # a worker's own typed failure, which it has reported
            return code
    print(f"streamer: {n - reported} worker(s) ended without a report: {codes}", file=sys.stderr)
    return exit_code(Result.REQUEST_FAILED)


class Throttled:
    """Call `send` with progress counts at most every PROGRESS_EVERY seconds."""

    def __init__(self, write_fd: int, worker: int) -> None:
        self.write_fd = write_fd
        self.worker = worker
        self.files = self.bytes = self.failed = 0
        self._last = time.monotonic()

    def add(self, ok: bool, size: int) -> None:
        self.files += 1
        self.bytes += size
        self.failed += not ok
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY:
            self.flush()
            self._last = now

    def flush(self) -> None:
        if self.files:
            send(
                self.write_fd,
                {
                    "t": "progress",
                    "k": self.worker,
                    "files": self.files,
                    "bytes": self.bytes,
                    "failed": self.failed,
                },
            )
            self.files = self.bytes = self.failed = 0


__all__ = [
    "AUTO_MIN_JOBS",
    "Throttled",
    "auto_processes",
    "emit",
    "run_sharded",
    "send",
    "shard_count",
    "share",
]
