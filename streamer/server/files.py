"""File-side helpers of the built-in server: safe path mapping, headers and streaming a body.

Kept apart from `streamer.server.app` so the request logic there stays short. Nothing here holds
more than one chunk of a file in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import stat
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

from aiohttp import web

from streamer.core.tus_server import TUS_DIR
from streamer.core.validators import format_http_date, make_etag

ROOT_KEY = web.AppKey("root", Path)
MAX_UPLOAD_KEY = web.AppKey[int | None]("max_upload")
SENDFILE_KEY = web.AppKey("sendfile", bool)

CHUNK_SIZE = 1 << 20
"""Bytes read from disk and written per step when sendfile is not used."""

# mimetypes reports compression as an "encoding"; served as Content-Encoding it would make
# clients decompress the download, so a compressed file gets the compressed format's type.
_COMPRESSED_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}
_FORBIDDEN_IN_SEGMENT = ("/", "\\", "\0")


def decode_segments(raw_path: str) -> list[str] | None:
    """The percent-decoded segments of a request path, or None if any is unsafe.

    Each segment is decoded on its own, so an encoded slash never splits one; ``.``, ``..``,
    empty segments (other than a trailing slash) and backslashes or NULs are refused.
    """
    segments = raw_path.removeprefix("/").split("/")
    if segments[-1] == "":
        segments.pop()
    try:
        parts = [unquote(segment, errors="strict") for segment in segments]
    except UnicodeDecodeError:
        return None
    for part in parts:
        if part in ("", ".", "..") or any(ch in part for ch in _FORBIDDEN_IN_SEGMENT):
            return None
    return parts


def resolve_request_path(root: Path, raw_path: str) -> Path | None:
    """Map a still percent-encoded request path to a path under ``root``, or None (404).

    Each segment is decoded on its own, so an encoded slash never splits one; ``.``, ``..``,
    empty segments (other than a trailing slash) and backslashes or NULs are refused. The
    result is resolved through symlinks and must still lie under ``root`` (itself resolved).
    """
    parts = decode_segments(raw_path)
    if parts is None:
        return None
    try:
        target = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    return target if inside(root, target) else None


def inside(root: Path, target: Path) -> bool:
    """Whether a resolved path lies under ``root`` and outside its tus folder (`TUS_DIR`)."""
    return target.is_relative_to(root) and not target.is_relative_to(root / TUS_DIR)


def open_regular_file(path: Path) -> BinaryIO | None:
    """Open ``path`` for reading if it is a regular file, else None (FIFOs never block us)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    fobj = open(fd, "rb", buffering=0)  # noqa: SIM115 - returned to the caller, who closes it
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        fobj.close()
        return None
    return fobj


def content_type(path: Path) -> str:
    """The Content-Type for a file name; application/octet-stream when unknown."""
    ctype, encoding = mimetypes.guess_type(path.name, strict=False)
    if encoding is not None:
        return _COMPRESSED_TYPES.get(encoding, "application/octet-stream")
    return ctype or "application/octet-stream"


def validator_headers(st: os.stat_result) -> dict[str, str]:
    """ETag and Last-Modified of a file, from its size, mtime and inode."""
    return {
        "ETag": make_etag(st.st_size, st.st_mtime_ns, st.st_ino),
        "Last-Modified": format_http_date(st.st_mtime),
    }


def directory_listing(directory: Path, root: Path) -> str:
    """A plain-text listing: one name per line, sorted, directories with a trailing slash.

    Entries that resolve outside ``root`` (escaping symlinks) are left out.
    """
    lines = []
    for entry in sorted(directory.iterdir()):
        try:
            target = entry.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if inside(root, target):
            lines.append(entry.name + ("/" if target.is_dir() else ""))
    return "".join(line + "\n" for line in lines)


async def _send_chunks(resp: web.StreamResponse, fobj: BinaryIO, offset: int, count: int) -> int:
    """Read and write ``count`` bytes a chunk at a time; returns how many were sent."""
    fobj.seek(offset)
    sent = 0
    while sent < count:
        # A blocking read in the loop thread: acceptable for a local server on a local disk.
        chunk = fobj.read(min(CHUNK_SIZE, count - sent))
        if not chunk:
            break
        await resp.write(chunk)
        sent += len(chunk)
    return sent


async def _send_native(request: web.BaseRequest, fobj: BinaryIO, offset: int, count: int) -> int:
    """Zero-copy ``loop.sendfile``; raises SendfileNotAvailableError where it cannot."""
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("connection lost before the body")
    loop = asyncio.get_running_loop()
    return await loop.sendfile(transport, fobj, offset, count, fallback=False)


async def send_body(
    request: web.BaseRequest,
    resp: web.StreamResponse,
    fobj: BinaryIO,
    offset: int,
    count: int,
    *,
    use_sendfile: bool,
) -> None:
    """Send ``count`` bytes of ``fobj`` from ``offset`` on a prepared response, then end it.

    With ``use_sendfile`` the kernel copies file to socket (headers already went out in
    ``prepare``); without it, or where the loop or transport (TLS) cannot, chunked reads.
    A client leaving mid-body is normal for a download server and ends the response quietly.
    A file that shrank under us closes the connection, so the client sees a short body.
    """
    try:
        sent = await _copy(request, resp, fobj, offset, count, use_sendfile=use_sendfile)
    except ConnectionError:
        return
    if sent < count:
        resp.force_close()
        if request.transport is not None:
            request.transport.close()
        return
    await resp.write_eof()


async def _copy(
    request: web.BaseRequest,
    resp: web.StreamResponse,
    fobj: BinaryIO,
    offset: int,
    count: int,
    *,
    use_sendfile: bool,
) -> int:
    sent = 0
    transport = request.transport
    if transport is not None and transport.get_extra_info("sslcontext") is not None:
        use_sendfile = False  # the kernel cannot encrypt: loop.sendfile refuses TLS transports
    if use_sendfile and count > 0:
        # Both are raised before anything is sent, so the chunked path can start from offset.
        with contextlib.suppress(NotImplementedError, asyncio.SendfileNotAvailableError):
            sent = await _send_native(request, fobj, offset, count)
    if sent < count:
        sent += await _send_chunks(resp, fobj, offset + sent, count - sent)
    return sent
