"""`streamer get -i MANIFEST`: many downloads, one aggregate bar, one summary, a restartable run.

Exit status: 0 only when every job succeeded (skipped-as-done counts as success). Otherwise the
exit code of the most frequent failure (ties: the first seen); a manifest with bad lines and no
failed job exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from ..client import Client
from ..config import ClientConfig
from ..core.headers import HeaderLines
from ..core.keyset import in_shard
from ..core.manifest import BadLine, Job, parse_manifest
from ..core.retry import RetryPolicy
from ..core.sizes import format_size
from ..errors import FileError, Result, UsageError, exit_code
from ..storage.journal import JOURNAL_NAME, Journal
from ..storage.manifests import scan_manifest
from ..sync import run
from ..transfer.bulk import BulkOptions, JobResult, download_many
from ..transfer.handover import BulkRun
from .options import client_config, parse_headers, request_lines
from .output import say, wants_bar
from .shards import Counts, Throttled, emit, run_sharded, shard_count
from .signals import stop_on_sigterm

# A manifest of up to this many parsed lines is kept from the scan (~300 bytes a line, 6 MiB
# at most) and shared by the run: its workers (forked, so the copy is free until written)
# neither read nor parse it again. A longer one is read again by each worker, a line at a time.
KEEP_PARSED = 20_000

Parsed = tuple[Job | BadLine, ...] | None


@contextmanager
def _items(source: str, kept: Parsed, shard: tuple[int, int]) -> Iterator[Iterator[Job | BadLine]]:
    """The parsed lines of `shard` (see `parse_manifest`): the scan's when it kept them, else
    read again from `source`."""
    if kept is not None:
        yield in_shard(kept, shard)
        return
    with _lines(source) as f:
        yield parse_manifest(f, shard)


@contextmanager
def _lines(source: str) -> Iterator[IO[str]]:
    if source == "-":
        yield sys.stdin
        return
    try:
        f = open(source, encoding="utf-8", errors="replace", newline="")  # noqa: SIM115
    except OSError as exc:
        raise _unreadable(source, exc) from None
    with f:
        yield f


def _unreadable(source: str, exc: OSError) -> FileError:
    """A manifest that cannot be read (missing, a directory): like a missing upload source."""
    return FileError(
        f"cannot read manifest {source}: {exc.strerror or exc}",
        path=source,
        result=Result.SOURCE_READ_ERROR,
    )


class _Tally:
    """Counts for the bar and the summary; the bar is tqdm with files as its unit."""

    def __init__(self, total: int | None, bar: bool) -> None:
        self.failures: Counter[Result] = Counter()
        self.first_seen: list[Result] = []
        self.ok = self.skipped = self.planned = self.bad_lines = self.bytes = 0
        self.started = time.monotonic()
        self.progress: Throttled | None = None  # a worker's reports to its parent's bar
        self._shown: dict[int, list[int]] = {}  # worker -> [bytes, failed] drawn, not yet final
        self.bar: Any = None
        if bar:
            self.open_bar(total)

    def open_bar(self, total: int | None) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True)

    def add(self, res: JobResult) -> None:
        if res.ok:
            self.ok += 1
            self.skipped += res.skipped
            self.planned += res.planned
            self.bytes += res.size
        else:
            if res.result not in self.failures:
                self.first_seen.append(res.result)
            self.failures[res.result] += 1
        if self.progress is not None:
            self.progress.add(res.ok, res.size if res.ok else 0)
        self._draw(1)

    def _draw(self, files: int) -> None:
        if self.bar is not None:
            self.bar.update(files)
            shown_bytes = sum(seen[0] for seen in self._shown.values())
            failed = sum(self.failures.values()) + sum(seen[1] for seen in self._shown.values())
            text = f"{format_size(self.bytes + shown_bytes)}, {failed} failed"
            self.bar.set_postfix_str(text, refresh=False)

    def counts(self) -> Counts:
        """What a worker process reports at its end (see cli_shards)."""
        return {
            "ok": self.ok,
            "skipped": self.skipped,
            "planned": self.planned,
            "bad_lines": self.bad_lines,
            "bytes": self.bytes,
            "failures": [[r.value, self.failures[r]] for r in self.first_seen],
        }

    def merge(self, message: Counts) -> None:
        """A worker's message: progress for the bar, or its final counts (which replace the
        progress it reported, so nothing is counted twice)."""
        worker = int(message["k"])
        if message["t"] == "progress":
            seen = self._shown.setdefault(worker, [0, 0])
            seen[0] += int(message["bytes"])
            seen[1] += int(message["failed"])
            self._draw(int(message["files"]))
            return
        self._shown.pop(worker, None)
        for name in ("ok", "skipped", "planned", "bad_lines", "bytes"):
            setattr(self, name, getattr(self, name) + int(message[name]))
        for value, count in message["failures"]:
            result = Result(value)
            if result not in self.failures:
                self.first_seen.append(result)
            self.failures[result] += count
        self._draw(0)  # the bar's text now shows the final counts

    def exit_status(self) -> int:
        if self.failures:
            top = max(self.failures.values())
            worst = next(r for r in self.first_seen if self.failures[r] == top)
            return exit_code(worst)
        return 2 if self.bad_lines else 0

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        failed = sum(self.failures.values())
        done = self.ok + failed
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.ok} ok ({self.skipped} already done)", f"{failed} failed"]
        if self.planned:
            parts[0] = f"{self.planned} to download (dry run), {self.skipped} already done"
        if self.bad_lines:
            parts.append(f"{self.bad_lines} bad manifest lines")
        why = ", ".join(f"{n} {r.value}" for r, n in self.failures.most_common())
        text = (
            f"{'; '.join(parts)}; {format_size(self.bytes)} in {elapsed:.2f} s ({rate:.0f} files/s)"
        )
        return text + (f"\nfailures: {why}" if why else "")


def _options(args: argparse.Namespace, dupes: frozenset[int], lines: HeaderLines) -> BulkOptions:
    retry = RetryPolicy(retries=args.retry, delay=args.retry_delay, max_time=args.retry_max_time)
    return BulkOptions(
        jobs=args.jobs,
        max_per_host=args.max_per_host,
        pipeline=args.pipeline if args.pipeline is not None else _pipeline_from_env(),
        limit_rate=args.limit_rate,
        host_request_rate=args.host_request_rate,
        dry_run=args.dry_run,
        memory_budget=args.memory_budget,
        retry=retry,
        resume=not args.no_resume,
        skip_duplicates=dupes,
        duplicates_known=args.input_file != "-",
        max_bytes=args.max_filesize,
        headers=lines.add,  # what -H removes goes with the client (client_config)
        no_clobber=args.no_clobber,
    )


def _pipeline_from_env() -> int:
    """--pipeline's default: STREAMER_PIPELINE when set, else BulkOptions' own."""
    text = os.environ.get("STREAMER_PIPELINE", "").strip()
    if not text:
        return BulkOptions.pipeline
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"STREAMER_PIPELINE must be a whole number >= 1, not {text!r}")
    return int(text)


def run_bulk(args: argparse.Namespace) -> int:
    out_dir = Path(args.output_dir or ".")
    if not out_dir.is_dir():
        say(f"streamer: output directory {out_dir} does not exist")
        return exit_code(Result.DOWNLOAD_FILE_CANT_OPEN)
    lines = parse_headers(request_lines(args), download=True)  # a usage error before any work
    dupes, total, kept = _scan(args.input_file)
    journal = Journal(Path(args.journal) if args.journal else out_dir / JOURNAL_NAME, out_dir)
    journal.load()
    opts = _options(args, dupes, lines)
    config = replace(
        client_config(args, accept_gzip=args.compressed, headers=lines), report_phases=False
    )
    processes = shard_count(args, total)
    bar = wants_bar(args)
    # With workers the bar is made after the fork: tqdm starts a monitor thread with it, and
    # a process with threads should not fork.
    tally = _Tally(total, bar and processes == 1)
    status = 0
    try:
        if processes == 1:
            run(_go(args, (out_dir, config), opts, journal, tally, kept=kept))
        else:

            def child(part: BulkOptions, shard: tuple[int, int], fd: int) -> Counts:
                return _child(args, (out_dir, config), part, journal, (shard, fd, bar), kept=kept)

            def forked() -> None:
                if bar:
                    tally.open_bar(total)

            status = run_sharded(opts, processes, child, tally.merge, forked)
    finally:
        if tally.bar is not None:
            tally.bar.close()
    return _finish(args, tally, status)


def _scan(input_file: str) -> tuple[frozenset[int], int | None, tuple[Job | BadLine, ...] | None]:
    """The duplicate targets, the job count and (up to KEEP_PARSED lines) the parsed lines of
    a manifest file, read once before any worker starts; nothing known for stdin, which can
    be read only once."""
    if input_file == "-":
        return frozenset(), None, None
    try:
        scan = scan_manifest(Path(input_file), KEEP_PARSED)
    except OSError as exc:
        raise _unreadable(input_file, exc) from None
    return frozenset(scan.duplicates), scan.jobs, scan.kept


def _finish(args: argparse.Namespace, tally: _Tally, status: int) -> int:
    """The exit status: a worker's signal status as it is, else the run's, after the summary."""
    if status:
        if status == 143:
            print("streamer: terminated; partial downloads are kept for resuming", file=sys.stderr)
        return status
    if not args.quiet and not args.json:
        print(tally.summary(), file=sys.stderr)
    return tally.exit_status()


def _child(
    args: argparse.Namespace,
    where: tuple[Path, ClientConfig],
    opts: BulkOptions,
    journal: Journal,
    worker: tuple[tuple[int, int], int, bool],
    *,
    kept: Parsed,
) -> Counts:
    """One worker process's share of the run (cli_shards); returns its counts."""
    shard, fd, bar = worker
    tally = _Tally(None, bar=False)
    if bar:
        tally.progress = Throttled(fd, shard[0])
    run(_go(args, where, opts, journal, tally, shard=shard, kept=kept))
    if tally.progress is not None:
        tally.progress.flush()
    return tally.counts()


async def _go(
    args: argparse.Namespace,
    where: tuple[Path, ClientConfig],
    opts: BulkOptions,
    journal: Journal,
    tally: _Tally,
    *,
    shard: tuple[int, int] = (0, 1),
    kept: Parsed = None,
) -> None:
    stop_on_sigterm()
    out_dir, config = where
    if not args.dry_run:  # a dry run creates no file, not even the journal
        journal.open()
    try:
        with _items(args.input_file, kept, shard) as items:
            jobs = _jobs(items, args, tally)
            async with (
                Client(config) as client,
                BulkRun(download_many(client, jobs, out_dir, opts, journal)) as run,
            ):
                async for res in run:
                    tally.add(res)
                    _report(args, res)
    finally:
        await journal.close()


def _jobs(items: Iterator[Job | BadLine], args: argparse.Namespace, tally: _Tally) -> Iterator[Job]:
    for item in items:
        if isinstance(item, BadLine):
            tally.bad_lines += 1
            if args.json:
                bad = {"line": item.line, "result": "bad_manifest_line", "error": item.reason}
                emit(sys.stdout, json.dumps(bad))
            else:
                emit(sys.stderr, f"streamer: manifest line {item.line}: {item.reason}")
            continue
        yield item


def _report(args: argparse.Namespace, res: JobResult) -> None:
    if args.json:
        emit(sys.stdout, json.dumps(res.to_json()))
    elif not res.ok and not args.quiet:
        emit(sys.stderr, f"streamer: line {res.job.line}: {res.error}")
