"""Small files in bulk runs: one GET on the lane straight into a locked `.part`, then rename.

The full engine (`downloading.py`) spends a few hundred microseconds of Python per file on
resume planning, sidecars and aiohttp. A small body fetched from byte 0 needs none of that:
with no sidecar (the full engine writes none below `atomic.SIDECAR_MIN` either), the crash
story is the same, in the same order:

1. ``T.part`` is created exclusively and locked (flock), so a second writer is refused;
2. the body is written into it as it arrives, checked against its length (and checksum);
3. only a complete body is renamed to ``T`` (fsynced first when the run is not journaled);
4. on any failure the `.part` this call created is removed; ``T`` is never touched.

Per file that is open, flock, write, rename and close: no stat. A target that is a directory
is found by the rename itself (EISDIR), and the job goes to the full engine, which says so.

`QuickPath.fetch` returns None whenever the full engine should do the job instead: the URL
or headers are not simple, a partial from an earlier run exists (it is resumed there), the
body is large or framed by neither Content-Length nor chunks, the answer is a redirect, or a
connection to the host could not be made (the full engine then reports that in its words).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

from ..config import ClientConfig
from ..core.checksum import Checksum, Verifier
from ..core.headers import without
from ..core.http1 import Origin, merge_fields, simple_request
from ..core.limits import BodyLimit
from ..core.manifest import Job
from ..core.redact import redact_url
from ..core.status import status_error
from ..errors import FileExistsError_, Result, StreamerError
from ..storage.atomic import NOFOLLOW, SIDECAR_MIN, publish
from ..storage.files import file_error
from .connection import Handoff, Lane, Reply, Timeouts

# The largest body the lane takes; above it a resumable partial is worth its sidecar.
QUICK_MAX = SIDECAR_MIN
# A host whose answers were handed to the full engine this many times for their size (or
# framing) leaves the lane for the rest of the run: each hand-off costs a second request.
HANDOFFS_PER_HOST = 4
_WRITE = Result.DOWNLOAD_FILE_WRITE_ERROR
_IDENTITY = ("Accept-Encoding", "identity")
# O_EXCL never follows a link: a planted `.part` link makes the lane decline the job.
_EXCL = os.O_RDWR | os.O_CREAT | os.O_EXCL | NOFOLLOW

Throttle = Callable[[int], Awaitable[None]]
RouteCheck = Callable[[str], bool]  # True when the environment adds nothing (proxy, netrc)


class _Ask(NamedTuple):
    """One request on the lane: where, what, with which fields; and the `.part` it fills."""

    origin: Origin
    target: str
    fields: list[tuple[str, str]]
    url: str  # redacted, for errors
    part: str


class QuickDone(NamedTuple):  # a tuple: made once per file, and a frozen dataclass costs 3x
    size: int
    checksum: str | None
    validator: str | None = None  # the answer's ETag or Last-Modified, for the journal


class QuickPath:
    """The lane plus the per-host bookkeeping of when not to use it."""

    def __init__(
        self,
        config: ClientConfig,
        plain_route: RouteCheck,
        tls: Callable[[], ssl.SSLContext],
        *,
        durable: bool,
        no_clobber: bool = False,
        pipeline: int = 1,
    ) -> None:
        self.durable = durable
        self.no_clobber = no_clobber
        self._plain_route = plain_route
        timeouts = Timeouts(config.connect_timeout, config.read_timeout, config.total_timeout)
        self.lane = Lane(timeouts, tls, pipeline)
        self._fields = _base_fields(config) or []
        # Bodies are saved as sent (RFC 9110 12.5.3), unless the run omits Accept-Encoding.
        self._tail = without([_IDENTITY], config.omit_headers)
        self._send = [*self._fields, *self._tail]
        self._handoffs: dict[Origin, int] = {}
        self._usable_origins: dict[str, bool] = {}

    @staticmethod
    def usable(config: ClientConfig) -> bool:
        """Whether a client with this config may use the lane at all."""
        # The lane saves bodies as sent: a run that asked for decoded bodies goes to the engine.
        return (
            config.proxy is None
            and config.speed_limit is None
            and not config.accept_gzip
            and _base_fields(config) is not None
        )

    async def fetch(self, job: Job, path: Path, throttle: Throttle | None) -> QuickDone | None:
        """Download `job` into `path` on the lane, or None to leave it to the full engine."""
        simple = simple_request(job.url)
        if simple is None or not self._wanted(job, simple[0]):
            return None
        fields = self._send
        if job.headers:
            merged = merge_fields(self._fields, job.headers)
            if merged is None:
                return None
            fields = [*merged, *self._tail]
        part = f"{path}.part"
        fd = _create_part(part)
        if fd is None:
            return None
        url = redact_url(job.url)
        published = False
        try:
            done = await self._into(
                fd, job, _Ask(simple[0], simple[1], fields, url, part), throttle
            )
            if done is not None:
                published = await self._publish(fd, part, path, url)
                done = done if published else None
        finally:
            os.close(fd)  # the lock goes with it, after the rename
            if not published:
                _unlink_quietly(part)
        return done

    def _wanted(self, job: Job, origin: Origin) -> bool:
        if self._handoffs.get(origin, 0) >= HANDOFFS_PER_HOST:
            return False
        key = f"{origin.scheme}://{origin.authority}"
        usable = self._usable_origins.get(key)
        if usable is None:
            usable = self._usable_origins[key] = self._plain_route(job.url)
        return usable

    async def _into(
        self, fd: int, job: Job, ask: _Ask, throttle: Throttle | None
    ) -> QuickDone | None:
        url = ask.url
        verifier = Verifier(Checksum.parse(job.checksum), url=url) if job.checksum else None
        limit = QUICK_MAX if job.max_bytes is None else min(QUICK_MAX, job.max_bytes)
        sink = _sink(fd, verifier)
        try:
            reply = await self.lane.get(
                ask.origin, ask.target, ask.fields, sink=sink, max_body=limit, url=url
            )
        except Handoff:
            # Cannot connect: the full engine says why, and takes the host's other jobs.
            self._handoffs[ask.origin] = HANDOFFS_PER_HOST
            return None
        except StreamerError:
            raise  # a TransferTimeout is an OSError too, but not a file's
        except OSError as exc:  # from the sink: the write of a body piece
            raise file_error(exc, Path(ask.part), "write", _WRITE, url) from exc
        if not reply.read:
            self._not_read(reply, job, ask.origin, url)
            return None
        if verifier is not None:
            verifier.check()
        if throttle is not None:
            await throttle(reply.size)
        head = reply.head
        validator = head.value("etag") or head.value("last-modified")
        return QuickDone(reply.size, job.checksum, validator)

    def _not_read(self, reply: Reply, job: Job, origin: Origin, url: str) -> None:
        """An answer whose body was not taken: an error status, a body over the job's limit,
        or something for the full engine (counted against the host)."""
        head = reply.head
        if head.status >= 400:
            raise status_error(url, head.status, head.reason, head.fields, now=time.time())
        if head.status == 200 and head.simple and job.max_bytes is not None:
            BodyLimit(job.max_bytes, url).check_declared(head.length)
        if reply.over and job.max_bytes is not None and job.max_bytes <= QUICK_MAX:
            BodyLimit(job.max_bytes, url).feed(job.max_bytes + 1)  # a chunked body too long
        self._handoffs[origin] = self._handoffs.get(origin, 0) + 1

    async def _publish(self, fd: int, part: str, path: Path, url: str) -> bool:
        """Rename the complete `.part` to the target while still holding its lock; with
        no_clobber, link it instead, which fails rather than replace a file that appeared.
        False when the target is a directory: the full engine reports that."""
        try:
            await publish(fd, part, path, no_clobber=self.no_clobber, durable=self.durable)
        except IsADirectoryError:
            return False
        except FileExistsError as exc:
            raise FileExistsError_(
                f"{path} exists and --no-clobber was given; the download was discarded",
                path=str(path),
                url=url,
            ) from exc
        except OSError as exc:
            raise file_error(exc, path, "rename into", _WRITE, url) from exc
        return True

    def close(self) -> None:
        self.lane.close()


def _base_fields(config: ClientConfig) -> list[tuple[str, str]] | None:
    """The lane's fields for every request of `config` (its headers replacing the defaults),
    or None when one of them is not for the lane (see `merge_fields`)."""
    own = without([("User-Agent", config.user_agent)], config.omit_headers)
    return merge_fields(own, config.headers.items())


def _create_part(part: str) -> int | None:
    """A new, locked `.part`; None when one exists (a partial to resume, or another writer),
    or when it cannot be created (the full engine reports)."""
    try:
        fd = os.open(part, _EXCL, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)  # another process opened our new file first; it is theirs now
        return None
    return fd


def _sink(fd: int, verifier: Verifier | None) -> Callable[[memoryview], None]:
    update = verifier.update if verifier is not None else None

    def write(data: memoryview) -> None:
        if update is not None:
            update(data)
        while data:
            data = data[os.write(fd, data) :]

    return write


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):  # the failure being reported matters more than this one
        os.unlink(path)


__all__ = ["QUICK_MAX", "QuickDone", "QuickPath"]
