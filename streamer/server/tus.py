"""The built-in server's tus 1.0.0 endpoint (https://tus.io/protocols/resumable-upload).

At `TUS_PATH` (``/files/``), with the extensions creation, creation-with-upload, termination,
checksum (sha1, md5, sha256) and expiration:

* ``OPTIONS /files/``: 204 with Tus-Version, Tus-Extension, Tus-Checksum-Algorithm and, when
  the server has a ``max_upload``, Tus-Max-Size (a longer Upload-Length gets 413).
* ``POST /files/`` with Upload-Length (and Upload-Metadata, checked): 201 with Location
  ``/files/ID``, ID 32 characters from `secrets`. A body sent as
  application/offset+octet-stream is the upload's first bytes (creation-with-upload).
* ``HEAD /files/ID``: Upload-Offset (the bytes durably on disk), Upload-Length,
  Upload-Metadata, Upload-Expires, Cache-Control: no-store.
* ``PATCH /files/ID``: Content-Type application/offset+octet-stream (415 otherwise),
  Upload-Offset equal to the server's (409 otherwise), at most the rest of Upload-Length
  (413); the body is streamed to disk 1 MiB at a time. A PATCH cut short keeps the bytes that
  arrived. With Upload-Checksum the body's digest must match (460 otherwise, and its bytes are
  dropped; a cut one is dropped too, since it cannot be checked). One PATCH at a time per
  upload: another one meanwhile (or a DELETE) gets 423 Locked. A PATCH without a checksum
  records its progress every `CHECKPOINT` bytes, so a crashed server loses little.
* ``DELETE /files/ID``: 204, then 404 (termination).
* Every request but OPTIONS needs Tus-Resumable: 1.0.0 (412 otherwise, with Tus-Version).
  X-HTTP-Method-Override on a POST to ``/files/ID`` is taken as the method.
* An upload expires `TusConfig.expire_after` seconds after its last PATCH (Upload-Expires):
  it then answers 410 once, 404 after. Expired records are also swept when the app starts.

A finished upload is published into the served directory under its ``filename`` metadata made
safe, never over an existing file (see `streamer.server.tus_store`); the completing PATCH
and later HEADs name it in ``Streamer-Published`` (a path under the served root).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError

from streamer.core.tus_server import (
    CHECKSUM_ALGORITHMS,
    EXTENSIONS,
    TUS_VERSION,
    TusRequestError,
    UploadRecord,
    check_length,
    check_patch,
    check_version,
    is_offset_stream,
    parse_checksum,
    parse_metadata,
    parse_size,
)
from streamer.core.validators import format_http_date
from streamer.server.tus_store import TusStore
from streamer.server.tus_writer import DataWriter
from streamer.server.upload import in_thread

TUS_PATH = "/files/"
CHECKPOINT = 64 << 20
"""Bytes of a PATCH (without checksum) after which its progress is fsynced and recorded."""
DEFAULT_EXPIRY = 24 * 3600.0
READ_CHUNK = 1 << 20

_REASONS = {460: "Checksum Mismatch", 423: "Locked"}


@dataclass(frozen=True)
class TusConfig:
    """``expire_after``: seconds an unfinished upload lives after its last PATCH (None: for
    ever); ``clock``: POSIX seconds now (tests move it instead of waiting); ``checkpoint``:
    bytes of a PATCH without checksum after which its progress is fsynced and recorded."""

    expire_after: float | None = DEFAULT_EXPIRY
    clock: Callable[[], float] = time.time
    checkpoint: int = CHECKPOINT


class TusEndpoint:
    """The tus state of one app: its store, its limits and the uploads a PATCH is writing."""

    def __init__(self, root: Path, max_size: int | None, config: TusConfig) -> None:
        self.store = TusStore(root)
        self.max_size = max_size
        self.config = config
        self.busy: set[str] = set()

    def expiry(self) -> float | None:
        after = self.config.expire_after
        return None if after is None else self.config.clock() + after

    async def fetch(self, upload_id: str) -> UploadRecord:
        """The record, or 404; an expired one (not being written) is removed: 410."""
        record = self.store.load(upload_id)
        if record.expired(self.config.clock()) and upload_id not in self.busy:
            await self.store.remove(upload_id)
            raise TusRequestError(f"upload {upload_id} has expired", status=410)
        return record

    @contextlib.contextmanager
    def locked(self, upload_id: str) -> Iterator[None]:
        """One writer per upload (tus 1.0.0 leaves concurrent PATCHes to the server: 423)."""
        if upload_id in self.busy:
            raise TusRequestError(f"upload {upload_id} is being written", status=423)
        self.busy.add(upload_id)
        try:
            yield
        finally:
            self.busy.discard(upload_id)

    async def save(self, record: UploadRecord) -> UploadRecord:
        record = dataclasses.replace(record, expires=self.expiry())
        await self.store.save(record)
        return record

    async def sweep(self) -> None:
        """At start: drop expired uploads and orphaned files, publish finished uploads a
        crash left unpublished."""
        await in_thread(self.store.remove_orphans)
        for upload_id in self.store.records():
            with contextlib.suppress(TusRequestError):
                record = await self.fetch(upload_id)
                if record.complete and record.published is None:
                    await self.store.publish(record)


TUS_KEY = web.AppKey("tus", TusEndpoint)
Handler = Callable[[TusEndpoint, web.Request], Awaitable[web.StreamResponse]]


def _refusal(exc: TusRequestError) -> web.Response:
    headers = {"Tus-Version": TUS_VERSION} if exc.status == 412 else {}
    if exc.status == 405:
        headers["Allow"] = "OPTIONS, HEAD, PATCH, DELETE, POST"
    reason = _REASONS.get(exc.status)
    return web.Response(status=exc.status, reason=reason, text=exc.message + "\n", headers=headers)


def _tus(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Tus-Resumable checked on the way in (not for OPTIONS) and sent on every answer;
    refusals become their status with a one-line text."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            if request.method != "OPTIONS":
                check_version(request.headers.get("Tus-Resumable"))
            response = await handler(request.app[TUS_KEY], request)
        except TusRequestError as exc:
            response = _refusal(exc)
        response.headers["Tus-Resumable"] = TUS_VERSION
        return response

    return wrapped


def _state_headers(record: UploadRecord) -> dict[str, str]:
    headers = {"Upload-Offset": str(record.offset)}
    if record.expires is not None and not record.complete:
        headers["Upload-Expires"] = format_http_date(record.expires)
    if record.published is not None:
        headers["Streamer-Published"] = "/" + record.published
    return headers


async def _options(ep: TusEndpoint, request: web.Request) -> web.Response:
    headers = {
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": ",".join(EXTENSIONS),
        "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
    }
    if ep.max_size is not None:
        headers["Tus-Max-Size"] = str(ep.max_size)
    return web.Response(status=204, headers=headers)


async def _head(ep: TusEndpoint, request: web.Request) -> web.Response:
    record = await ep.fetch(request.match_info["id"])
    headers = _state_headers(record)
    headers["Upload-Length"] = str(record.length)
    headers["Cache-Control"] = "no-store"
    if record.metadata:
        headers["Upload-Metadata"] = record.metadata
    return web.Response(status=200, headers=headers)


async def _delete(ep: TusEndpoint, request: web.Request) -> web.Response:
    record = await ep.fetch(request.match_info["id"])
    with ep.locked(record.id):
        await ep.store.remove(record.id)
    return web.Response(status=204)


def _checksum(request: web.Request) -> tuple[str, bytes] | None:
    value = request.headers.get("Upload-Checksum")
    return None if value is None else parse_checksum(value)


async def _patch(ep: TusEndpoint, request: web.Request) -> web.Response:
    record = await ep.fetch(request.match_info["id"])
    if not is_offset_stream(request.headers.get("Content-Type")):
        raise TusRequestError(
            "PATCH needs Content-Type: application/offset+octet-stream", status=415
        )
    claimed = parse_size(request.headers.get("Upload-Offset"), "Upload-Offset")
    checksum = _checksum(request)
    with ep.locked(record.id):
        record = await ep.fetch(record.id)  # as the last PATCH left it
        stored = record.offset
        check_patch(
            stored=stored, length=record.length, claimed=claimed, body=request.content_length
        )
        record = await _append(ep, request, record, checksum)
    return web.Response(status=204, headers=_state_headers(record))


async def _create(ep: TusEndpoint, request: web.Request) -> web.Response:
    if request.headers.get("Upload-Defer-Length") is not None:
        raise TusRequestError("Upload-Defer-Length is not supported; send Upload-Length")
    length = parse_size(request.headers.get("Upload-Length"), "Upload-Length")
    check_length(length, ep.max_size)
    metadata = request.headers.get("Upload-Metadata", "")
    parse_metadata(metadata)
    with_body = is_offset_stream(request.headers.get("Content-Type"))
    if request.can_read_body and not with_body:
        raise TusRequestError("a body with POST needs application/offset+octet-stream", status=415)
    checksum = _checksum(request)
    if with_body:
        check_patch(stored=0, length=length, claimed=0, body=request.content_length)
    record = await ep.store.create(length, metadata, ep.expiry())
    location = str(request.url.with_path(TUS_PATH + record.id).with_query(None))
    try:
        if record.complete:
            record = await ep.store.publish(record)
        elif with_body:
            with ep.locked(record.id):
                record = await _append(ep, request, record, checksum)
    except TusRequestError as exc:
        response = _refusal(exc)  # the upload exists: say where, so it can be resumed
        offset = ep.store.load(record.id).offset
        response.headers.update({"Location": location, "Upload-Offset": str(offset)})
        return response
    headers = {"Location": location, **_state_headers(record)}
    return web.Response(status=201, headers=headers)


def _left_in_buffer(content: StreamReader) -> bytes:
    """Bytes aiohttp had received but not handed over when the connection broke.

    `StreamReader.read` raises the connection's error while its buffer may still hold data;
    tus asks that a PATCH cut short keep every byte that arrived, so they are drained through
    the reader's private method (pinned by the cut-PATCH test).
    """
    with contextlib.suppress(Exception):
        return content._read_nowait(-1)
    return b""


async def _receive(
    request: web.Request,
    writer: DataWriter,
    checkpoint: Callable[[], Awaitable[None]] | None,
    every: int,
) -> str:
    """Stream the body into ``writer``: "whole", "cut" (the connection broke) or "over" (it
    went past the upload's length). ``checkpoint`` runs every ``every`` bytes."""
    content = request.content
    mark = every
    while True:
        try:
            chunk = await content.read(READ_CHUNK)
        except (ConnectionError, HttpProcessingError):
            await writer.write(_left_in_buffer(content))
            return "cut"
        if not chunk:
            return "whole"
        if not await writer.write(chunk):
            return "over"
        if checkpoint is not None and writer.count >= mark:
            mark = writer.count + every
            await checkpoint()


async def _append(
    ep: TusEndpoint,
    request: web.Request,
    record: UploadRecord,
    checksum: tuple[str, bytes] | None,
) -> UploadRecord:
    """Append one body at the record's offset; returns the record as it now is on disk.

    Without a checksum every byte that arrived is kept, even when the body is cut or too
    long (tus 1.0.0 asks a server to keep what it can); with one, only a whole body whose
    digest matches is kept.
    """
    if record.complete:  # an empty PATCH re-checking a finished upload; nothing to open
        return record if record.published else await ep.store.publish(record)
    writer = DataWriter.open(ep.store.data_path(record.id), record.offset, record.length, checksum)
    saved = record

    async def commit() -> None:
        nonlocal saved
        await writer.sync()
        saved = await ep.save(record.advanced(record.offset + writer.count))

    checkpoint = None if checksum else commit
    try:
        try:
            outcome = await _receive(request, writer, checkpoint, ep.config.checkpoint)
            refusal = await writer.verdict(outcome)
        except asyncio.CancelledError:
            # The client left (servers with handler_cancellation) or the server is stopping:
            # what arrived is kept all the same.
            await writer.write(_left_in_buffer(request.content))
            await (commit() if checksum is None else writer.discard())
            raise
        await (commit() if refusal is None or checksum is None else writer.discard())
    finally:
        writer.close()
    if refusal is not None:
        raise refusal
    if saved.complete and saved.published is None:
        saved = await ep.store.publish(saved)
    return saved


def add_tus_routes(
    app: web.Application, root: Path, max_size: int | None, config: TusConfig | None = None
) -> None:
    """Register the tus endpoint (before the app's catch-all file routes)."""
    endpoint = TusEndpoint(root, max_size, config or TusConfig())
    app[TUS_KEY] = endpoint

    async def sweep(_app: web.Application) -> None:
        await endpoint.sweep()

    app.on_startup.append(sweep)
    for base in (TUS_PATH, TUS_PATH.rstrip("/")):
        app.router.add_route("OPTIONS", base, _tus(_options))
        app.router.add_post(base, _tus(_create))
    # Only id-shaped paths: a HEAD of some other /files/NAME still reaches a served file.
    item = TUS_PATH + "{id:[A-Za-z0-9_-]{32}}"
    app.router.add_route("OPTIONS", item, _tus(_options))
    for method in ("HEAD", "PATCH", "DELETE", "POST"):
        app.router.add_route(method, item, _tus(_item))


_ITEM_METHODS: dict[str, Handler] = {"HEAD": _head, "PATCH": _patch, "DELETE": _delete}


async def _item(ep: TusEndpoint, request: web.Request) -> web.StreamResponse:
    """HEAD, PATCH or DELETE of one upload. tus 1.0.0 (core protocol): X-HTTP-Method-Override,
    when present, is the method, for clients that can only send POST (and GET)."""
    method = request.headers.get("X-HTTP-Method-Override", request.method).strip().upper()
    handler = _ITEM_METHODS.get(method)
    if handler is None:
        raise TusRequestError(f"{method[:20]} is not a method of an upload", status=405)
    return await handler(ep, request)


__all__ = ["CHECKPOINT", "DEFAULT_EXPIRY", "TUS_KEY", "TUS_PATH", "TusConfig", "add_tus_routes"]
