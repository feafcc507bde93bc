"""The one retry loop: run an attempt, ask the policy, sleep, go again (used by every feature).

The policy (`core.retry.RetryPolicy`) decides, as a pure value; this loop owns the clock, the
randomness and the sleeping, so that the decisions stay testable without waiting.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..core.retry import RetryPolicy
from ..errors import StreamerError, evolve

T = TypeVar("T")


def retry_delay(
    policy: RetryPolicy,
    exc: StreamerError,
    started: float,
    may_retry: Callable[[StreamerError], bool],
) -> float | None:
    """Seconds to wait before retrying after `exc`, or None to give up: the policy's answer
    (with the server's Retry-After), then `may_retry`, asked only when the policy would retry
    because it may spend a budget shared by many transfers."""
    delay = policy.next_delay(
        exc,
        elapsed=time.monotonic() - started,
        rand=random.random(),
        retry_after=getattr(exc, "retry_after", None),
    )
    if delay is not None and not may_retry(exc):
        return None
    return delay


async def with_retries(
    attempt: Callable[[int], Awaitable[T]],
    policy: RetryPolicy,
    *,
    may_retry: Callable[[StreamerError], bool] = lambda _exc: True,
    before_retry: Callable[[StreamerError, int], Awaitable[None]] | None = None,
) -> T:
    """``await attempt(n)`` for n = 1, 2, ... until it succeeds or the policy says stop.

    The final error carries ``attempts``, and "gave up after N attempts" when it was retried.
    """
    started = time.monotonic()
    while True:
        try:
            return await attempt(policy.attempts)
        except StreamerError as exc:
            delay = retry_delay(policy, exc, started, may_retry)
            if delay is None:
                if policy.attempts == 1:
                    raise
                final = evolve(exc, attempts=policy.attempts, message=policy.exhausted_message(exc))
                raise final from exc.__cause__
            if before_retry is not None:
                await before_retry(exc, policy.attempts)
            policy = policy.increment(exc)
            await asyncio.sleep(delay)
