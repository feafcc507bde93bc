"""Bulk downloads on a Dask cluster (the optional extra ``streamer[dask]``).

The submitting process reads and checks the jobs (bad manifest lines, targets claimed twice),
cuts them into shards and submits one task per shard with its jobs as data. Each task runs
streamer's bulk engine in-process on its worker (`streamer.transfer.shard`), into the same
directory, which must therefore be one shared file system for every worker. A worker that
dies takes its task with it; Dask runs the task again elsewhere and the shard's journal makes
the rerun skip what was complete. Results come back per shard and are yielded as shards finish,
so a run never holds every result (`as_completed`); `download_many` collects them in a list.

Only one submission at a time writes into a directory: the submitter holds an exclusive lock
on ``DIR/.streamer-dask.lock`` for the whole run, and a second one is refused (TARGET_BUSY).

``distributed`` is imported only when a run starts; without it, a run is a usage error that
names the extra.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .config import ClientConfig
from .core.manifest import BadLine, Job, claimed_keys, parse_manifest, target_for
from .core.redact import redact_url
from .core.targets import DuplicateFinder
from .errors import ConnectError, FileError, Result, StreamerError, UsageError
from .storage.dask_dir import LOCK_NAME, PLAN_NAME, DirLock, read_plan, write_plan
from .storage.manifests import manifest_lines, scan_manifest
from .transfer.bulk import BulkOptions, JobResult
from .transfer.shard import ShardOutcome, ShardTask, download_shard, unfinished

SHARDS_PER_WORKER = 4
MAX_SHARD_JOBS = 10_000  # a shard's jobs and results travel as one message each
CONNECT_TIMEOUT = 20.0  # seconds to reach the scheduler, then to see a first worker
EXTRA_HINT = 'Dask support needs the extra: pip install "streamer[dask]"'

BadLineHandler = Callable[[BadLine], None]


@dataclass(frozen=True)
class DistributedResult(JobResult):
    """A `JobResult` and the worker that produced it ("" when the job never left the
    submitter, e.g. a target claimed twice)."""

    worker: str = ""

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "worker": self.worker}


def require_distributed() -> Any:
    """The ``distributed`` module, or a `UsageError` naming the extra."""
    try:
        import distributed
    except ImportError as exc:
        raise UsageError(f"{EXTRA_HINT} ({exc})") from None
    return distributed


def _task(task: ShardTask) -> ShardOutcome:
    """What a worker runs: one shard, labelled with the worker's address."""
    from distributed import get_worker

    return run_shard(task, str(get_worker().address))


def run_shard(task: ShardTask, worker: str = "") -> ShardOutcome:
    """Run `task` to the end on a new event loop in this thread; a run-wide failure (the
    shard's journal cannot be read or written) becomes the result of each job without one."""
    from .sync import run

    results: list[JobResult] = []
    try:
        run(_shard(task, results))
    except StreamerError as exc:
        results.extend(unfinished(task, results, exc))
    return ShardOutcome(task.index, worker, tuple(results))


async def _shard(task: ShardTask, results: list[JobResult]) -> None:
    from .client import Client

    async with Client(task.config) as client:
        await download_shard(client, task, results)


@contextlib.contextmanager
def connected(
    scheduler: str | None, client: Any, timeout: float = CONNECT_TIMEOUT
) -> Iterator[Any]:
    """`client` as given, or a new one to `scheduler` (closed at the end); `ConnectError`
    when the scheduler cannot be reached or no worker joins within `timeout` seconds."""
    distributed = require_distributed()
    if client is not None:
        yield client
        return
    if not scheduler:
        raise UsageError("give a scheduler address (tcp://HOST:PORT) or a distributed.Client")
    try:
        own = distributed.Client(scheduler, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ConnectError(
            f"cannot reach the Dask scheduler at {scheduler} within {timeout:g} s", url=scheduler
        ) from exc
    try:
        try:
            own.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectError(
                f"the Dask scheduler at {scheduler} has no worker after {timeout:g} s",
                url=scheduler,
            ) from exc
        yield own
    finally:
        own.close()


class _Source:
    """The jobs of a manifest file or an iterable, checked: `items` yields each Job to run, and
    for a target claimed twice a refused `JobResult` in its place."""

    def __init__(
        self,
        jobs: str | os.PathLike[str] | Iterable[Job | str],
        out_dir: Path,
        on_bad_line: BadLineHandler | None,
    ) -> None:
        self.out_dir = out_dir
        self.on_bad_line = on_bad_line
        self.path: Path | None = None
        self.jobs: Iterable[Job | str] = ()
        self.total: int | None = None
        self.duplicates: set[int] = set()
        if isinstance(jobs, (str, os.PathLike)):
            self.path = Path(jobs)
            scan = scan_manifest(self.path)
            if scan.first_bad is not None and on_bad_line is None:
                bad = scan.first_bad
                raise UsageError(f"manifest line {bad.line}: {bad.reason}")
            self.total, self.duplicates = scan.jobs, scan.duplicates
        else:
            self.jobs = jobs
            with contextlib.suppress(TypeError):
                self.total = len(jobs)  # type: ignore[arg-type]

    def items(self) -> Iterator[Job | JobResult]:
        if self.path is None:
            yield from self._checked(Job(url=j) if isinstance(j, str) else j for j in self.jobs)
            return
        for item in parse_manifest(manifest_lines(self.path)):
            if isinstance(item, BadLine):
                if self.on_bad_line is not None:
                    self.on_bad_line(item)
                continue
            keys = claimed_keys(target_for(item))
            yield self._refused(item) if self.duplicates.intersection(keys) else item

    def _checked(self, jobs: Iterable[Job]) -> Iterator[Job | JobResult]:
        """One pass over an iterable: the first job claiming a target runs, later ones are
        refused (as the bulk engine does for a stream it cannot read twice)."""
        claimed = DuplicateFinder()
        for job in jobs:
            clash = [claimed.add(key) for key in claimed_keys(target_for(job))]
            yield self._refused(job) if any(clash) else job

    def _refused(self, job: Job) -> JobResult:
        rel = target_for(job)
        err = UsageError(f"two jobs write {rel}; not started", url=redact_url(job.url))
        return JobResult(job, self.out_dir / rel, err.result, error=err)


def _labelled(res: JobResult, worker: str) -> DistributedResult:
    values = {f.name: getattr(res, f.name) for f in fields(res) if f.init}
    values["worker"] = worker
    return DistributedResult(**values)


class _Submitter:
    """Submits shards, at most `window` in flight, and yields their results as they finish."""

    def __init__(
        self, client: Any, out_dir: Path, opts: BulkOptions, config: ClientConfig, size: int
    ) -> None:
        self.client = client
        self.out_dir = out_dir
        # The submitter checked for duplicates: a task need not remember its targets.
        self.opts = replace(opts, skip_duplicates=frozenset(), duplicates_known=True)
        self.config = config
        self.size = size
        threads = sum(client.nthreads().values()) or 1
        self.window = 2 * threads + 2
        self.run_id = uuid.uuid4().hex[:12]
        self.pending: dict[Any, ShardTask] = {}
        self.done: Any = require_distributed().as_completed(loop=client.loop)

    def run(self, items: Iterator[Job | JobResult]) -> Iterator[DistributedResult]:
        batch: list[Job] = []
        index = 0
        for item in items:
            if isinstance(item, JobResult):
                yield _labelled(item, "")
                continue
            batch.append(item)
            if len(batch) >= self.size:
                yield from self._submit(index, batch)
                index, batch = index + 1, []
        if batch:
            yield from self._submit(index, batch)
        while self.pending:
            yield from self._collect(next(self.done))

    def _submit(self, index: int, jobs: list[Job]) -> Iterator[DistributedResult]:
        while len(self.pending) >= self.window:
            yield from self._collect(next(self.done))
        task = ShardTask(index, tuple(jobs), str(self.out_dir), self.opts, self.config)
        key = f"streamer-shard-{index}-{self.run_id}"
        future = self.client.submit(_task, task, key=key, pure=False)
        self.pending[future] = task
        self.done.add(future)

    def _collect(self, future: Any) -> Iterator[DistributedResult]:
        task = self.pending.pop(future)
        if future.status == "finished":
            outcome: ShardOutcome = future.result()
            for res in outcome.results:
                yield _labelled(res, outcome.worker)
        else:
            exc = future.exception() if future.status == "error" else None
            err = _shard_error(task.index, exc)
            for job in task.jobs:
                path = self.out_dir / target_for(job)
                yield DistributedResult(job, path, err.result, error=err)
        future.release()


def _shard_error(index: int, exc: BaseException | None) -> StreamerError:
    if isinstance(exc, StreamerError):
        return exc
    why = "was cancelled" if exc is None else f"failed: {type(exc).__name__}: {exc}"
    return StreamerError(f"shard {index} {why}", result=Result.REQUEST_FAILED)


def shard_size(total: int | None, shards: int) -> int:
    """Jobs per shard: `total` cut into `shards` pieces, at most MAX_SHARD_JOBS each."""
    if total is None:
        return MAX_SHARD_JOBS
    return max(1, min(MAX_SHARD_JOBS, math.ceil(total / max(1, shards))))


def as_completed(
    jobs_or_manifest: str | os.PathLike[str] | Iterable[Job | str],
    out_dir: str | os.PathLike[str],
    *,
    scheduler: str | None = None,
    client: Any = None,
    shards: int | None = None,
    options: BulkOptions | None = None,
    config: ClientConfig | None = None,
    on_bad_line: BadLineHandler | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    on_total: Callable[[int | None], None] | None = None,
) -> Iterator[DistributedResult]:
    """Run the jobs on the cluster; yield one result per job as its shard finishes.

    `jobs_or_manifest` is a manifest file's path or an iterable of `Job`s (or URLs). Bad
    manifest lines go to `on_bad_line`; without it, one raises `UsageError` before anything is
    submitted. `shards` defaults to 4 per worker (each at most MAX_SHARD_JOBS jobs), or to
    the cut an earlier run into `out_dir` recorded (so a rerun finds each shard's journal,
    whatever the cluster's size); given, it replaces that record. `options`
    (-j, max_per_host, memory budget) apply to each task on its worker. `on_total` is told
    the number of jobs (None for an iterable without a length) before the first is submitted.
    """
    require_distributed()
    out = Path(out_dir)
    if not out.is_dir():
        raise FileError(
            f"output directory {out} does not exist",
            path=str(out),
            result=Result.DOWNLOAD_FILE_CANT_OPEN,
        )
    if shards is not None and shards < 1:
        raise UsageError(f"shards must be at least 1, not {shards}")
    source = _Source(jobs_or_manifest, out, on_bad_line)
    if on_total is not None:
        on_total(source.total)
    with DirLock(out), connected(scheduler, client, connect_timeout) as dask_client:
        size = read_plan(out) if shards is None else None
        if size is None:
            wanted = shards or SHARDS_PER_WORKER * max(1, len(dask_client.nthreads()))
            size = shard_size(source.total, wanted)
            if not (options or BulkOptions()).dry_run:
                write_plan(out, size)
        submitter = _Submitter(
            dask_client, out, options or BulkOptions(), config or ClientConfig(), size
        )
        yield from submitter.run(source.items())


def download_many(
    jobs_or_manifest: str | os.PathLike[str] | Iterable[Job | str],
    out_dir: str | os.PathLike[str],
    *,
    scheduler: str | None = None,
    client: Any = None,
    shards: int | None = None,
    options: BulkOptions | None = None,
    config: ClientConfig | None = None,
    on_bad_line: BadLineHandler | None = None,
) -> list[DistributedResult]:
    """`as_completed`, collected: one result per job (in the order shards finished)."""
    return list(
        as_completed(
            jobs_or_manifest,
            out_dir,
            scheduler=scheduler,
            client=client,
            shards=shards,
            options=options,
            config=config,
            on_bad_line=on_bad_line,
        )
    )


__all__ = [
    "LOCK_NAME",
    "PLAN_NAME",
    "DirLock",
    "DistributedResult",
    "as_completed",
    "download_many",
    "read_plan",
    "require_distributed",
    "run_shard",
    "shard_size",
    "write_plan",
]
