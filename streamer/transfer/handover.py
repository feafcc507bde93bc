"""The results of a bulk run on their way to the consumer, and how the run stops.

Workers hand results over in batches (`Outbox`); the consumer holds a `BulkRun`, and closing
it (leaving ``async with``, or `aclose`) stops the run's task group, so no transfer outlives
the consumer's interest. A run-wide failure leaves the group as itself, typed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import StreamerError

if TYPE_CHECKING:
    from .bulk import JobResult


@contextmanager
def ungrouped() -> Iterator[None]:
    """A run-wide failure (the journal cannot be written) leaves the task group as itself,
    typed, rather than wrapped in an ExceptionGroup the caller would not expect."""
    try:
        yield
    except BaseExceptionGroup as group:
        if group.split(GeneratorExit)[1] is None:
            # The consumer closed the results (`aclose`, or leaving `async with`): the task
            # group has stopped every worker; the generator must end with GeneratorExit itself.
            raise GeneratorExit from None
        first = _only_streamer_errors(group)
        if first is None:
            raise
        raise first from None


def _only_streamer_errors(group: BaseExceptionGroup[BaseException]) -> StreamerError | None:
    """The first error of `group` when all of them are StreamerErrors, else None."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(reversed(exc.exceptions))
        else:
            leaves.append(exc)
    if leaves and all(isinstance(exc, StreamerError) for exc in leaves):
        first = leaves[0]
        assert isinstance(first, StreamerError)
        return first
    return None


class Outbox:
    """Results from the workers to the consumer: a bounded list drained in batches (one wake-up
    of the consumer per batch, not one hand-over per result as with a Queue)."""

    def __init__(self, limit: int, workers: int) -> None:
        self.items: deque[JobResult] = deque()
        self.limit = limit
        self.working = workers
        self.ready = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    async def put(self, item: JobResult) -> None:
        self.items.append(item)
        self.ready.set()
        if len(self.items) >= self.limit:  # the consumer is behind: wait for it
            self.room.clear()
            await self.room.wait()

    def worker_done(self) -> None:
        self.working -= 1
        self.ready.set()

    async def batches(self) -> AsyncIterator[list[JobResult]]:
        while self.working or self.items:
            await self.ready.wait()
            self.ready.clear()
            batch = list(self.items)
            self.items.clear()
            self.room.set()
            yield batch


class BulkRun(AsyncIterator["JobResult"]):
    """The results of a bulk run as they finish; closing it stops the run's workers at once.

    Use ``async with client.download_many(...) as results: async for r in results: ...``: a
    consumer that leaves the loop early (``break``, an exception) then stops every transfer
    still running, and no further request is made. Without ``async with``, call `aclose`.
    """

    def __init__(self, results: AsyncGenerator[JobResult, None]) -> None:
        self._results = results

    def __aiter__(self) -> BulkRun:
        return self

    async def __anext__(self) -> JobResult:
        return await self._results.__anext__()

    async def aclose(self) -> None:
        """Stop the workers (cancelling the transfers in flight) and close the journal."""
        await self._results.aclose()

    async def __aenter__(self) -> BulkRun:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
