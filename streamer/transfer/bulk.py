"""Many downloads into one directory: bounded concurrency, per-host caps, one result per job.

Memory does not grow with the job list: jobs are pulled from the (possibly huge, streamed)
source through a small queue, results are yielded as they finish, and the only per-job state
kept for the whole run is a 64-bit key for duplicate detection and the journal's done set.
One failing job never stops the others: its error is data in its `JobResult`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..core.manifest import Job, target_for
from ..core.ratelimit import HostLimiter, TokenBucket, burst_for
from ..core.redact import redact_url
from ..core.retry import RetryPolicy
from ..core.targets import DuplicateFinder, owner_key, target_key
from ..errors import FileExistsError_, Result, StreamerError, UsageError
from ..lane.fetch import QuickDone, QuickPath
from ..storage.journal import Done, Journal
from .handover import Outbox, ungrouped
from .retrying import retry_delay

if TYPE_CHECKING:
    from .opener import Opener


@dataclass(frozen=True)
class BulkOptions:
    """How a bulk run behaves. ``memory_budget`` bounds the bytes buffered by all transfers
    together: concurrency is capped so that (jobs x per-transfer buffer) fits in it."""

    jobs: int = 16
    max_per_host: int = 16
    limit_rate: float | None = None  # bytes/s over the whole run
    host_request_rate: float | None = None  # new requests per second to any one host
    memory_budget: int = 64 << 20
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retry_budget: int | None = None  # retries allowed over the whole run (default: 4 x jobs)
    resume: bool = True
    skip_duplicates: frozenset[int] = frozenset()  # target keys known to be claimed twice
    duplicates_known: bool = False  # skip_duplicates holds all of them (the jobs were prescanned)
    dry_run: bool = False  # plan every job (targets, duplicates, journal) and fetch nothing
    quick: bool = True  # small bodies on the lane (quick.py); False: every job on the full engine
    # What every job of the run honours, as one download does (a job's own values win where
    # it has them: its headers replace these by name, its max_bytes applies when smaller).
    max_bytes: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    no_clobber: bool = False  # an existing target fails its job with FILE_EXISTS
    # Requests in flight per keep-alive connection on the lane (RFC 9112 9.3.2); 1: none
    # pipelined. A host that cuts a pipeline short gets 1 for the rest of the run.
    pipeline: int = 8

    def __post_init__(self) -> None:
        if self.jobs < 1 or self.max_per_host < 1 or self.pipeline < 1:
            raise UsageError("jobs, max_per_host and pipeline must be at least 1")
        for name in ("limit_rate", "host_request_rate"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"{name} must be > 0, not {value}")


@dataclass(frozen=True)
class JobResult:
    """The outcome of one job. ``error`` is kept as the exception object, not a string."""

    job: Job
    path: Path
    result: Result
    size: int = 0
    status: int | None = None
    attempts: int = 0
    skipped: bool = False  # complete per the journal: no request was made
    planned: bool = False  # a dry run: would be downloaded, no request was made
    error: StreamerError | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result is Result.SUCCESS

    def to_json(self) -> dict[str, object]:
        return {
            "line": self.job.line,
            "url": redact_url(self.job.url),
            "path": str(self.path),
            "result": self.result.value,
            "ok": self.ok,
            "size": self.size,
            "status": self.status,
            "attempts": self.attempts,
            "skipped": self.skipped,
            "planned": self.planned,
            "error": None if self.error is None else str(self.error),
            "elapsed": round(self.elapsed, 6),
        }


class _Hosts:
    """One semaphore per host, dropped when no job of that host is in flight."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    def _key(self, url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"

    async def acquire(self, url: str) -> str:
        """Wait for a slot of the URL's host; returns the key to release it with."""
        key = self._key(url)
        sem, users = self._slots.setdefault(key, (asyncio.Semaphore(self._cap), [0]))
        users[0] += 1
        await sem.acquire()
        return key

    def release(self, key: str) -> None:
        sem, users = self._slots[key]
        sem.release()
        users[0] -= 1
        if users[0] == 0:
            del self._slots[key]


class _Run:
    def __init__(
        self, client: Opener, out_dir: Path, opts: BulkOptions, journal: Journal | None, width: int
    ) -> None:
        self.client = client
        self.out_dir = out_dir
        self.opts = opts
        self.journal = journal
        limited = opts.max_per_host < width or opts.host_request_rate is not None
        self.hosts = _Hosts(opts.max_per_host) if limited else None
        self.claimed = DuplicateFinder()
        self._made: set[str] = set()  # parents (relative to out_dir) known to exist
        self.retries_left = opts.retry_budget if opts.retry_budget is not None else 4 * opts.jobs
        self.host_rate: HostLimiter | None = None
        if opts.host_request_rate is not None:
            self.host_rate = HostLimiter(opts.host_request_rate, 1.0)  # spaced, no burst
        self.quick: QuickPath | None = None
        if opts.quick and QuickPath.usable(client.config):
            self.quick = QuickPath(
                client.config,
                client.plain_route,
                client.tls_context,
                durable=journal is None,
                no_clobber=opts.no_clobber,
                pipeline=opts.pipeline,
            )
        self.bucket: TokenBucket | None = None
        if opts.limit_rate is not None:
            now = time.monotonic()
            self.bucket = TokenBucket(opts.limit_rate, burst_for(opts.limit_rate), now)

    def _ensure_dir(self, rel: str) -> None:
        """mkdir -p of `rel`'s parent, once per directory (most jobs share a few; the memo is
        bounded, and keyed by text: hashing a Path costs more than the rest of this)."""
        parent = rel.rpartition("/")[0]
        if parent in self._made:
            return
        (self.out_dir / parent).mkdir(parents=True, exist_ok=True)
        if len(self._made) >= 4096:
            self._made.clear()
        self._made.add(parent)

    async def throttle(self, n: int) -> None:
        if self.bucket is not None:
            wait = self.bucket.take(n, time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)

    def take_retry(self, _exc: StreamerError) -> bool:
        """Spend one retry of the run's budget, at the moment of retrying; False when none is
        left (so a dead host cannot cause a retry storm, however many jobs are in flight)."""
        if self.retries_left <= 0:
            return False
        self.retries_left -= 1
        return True

    def _clashes(self, key: int, rel: str) -> bool:
        """Whether another job of the run writes `rel` (or the partial file ``rel`` names)."""
        owner = owner_key(rel)  # a name like "a.part" also claims "a"
        keys = (key,) if owner is None else (key, owner)
        skip, known = self.opts.skip_duplicates, self.opts.duplicates_known
        # Every key is claimed (no short cut), so a later job clashing with it is seen too.
        clashes = [k in skip or (not known and self.claimed.add(k)) for k in keys]
        return any(clashes)

    async def one(self, job: Job) -> JobResult:
        rel = target_for(job)
        path = self.out_dir / rel
        key = target_key(rel)
        if self._clashes(key, rel):
            err = UsageError(f"two jobs write {rel}; not started", url=redact_url(job.url))
            return JobResult(job, path, err.result, error=err)
        job = self._with_run_options(job)
        if self.journal is not None and self.journal.is_done(
            rel, path, key, (job.url, job.checksum)
        ):
            return JobResult(job, path, Result.SUCCESS, size=path.stat().st_size, skipped=True)
        if self.opts.no_clobber and os.path.lexists(path):
            exists = FileExistsError_(
                f"{path} exists and --no-clobber was given; nothing was downloaded",
                path=str(path),
                url=redact_url(job.url),
            )
            return JobResult(job, path, exists.result, error=exists)
        if self.opts.dry_run:
            return JobResult(job, path, Result.SUCCESS, planned=True)
        if self.hosts is None:  # the per-host cap cannot bind: no more workers than it allows
            return await self._download(job, rel, path, key)
        host = await self.hosts.acquire(job.url)
        if self.host_rate is not None:
            wait = self.host_rate.take(host, time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)
        try:
            return await self._download(job, rel, path, key)
        finally:
            self.hosts.release(host)

    def _with_run_options(self, job: Job) -> Job:
        """The job with the run's limits and headers (its own values win), checked again."""
        opts = self.opts
        if opts.max_bytes is None and not opts.headers:
            return job
        limit = job.max_bytes
        if opts.max_bytes is not None:
            limit = opts.max_bytes if limit is None else min(limit, opts.max_bytes)
        own = {name.lower() for name, _ in job.headers}
        headers = tuple((n, v) for n, v in opts.headers if n.lower() not in own) + job.headers
        return replace(job, max_bytes=limit, headers=headers)

    async def _download(self, job: Job, rel: str, path: Path, key: int) -> JobResult:
        started = time.monotonic()
        policy = self.opts.retry
        try:
            self._ensure_dir(rel)
        except OSError as exc:  # mkdir of a subdirectory
            err = StreamerError(
                f"cannot create {path.parent}: {exc.strerror}",
                path=str(path),
                result=Result.DOWNLOAD_FILE_CANT_OPEN,
            )
            return JobResult(job, path, err.result, error=err)
        if self.quick is not None:
            try:
                quick = await self.quick.fetch(job, path, self.throttle if self.bucket else None)
            except StreamerError as exc:
                # The lane's answer was attempt 1; a retry goes to the full engine.
                delay = retry_delay(policy, exc, started, self.take_retry)
                if delay is None:
                    return self._failed(job, path, exc, started)
                policy = policy.increment(exc)
                await asyncio.sleep(delay)
            else:
                if quick is not None:
                    return await self._succeeded(job, (rel, key), path, quick, started=started)
        return await self._full(job, (rel, key), path, policy, started)

    async def _full(
        self, job: Job, target: tuple[str, int], path: Path, policy: RetryPolicy, started: float
    ) -> JobResult:
        """The full engine: resume, redirects, any framing, retries with `policy`."""
        from .download import DownloadRequest, run_download  # loads with the first such job

        req = DownloadRequest(
            job.url,
            path,
            max_bytes=job.max_bytes,
            checksum=job.checksum,
            headers=dict(job.headers),
            resume=self.opts.resume,
            retry=policy,
            no_clobber=self.opts.no_clobber,
            durable=self.journal is None,
            throttle=self.throttle if self.bucket else None,
            may_retry=self.take_retry,
        )
        try:
            res = await run_download(self.client, req, None)
        except StreamerError as exc:
            return self._failed(job, path, exc, started)
        done = QuickDone(res.size, str(res.checksum) if res.checksum else None, res.validator)
        return await self._succeeded(
            job, target, path, done, started=started, status=res.status, attempts=res.attempts
        )

    def _failed(self, job: Job, path: Path, exc: StreamerError, started: float) -> JobResult:
        return JobResult(
            job,
            path,
            exc.result,
            attempts=exc.attempts,
            error=exc,
            status=getattr(exc, "status", None),
            elapsed=time.monotonic() - started,
        )

    async def _succeeded(
        self,
        job: Job,
        target: tuple[str, int],
        path: Path,
        done: QuickDone,
        *,
        started: float,
        status: int | None = 200,
        attempts: int = 1,
    ) -> JobResult:
        """Journal the target (its relative path and key) and report success."""
        if self.journal is not None:
            url = redact_url(job.url)
            entry = Done(target[0], done.size, done.checksum, url, done.validator)
            await self.journal.record(entry)
        return JobResult(
            job,
            path,
            Result.SUCCESS,
            size=done.size,
            status=status,
            attempts=attempts,
            elapsed=time.monotonic() - started,
        )

    def close(self) -> None:
        if self.quick is not None:
            self.quick.close()


async def as_jobs(jobs: Iterable[Job | str] | AsyncIterable[Job | str]) -> AsyncIterator[Job]:
    """Jobs from Job values or plain URL strings, sync or async."""
    async for job in _aiter(jobs):
        yield job if isinstance(job, Job) else Job(url=job)


async def _aiter(jobs: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(jobs, AsyncIterable):
        async for job in jobs:
            yield job
    else:
        for job in jobs:
            yield job


def effective_jobs(opts: BulkOptions, chunk_size: int) -> int:
    """Concurrency that keeps buffers within the memory budget (aiohttp buffers up to twice its
    read size per connection, plus the chunk being written)."""
    per_transfer = 3 * chunk_size
    return max(1, min(opts.jobs, opts.memory_budget // per_transfer))


async def download_many(
    client: Opener,
    jobs: Iterable[Job] | AsyncIterable[Job],
    out_dir: Path,
    opts: BulkOptions,
    journal: Journal | None = None,
) -> AsyncGenerator[JobResult, None]:
    """Run `jobs` with bounded concurrency; yield each result as it finishes (any order)."""
    width = effective_jobs(opts, client.config.chunk_size)
    run = _Run(client, out_dir, opts, journal, width)
    outbox = Outbox(2 * width, width)
    todo: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=2 * width)
    shared = iter(jobs) if isinstance(jobs, Iterable) else None  # workers pull it in turn

    async def feed() -> None:  # an async source goes through a queue
        async for job in _aiter(jobs):
            await todo.put(job)
        for _ in range(width):
            await todo.put(None)

    async def work() -> None:
        try:
            while True:
                job = next(shared, None) if shared is not None else await todo.get()
                if job is None:
                    return
                await outbox.put(await run.one(job))
        finally:
            outbox.worker_done()

    try:
        with ungrouped():
            async with asyncio.TaskGroup() as tg:
                if shared is None:
                    tg.create_task(feed())
                for _ in range(width):
                    tg.create_task(work())
                async for batch in outbox.batches():
                    for item in batch:
                        yield item
    finally:
        run.close()
        if journal is not None:
            await journal.close()  # flushes the last batch; closing twice is harmless
