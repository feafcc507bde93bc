"""One shard of a distributed bulk run, as a cluster worker runs it (streamer.distributed).

The shard's jobs arrive as data (the manifest need not be on the worker). The bulk engine runs
in-process, on the calling thread's own event loop, so nothing it starts can outlive the worker.
Each shard keeps its own journal inside the output directory: when the worker dies and the
scheduler runs the shard again elsewhere, or the whole command is run again, every file the
journal vouches for is skipped. Results go back as data: `JobResult` pickles, and so does the
`StreamerError` it carries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import ClientConfig
from ..core.manifest import Job, target_for
from ..errors import StreamerError
from ..storage.journal import Journal
from .bulk import BulkOptions, JobResult, download_many

if TYPE_CHECKING:
    from .opener import Opener

SHARD_JOURNAL = ".streamer-journal.shard-{index}.jsonl"


def shard_journal(out_dir: Path, index: int) -> Path:
    """Where shard `index` journals its finished files."""
    return out_dir / SHARD_JOURNAL.format(index=index)


@dataclass(frozen=True)
class ShardTask:
    """What one task needs: its jobs, the shared output directory and the run's options."""

    index: int
    jobs: tuple[Job, ...]
    out_dir: str
    options: BulkOptions = field(default_factory=BulkOptions)
    config: ClientConfig = field(default_factory=ClientConfig)


@dataclass(frozen=True)
class ShardOutcome:
    """One result per job of the shard, and the worker that produced them."""

    index: int
    worker: str
    results: tuple[JobResult, ...]


async def download_shard(client: Opener, task: ShardTask, results: list[JobResult]) -> None:
    """Run `task`'s jobs with its own journal, appending each result to `results` (so that a
    run-wide failure still leaves the results made before it; see `unfinished`)."""
    out_dir = Path(task.out_dir)
    journal = Journal(shard_journal(out_dir, task.index), out_dir)
    journal.load()
    if not task.options.dry_run:  # a dry run creates no file, not even the journal
        journal.open()
    try:
        async for res in download_many(client, task.jobs, out_dir, task.options, journal):
            results.append(res)
    finally:
        await journal.close()


def unfinished(
    task: ShardTask, results: Sequence[JobResult], exc: StreamerError
) -> list[JobResult]:
    """A result carrying `exc` for each job of `task` that has no result in `results`."""
    seen = Counter(_identity(res.job) for res in results)
    out_dir = Path(task.out_dir)
    left: list[JobResult] = []
    for job in task.jobs:
        ident = _identity(job)
        if seen[ident]:
            seen[ident] -= 1
            continue
        left.append(JobResult(job, out_dir / target_for(job), exc.result, error=exc))
    return left


def _identity(job: Job) -> tuple[int, str, str | None]:
    # The engine may hand back a copy carrying the run's headers and limits: match on what
    # it never changes.
    return (job.line, job.url, job.path)


__all__ = [
    "SHARD_JOURNAL",
    "ShardOutcome",
    "ShardTask",
    "download_shard",
    "shard_journal",
    "unfinished",
]
