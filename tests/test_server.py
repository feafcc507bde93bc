"""The built-in file server: headers, ranges, conditionals, path safety and streaming."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from streamer.core.validators import format_http_date, make_etag, parse_http_date
from streamer.errors import UsageError
from streamer.server import app as server_module
from streamer.server.app import MAX_UPLOAD_KEY, make_app, running_server, serve
from streamer.server.files import CHUNK_SIZE

TEXT = b"0123456789abcdefghij"  # 20 bytes
OLD = time.time() - 3600  # an mtime old enough for Last-Modified to be strong


def _stamp(path: Path, when: float = OLD) -> None:
    os.utime(path, (when, when))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """root/ with small.txt, an unknown type, a gzip, an empty file and sub/; secret outside."""
    base = tmp_path / "root"
    (base / "sub").mkdir(parents=True)
    for name, data in {
        "small.txt": TEXT,
        "blob.zzqq": b"\x00\x01",
        "pack.tar.gz": b"\x1f\x8b fake",
        "empty.bin": b"",
        "sub/a.txt": b"A",
    }.items():
        (base / name).write_bytes(data)
        _stamp(base / name)
    (tmp_path / "secret.txt").write_bytes(b"top secret")
    return base


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, root: Path
) -> TestClient[aiohttp.web.Request, aiohttp.web.Application]:
    """A test client on 127.0.0.1 for make_app(root)."""
    return await aiohttp_client(make_app(root))


Client = TestClient[aiohttp.web.Request, aiohttp.web.Application]


async def _raw_status(client: Client, target: str) -> int:
    """Send a request line exactly as written (no client-side normalisation); return status."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return int(data.split(b" ", 2)[1])


# --- headers and whole bodies ------------------------------------------------------------------


async def test_head_headers(client: Client, root: Path) -> None:
    """HEAD: strong ETag, Last-Modified, Accept-Ranges, Content-Length/-Type, Date; no body."""
    st = (root / "small.txt").stat()
    resp = await client.head("/small.txt")
    assert resp.status == 200
    assert resp.headers["ETag"] == make_etag(st.st_size, st.st_mtime_ns, st.st_ino)
    assert not resp.headers["ETag"].startswith("W/")
    assert resp.headers["Last-Modified"] == format_http_date(st.st_mtime)
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["Content-Length"] == str(len(TEXT))
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert parse_http_date(resp.headers["Date"]) is not None
    assert await resp.read() == b""


async def test_get_whole_file(client: Client) -> None:
    """GET without Range sends 200 and exactly the file's bytes, with the same headers as HEAD."""
    head = await client.head("/small.txt")
    resp = await client.get("/small.txt")
    assert resp.status == 200
    assert await resp.read() == TEXT
    for name in ("ETag", "Last-Modified", "Accept-Ranges", "Content-Length", "Content-Type"):
        assert resp.headers[name] == head.headers[name]


async def test_content_type_default_and_compressed(client: Client) -> None:
    """Unknown types are application/octet-stream; a .gz is its own type, never Content-Encoding."""
    resp = await client.get("/blob.zzqq")
    assert resp.headers["Content-Type"] == "application/octet-stream"
    resp = await client.get("/pack.tar.gz", auto_decompress=False)
    assert resp.headers["Content-Type"] == "application/gzip"
    assert "Content-Encoding" not in resp.headers
    assert await resp.read() == b"\x1f\x8b fake"


async def test_empty_file(client: Client) -> None:
    """An empty file is a 200 with Content-Length 0, and any Range on it is 416 bytes */0."""
    resp = await client.get("/empty.bin")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == "0"
    assert await resp.read() == b""
    resp = await client.get("/empty.bin", headers={"Range": "bytes=0-"})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == "bytes */0"


async def test_other_methods_not_allowed(client: Client) -> None:
    """Only GET and HEAD are served; anything else is 405."""
    resp = await client.post("/small.txt", data=b"x")
    assert resp.status == 405


# --- Range --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("range_value", "content_range", "body"),
    [
        ("bytes=0-0", "bytes 0-0/20", TEXT[:1]),
        ("bytes=19-19", "bytes 19-19/20", TEXT[19:]),
        ("bytes=-3", "bytes 17-19/20", TEXT[17:]),
        ("bytes=-100", "bytes 0-19/20", TEXT),
        ("bytes=5-", "bytes 5-19/20", TEXT[5:]),
        ("bytes=5-9", "bytes 5-9/20", TEXT[5:10]),
        ("bytes=10-999", "bytes 10-19/20", TEXT[10:]),
    ],
)
async def test_single_range(
    client: Client, range_value: str, content_range: str, body: bytes
) -> None:
    """One satisfiable range is 206 with Content-Range and an exact Content-Length."""
    resp = await client.get("/small.txt", headers={"Range": range_value})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == content_range
    assert resp.headers["Content-Length"] == str(len(body))
    assert await resp.read() == body


@pytest.mark.parametrize("range_value", ["bytes=20-", "bytes=20-30", "bytes=1000-", "bytes=-0"])
async def test_range_beyond_end(client: Client, range_value: str) -> None:
    """A range starting at or past the end is 416 with Content-Range bytes */LENGTH."""
    resp = await client.get("/small.txt", headers={"Range": range_value})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == "bytes */20"


@pytest.mark.parametrize(
    "range_value", ["bytes=0-1,5-6", "bytes=0-1, 30-", "items=0-1", "bytes=5-1", "bytes=x"]
)
async def test_range_ignored(client: Client, range_value: str) -> None:
    """Several ranges, another unit or a malformed value: Range is ignored, full 200."""
    resp = await client.get("/small.txt", headers={"Range": range_value})
    assert resp.status == 200
    assert "Content-Range" not in resp.headers
    assert await resp.read() == TEXT


async def test_head_ignores_range(client: Client) -> None:
    """Range is defined for GET only (RFC 9110 14.2): HEAD with Range answers 200."""
    resp = await client.head("/small.txt", headers={"Range": "bytes=0-0"})
    assert resp.status == 200
    assert resp.headers["Content-Length"] == "20"


# --- If-Range -----------------------------------------------------------------------------------


async def _if_range(client: Client, if_range: str) -> aiohttp.ClientResponse:
    return await client.get("/small.txt", headers={"Range": "bytes=5-", "If-Range": if_range})


async def test_if_range_matching_etag(client: Client) -> None:
    """If-Range with the current strong ETag honours the Range: 206."""
    etag = (await client.head("/small.txt")).headers["ETag"]
    resp = await _if_range(client, etag)
    assert resp.status == 206
    assert await resp.read() == TEXT[5:]


async def test_if_range_stale_etag(client: Client, root: Path) -> None:
    """If-Range with an ETag from before a change sends the whole new file: 200."""
    etag = (await client.head("/small.txt")).headers["ETag"]
    (root / "small.txt").write_bytes(TEXT[::-1])
    _stamp(root / "small.txt", OLD + 10)
    resp = await _if_range(client, etag)
    assert resp.status == 200
    assert await resp.read() == TEXT[::-1]


async def test_if_range_weak_etag(client: Client) -> None:
    """A weak entity-tag in If-Range never matches: 200 whole."""
    etag = (await client.head("/small.txt")).headers["ETag"]
    resp = await _if_range(client, "W/" + etag)
    assert resp.status == 200
    assert await resp.read() == TEXT


async def test_if_range_exact_date(client: Client) -> None:
    """If-Range with exactly the (strong) Last-Modified date honours the Range: 206."""
    last_modified = (await client.head("/small.txt")).headers["Last-Modified"]
    resp = await _if_range(client, last_modified)
    assert resp.status == 206
    assert await resp.read() == TEXT[5:]


async def test_if_range_other_date(client: Client) -> None:
    """If-Range with any other date sends the whole file: 200."""
    resp = await _if_range(client, format_http_date(OLD - 1))
    assert resp.status == 200
    assert await resp.read() == TEXT


async def test_if_range_date_of_fresh_file(client: Client, root: Path) -> None:
    """A Last-Modified under 60 s before Date is weak, so even an exact If-Range date fails."""
    _stamp(root / "small.txt", time.time() - 5)
    last_modified = (await client.head("/small.txt")).headers["Last-Modified"]
    resp = await _if_range(client, last_modified)
    assert resp.status == 200


async def test_if_range_garbage(client: Client) -> None:
    """An If-Range that is neither an entity-tag nor a date does not match: 200."""
    resp = await _if_range(client, "whatever")
    assert resp.status == 200


# --- If-None-Match / If-Modified-Since ----------------------------------------------------------


async def test_if_none_match(client: Client) -> None:
    """If-None-Match naming the current ETag (weakly) is 304; another tag is 200."""
    etag = (await client.head("/small.txt")).headers["ETag"]
    for value in (etag, "W/" + etag, f'"other", {etag}', "*"):
        resp = await client.get("/small.txt", headers={"If-None-Match": value})
        assert resp.status == 304
        assert resp.headers["ETag"] == etag
        assert await resp.read() == b""
    resp = await client.get("/small.txt", headers={"If-None-Match": '"other"'})
    assert resp.status == 200


async def test_if_modified_since(client: Client) -> None:
    """If-Modified-Since at or after Last-Modified is 304; earlier, or with If-None-Match, 200."""
    last_modified = (await client.head("/small.txt")).headers["Last-Modified"]
    resp = await client.get("/small.txt", headers={"If-Modified-Since": last_modified})
    assert resp.status == 304
    resp = await client.get("/small.txt", headers={"If-Modified-Since": format_http_date(OLD - 60)})
    assert resp.status == 200
    headers = {"If-Modified-Since": last_modified, "If-None-Match": '"other"'}
    resp = await client.get("/small.txt", headers=headers)
    assert resp.status == 200


# --- paths --------------------------------------------------------------------------------------


async def test_missing_file(client: Client) -> None:
    """A path with no file behind it is 404."""
    assert (await client.get("/nope.txt")).status == 404


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/sub%2f..%2f..%2fsecret.txt",
        "/sub%2fa.txt",
        "/..%5csecret.txt",
        "/.%2e/secret.txt",
        "/./small.txt",
        "//small.txt",
        "/small.txt%00",
        "/%ff",
    ],
)
async def test_traversal_refused(client: Client, target: str) -> None:
    """Dot segments, encoded slashes or backslashes, empty segments and NULs are all 404."""
    assert await _raw_status(client, target) == 404


async def test_raw_control_is_served(client: Client) -> None:
    """The raw-request helper itself works: plain and percent-encoded names are served."""
    assert await _raw_status(client, "/small.txt") == 200
    assert await _raw_status(client, "/sub/%61.txt") == 200


async def test_symlink_escaping_root(client: Client, root: Path, tmp_path: Path) -> None:
    """A symlink leading out of the root is 404; one staying inside is followed."""
    (root / "out.txt").symlink_to(tmp_path / "secret.txt")
    (root / "outdir").symlink_to(tmp_path, target_is_directory=True)
    (root / "in.txt").symlink_to(root / "small.txt")
    assert (await client.get("/out.txt")).status == 404
    assert (await client.get("/outdir/secret.txt")).status == 404
    resp = await client.get("/in.txt")
    assert resp.status == 200
    assert await resp.read() == TEXT


async def test_directory_listing(client: Client, root: Path, tmp_path: Path) -> None:
    """A directory is a sorted plain-text listing, subdirectories with '/', escapes left out."""
    (root / "out.txt").symlink_to(tmp_path / "secret.txt")
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    names = (await resp.text()).splitlines()
    assert names == ["blob.zzqq", "empty.bin", "pack.tar.gz", "small.txt", "sub/"]
    resp = await client.get("/sub/")
    assert (await resp.text()).splitlines() == ["a.txt"]


# --- streaming ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sendfile", [True, False])
async def test_body_larger_than_chunk(
    aiohttp_client: AiohttpClient, tmp_path: Path, sendfile: bool
) -> None:
    """A body of several chunks arrives intact, whole and as a range across chunk boundaries."""
    data = os.urandom(3 * CHUNK_SIZE + 12345)
    (tmp_path / "big.bin").write_bytes(data)
    client = await aiohttp_client(make_app(tmp_path, sendfile=sendfile))
    resp = await client.get("/big.bin")
    assert resp.status == 200
    assert await resp.read() == data
    start, end = CHUNK_SIZE - 7, 2 * CHUNK_SIZE + 7
    resp = await client.get("/big.bin", headers={"Range": f"bytes={start}-{end}"})
    assert resp.status == 206
    assert await resp.read() == data[start : end + 1]


# --- running the server -------------------------------------------------------------------------


def test_make_app_stores_max_upload(root: Path) -> None:
    """max_upload is kept in the app state for the upload handler."""
    assert make_app(root, max_upload=123)[MAX_UPLOAD_KEY] == 123
    assert make_app(root)[MAX_UPLOAD_KEY] is None


async def test_running_server(root: Path) -> None:
    """running_server listens on a free loopback port and yields its base URL."""
    async with running_server(root) as base_url:
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/")
        async with aiohttp.ClientSession() as session, session.get(base_url + "small.txt") as resp:
            assert resp.status == 200
            assert await resp.read() == TEXT


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "::", "example.com"])
async def test_remote_host_refused(root: Path, host: str) -> None:
    """Binding to a non-loopback host needs allow_remote=True."""
    with pytest.raises(UsageError):
        async with running_server(root, host):
            pass


async def test_serve_until_cancelled(root: Path) -> None:
    """serve() calls ready(base_url) once listening and stops cleanly when cancelled."""
    ready: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(serve(root, ready=ready.put_nowait))
    base_url = await asyncio.wait_for(ready.get(), 10)
    async with aiohttp.ClientSession() as session, session.head(base_url + "small.txt") as resp:
        assert resp.status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("sendfile", [True, False])
async def test_file_shrinking_mid_response(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sendfile: bool,
) -> None:
    """A file that shrinks after the headers went out ends in a cut connection, not a short 200."""
    (tmp_path / "f.bin").write_bytes(TEXT)
    real_send_body = server_module.send_body

    async def shrink_then_send(*args: Any, **kwargs: Any) -> None:
        os.truncate(tmp_path / "f.bin", 5)
        await real_send_body(*args, **kwargs)

    monkeypatch.setattr(server_module, "send_body", shrink_then_send)
    client = await aiohttp_client(make_app(tmp_path, sendfile=sendfile))
    resp = await client.get("/f.bin")
    assert resp.headers["Content-Length"] == "20"
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


@pytest.mark.parametrize("sendfile", [True, False])
async def test_client_leaving_is_quiet(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    sendfile: bool,
) -> None:
    """A client that disconnects mid-body is not logged as a server error."""
    (tmp_path / "big.bin").write_bytes(bytes(16 * CHUNK_SIZE))
    client = await aiohttp_client(make_app(tmp_path, sendfile=sendfile))
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    await reader.readexactly(1000)
    writer.transport.abort()
    await asyncio.sleep(0.3)
    assert (await client.head("/big.bin")).status == 200
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
