"""The built-in server's uploads: PUT of a file, POST of a multipart form, limits and safety."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from streamer.server.app import make_app
from streamer.server.upload import MAX_FIELD_BYTES, MAX_PARTS, TEMP_SUFFIX, UPLOAD_CHUNK

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
LIMIT = 1 << 20
BIG = 64 << 20
POLL = 0.01
POLL_LIMIT = 500  # 5 s of POLL at most


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _temps(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.name.endswith(TEMP_SUFFIX)]


def _entries(directory: Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*")}


async def _wait_for(check: Callable[[], bool]) -> None:
    for _ in range(POLL_LIMIT):
        if check():
            return
        await asyncio.sleep(POLL)
    raise AssertionError("condition not reached in 5 s")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """root/ with old.txt and sub/; secret.txt outside the root."""
    base = tmp_path / "root"
    (base / "sub").mkdir(parents=True)
    (base / "old.txt").write_bytes(b"old contents")
    (tmp_path / "secret.txt").write_bytes(b"top secret")
    return base


@pytest.fixture
async def make(aiohttp_client: AiohttpClient, root: Path) -> MakeClient:
    """A factory of test clients for make_app(root, max_upload=...)."""

    async def open_client(max_upload: int | None = None) -> Client:
        return await aiohttp_client(make_app(root, max_upload=max_upload))

    return open_client


async def _chunks(total: int, piece: int = 256 << 10) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        n = min(piece, total - sent)
        yield bytes([sent % 251]) * n
        sent += n


async def _raw(
    client: Client, head: str, body: bytes = b"", *, close_after: bool = False
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection and send ``head`` (CRLF line ends added) and ``body`` as is."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    await writer.drain()
    if close_after:
        writer.close()
        await writer.wait_closed()
    return reader, writer


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one response with a Content-Length."""
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length)
    return int(head.split(b" ", 2)[1]), body


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


# --- PUT -----------------------------------------------------------------------------------------


async def test_put_creates_file(make: MakeClient, root: Path) -> None:
    """PUT of a new file: 201 with Location and {path, size, sha256}; the bytes are on disk."""
    client = await make()
    data = os.urandom(3 * UPLOAD_CHUNK + 17)
    resp = await client.put("/sub/new.bin", data=io.BytesIO(data))
    assert resp.status == 201
    assert resp.headers["Location"] == "/sub/new.bin"
    assert await resp.json() == {"path": "/sub/new.bin", "size": len(data), "sha256": _sha(data)}
    assert (root / "sub" / "new.bin").read_bytes() == data
    assert _temps(root) == []


async def test_put_replaces_file(make: MakeClient, root: Path) -> None:
    """PUT onto an existing file: 200 with the JSON; the old file is replaced as a whole."""
    client = await make()
    before = (root / "old.txt").stat().st_ino
    resp = await client.put("/old.txt", data=b"new")
    assert resp.status == 200
    assert (await resp.json())["size"] == 3
    assert (root / "old.txt").read_bytes() == b"new"
    assert (root / "old.txt").stat().st_ino != before  # renamed into place, not rewritten
    assert _temps(root) == []


async def test_put_empty_body(make: MakeClient, root: Path) -> None:
    """An empty PUT creates an empty file."""
    client = await make()
    resp = await client.put("/empty.bin", data=b"")
    assert resp.status == 201
    assert (await resp.json())["sha256"] == _sha(b"")
    assert (root / "empty.bin").read_bytes() == b""


async def test_put_chunked_body(make: MakeClient, root: Path) -> None:
    """A chunked PUT (no Content-Length) under the limit is stored whole."""
    client = await make(max_upload=LIMIT)
    resp = await client.put("/c.bin", data=_chunks(LIMIT))
    assert resp.status == 201
    assert (root / "c.bin").stat().st_size == LIMIT


async def test_put_goes_through_temp_file(make: MakeClient, root: Path) -> None:
    """While a PUT streams, the target does not exist and a temp file does; then it appears."""
    client = await make()
    go_on = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * (2 * UPLOAD_CHUNK)
        await _wait_for(lambda: bool(_temps(root)))
        assert not (root / "slow.bin").exists()
        go_on.set()
        yield b"y" * 10

    resp = await client.put("/slow.bin", data=body())
    assert go_on.is_set()
    assert resp.status == 201
    assert (root / "slow.bin").stat().st_size == 2 * UPLOAD_CHUNK + 10
    assert _temps(root) == []


async def test_put_file_readable_by_get(make: MakeClient) -> None:
    """An uploaded file is served back by GET with the same bytes."""
    client = await make()
    data = os.urandom(100_000)
    assert (await client.put("/round.bin", data=data)).status == 201
    resp = await client.get("/round.bin")
    assert await resp.read() == data


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/missing/x.bin", 409),  # parent does not exist
        ("/old.txt/x.bin", 409),  # parent is a file
        ("/sub", 409),  # a directory
        ("/sub/", 409),  # no file name
        ("/", 409),
    ],
)
async def test_put_refused_targets(make: MakeClient, root: Path, target: str, status: int) -> None:
    """PUT needs an existing parent directory and a file name; a refusal writes nothing."""
    client = await make()
    before = _entries(root)
    resp = await client.put(target, data=b"data")
    assert resp.status == status
    assert "upload refused" in await resp.text()
    assert _entries(root) == before


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/sub/..%2f..%2fsecret.txt",
        "/sub/%2e%2e/x",
        "/a%00b",
    ],
)
async def test_put_traversal_refused(make: MakeClient, root: Path, target: str) -> None:
    """PUT paths follow the GET rules: dot segments, encoded slashes and NUL give 404."""
    client = await make()
    before = _entries(root)
    reader, writer = await _raw(
        client, f"PUT {target} HTTP/1.1\nHost: t\nContent-Length: 4\nConnection: close\n", b"evil"
    )
    status, _ = await _read_answer(reader)
    await _close(writer)
    assert status == 404
    assert (root.parent / "secret.txt").read_bytes() == b"top secret"
    assert _entries(root) == before


async def test_put_symlink_out_of_root_refused(make: MakeClient, root: Path) -> None:
    """A symlink (file or directory) leading out of the root is not written through."""
    (root / "link.txt").symlink_to(root.parent / "secret.txt")
    (root / "outdir").symlink_to(root.parent)
    client = await make()
    assert (await client.put("/link.txt", data=b"evil")).status == 404
    assert (await client.put("/outdir/secret.txt", data=b"evil")).status == 404
    assert (root.parent / "secret.txt").read_bytes() == b"top secret"


async def test_put_declared_too_large_answered_before_body(make: MakeClient, root: Path) -> None:
    """A Content-Length over max_upload gets 413 with a reason before any body byte is sent."""
    client = await make(max_upload=LIMIT)
    reader, writer = await _raw(
        client, f"PUT /big.bin HTTP/1.1\nHost: t\nContent-Length: {BIG}\n"
    )  # headers only: the answer must come without the body
    status, body = await _read_answer(reader)
    await _close(writer)
    assert status == 413
    assert f"limit of {LIMIT} bytes" in body.decode()
    assert f"{BIG} bytes" in body.decode()
    assert not (root / "big.bin").exists()
    assert _temps(root) == []


async def test_413_readable_by_client_that_sends_whole_body(make: MakeClient, root: Path) -> None:
    """A client that writes its whole 64 MiB body before reading still reads the 413 (no RST)."""
    client = await make(max_upload=LIMIT)
    reader, writer = await _raw(client, f"PUT /big.bin HTTP/1.1\nHost: t\nContent-Length: {BIG}\n")
    block = bytes(UPLOAD_CHUNK)
    async with asyncio.timeout(20):
        for _ in range(BIG // len(block)):
            writer.write(block)
            await writer.drain()
    status, body = await _read_answer(reader)
    # The connection stays usable: the server read and dropped the rest of the body.
    writer.write(b"GET /old.txt HTTP/1.1\r\nHost: t\r\n\r\n")
    again, text = await _read_answer(reader)
    await _close(writer)
    assert status == 413
    assert b"limit of" in body
    assert (again, text) == (200, b"old contents")
    assert not (root / "big.bin").exists()


async def test_put_chunked_over_limit_mid_body(make: MakeClient, root: Path) -> None:
    """A chunked body passing max_upload gets 413 and leaves no file and no temp file."""
    client = await make(max_upload=LIMIT)
    resp = await client.put("/big.bin", data=_chunks(8 * LIMIT))
    assert resp.status == 413
    assert "went past this server's limit" in await resp.text()
    assert not (root / "big.bin").exists()
    assert _temps(root) == []


async def test_put_exactly_at_limit_accepted(make: MakeClient, root: Path) -> None:
    """A body of exactly max_upload bytes is accepted (declared or chunked)."""
    client = await make(max_upload=LIMIT)
    assert (await client.put("/a.bin", data=io.BytesIO(bytes(LIMIT)))).status == 201
    assert (await client.put("/b.bin", data=_chunks(LIMIT))).status == 201
    assert (root / "b.bin").stat().st_size == LIMIT


@pytest.mark.parametrize("chunked", [False, True])
async def test_put_cut_short_leaves_nothing(make: MakeClient, root: Path, chunked: bool) -> None:
    """A client leaving mid-body leaves neither the file nor a temp file behind."""
    client = await make()
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BIG}"
    piece = 300_000
    body = (b"%x\r\n" % piece + bytes(piece) + b"\r\n") if chunked else bytes(piece)
    _, writer = await _raw(client, f"PUT /cut.bin HTTP/1.1\nHost: t\n{framing}\n", body)
    await _wait_for(lambda: bool(_temps(root)))
    await _close(writer)
    await _wait_for(lambda: not _temps(root))
    await asyncio.sleep(0.1)
    assert not (root / "cut.bin").exists()
    assert _temps(root) == []


async def test_put_bad_content_length_framing(make: MakeClient, root: Path) -> None:
    """Closing the write side before Content-Length is reached leaves no file."""
    client = await make()
    reader, writer = await _raw(client, "PUT /half.bin HTTP/1.1\nHost: t\nContent-Length: 10\n")
    writer.write(b"12345")
    writer.write_eof()
    async with asyncio.timeout(10):
        await reader.read()
    await _close(writer)
    await _wait_for(lambda: not _temps(root))
    assert not (root / "half.bin").exists()


# --- POST multipart ------------------------------------------------------------------------------


def _form(*parts: tuple[str, bytes, str | None]) -> aiohttp.FormData:
    form = aiohttp.FormData(quote_fields=False, default_to_multipart=True)
    for name, value, filename in parts:
        if filename is None:
            form.add_field(name, value.decode())
        else:
            form.add_field(name, io.BytesIO(value), filename=filename, content_type="text/plain")
    return form


async def test_post_form_stores_files(make: MakeClient, root: Path) -> None:
    """POST of a form to a directory: files stored under their names, fields echoed as JSON."""
    client = await make()
    one, two = os.urandom(2 * UPLOAD_CHUNK + 5), b"second file"
    form = _form(("title", b"hello", None), ("f1", one, "one.bin"), ("f2", two, "two.txt"))
    resp = await client.post("/sub/", data=form)
    assert resp.status == 200
    answer = await resp.json()
    assert answer["fields"] == {"title": "hello"}
    assert answer["files"] == [
        {
            "name": "f1",
            "filename": "one.bin",
            "path": "/sub/one.bin",
            "size": len(one),
            "sha256": _sha(one),
            "content_type": "text/plain",
        },
        {
            "name": "f2",
            "filename": "two.txt",
            "path": "/sub/two.txt",
            "size": len(two),
            "sha256": _sha(two),
            "content_type": "text/plain",
        },
    ]
    assert (root / "sub" / "one.bin").read_bytes() == one
    assert (root / "sub" / "two.txt").read_bytes() == two
    assert _temps(root) == []


@pytest.mark.parametrize(
    ("filename", "stored"),
    [
        ("../../escape.txt", "escape.txt"),
        ("/etc/passwd", "passwd"),
        ("..\\..\\win.ini", "win.ini"),
        (".bashrc", "bashrc"),
        ("..", "upload"),
        ("CON.txt", "_CON.txt"),
    ],
)
async def test_post_file_names_made_safe(
    make: MakeClient, root: Path, filename: str, stored: str
) -> None:
    """A part's filename is reduced to a safe base name inside the posted directory."""
    client = await make()
    resp = await client.post("/", data=_form(("f", b"data", filename)))
    assert resp.status == 200
    assert (await resp.json())["files"][0]["filename"] == stored
    assert (root / stored).read_bytes() == b"data"
    assert (root.parent / "escape.txt").exists() is False


async def test_post_to_file_is_405(make: MakeClient) -> None:
    """POST to a path naming a file (not a directory) is 405 with Allow."""
    client = await make()
    resp = await client.post("/old.txt", data=_form(("f", b"x", "x.txt")))
    assert resp.status == 405
    assert "PUT" in resp.headers["Allow"]


async def test_post_missing_directory_is_404(make: MakeClient, root: Path) -> None:
    """POST to a directory that does not exist is 404 and creates nothing."""
    client = await make()
    before = _entries(root)
    resp = await client.post("/nodir/", data=_form(("f", b"x", "x.txt")))
    assert resp.status == 404
    assert _entries(root) == before


async def test_post_not_multipart_is_415(make: MakeClient) -> None:
    """POST of anything but multipart/form-data is 415."""
    client = await make()
    resp = await client.post("/", data=b"a=1", headers={"Content-Type": "text/plain"})
    assert resp.status == 415


async def test_post_declared_too_large(make: MakeClient, root: Path) -> None:
    """A form whose Content-Length is over max_upload gets 413 and stores nothing."""
    client = await make(max_upload=LIMIT)
    before = _entries(root)
    resp = await client.post("/", data=_form(("f", bytes(2 * LIMIT), "big.bin")))
    assert resp.status == 413
    assert "limit of" in await resp.text()
    assert _entries(root) == before


async def test_post_chunked_over_limit_mid_body(make: MakeClient, root: Path) -> None:
    """A chunked form passing max_upload mid-way: 413, and no file of the form is kept."""
    client = await make(max_upload=LIMIT)
    boundary = "xYzZy"

    async def body() -> AsyncIterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="a"; filename="a.txt"\r\n\r\n'
            f"small\r\n--{boundary}\r\n"
            'Content-Disposition: form-data; name="b"; filename="b.bin"\r\n\r\n'
        ).encode()
        async for chunk in _chunks(4 * LIMIT):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    before = _entries(root)
    resp = await client.post(
        "/", data=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert resp.status == 413
    assert _entries(root) == before


async def test_post_cut_short_keeps_no_file(make: MakeClient, root: Path) -> None:
    """A form cut short in its second file keeps neither file (a form is all or nothing)."""
    client = await make()
    boundary = "cutcut"
    head = (
        f"POST /sub/ HTTP/1.1\nHost: t\nContent-Length: {BIG}\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\n"
    )
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="a"; filename="a.txt"\r\n\r\n'
        f"complete\r\n--{boundary}\r\n"
        'Content-Disposition: form-data; name="b"; filename="b.bin"\r\n\r\n'
    ).encode() + bytes(300_000)
    before = _entries(root)
    _, writer = await _raw(client, head, body)
    await _wait_for(lambda: len(_temps(root)) == 2)
    await _close(writer)
    await _wait_for(lambda: not _temps(root))
    await asyncio.sleep(0.1)
    assert _entries(root) == before


@pytest.mark.parametrize("kind", ["fields", "files"])
async def test_post_too_many_parts(make: MakeClient, root: Path, kind: str) -> None:
    """A form of more than MAX_PARTS parts (fields or files) is refused with 413, storing none."""
    client = await make()
    filename = None if kind == "fields" else "f.txt"
    form = _form(*[(f"f{i}", b"v", filename) for i in range(MAX_PARTS + 1)])
    before = _entries(root)
    resp = await client.post("/", data=form)
    assert resp.status == 413
    assert f"more than {MAX_PARTS} parts" in await resp.text()
    assert _entries(root) == before


async def test_post_at_most_parts_accepted(make: MakeClient) -> None:
    """Exactly MAX_PARTS parts are accepted."""
    client = await make()
    form = _form(*[(f"f{i}", b"v", None) for i in range(MAX_PARTS)])
    resp = await client.post("/", data=form)
    assert resp.status == 200
    assert len((await resp.json())["fields"]) == MAX_PARTS


async def test_post_empty_file_input_skipped(make: MakeClient, root: Path) -> None:
    """A file part with an empty filename (an empty browser file input) stores nothing."""
    client = await make()
    before = _entries(root)
    resp = await client.post("/", data=_form(("a", b"1", None), ("f", b"", "")))
    assert await resp.json() == {"fields": {"a": "1"}, "files": []}
    assert _entries(root) == before


async def test_post_field_too_large(make: MakeClient) -> None:
    """A text field over MAX_FIELD_BYTES is refused with 413."""
    client = await make()
    form = _form(("big", b"v" * (MAX_FIELD_BYTES + 1), None))
    resp = await client.post("/", data=form)
    assert resp.status == 413
    assert "'big'" in await resp.text()


async def test_post_malformed_form_is_400(make: MakeClient, root: Path) -> None:
    """A body that is not the multipart it claims is 400 and stores nothing."""
    client = await make()
    before = _entries(root)
    resp = await client.post(
        "/",
        data=b'--b\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\nno end',
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert resp.status == 400
    assert _entries(root) == before


async def test_post_answer_is_json(make: MakeClient) -> None:
    """The POST answer is application/json."""
    client = await make()
    resp = await client.post("/", data=_form(("a", b"1", None)))
    assert resp.content_type == "application/json"
    assert json.loads(await resp.text()) == {"fields": {"a": "1"}, "files": []}
