"""Uploads into the built-in server's directory: PUT of one file, POST of a multipart form.

* ``PUT /dir/name`` streams the body into a temporary file next to the target (1 MiB writes,
  hashed on the way), fsyncs it and renames it onto the target: a reader sees the old file or
  the new one, never half of one. 201 Created for a new file, 200 for a replaced one, each with
  ``{"path", "size", "sha256"}`` as JSON. Paths follow the GET rules (no ``..``, nothing
  outside the root: 404); the parent directory must exist (409 otherwise).
* ``POST /dir/`` (any path naming a directory) with multipart/form-data stores each file part
  in that directory under a safe base name of its filename (`streamer.core.names.safe_name`)
  and collects the text fields (at most `MAX_FIELD_BYTES` each; a repeated name keeps its last
  value), at most `MAX_PARTS` parts; a file part with an empty filename (a browser's file
  input left empty) is skipped. The files of a form appear together once the whole body
  has been read, so a failed form leaves none. Answer: 200 with ``{"fields": {...}, "files":
  [{"name", "filename", "content_type", "path", "size", "sha256"}]}``.
* ``max_upload`` bounds each body: a declared Content-Length over it gets 413 before any byte
  of the body is read; a body that passes it mid-way (chunked) gets 413 there and its
  temporary files are removed. A body cut short (client gone) leaves no file, no temporary one.

After an early 413, aiohttp's lingering close reads and discards what the client still sends
(for at most its ``lingering_time``, 10 s) before closing the connection, so a client still
streaming its body reads the answer instead of a connection reset.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from streamer.core.names import safe_name
from streamer.server.files import (
    MAX_UPLOAD_KEY,
    ROOT_KEY,
    decode_segments,
    inside,
    resolve_request_path,
)
from streamer.storage.atomic import rename_into_place, write_all

UPLOAD_CHUNK = 1 << 20
"""Bytes read from the request and written to disk per step (at most)."""

MAX_PARTS = 256
MAX_FIELD_BYTES = 64 << 10
TEMP_SUFFIX = ".upload"
FILE_MODE = 0o644
DEFAULT_UPLOAD_NAME = "upload"

T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking call in a thread. A cancelled caller still waits for the call to end, so
    the file descriptor it uses is never closed (and reused) under it."""
    future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # retrieved: the cancellation is what the caller gets
        raise


def _url_path(root: Path, path: Path) -> str:
    return "/" + path.relative_to(root).as_posix()


def _too_large(limit: int, declared: int | None) -> web.HTTPRequestEntityTooLarge:
    if declared is not None:
        what = f"a body of {declared} bytes (Content-Length) is over"
    else:
        what = "the body went past"
    text = f"upload refused: {what} this server's limit of {limit} bytes\n"
    return web.HTTPRequestEntityTooLarge(limit, declared or 0, text=text)


def check_declared_length(request: web.Request) -> None:
    """413 at once, before reading any of the body, when Content-Length is over the limit."""
    limit = request.app[MAX_UPLOAD_KEY]
    declared = request.content_length
    if limit is not None and declared is not None and declared > limit:
        raise _too_large(limit, declared)


def _check_received(request: web.Request) -> None:
    """413 once more body bytes have arrived than the limit allows."""
    limit = request.app[MAX_UPLOAD_KEY]
    if limit is not None and request.content.total_bytes > limit:
        raise _too_large(limit, None)


class BlockWriter:
    """Body bytes gathered into blocks of `size`, each written (and fed to `on_block`, e.g. a
    hash) in a thread: the loop never waits on the disk, and an upload holds about one block."""

    def __init__(self, fd: int, size: int, on_block: Callable[[bytes], object] | None) -> None:
        self._fd = fd
        self._size = size
        self._on_block = on_block
        self._buffer = bytearray()

    async def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= self._size:
            await self.flush()

    async def flush(self) -> None:
        if self._buffer:
            block = bytes(self._buffer)
            self._buffer.clear()
            await in_thread(self._write_block, block)

    def drop(self) -> None:
        """Forget the bytes not written yet."""
        self._buffer.clear()

    def _write_block(self, block: bytes) -> None:
        write_all(self._fd, block)
        if self._on_block is not None:
            self._on_block(block)


class _TempFile:
    """A temporary file next to its target, hashed as written, renamed onto it when complete."""

    def __init__(self, directory: Path, name: str) -> None:
        fd, path = tempfile.mkstemp(prefix=f".{name[:40]}.", suffix=TEMP_SUFFIX, dir=directory)
        self._fd: int | None = fd
        self.path = Path(path)
        self.size = 0
        self._hash = hashlib.sha256()
        self._blocks = BlockWriter(fd, UPLOAD_CHUNK, self._hash.update)
        self._committed = False
        os.fchmod(fd, FILE_MODE)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        await self._blocks.write(data)

    async def finish(self) -> None:
        """Write what is buffered; the file is then ready for `commit`."""
        await self._blocks.flush()

    async def commit(self, target: Path) -> bool:
        """fsync, rename onto ``target``, fsync the directory (`rename_into_place`, in a
        thread); True if that replaced an existing file."""
        replaced = os.path.lexists(target)
        await in_thread(rename_into_place, self._fd, self.path, target)
        self._committed = True
        return replaced

    def discard(self) -> None:
        """Close and remove the temporary file (nothing left once committed)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        if not self._committed:
            self.path.unlink(missing_ok=True)


def _conflict(text: str) -> web.HTTPConflict:
    return web.HTTPConflict(text=f"upload refused: {text}\n")


def put_target(root: Path, raw_path: str) -> Path:
    """The file a PUT writes, resolved through symlinks and under ``root``, or an HTTP error.

    404 for anything GET would refuse or that leads outside the root; 409 for a missing
    parent directory, a path naming a directory, or something that is not a regular file.
    """
    parts = decode_segments(raw_path)
    if parts is None:
        raise web.HTTPNotFound()
    if not parts or raw_path.endswith("/"):
        raise _conflict("PUT needs a file name, not a directory")
    try:
        parent = root.joinpath(*parts[:-1]).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        raise _conflict("the parent directory does not exist") from None
    if not inside(root, parent):
        raise web.HTTPNotFound()
    if not parent.is_dir():
        raise _conflict("the parent is not a directory")
    target = parent / parts[-1]
    if not inside(root, target):
        raise web.HTTPNotFound()
    if not os.path.lexists(target):
        return target
    try:
        target = target.resolve(strict=True)
    except (OSError, RuntimeError):
        raise _conflict("the target is a broken symbolic link") from None
    if not inside(root, target):
        raise web.HTTPNotFound()
    if not stat.S_ISREG(target.stat().st_mode):
        raise _conflict("the target exists and is not a regular file")
    return target


def _cut_short() -> web.HTTPBadRequest:
    # The client is normally gone by then; the answer is for a client that sent a bad framing.
    return web.HTTPBadRequest(text="upload refused: the request body was cut short\n")


async def handle_put(request: web.Request) -> web.Response:
    """PUT: the body becomes the file at the request path, atomically."""
    root = request.app[ROOT_KEY]
    target = put_target(root, request.rel_url.raw_path)
    check_declared_length(request)
    tmp = _TempFile(target.parent, target.name)
    try:
        try:
            while chunk := await request.content.read(UPLOAD_CHUNK):
                _check_received(request)
                await tmp.write(chunk)
        except (ConnectionError, HttpProcessingError):
            raise _cut_short() from None
        declared = request.content_length
        if declared is not None and tmp.size != declared:
            raise _cut_short()
        await tmp.finish()
        replaced = await tmp.commit(target)
    finally:
        tmp.discard()
    path = _url_path(root, target)
    answer = {"path": path, "size": tmp.size, "sha256": tmp.sha256}
    if replaced:
        return web.json_response(answer, status=200)
    return web.json_response(answer, status=201, headers={"Location": path})


class _Form:
    """What a multipart form brought: text fields, and files waiting in temporary files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fields: dict[str, str] = {}
        self.files: list[tuple[dict[str, Any], _TempFile]] = []

    async def add_field(self, request: web.Request, part: BodyPartReader, name: str) -> None:
        value = bytearray()
        while chunk := await part.read_chunk(UPLOAD_CHUNK):
            _check_received(request)
            value += chunk
            if len(value) > MAX_FIELD_BYTES:
                raise web.HTTPRequestEntityTooLarge(
                    MAX_FIELD_BYTES,
                    text=f"upload refused: field {name!r} is over {MAX_FIELD_BYTES} bytes\n",
                )
        self.fields[name] = value.decode("utf-8", errors="replace")

    async def add_file(self, request: web.Request, part: BodyPartReader, name: str) -> None:
        filename = safe_name(part.filename or "", DEFAULT_UPLOAD_NAME)
        tmp = _TempFile(self.directory, filename)
        ctype = part.headers.get("Content-Type")
        self.files.append(({"name": name, "filename": filename, "content_type": ctype}, tmp))
        while chunk := await part.read_chunk(UPLOAD_CHUNK):
            _check_received(request)
            await tmp.write(chunk)
        await tmp.finish()

    async def commit(self, root: Path) -> list[dict[str, Any]]:
        """Rename every file into place (the form was read whole); their JSON descriptions."""
        for info, _ in self.files:
            if _occupied(self.directory / info["filename"]):
                raise _conflict(f"{info['filename']!r} exists and is not a regular file")
        out = []
        for info, tmp in self.files:
            target = self.directory / info["filename"]
            await tmp.commit(target)
            path = _url_path(root, target)
            out.append({**info, "path": path, "size": tmp.size, "sha256": tmp.sha256})
        return out

    def discard(self) -> None:
        for _, tmp in self.files:
            tmp.discard()


def _occupied(path: Path) -> bool:
    """Whether something other than a regular file or a symbolic link holds this name."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISLNK(mode))


def _post_directory(request: web.Request) -> Path:
    target = resolve_request_path(request.app[ROOT_KEY], request.rel_url.raw_path)
    if target is None:
        raise web.HTTPNotFound()
    if not target.is_dir():
        raise web.HTTPMethodNotAllowed(
            "POST", ["GET", "HEAD", "PUT"], text="POST goes to a directory; PUT a file\n"
        )
    if request.content_type != "multipart/form-data":
        raise web.HTTPUnsupportedMediaType(
            text=f"upload refused: expected multipart/form-data, not {request.content_type}\n"
        )
    return target


async def _read_form(request: web.Request, form: _Form) -> None:
    reader = await request.multipart()
    for count in range(1, MAX_PARTS + 2):
        if (part := await reader.next()) is None:
            return
        if count > MAX_PARTS:
            text = f"upload refused: more than {MAX_PARTS} parts in the form\n"
            raise web.HTTPRequestEntityTooLarge(MAX_PARTS, text=text)
        if not isinstance(part, BodyPartReader):
            raise web.HTTPBadRequest(text="upload refused: nested multipart is not supported\n")
        name = part.name
        if name is None:
            raise web.HTTPBadRequest(text="upload refused: a form part has no name\n")
        if part.filename is None:
            await form.add_field(request, part, name)
        elif part.filename:
            await form.add_file(request, part, name)
        else:  # an empty file input: nothing to store
            while await part.read_chunk(UPLOAD_CHUNK):
                _check_received(request)


async def handle_post(request: web.Request) -> web.Response:
    """POST of a multipart form to a directory: its files are stored there, atomically."""
    directory = _post_directory(request)
    check_declared_length(request)
    form = _Form(directory)
    try:
        try:
            await _read_form(request, form)
        except (ConnectionError, HttpProcessingError):
            raise _cut_short() from None
        except (ValueError, RuntimeError) as exc:
            raise web.HTTPBadRequest(text=f"upload refused: malformed form: {exc}\n") from None
        files = await form.commit(request.app[ROOT_KEY])
    finally:
        form.discard()
    return web.json_response({"fields": form.fields, "files": files})


__all__ = [
    "UPLOAD_CHUNK",
    "check_declared_length",
    "handle_post",
    "handle_put",
    "in_thread",
    "put_target",
]
