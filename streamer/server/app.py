"""The built-in file server: a local fixture for tests and the embedded default for the demo.

It serves the files under one root directory over HTTP/1.1 with GET and HEAD, and is meant to
be a correct peer for a resuming download client (RFC 9110):

* every file response carries a strong ``ETag`` (size, mtime and inode), ``Last-Modified``,
  ``Accept-Ranges: bytes``, an exact ``Content-Length``, ``Content-Type`` and ``Date``;
* one ``Range`` gives 206 with ``Content-Range``, a range past the end gives 416 with
  ``bytes */LENGTH``, several ranges or a malformed one are ignored (full 200);
* ``If-Range`` is evaluated by `streamer.core.validators.if_range_matches` (entity-tag by
  strong comparison, or an exact and strong Last-Modified date); a failed one sends the whole;
* ``If-None-Match`` / ``If-Modified-Since`` give 304;
* a directory gives a plain-text listing (one name per line, subdirectories with ``/``);
* paths are decoded segment by segment; ``..``, encoded slashes and symlinks leading out of
  the root all give 404;
* bodies go out with ``loop.sendfile`` where the loop supports it, otherwise in 1 MiB chunks,
  so memory stays flat whatever the file size;
* ``/files/`` is a tus 1.0.0 endpoint for resumable uploads (`streamer.server.tus`), which
  keeps its uploads in ``ROOT/.streamer-tus/`` (never served) and publishes each finished one
  into ``ROOT`` under its metadata file name, never over an existing file;
* ``PUT /path/name`` stores its body as that file and ``POST /dir/`` a multipart form's files
  in that directory, streamed to disk and renamed into place when complete, each body bounded
  by ``max_upload`` (413 otherwise); see `streamer.server.upload`.

Run it with `serve` (until cancelled, ``ready(base_url)`` once listening) or, in tests and the
demo, with the async context manager `running_server`::

    async with running_server(tmp_path) as base_url:   # "http://127.0.0.1:PORT/"
        ...

Both refuse a host that is not loopback unless ``allow_remote=True``: this is a fixture, not a
public web server. `make_app` builds the bare `aiohttp.web.Application` (for ``aiohttp_client``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from streamer.core.ranges import (
    ByteRange,
    RangeNotSatisfiable,
    format_content_range,
    format_unsatisfied,
    parse_range,
)
from streamer.core.validators import (
    etag_in_list,
    format_http_date,
    if_range_matches,
    parse_http_date,
)
from streamer.errors import UsageError
from streamer.server.files import (
    MAX_UPLOAD_KEY,
    ROOT_KEY,
    SENDFILE_KEY,
    content_type,
    directory_listing,
    open_regular_file,
    resolve_request_path,
    send_body,
    validator_headers,
)
from streamer.server.guard import DEFAULT_HEAD_TIMEOUT, DEFAULT_MAX_PENDING, HeadGuard
from streamer.server.tus import TusConfig, add_tus_routes
from streamer.server.upload import handle_post, handle_put

SHUTDOWN_TIMEOUT = 2.0
"""Seconds `running_server` waits for requests in flight when it stops."""


def make_app(
    root: Path,
    *,
    max_upload: int | None = None,
    sendfile: bool = True,
    tus: TusConfig | None = None,
) -> web.Application:
    """An application serving the files under ``root`` with GET and HEAD, taking uploads with
    PUT (a file) and POST (a multipart form into a directory), see `streamer.server.upload`,
    and resumable ones with tus 1.0.0 at ``/files/``, see `streamer.server.tus`.

    ``max_upload`` bounds each upload body in bytes (None: no limit), and is the tus
    endpoint's Tus-Max-Size; ``sendfile=False`` forces the chunked body path of GET (for
    tests and measurements); ``tus`` sets the tus uploads' expiry and clock.
    """
    app = web.Application()
    app[ROOT_KEY] = root.resolve(strict=True)
    app[MAX_UPLOAD_KEY] = max_upload
    app[SENDFILE_KEY] = sendfile
    # First: the tus routes win over the catch-all file routes for /files/.
    add_tus_routes(app, app[ROOT_KEY], max_upload, tus)
    app.router.add_get("/{tail:.*}", _handle, allow_head=True)
    app.router.add_put("/{tail:.*}", handle_put)
    app.router.add_post("/{tail:.*}", handle_post)
    return app


async def _handle(request: web.Request) -> web.StreamResponse:
    root = request.app[ROOT_KEY]
    target = resolve_request_path(root, request.rel_url.raw_path)
    if target is None:
        raise web.HTTPNotFound()
    if target.is_dir():
        return web.Response(text=directory_listing(target, root))
    fobj = open_regular_file(target)
    if fobj is None:
        raise web.HTTPNotFound()
    with fobj:
        return await _respond_file(request, target, fobj)


def _not_modified(request: web.Request, etag: str, mtime: float) -> bool:
    """RFC 9110 13.1.2 / 13.1.3: If-None-Match (weak comparison) takes precedence over IMS."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        return etag_in_list(if_none_match, etag)
    since_values = request.headers.getall("If-Modified-Since", [])
    if len(since_values) != 1:
        return False
    since = parse_http_date(since_values[0])
    return since is not None and math.floor(mtime) <= since


def _wanted_range(
    request: web.Request, st: os.stat_result, etag: str, now: float
) -> ByteRange | None:
    """The single range to send, or None for the whole; raises RangeNotSatisfiable (416)."""
    ranges = request.headers.getall("Range", [])
    # RFC 9110 14.2: Range is defined for GET only; a server MAY ignore it (we do for several).
    if request.method != "GET" or len(ranges) != 1:
        return None
    if_range = request.headers.get("If-Range")
    # RFC 9110 13.1.5: a false If-Range means ignore Range and send the whole representation;
    # a date only counts if Last-Modified is strong against this response's Date (8.8.2.2).
    if if_range is not None and not if_range_matches(if_range, etag, st.st_mtime, date=now):
        return None
    return parse_range(ranges[0], st.st_size)


async def _respond_file(request: web.Request, path: Path, fobj: BinaryIO) -> web.StreamResponse:
    st = os.fstat(fobj.fileno())
    now = time.time()
    headers = validator_headers(st)
    headers["Date"] = format_http_date(now)
    if _not_modified(request, headers["ETag"], st.st_mtime):
        return web.Response(status=304, headers=headers)
    headers["Accept-Ranges"] = "bytes"
    try:
        wanted = _wanted_range(request, st, headers["ETag"], now)
    except RangeNotSatisfiable:
        headers["Content-Range"] = format_unsatisfied(st.st_size)
        return web.Response(status=416, headers=headers)
    headers["Content-Type"] = content_type(path)
    offset, count, status = 0, st.st_size, 200
    if wanted is not None:
        offset, count, status = wanted.start, wanted.length, 206
        headers["Content-Range"] = format_content_range(wanted.start, wanted.end, st.st_size)
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = count
    await resp.prepare(request)
    if request.method == "HEAD":
        await resp.write_eof()
        return resp
    await send_body(request, resp, fobj, offset, count, use_sendfile=request.app[SENDFILE_KEY])
    return resp


def _check_host(host: str, allow_remote: bool) -> None:
    """Refuse anything but a loopback address or ``localhost`` unless allowed."""
    if allow_remote or host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise UsageError(f"refusing to serve on non-loopback host {host!r} without allow_remote")


def _base_url(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


class _GuardedSite(web.TCPSite):
    """A TCP site whose connections go through a `HeadGuard` (slowloris defence)."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: HeadGuard) -> None:
        super().__init__(runner, host, port)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.factory(server), self._host, self._port, reuse_address=True
        )


@contextlib.asynccontextmanager
async def running_server(
    root: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    allow_remote: bool = False,
    max_upload: int | None = None,
    head_timeout: float = DEFAULT_HEAD_TIMEOUT,
    max_pending: int = DEFAULT_MAX_PENDING,
    tus: TusConfig | None = None,
) -> AsyncIterator[str]:
    """Serve ``root`` while the block runs; yields the base URL, e.g. "http://127.0.0.1:PORT/".

    A request head must arrive within `head_timeout` seconds, and at most `max_pending`
    connections may be waiting for theirs (see `streamer.server.guard`)."""
    _check_host(host, allow_remote)
    # aiohttp closes a kept-alive connection still without a complete next head when its
    # keep-alive time runs out: that bounds every later head as the guard bounds the first.
    runner = web.AppRunner(
        make_app(root, max_upload=max_upload, tus=tus),
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        keepalive_timeout=head_timeout,
    )
    await runner.setup()
    try:
        guard = HeadGuard(head_timeout, max_pending)
        await _GuardedSite(runner, host, port, guard).start()
        yield _base_url(runner)
    finally:
        await runner.cleanup()


async def serve(
    root: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ready: Callable[[str], None] | None = None,
    allow_remote: bool = False,
    max_upload: int | None = None,
    head_timeout: float = DEFAULT_HEAD_TIMEOUT,
    max_pending: int = DEFAULT_MAX_PENDING,
) -> None:
    """Serve ``root`` until cancelled; ``ready(base_url)`` is called once listening."""
    async with running_server(
        root,
        host,
        port,
        allow_remote=allow_remote,
        max_upload=max_upload,
        head_timeout=head_timeout,
        max_pending=max_pending,
    ) as base_url:
        if ready is not None:
            ready(base_url)
        await asyncio.Event().wait()


__all__ = ["MAX_UPLOAD_KEY", "ROOT_KEY", "SENDFILE_KEY", "make_app", "running_server", "serve"]
