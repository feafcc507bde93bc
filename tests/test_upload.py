"""Client.upload / upload_form against real servers on 127.0.0.1 that record what they received."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import BodyPartReader, web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer
from python_multipart.multipart import MultipartParser, parse_options_header

from streamer import (
    Client,
    FilePart,
    HTTPStatusError,
    Phase,
    Progress,
    Result,
    SourceChangedError,
    UnsafeRedirect,
    UsageError,
)
from streamer.server.app import running_server
from tests.faults import ClientFactory

PIECE = 64 << 10
MIB = 1 << 20
# The two ways a file body goes out: by sendfile on a raw socket (plain http, the default
# here), and through aiohttp (what a stall window, TLS or a proxy takes).
PATHS: dict[str, dict[str, Any]] = {"sendfile": {}, "engine": {"speed_limit": 1.0}}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(MIB):
            h.update(block)
    return h.hexdigest()


def pattern(n: int) -> bytes:
    """``n`` bytes that differ from one MiB to the next (a shifted or cut copy shows)."""
    return b"".join(bytes([i % 251]) * MIB for i in range(n // MIB + 1))[:n]


@dataclass
class Got:
    """One request as a recording handler saw it."""

    method: str
    path: str
    headers: dict[str, str]
    size: int = 0
    sha256: str = ""
    complete: bool = False  # the body was read to its end, with the declared length if any
    error: str | None = None
    parts: list[tuple[str | None, str | None, str | None, bytes]] = field(default_factory=list)


RECORDS = web.AppKey("records", list[Got])
STARTED = web.AppKey("started", asyncio.Event)
FINISHED = web.AppKey("finished", asyncio.Event)


def _record(request: web.Request) -> Got:
    got = Got(request.method, request.path, dict(request.headers))
    request.app[RECORDS].append(got)
    return got


async def _drain(request: web.Request, got: Got, *, slow: bool = False) -> None:
    """Read the body, counting and hashing it; a slow reader wakes STARTED after 2 MiB."""
    h = hashlib.sha256()
    try:
        while chunk := await request.content.read(PIECE):
            h.update(chunk)
            got.size += len(chunk)
            if slow:
                if got.size >= 2 * MIB:
                    request.app[STARTED].set()
                await asyncio.sleep(0.002)
    except Exception as exc:  # the client went away mid-body
        got.error = repr(exc)
        return
    finally:
        got.sha256 = h.hexdigest()
        if slow:
            request.app[FINISHED].set()
    declared = request.content_length
    got.complete = request.content.is_eof() and declared in (None, got.size)


async def sink(request: web.Request) -> web.Response:
    """Any method: read and record the body; 201 with the size and hash (?slow=1: slowly)."""
    got = _record(request)
    await _drain(request, got, slow="slow" in request.query)
    if got.error is not None:
        return web.Response(status=400, text="cut short")
    return web.json_response({"size": got.size, "sha256": got.sha256}, status=201)


async def status(request: web.Request) -> web.Response:
    """Read the body, then answer ``code`` (503 with Retry-After: 0, once if ?once=1)."""
    got = _record(request)
    await _drain(request, got)
    code = int(request.match_info["code"])
    calls = sum(1 for g in request.app[RECORDS] if g.path == request.path)
    if "once" in request.query and calls > 1:
        return web.json_response({"sha256": got.sha256}, status=201)
    return web.Response(status=code, text=f"try later ({code})", headers={"Retry-After": "0"})


async def redirect(request: web.Request) -> web.Response:
    """Redirect without reading the body: /redirect/{code}?to=URL (default /sink/after)."""
    _record(request)
    location = request.query.get("to", "/sink/after")
    return web.Response(status=int(request.match_info["code"]), headers={"Location": location})


async def multipart_aiohttp(request: web.Request) -> web.Response:
    """Decode the form with aiohttp's MultipartReader."""
    got = _record(request)
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        assert isinstance(part, BodyPartReader)
        data = bytearray()
        while chunk := await part.read_chunk(PIECE):
            data += chunk
        got.parts.append((part.name, part.filename, part.headers.get("Content-Type"), bytes(data)))
    got.size = request.content.total_bytes
    got.complete = request.content.is_eof()
    return web.json_response({"parts": len(got.parts)})


async def multipart_python(request: web.Request) -> web.Response:
    """Decode the raw body with python-multipart's push parser."""
    got = _record(request)
    _, params = parse_options_header(request.headers["Content-Type"])
    state: dict[str, Any] = {}

    def on_part_begin() -> None:
        state.update(headers={}, name=b"", value=b"", data=bytearray())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["name"].lower()] = state["value"]
        state.update(name=b"", value=b"")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"] += data[start:end]

    def on_part_end() -> None:
        _, disp = parse_options_header(state["headers"][b"content-disposition"])
        filename = disp.get(b"filename")
        ctype = state["headers"].get(b"content-type")
        got.parts.append(
            (
                disp[b"name"].decode("utf-8"),
                None if filename is None else filename.decode("utf-8"),
                None if ctype is None else ctype.decode("latin-1"),
                bytes(state["data"]),
            )
        )

    callbacks: Any = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    parser = MultipartParser(params[b"boundary"], callbacks)
    while chunk := await request.content.read(PIECE):
        got.size += len(chunk)
        parser.write(chunk)
    parser.finalize()
    got.complete = True
    return web.json_response({"parts": len(got.parts)})


def make_recording_app() -> web.Application:
    app = web.Application()
    app[RECORDS] = []
    app[STARTED] = asyncio.Event()
    app[FINISHED] = asyncio.Event()
    app.router.add_route("*", "/sink/{name}", sink)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/redirect/{code}", redirect)
    app.router.add_post("/form/aiohttp", multipart_aiohttp)
    app.router.add_post("/form/python-multipart", multipart_python)
    return app


@pytest.fixture
async def server(aiohttp_server: AiohttpServer) -> TestServer:
    """A recording server (see make_recording_app)."""
    return await aiohttp_server(make_recording_app(), host="127.0.0.1")


@pytest.fixture
async def server2(aiohttp_server: AiohttpServer) -> TestServer:
    """A second recording server: another origin."""
    return await aiohttp_server(make_recording_app(), host="127.0.0.1")


def records(server: TestServer) -> list[Got]:
    return server.app[RECORDS]


def url(server: TestServer, path: str) -> str:
    return str(server.make_url(path))


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    """A 5 MiB + 3 byte file of `pattern` bytes."""
    path = tmp_path / "source.bin"
    path.write_bytes(pattern(5 * MIB + 3))
    return path


# --- bodies and framing ---------------------------------------------------------------------------


async def test_put_file_exact_length(client: Client, server: TestServer, big_file: Path) -> None:
    """A file goes with its exact Content-Length, no Transfer-Encoding, byte for byte."""
    result = await client.upload(url(server, "/sink/f"), big_file)
    [got] = records(server)
    size = big_file.stat().st_size
    assert got.method == "PUT"
    assert got.headers["Content-Length"] == str(size)
    assert "Transfer-Encoding" not in got.headers
    assert (got.size, got.sha256, got.complete) == (size, _file_sha(big_file), True)
    assert (result.status, result.sent) == (201, size)
    assert b'"sha256"' in result.body


async def test_put_bytes(client: Client, server: TestServer) -> None:
    """A bytes source goes with its exact Content-Length and the given Content-Type."""
    data = pattern(3 * MIB + 1)
    await client.upload(url(server, "/sink/b"), data, content_type="application/x-test")
    [got] = records(server)
    assert got.headers["Content-Length"] == str(len(data))
    assert got.headers["Content-Type"] == "application/x-test"
    assert (got.size, got.sha256) == (len(data), _sha(data))


async def test_put_seekable_file_object(client: Client, server: TestServer, big_file: Path) -> None:
    """An open seekable file is sent from its current position with an exact length."""
    data = big_file.read_bytes()
    with big_file.open("rb") as f:
        f.seek(1000)
        await client.upload(url(server, "/sink/fo"), f)
    [got] = records(server)
    assert got.headers["Content-Length"] == str(len(data) - 1000)
    assert (got.size, got.sha256) == (len(data) - 1000, _sha(data[1000:]))


async def test_put_async_factory_is_chunked(client: Client, server: TestServer) -> None:
    """A factory of async iterables with no size goes chunked, without Content-Length."""
    pieces = [pattern(MIB), b"tail", pattern(70_000)]

    async def source() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    await client.upload(url(server, "/sink/gen"), source)
    [got] = records(server)
    assert got.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in got.headers
    assert (got.sha256, got.complete) == (_sha(b"".join(pieces)), True)


async def test_one_shot_iterator_sent_once(client: Client, server: TestServer) -> None:
    """A one-shot async iterator is sent once, whole (chunked)."""

    async def gen() -> AsyncIterator[bytes]:
        yield b"one-"
        yield b"shot"

    await client.upload(url(server, "/sink/once"), gen())
    [got] = records(server)
    assert (got.size, got.sha256) == (8, _sha(b"one-shot"))


async def test_one_shot_iterator_refuses_307_replay(client: Client, server: TestServer) -> None:
    """A 307 needing a one-shot iterator again is a UsageError, never an empty resend."""

    async def gen() -> AsyncIterator[bytes]:
        yield b"cannot replay"

    with pytest.raises(UsageError, match="307/308"):
        await client.upload(url(server, "/redirect/307"), gen())
    assert [g.path for g in records(server)] == ["/redirect/307"]  # /sink/after never asked


# --- multipart ------------------------------------------------------------------------------------

FIELDS = [
    ("plain", "value"),
    ('quo"te', 'say "hi"'),
    ("naïve ✓ 名前", "ünïcødé ✓"),
    ("semi;colon", "a;b;c"),
    ("line\r\nbreak", "x\r\ny"),
]
# Looks like a delimiter line and a closing one, but with another boundary.
TRICKY = b"\r\n------streamer" + b"0" * 32 + b"\r\nContent-Disposition: x\r\n\r\n--" * 3 + b"--\r\n"


def _sent_name(name: str) -> str:
    """What a browser sends for a name: CR, LF and quote percent-encoded."""
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


@pytest.mark.parametrize("decoder", ["aiohttp", "python-multipart"])
async def test_multipart_decoded_byte_for_byte(
    client: Client, server: TestServer, tmp_path: Path, decoder: str
) -> None:
    """A form is decoded back exactly by both parsers; Content-Length is what the server got."""
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "local.bin").write_bytes(TRICKY + pattern(MIB) + TRICKY)
    files = [
        FilePart("up;load", deep / "local.bin", content_type="application/x-tricky"),
        FilePart("f2", TRICKY, filename='../../etc/ré"sumé;1.txt'),
        FilePart("empty", b"", filename="C:\\Users\\me\\empty.dat"),
    ]
    result = await client.upload_form(url(server, f"/form/{decoder}"), fields=FIELDS, files=files)
    assert result.status == 200
    [got] = records(server)
    assert got.complete
    assert got.headers["Content-Length"] == str(got.size) == str(result.sent)
    assert "Transfer-Encoding" not in got.headers
    expected = [(_sent_name(n), None, None, v.encode()) for n, v in FIELDS]
    expected += [
        ("up;load", "local.bin", "application/x-tricky", (deep / "local.bin").read_bytes()),
        ("f2", "ré%22sumé;1.txt", "application/octet-stream", TRICKY),
        ("empty", "empty.dat", "application/octet-stream", b""),
    ]
    assert got.parts == expected


async def test_multipart_unknown_size_is_chunked(client: Client, server: TestServer) -> None:
    """A form with a part of unknown size goes chunked and still decodes exactly."""

    async def source() -> AsyncIterator[bytes]:
        yield TRICKY

    await client.upload_form(
        url(server, "/form/aiohttp"), fields={"a": "1"}, files=[FilePart("s", source, "s.bin")]
    )
    [got] = records(server)
    assert got.headers.get("Transfer-Encoding") == "chunked"
    assert got.parts == [
        ("a", None, None, b"1"),
        ("s", "s.bin", "application/octet-stream", TRICKY),
    ]


# --- limits ---------------------------------------------------------------------------------------


@pytest.fixture
def sparse_64m(tmp_path: Path) -> Path:
    """A 64 MiB file (sparse: cheap to make, but read like any other)."""
    path = tmp_path / "big64.bin"
    with path.open("wb") as f:
        f.truncate(64 * MIB)
    return path


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("how", ["put", "put-chunked", "post"])
async def test_early_413_reported(
    make_client: ClientFactory, tmp_path: Path, sparse_64m: Path, how: str, path: str
) -> None:
    """A 413 sent while the body streams is an HTTPStatusError 413 with the server's reason,
    on the sendfile path and on the engine's."""
    client = await make_client(**PATHS[path])
    root = tmp_path / "root"
    root.mkdir()
    before = sparse_64m.stat()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield bytes(MIB)

    async with running_server(root, max_upload=MIB) as base:
        with pytest.raises(HTTPStatusError) as info:
            if how == "put":
                await client.upload(base + "x.bin", sparse_64m)
            elif how == "put-chunked":
                await client.upload(base + "x.bin", chunks)
            else:
                await client.upload_form(base, files=[FilePart("f", sparse_64m)])
        # Let the server see the connection close; shutting down while it lingers (reading and
        # dropping the rest of the body) would wait for the whole shutdown timeout.
        await asyncio.sleep(0.05)
    err = info.value
    assert (err.status, err.result) == (413, Result.HTTP_ERROR)
    assert f"limit of {MIB} bytes" in str(err)
    assert list(root.iterdir()) == []
    after = sparse_64m.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


# --- redirects ------------------------------------------------------------------------------------


async def test_307_replays_identical_bytes(
    client: Client, server: TestServer, big_file: Path
) -> None:
    """After a 307 the file is sent again from its first byte: the target gets the same hash."""
    result = await client.upload(url(server, "/redirect/307"), big_file)
    first, second = records(server)
    assert (first.path, second.path) == ("/redirect/307", "/sink/after")
    assert second.method == "PUT"
    assert (second.size, second.sha256) == (big_file.stat().st_size, _file_sha(big_file))
    assert (result.status, result.redirects) == (201, 1)


async def test_308_replays_seekable_file_object(
    client: Client, server: TestServer, big_file: Path
) -> None:
    """A seekable file object is rewound to where it started for the 308 replay."""
    data = big_file.read_bytes()
    with big_file.open("rb") as f:
        f.seek(5)
        await client.upload(url(server, "/redirect/308"), f, method="POST")
    second = records(server)[1]
    assert (second.method, second.sha256) == ("POST", _sha(data[5:]))


async def test_303_after_post_is_get_without_body(client: Client, server: TestServer) -> None:
    """A 303 after POST is followed with a GET that carries no body and no body headers."""
    result = await client.upload(url(server, "/redirect/303"), b"form data", method="POST")
    first, second = records(server)
    assert first.method == "POST"
    assert (second.method, second.path, second.size) == ("GET", "/sink/after", 0)
    assert "Content-Length" not in second.headers or second.headers["Content-Length"] == "0"
    assert "Transfer-Encoding" not in second.headers
    assert "Content-Type" not in second.headers
    assert result.status == 201


async def test_cross_origin_redirect_not_followed(
    client: Client, server: TestServer, server2: TestServer
) -> None:
    """An upload is not handed to another origin by a 307 unless cross_origin=True."""
    to = url(server2, "/sink/other")
    with pytest.raises(UnsafeRedirect):
        await client.upload(url(server, f"/redirect/307?to={to}"), b"secret body")
    assert records(server2) == []
    await client.upload(url(server, f"/redirect/307?to={to}"), b"secret body", cross_origin=True)
    [got] = records(server2)
    assert got.sha256 == _sha(b"secret body")


# --- sources changing under the upload ------------------------------------------------------------


@pytest.mark.parametrize("route", PATHS)
@pytest.mark.parametrize("change", ["truncate", "grow"])
async def test_source_changed_during_upload(
    make_client: ClientFactory, server: TestServer, tmp_path: Path, change: str, route: str
) -> None:
    """A file truncated or grown while it streams is SourceChangedError; no complete body;
    on the sendfile path and on the engine's."""
    client = await make_client(**PATHS[route])
    path = tmp_path / "changing.bin"
    size = 32 * MIB
    path.write_bytes(pattern(size))

    async def change_it() -> None:
        await asyncio.wait_for(server.app[STARTED].wait(), 10)
        if change == "truncate":
            os.truncate(path, 4 * MIB)
        else:
            with path.open("ab") as f:
                f.write(b"more")

    changer = asyncio.create_task(change_it())
    with pytest.raises(SourceChangedError) as info:
        await client.upload(url(server, "/sink/slow?slow=1"), path)
    await changer
    assert info.value.result == Result.SOURCE_CHANGED
    await asyncio.wait_for(server.app[FINISHED].wait(), 20)
    [got] = records(server)
    assert not got.complete
    assert got.size < size


# --- retries --------------------------------------------------------------------------------------


async def test_put_retried_after_503_with_same_bytes(
    client: Client, server: TestServer, big_file: Path
) -> None:
    """PUT is retried after 503 (Retry-After: 0) and sends identical bytes again."""
    result = await client.upload(url(server, "/status/503?once=1"), big_file, retry=2)
    first, second = records(server)
    assert first.sha256 == second.sha256 == _file_sha(big_file)
    assert first.size == second.size == big_file.stat().st_size
    assert (result.status, result.attempts) == (201, 2)


async def test_post_not_retried_after_body_started(client: Client, server: TestServer) -> None:
    """POST is not retried once its body was sent, even with retries allowed."""
    with pytest.raises(HTTPStatusError) as info:
        await client.upload(url(server, "/status/503"), b"order #1", method="POST", retry=3)
    assert info.value.status == 503
    assert "try later" in str(info.value)
    assert len(records(server)) == 1


# --- progress -------------------------------------------------------------------------------------


async def test_progress_reports_uploading(
    client: Client, server: TestServer, big_file: Path
) -> None:
    """Progress reports UPLOADING with increasing ``done`` up to the total, then DONE."""
    seen: list[Progress] = []
    await client.upload(url(server, "/sink/p"), big_file, progress=seen.append)
    size = big_file.stat().st_size
    uploading = [p for p in seen if p.phase is Phase.UPLOADING]
    dones = [p.done for p in uploading]
    # The sendfile path reports once per kernel call, and a call takes what the socket's
    # buffers take (lane.sendbody.SENDFILE_MAX): a few reports for 5 MiB, not one per MiB.
    assert len(dones) >= 2
    assert dones == sorted(set(dones))
    assert dones[-1] == size
    assert {p.total for p in uploading} == {size}
    assert seen[-1].phase is Phase.DONE
