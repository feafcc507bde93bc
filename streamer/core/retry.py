"""Retry decisions: which errors to retry, how long to wait, when to give up (like curl's --retry).

`RetryPolicy` is a frozen value in the manner of urllib3's ``Retry``: it never sleeps and never
reads a clock. The caller makes an attempt, and on failure asks `RetryPolicy.next_delay` how long
to wait (None = give up and report `RetryPolicy.exhausted_message`), sleeps that long itself,
then carries on with `RetryPolicy.increment`::

    policy = RetryPolicy(retries=3)
    start = clock()
    while True:
        try:
            return await attempt()
        except StreamerError as err:
            wait = policy.next_delay(
                err, elapsed=clock() - start, rand=random(), retry_after=parsed_header_or_none
            )
            if wait is None:
                raise  # reporting policy.exhausted_message(err) as the final text
            await asyncio.sleep(wait)
            policy = policy.increment(err)

The clock, the randomness and the Retry-After header value are all the caller's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from streamer.core.validators import parse_http_date
from streamer.errors import Result, StreamerError, UsageError

# Delay-seconds with more significant digits than this are longer than any cap can be (about
# 31 billion years) and are returned as infinity, so that huge strings never reach int().
_MAX_DELAY_DIGITS = 18

# 2 ** 1023 is the largest power of two a float holds; beyond it the backoff is capped anyway.
_MAX_EXPONENT = 1023


def _delay_seconds(value: str) -> float | None:
    """RFC 9110 10.2.3: ``delay-seconds = 1*DIGIT``, ASCII digits only, no sign, no fraction."""
    if not value or not value.isascii() or not value.isdigit():
        return None
    significant = value.lstrip("0")
    if len(significant) > _MAX_DELAY_DIGITS:
        return math.inf
    return float(int(significant or "0"))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After field value (RFC 9110 10.2.3), or None if unusable.

    ``Retry-After = HTTP-date / delay-seconds``. Delay-seconds is a non-negative decimal
    integer: leading zeros are fine, but a sign, a fraction ("1.5") or an exponent make the
    value invalid, hence None. An HTTP-date (any of the three forms of RFC 9110 5.6.7) is
    turned into seconds from ``now`` (POSIX seconds); a date already past means 0.0.
    A delay-seconds too long to matter is returned as ``math.inf`` (callers clamp it).
    """
    if value is None:
        return None
    # RFC 9110 5.5: optional whitespace around a field value is not part of it.
    value = value.strip(" \t")
    seconds = _delay_seconds(value)
    if seconds is not None:
        return seconds
    when = parse_http_date(value, now=now)
    if when is None:
        return None
    return max(0.0, when - now)


def _check_count(name: str, value: int, minimum: int = 0) -> None:
    if value < minimum:
        raise UsageError(f"retry {name} must be at least {minimum}: {value}")


def _check_seconds(name: str, value: float | None) -> None:
    # `not value >= 0` also rejects NaN, which would make every comparison below false.
    if value is not None and not value >= 0:
        raise UsageError(f"retry {name} must be a non-negative number of seconds: {value}")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a request; a value, `increment` returns a new one.

    retries:         retries allowed after the first attempt (curl's ``--retry N``).
    delay:           fixed seconds between attempts (curl's ``--retry-delay``); None means
                     exponential backoff from `backoff`, doubling per attempt, capped at
                     `max_backoff`, with jitter.
    max_time:        no attempt starts later than this many seconds after the first one
                     started (curl's ``--retry-max-time``); None means no limit.
    retry_after_cap: a server's Retry-After is honoured but never beyond this many seconds.
    attempts:        attempts made so far (the one that just failed included).
    history:         the `Result` of each failed attempt for which `increment` was called.
    """

    retries: int = 0
    delay: float | None = None
    backoff: float = 1.0
    max_backoff: float = 30.0
    max_time: float | None = None
    retry_after_cap: float = 120.0
    attempts: int = 1
    history: tuple[Result, ...] = field(default=())

    def __post_init__(self) -> None:
        _check_count("count", self.retries)
        _check_count("attempts", self.attempts, minimum=1)
        _check_seconds("delay", self.delay)
        _check_seconds("backoff", self.backoff)
        _check_seconds("max backoff", self.max_backoff)
        _check_seconds("max time", self.max_time)
        _check_seconds("Retry-After cap", self.retry_after_cap)

    def is_retryable(self, error: StreamerError) -> bool:
        """Whether another attempt may help: the error's own ``retryable`` flag decides.

        errors.py sets it for network errors (timeouts and stalls included), truncated bodies
        and HTTP 408, 429, 500, 502, 503 and 504; not for usage, file, checksum, size,
        redirect or TLS errors.
        """
        return error.retryable

    def _backoff(self, rand: float) -> float:
        """Exponential backoff with jitter: the capped doubling delay times ``0.5 + rand / 2``.

        A variant of "full jitter" (AWS calls this one "equal jitter"): the delay is drawn
        from the upper half of ``[0, ceiling)`` rather than all of it, so it is never zero (a
        retry storm cannot hammer a recovering server at once) yet still spreads clients
        that failed together over a range as wide as half the delay. With rand just below 1
        the float sum may round up to the full ceiling, which is never exceeded.
        """
        exponent = min(self.attempts - 1, _MAX_EXPONENT)
        ceiling = min(self.max_backoff, self.backoff * 2.0**exponent)
        return ceiling * (0.5 + rand / 2)

    def next_delay(
        self,
        error: StreamerError,
        *,
        elapsed: float,
        rand: float,
        retry_after: float | None = None,
    ) -> float | None:
        """Seconds to wait before the next attempt, or None if there should be none.

        None when the error is not retryable, when all `retries` are used up (``attempts >
        retries``), or when the wait would end after `max_time` seconds from the start of the
        first attempt (``elapsed`` is the time since then). Otherwise the wait is, in order:
        the server's Retry-After (RFC 9110 10.2.3; 429 per RFC 6585 4, 503 per RFC 9110
        15.6.4) clamped to ``[0, retry_after_cap]``; the fixed `delay`; or jittered
        exponential backoff. ``rand`` is a uniform random float in ``[0, 1)``.
        """
        if not 0 <= rand <= 1:
            raise UsageError(f"retry jitter must be a random number in [0, 1): {rand}")
        if not elapsed >= 0:
            raise UsageError(f"elapsed time must be a non-negative number of seconds: {elapsed}")
        if not self.is_retryable(error) or self.attempts > self.retries:
            return None
        if retry_after is not None:
            # `not > 0` also maps NaN to no wait rather than letting it through.
            wait = min(self.retry_after_cap, retry_after) if retry_after > 0 else 0.0
        elif self.delay is not None:
            wait = self.delay
        else:
            wait = self._backoff(rand)
        if self.max_time is not None and elapsed + wait > self.max_time:
            return None
        return float(wait)

    def increment(self, error: StreamerError) -> RetryPolicy:
        """The policy for the next attempt: one more attempt made, the error's result recorded."""
        return replace(self, attempts=self.attempts + 1, history=(*self.history, error.result))

    def exhausted_message(self, error: StreamerError) -> str:
        """The final error text, e.g. "gave up after 4 attempts: <error>".

        After a single attempt nothing was retried, so the error's own text is returned as is.
        """
        if self.attempts == 1:
            return error.message
        # error.message, not str(error): the URL is added once, by the error that carries this.
        return f"gave up after {self.attempts} attempts: {error.message}"


__all__ = ["RetryPolicy", "parse_retry_after"]
