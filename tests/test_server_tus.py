"""The built-in server's tus 1.0.0 endpoint, driven with the requests written by hand as the
protocol text writes them (aiohttp's client for whole requests, raw sockets for broken ones)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import itertools
import os
import re
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from streamer.core.tus_server import TUS_DIR
from streamer.server.app import make_app, running_server
from streamer.server.tus import TUS_PATH, TusConfig
from tests.helpers import RUN_TIMEOUT, kill, spawn, streamer, wait_for

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{32}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Clock:
    """A clock the test moves forward instead of waiting (TusConfig.clock)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The served directory (root/) with secret.txt outside it."""
    base = tmp_path / "root"
    base.mkdir()
    (tmp_path / "secret.txt").write_bytes(b"top secret")
    return base


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make(aiohttp_client: AiohttpClient, root: Path, clock: Clock) -> MakeClient:
    """A factory of test clients for make_app(root, max_upload=..., tus=TusConfig(clock))."""

    async def open_client(max_upload: int | None = None, expire_after: float = 3600.0) -> Client:
        tus = TusConfig(expire_after=expire_after, clock=clock)
        return await aiohttp_client(make_app(root, max_upload=max_upload, tus=tus))

    return open_client


async def _create(client: Client, length: int, filename: str | None = "f.bin") -> str:
    """POST a new upload; its path (/files/ID)."""
    headers = {**TUS, "Upload-Length": str(length)}
    if filename is not None:
        headers["Upload-Metadata"] = f"filename {_b64(filename.encode())},kind"
    resp = await client.post(TUS_PATH, headers=headers)
    assert resp.status == 201, await resp.text()
    location = resp.headers["Location"]
    assert location.startswith(f"http://{client.host}:{client.port}{TUS_PATH}")
    return location.split(f"{client.port}", 1)[1]


async def _patch(
    client: Client, path: str, offset: int, body: bytes, **extra: str
) -> aiohttp.ClientResponse:
    headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": OCTETS, **extra}
    resp = await client.patch(path, data=io.BytesIO(body), headers=headers)
    await resp.read()
    return resp


async def _offset(client: Client, path: str) -> int:
    resp = await client.head(path, headers=TUS)
    assert resp.status == 200
    return int(resp.headers["Upload-Offset"])


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in (root / TUS_DIR).iterdir())


async def _raw_patch(
    address: tuple[str, int], path: str, offset: int, declared: int, sent: bytes
) -> None:
    """A PATCH announcing ``declared`` bytes that sends ``sent`` and closes the connection."""
    _reader, writer = await asyncio.open_connection(*address)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: {address[0]}\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: {OCTETS}\r\nUpload-Offset: {offset}\r\nContent-Length: {declared}\r\n\r\n"
    )
    writer.write(head.encode() + sent)
    await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def _wait_offset(client: Client, path: str, wanted: int) -> None:
    """HEAD until the server reports ``wanted`` (the cut PATCH is being settled)."""
    for _ in range(2000):  # 20 s at most
        if await _offset(client, path) == wanted:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"Upload-Offset never reached {wanted}: {await _offset(client, path)}")


# --- discovery and creation ---------------------------------------------------------------------


async def test_options_lists_version_extensions_and_algorithms(make: MakeClient) -> None:
    """OPTIONS needs no Tus-Resumable and lists 1.0.0, the five extensions, the checksums."""
    client = await make()
    resp = await client.options(TUS_PATH)
    assert resp.status == 204
    assert resp.headers["Tus-Version"] == "1.0.0"
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    extensions = resp.headers["Tus-Extension"].split(",")
    assert extensions == [
        "creation",
        "creation-with-upload",
        "termination",
        "checksum",
        "expiration",
    ]
    assert resp.headers["Tus-Checksum-Algorithm"].split(",") == ["sha1", "md5", "sha256"]
    assert "Tus-Max-Size" not in resp.headers


async def test_max_upload_is_tus_max_size_and_longer_uploads_are_413(
    make: MakeClient, root: Path
) -> None:
    """With max_upload, OPTIONS tells Tus-Max-Size; a longer Upload-Length gets 413, no upload."""
    client = await make(max_upload=1000)
    assert (await client.options(TUS_PATH)).headers["Tus-Max-Size"] == "1000"
    await _create(client, 1000)
    resp = await client.post(TUS_PATH, headers={**TUS, "Upload-Length": "1001"})
    assert resp.status == 413
    assert "Tus-Max-Size 1000" in await resp.text()
    assert len(_leftovers(root)) == 2  # the one upload of 1000 bytes: its data and record


async def test_create_head_patch_complete_publishes_the_file(make: MakeClient, root: Path) -> None:
    """POST, HEAD, three PATCHes: the offsets advance and the finished file has the bytes sent."""
    client = await make()
    data = os.urandom(3 << 20)
    path = await _create(client, len(data), "report.bin")
    assert ID_SHAPE.fullmatch(path.removeprefix(TUS_PATH))
    head = await client.head(path, headers=TUS)
    assert head.status == 200
    assert head.headers["Upload-Offset"] == "0"
    assert head.headers["Upload-Length"] == str(len(data))
    assert head.headers["Cache-Control"] == "no-store"
    assert head.headers["Upload-Metadata"] == f"filename {_b64(b'report.bin')},kind"
    assert head.headers["Tus-Resumable"] == "1.0.0"
    cuts = [0, 1 << 20, (2 << 20) + 7, len(data)]
    for start, end in itertools.pairwise(cuts):
        resp = await _patch(client, path, start, data[start:end])
        assert resp.status == 204
        assert resp.headers["Upload-Offset"] == str(end)
    assert resp.headers["Streamer-Published"] == "/report.bin"
    assert _sha((root / "report.bin").read_bytes()) == _sha(data)
    assert (await client.head(path, headers=TUS)).headers["Upload-Offset"] == str(len(data))
    assert _leftovers(root) == [path.removeprefix(TUS_PATH) + ".json"]


async def test_creation_with_upload_stores_the_first_bytes(make: MakeClient, root: Path) -> None:
    """POST with an application/offset+octet-stream body: created at that offset."""
    client = await make()
    headers = {**TUS, "Upload-Length": "10", "Content-Type": OCTETS}
    resp = await client.post(TUS_PATH, headers=headers, data=b"hello")
    assert resp.status == 201
    assert resp.headers["Upload-Offset"] == "5"
    path = resp.headers["Location"].split(str(client.port), 1)[1]
    assert (await _patch(client, path, 5, b"world")).status == 204
    assert (root / "upload").read_bytes() == b"helloworld"


async def test_empty_upload_is_published_at_creation(make: MakeClient, root: Path) -> None:
    """Upload-Length: 0 is complete at once: the empty file exists after the POST."""
    client = await make()
    await _create(client, 0, "empty.txt")
    assert (root / "empty.txt").read_bytes() == b""


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no Upload-Length
        {"Upload-Length": "-1"},
        {"Upload-Defer-Length": "1"},
        {"Upload-Length": "5", "Upload-Metadata": "filename not-base64!"},
        {"Upload-Length": "5", "Upload-Metadata": "a YQ==,a YQ=="},
    ],
)
async def test_bad_creation_headers_are_400(
    make: MakeClient, root: Path, headers: dict[str, str]
) -> None:
    """A missing or malformed Upload-Length, deferred length, bad metadata: 400, no upload."""
    client = await make()
    resp = await client.post(TUS_PATH, headers={**TUS, **headers})
    assert resp.status == 400
    assert not (root / TUS_DIR).exists()


# --- the PATCH rules ----------------------------------------------------------------------------


async def test_wrong_offset_is_409_and_changes_nothing(make: MakeClient) -> None:
    """A PATCH whose Upload-Offset is not the server's gets 409; the offset stays."""
    client = await make()
    path = await _create(client, 10)
    assert (await _patch(client, path, 0, b"abc")).status == 204
    for wrong in (0, 2, 4):
        resp = await _patch(client, path, wrong, b"xyz")
        assert resp.status == 409
        assert resp.headers["Tus-Resumable"] == "1.0.0"
    assert await _offset(client, path) == 3


@pytest.mark.parametrize("ctype", [None, "application/octet-stream", "text/plain"])
async def test_patch_without_offset_stream_type_is_415(make: MakeClient, ctype: str | None) -> None:
    """PATCH needs Content-Type application/offset+octet-stream: 415 otherwise, nothing kept."""
    client = await make()
    path = await _create(client, 10)
    headers = {**TUS, "Upload-Offset": "0"}
    if ctype is not None:
        headers["Content-Type"] = ctype
    resp = await client.patch(
        path, data=b"abc", headers=headers, skip_auto_headers=["Content-Type"]
    )
    assert resp.status == 415
    assert await _offset(client, path) == 0


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0"])
async def test_other_tus_resumable_is_412_on_every_method(
    make: MakeClient, version: str | None
) -> None:
    """POST, HEAD, PATCH, DELETE without Tus-Resumable 1.0.0: 412 with Tus-Version."""
    client = await make()
    path = await _create(client, 10)
    headers = {} if version is None else {"Tus-Resumable": version}
    answers = [
        await client.post(TUS_PATH, headers={**headers, "Upload-Length": "1"}),
        await client.head(path, headers=headers),
        await client.patch(
            path, data=b"a", headers={**headers, "Upload-Offset": "0", "Content-Type": OCTETS}
        ),
        await client.delete(path, headers=headers),
    ]
    assert [r.status for r in answers] == [412] * 4
    assert all(r.headers["Tus-Version"] == "1.0.0" for r in answers)
    assert await _offset(client, path) == 0


async def test_patch_past_the_length_is_413(make: MakeClient) -> None:
    """A PATCH whose Content-Length would pass Upload-Length is 413 and keeps nothing."""
    client = await make()
    path = await _create(client, 4)
    assert (await _patch(client, path, 0, b"12345")).status == 413
    assert await _offset(client, path) == 0


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256"])
async def test_matching_checksum_is_kept(make: MakeClient, algorithm: str) -> None:
    """Upload-Checksum over the PATCH body, when it matches, stores the body (204)."""
    client = await make()
    path = await _create(client, 6)
    digest = _b64(hashlib.new(algorithm, b"abc").digest())
    resp = await _patch(client, path, 0, b"abc", **{"Upload-Checksum": f"{algorithm} {digest}"})
    assert resp.status == 204
    assert await _offset(client, path) == 3


async def test_checksum_mismatch_is_460_and_the_bytes_are_dropped(
    make: MakeClient, root: Path
) -> None:
    """A body whose digest is not Upload-Checksum: 460 Checksum Mismatch; offset and data
    file stay as before; the same body with the right checksum then passes."""
    client = await make()
    path = await _create(client, 8, "c.bin")
    assert (await _patch(client, path, 0, b"ab")).status == 204
    wrong = {"Upload-Checksum": "sha256 " + _b64(hashlib.sha256(b"other").digest())}
    resp = await _patch(client, path, 2, b"cdef", **wrong)
    assert resp.status == 460
    assert resp.reason == "Checksum Mismatch"
    assert await _offset(client, path) == 2
    assert (root / TUS_DIR / path.removeprefix(TUS_PATH)).read_bytes() == b"ab"
    right = {"Upload-Checksum": "sha1 " + _b64(hashlib.sha1(b"cdefgh").digest())}
    assert (await _patch(client, path, 2, b"cdefgh", **right)).status == 204
    assert (root / "c.bin").read_bytes() == b"abcdefgh"


async def test_unsupported_checksum_algorithm_is_400(make: MakeClient) -> None:
    """An algorithm not in Tus-Checksum-Algorithm is 400 Bad Request; nothing is stored."""
    client = await make()
    path = await _create(client, 3)
    crc = {"Upload-Checksum": "crc32 AAAAAA=="}
    assert (await _patch(client, path, 0, b"abc", **crc)).status == 400
    assert await _offset(client, path) == 0


async def test_cut_patch_keeps_the_bytes_that_arrived(make: MakeClient, root: Path) -> None:
    """A PATCH that announces N bytes, sends half and closes: HEAD reports exactly the half
    (durably on disk), and a PATCH from there completes the file."""
    client = await make()
    data = os.urandom((4 << 20) + 123)
    half = len(data) // 2
    path = await _create(client, len(data), "cut.bin")
    await _raw_patch((client.host, client.port), path, 0, len(data), data[:half])
    await _wait_offset(client, path, half)
    assert (root / TUS_DIR / path.removeprefix(TUS_PATH)).read_bytes() == data[:half]
    assert (await _patch(client, path, half, data[half:])).status == 204
    assert _sha((root / "cut.bin").read_bytes()) == _sha(data)


async def test_cut_patch_keeps_the_bytes_on_the_serve_runner(root: Path) -> None:
    """The same on the runner `streamer serve` uses, whose handlers are not cancelled when a
    client leaves (the test client's are): the cut is seen as a read error there."""
    data = os.urandom((4 << 20) + 5)
    half = len(data) // 2 + 1
    async with running_server(root) as base, aiohttp.ClientSession() as session:
        headers = {**TUS, "Upload-Length": str(len(data))}
        location = (await session.post(base + "files/", headers=headers)).headers["Location"]
        url = aiohttp.client.URL(location)
        assert url.host is not None and url.port is not None
        await _raw_patch((url.host, url.port), url.path, 0, len(data), data[:half])
        for _ in range(2000):  # 20 s at most
            head = await session.head(location, headers=TUS)
            if head.headers["Upload-Offset"] == str(half):
                break
            await asyncio.sleep(0.01)
        assert head.headers["Upload-Offset"] == str(half)
    assert (root / TUS_DIR / url.name).read_bytes() == data[:half]


async def test_cut_patch_with_checksum_keeps_nothing(make: MakeClient, root: Path) -> None:
    """A cut PATCH that carried Upload-Checksum cannot be verified: its bytes are dropped."""
    client = await make()
    path = await _create(client, 100)
    _reader, writer = await asyncio.open_connection(client.host, client.port)
    digest = _b64(hashlib.sha256(b"x" * 100).digest())
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: h\r\nTus-Resumable: 1.0.0\r\nContent-Type: {OCTETS}\r\n"
        f"Upload-Offset: 0\r\nUpload-Checksum: sha256 {digest}\r\nContent-Length: 100\r\n\r\n"
    )
    writer.write(head.encode() + b"x" * 50)
    await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    # The lock is let go once the cut is settled: an empty PATCH then passes.
    for _ in range(2000):
        resp = await _patch(client, path, 0, b"")
        if resp.status == 204:
            break
        assert resp.status == 423
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the cut PATCH never let go of the upload")
    assert await _offset(client, path) == 0
    assert (root / TUS_DIR / path.removeprefix(TUS_PATH)).stat().st_size == 0


async def test_concurrent_patch_is_423_locked(make: MakeClient, root: Path) -> None:
    """While one PATCH is being received, another PATCH or a DELETE of the upload gets 423;
    once the first ends, the upload is whole."""
    client = await make()
    path = await _create(client, 10, "lock.bin")
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: h\r\nTus-Resumable: 1.0.0\r\nContent-Type: {OCTETS}\r\n"
        f"Upload-Offset: 0\r\nContent-Length: 10\r\n\r\n"
    )
    writer.write(head.encode() + b"01234")
    await writer.drain()
    for _ in range(2000):  # an empty PATCH at 0 is harmless if it comes before the first
        status = (await _patch(client, path, 0, b"")).status
        if status == 423:
            break
        assert status == 204
        await asyncio.sleep(0.01)
    assert status == 423
    assert (await client.delete(path, headers=TUS)).status == 423
    writer.write(b"56789")
    await writer.drain()
    answer = await reader.readuntil(b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 204")
    writer.close()
    assert (root / "lock.bin").read_bytes() == b"0123456789"


async def test_method_override_makes_a_post_a_patch_or_delete(make: MakeClient) -> None:
    """X-HTTP-Method-Override is the method (core protocol): POST+PATCH appends, POST+DELETE
    terminates; an override that is no upload method is 405."""
    client = await make()
    path = await _create(client, 6)
    headers = {**TUS, "Upload-Offset": "0", "Content-Type": OCTETS}
    patch = await client.post(
        path, headers={**headers, "X-HTTP-Method-Override": "PATCH"}, data=b"abc"
    )
    assert patch.status == 204
    assert patch.headers["Upload-Offset"] == "3"
    bogus = await client.post(path, headers={**TUS, "X-HTTP-Method-Override": "PUT"})
    assert bogus.status == 405
    delete = await client.post(path, headers={**TUS, "X-HTTP-Method-Override": "DELETE"})
    assert delete.status == 204
    assert (await client.head(path, headers=TUS)).status == 404


# --- termination, expiration, ids ---------------------------------------------------------------


async def test_delete_terminates_the_upload(make: MakeClient, root: Path) -> None:
    """DELETE: 204, then HEAD, PATCH and DELETE get 404 and the data is gone."""
    client = await make()
    path = await _create(client, 10)
    assert (await _patch(client, path, 0, b"abc")).status == 204
    resp = await client.delete(path, headers=TUS)
    assert resp.status == 204
    assert (await client.head(path, headers=TUS)).status == 404
    assert (await _patch(client, path, 3, b"def")).status == 404
    assert (await client.delete(path, headers=TUS)).status == 404
    assert _leftovers(root) == []


async def test_expired_upload_is_410_then_404(make: MakeClient, clock: Clock, root: Path) -> None:
    """Upload-Expires is given at creation and moved by each PATCH; once past, the upload
    answers 410 Gone, then 404, and its files are gone."""
    client = await make(expire_after=600.0)
    resp = await client.post(TUS_PATH, headers={**TUS, "Upload-Length": "10"})
    assert resp.headers["Upload-Expires"] == "Fri, 15 Jan 2027 08:10:00 GMT"
    path = resp.headers["Location"].split(str(client.port), 1)[1]
    clock.now += 500
    patched = await _patch(client, path, 0, b"abc")
    assert patched.headers["Upload-Expires"] == "Fri, 15 Jan 2027 08:18:20 GMT"
    clock.now += 599
    assert await _offset(client, path) == 3
    clock.now += 1
    assert (await client.head(path, headers=TUS)).status == 410
    assert (await client.head(path, headers=TUS)).status == 404
    assert _leftovers(root) == []


async def test_expired_uploads_are_swept_at_start(root: Path, clock: Clock) -> None:
    """An upload that expired while the server was down is removed when it starts again."""
    tus = TusConfig(expire_after=60.0, clock=clock)
    async with running_server(root, tus=tus) as base, aiohttp.ClientSession() as session:
        resp = await session.post(base + "files/", headers={**TUS, "Upload-Length": "9"})
        assert resp.status == 201
    assert len(_leftovers(root)) == 2
    clock.now += 61
    async with running_server(root, tus=tus):
        assert _leftovers(root) == []


async def test_orphaned_files_are_swept_at_start(root: Path) -> None:
    """A data file without a record and a record's temp file (a crash between the two
    writes) are removed when the server starts; a live upload is kept."""
    async with running_server(root) as base, aiohttp.ClientSession() as session:
        resp = await session.post(base + "files/", headers={**TUS, "Upload-Length": "9"})
        live = resp.headers["Location"].rsplit("/", 1)[1]
    (root / TUS_DIR / ("B" * 32)).write_bytes(b"orphan")
    (root / TUS_DIR / f"{live}.json.tmp").write_bytes(b"{")
    async with running_server(root):
        assert _leftovers(root) == sorted([live, f"{live}.json"])


async def test_ids_are_unguessable_and_other_ids_are_404(make: MakeClient) -> None:
    """Ids are 32 URL-safe characters from 192 random bits, all different; a path of another
    shape (dots, slashes, encoded) is no upload (404)."""
    client = await make()
    ids = [(await _create(client, 1)).removeprefix(TUS_PATH) for _ in range(20)]
    assert len(set(ids)) == 20
    assert all(ID_SHAPE.fullmatch(i) for i in ids)
    # No shared prefix beyond chance: not a counter or a timestamp.
    assert len({i[:4] for i in ids}) > 15
    for other in ("abc", "..%2F..%2Fsecret.txt", ids[0][:-1] + ".", ids[0] + ".json"):
        assert (await client.head(TUS_PATH + other, headers=TUS)).status == 404


# --- publication --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "published"),
    [
        ("../secret.txt", "secret.txt"),
        ("../../../../etc/passwd", "passwd"),
        ("..\\..\\win.ini", "win.ini"),
        (f"{TUS_DIR}/x.json", "x.json"),
        (".hidden", "hidden"),
        ("..", "upload"),
    ],
)
async def test_metadata_filename_cannot_leave_the_directory(
    make: MakeClient, root: Path, filename: str, published: str
) -> None:
    """The metadata filename is cut to one safe component inside the served directory."""
    client = await make()
    path = await _create(client, 3, filename)
    resp = await _patch(client, path, 0, b"new")
    assert resp.headers["Streamer-Published"] == "/" + published
    assert (root / published).read_bytes() == b"new"
    assert (root.parent / "secret.txt").read_bytes() == b"top secret"


async def test_existing_file_is_never_replaced(make: MakeClient, root: Path) -> None:
    """A finished upload whose name is taken gets name-1.ext, then name-2.ext."""
    client = await make()
    (root / "a.txt").write_bytes(b"mine")
    for body in (b"one", b"two"):
        path = await _create(client, 3, "a.txt")
        await _patch(client, path, 0, body)
    assert (root / "a.txt").read_bytes() == b"mine"
    assert (root / "a-1.txt").read_bytes() == b"one"
    assert (root / "a-2.txt").read_bytes() == b"two"


async def test_other_names_under_files_are_still_served(make: MakeClient, root: Path) -> None:
    """A served directory named files/ keeps working for GET and HEAD of its files."""
    client = await make()
    (root / "files").mkdir()
    (root / "files" / "readme.txt").write_bytes(b"hello")
    assert await (await client.get("/files/readme.txt")).read() == b"hello"
    assert (await client.head("/files/readme.txt")).headers["Content-Length"] == "5"


async def test_checksum_mismatch_on_creation_with_upload_still_gives_location(
    make: MakeClient,
) -> None:
    """A 460 on creation-with-upload names the created upload (Location, Upload-Offset 0)."""
    client = await make()
    headers = {
        **TUS,
        "Upload-Length": "10",
        "Content-Type": OCTETS,
        "Upload-Checksum": "md5 " + _b64(hashlib.md5(b"other").digest()),
    }
    resp = await client.post(TUS_PATH, headers=headers, data=b"hello")
    assert resp.status == 460
    assert resp.headers["Upload-Offset"] == "0"
    path = resp.headers["Location"].split(str(client.port), 1)[1]
    assert await _offset(client, path) == 0


async def test_tus_folder_is_never_served_nor_written(make: MakeClient, root: Path) -> None:
    """GET, PUT and listings never reach the hidden folder where uploads are kept."""
    client = await make()
    path = await _create(client, 3)
    upload_id = path.removeprefix(TUS_PATH)
    assert (await client.get(f"/{TUS_DIR}/{upload_id}.json")).status == 404
    assert (await client.put(f"/{TUS_DIR}/{upload_id}.json", data=b"{}")).status == 404
    assert TUS_DIR not in await (await client.get("/")).text()
    assert await _offset(client, path) == 0


async def test_resume_across_a_server_restart(root: Path) -> None:
    """The state is on disk: a new server on the same directory continues at the offset."""
    data = os.urandom(1 << 20)
    async with running_server(root) as base, aiohttp.ClientSession() as session:
        headers = {**TUS, "Upload-Length": str(len(data))}
        location = (await session.post(base + "files/", headers=headers)).headers["Location"]
        patch = {**TUS, "Upload-Offset": "0", "Content-Type": OCTETS}
        assert (
            await session.patch(location, headers=patch, data=io.BytesIO(data[:1000]))
        ).status == 204
    async with running_server(root) as base, aiohttp.ClientSession() as session:
        location = base + "files/" + location.rsplit("/", 1)[1]  # another port now
        head = await session.head(location, headers=TUS)
        assert head.headers["Upload-Offset"] == "1000"
        patch = {**TUS, "Upload-Offset": "1000", "Content-Type": OCTETS}
        assert (
            await session.patch(location, headers=patch, data=io.BytesIO(data[1000:]))
        ).status == 204
    assert _sha((root / "upload").read_bytes()) == _sha(data)


async def test_long_patch_records_its_progress_on_the_way(
    aiohttp_client: AiohttpClient, root: Path
) -> None:
    """A PATCH without checksum fsyncs and records its offset every `checkpoint` bytes, so
    HEAD reports progress (and a crashed server keeps it) before the PATCH ends."""
    tus = TusConfig(checkpoint=1 << 20)
    client = await aiohttp_client(make_app(root, tus=tus))
    data = os.urandom(4 << 20)
    path = await _create(client, len(data), "long.bin")
    _reader, writer = await asyncio.open_connection(client.host, client.port)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: h\r\nTus-Resumable: 1.0.0\r\nContent-Type: {OCTETS}\r\n"
        f"Upload-Offset: 0\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    writer.write(head.encode() + data[: 3 << 20])
    await writer.drain()
    for _ in range(2000):  # 20 s at most
        if (offset := await _offset(client, path)) >= 2 << 20:
            break
        await asyncio.sleep(0.01)
    assert 2 << 20 <= offset < len(data)
    writer.write(data[3 << 20 :])
    await writer.drain()
    await _reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert _sha((root / "long.bin").read_bytes()) == _sha(data)


async def test_finished_upload_answers_head_and_empty_patch(make: MakeClient, root: Path) -> None:
    """After completion HEAD and an empty PATCH at the end still answer (a client checking);
    DELETE then forgets the upload but never removes the published file."""
    client = await make()
    path = await _create(client, 3, "done.txt")
    assert (await _patch(client, path, 0, b"abc")).status == 204
    again = await _patch(client, path, 3, b"")
    assert again.status == 204
    assert again.headers["Streamer-Published"] == "/done.txt"
    assert (await client.delete(path, headers=TUS)).status == 204
    assert (root / "done.txt").read_bytes() == b"abc"
    assert _leftovers(root) == []


async def test_upload_finished_before_a_crash_is_published_at_start(root: Path) -> None:
    """A record whose offset reached the length but that a crash left unpublished (the
    record written, the link not made) is published when the server starts again."""
    async with running_server(root) as base, aiohttp.ClientSession() as session:
        headers = {**TUS, "Upload-Length": "6", "Upload-Metadata": f"filename {_b64(b'x.txt')}"}
        location = (await session.post(base + "files/", headers=headers)).headers["Location"]
        patch = {**TUS, "Upload-Offset": "0", "Content-Type": OCTETS}
        assert (await session.patch(location, headers=patch, data=b"abc")).status == 204
    upload_id = location.rsplit("/", 1)[1]
    record_path = root / TUS_DIR / f"{upload_id}.json"
    # What the last PATCH would have left had the server died right after recording it.
    with open(root / TUS_DIR / upload_id, "ab") as data_file:
        data_file.write(b"def")
    record_path.write_text(record_path.read_text().replace('"offset": 3', '"offset": 6'))
    async with running_server(root):
        assert (root / "x.txt").read_bytes() == b"abcdef"


async def _serve(root: Path, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    """``python -m streamer serve ROOT --port 0 ARGS``; the process and its base URL."""
    proc = await spawn("serve", str(root), "--port", "0", *args)
    assert proc.stderr is not None
    line = (await asyncio.wait_for(proc.stderr.readline(), RUN_TIMEOUT)).decode()
    assert " at http://" in line, line
    return proc, line.rsplit(" at ", 1)[1].strip()


async def test_serve_cli_upload_survives_kill_9_of_the_server(root: Path) -> None:
    """`streamer serve --max-upload` is a tus server (Tus-Max-Size); killed with SIGKILL in
    the middle of a PATCH and started again, it reports the last recorded offset, drops the
    unrecorded bytes, and the upload completes with the right SHA-256."""
    data = os.urandom(6 << 20)
    proc, base = await _serve(root, "--max-upload", "8M")
    try:
        async with aiohttp.ClientSession() as session:
            options = await session.options(base + "files/")
            assert options.headers["Tus-Max-Size"] == str(8 << 20)
            headers = {**TUS, "Upload-Length": str(len(data))}
            location = (await session.post(base + "files/", headers=headers)).headers["Location"]
            patch = {**TUS, "Upload-Offset": "0", "Content-Type": OCTETS}
            first = await session.patch(location, headers=patch, data=io.BytesIO(data[: 2 << 20]))
            assert first.status == 204
        url = aiohttp.client.URL(location)
        assert url.host is not None and url.port is not None
        _reader, writer = await asyncio.open_connection(url.host, url.port)
        head = (
            f"PATCH {url.path} HTTP/1.1\r\nHost: h\r\nTus-Resumable: 1.0.0\r\n"
            f"Content-Type: {OCTETS}\r\nUpload-Offset: {2 << 20}\r\n"
            f"Content-Length: {4 << 20}\r\n\r\n"
        )
        writer.write(head.encode() + data[2 << 20 : 3 << 20])
        await writer.drain()
        # Killed once the PATCH's first MiB is in the data file, not yet in the record.
        data_file = root / TUS_DIR / url.name
        await wait_for(lambda: data_file.stat().st_size == 3 << 20, "the unrecorded MiB")
    finally:
        kill(proc)
        await proc.communicate()
    writer.close()
    proc, base = await _serve(root)
    try:
        async with aiohttp.ClientSession() as session:
            location = base + "files/" + url.name
            assert (await session.head(location, headers=TUS)).headers["Upload-Offset"] == str(
                2 << 20
            )
            patch = {**TUS, "Upload-Offset": str(2 << 20), "Content-Type": OCTETS}
            rest = await session.patch(location, headers=patch, data=io.BytesIO(data[2 << 20 :]))
            assert rest.status == 204
    finally:
        kill(proc)
        await proc.communicate()
    assert _sha((root / "upload").read_bytes()) == _sha(data)


def _held(root: Path) -> int:
    """Bytes in the server's data files of uploads (0 before the first POST)."""
    with contextlib.suppress(OSError):
        return sum(p.stat().st_size for p in (root / TUS_DIR).iterdir() if p.suffix == "")
    return 0


async def test_put_tus_killed_mid_upload_resumes_on_serve(root: Path, tmp_path: Path) -> None:
    """`streamer put --tus` to `streamer serve`, SIGKILLed mid-PATCH, then run again: the
    rerun resumes at the bytes the server kept and the published file has the source's
    SHA-256. (The server is paused with SIGSTOP before the kill so the first run cannot
    finish first, whatever the machine's speed.)"""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(64 << 20))
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    server, base = await _serve(root)
    try:
        put = await spawn("put", "--tus", str(big), base + "files/", "-q", env=env)
        try:
            await wait_for(lambda: _held(root) > 0, "the first PATCH bytes on the server")
            server.send_signal(signal.SIGSTOP)
        finally:
            kill(put)
            await put.wait()
            server.send_signal(signal.SIGCONT)
        run = await streamer("put", "--tus", str(big), base + "files/", "--json", env=env)
        assert run.rc == 0, run.err
        doc = run.json()
        assert 0 < doc["resumed_from"] < big.stat().st_size
        assert doc["sent"] == big.stat().st_size - doc["resumed_from"]
    finally:
        kill(server)
        await server.communicate()
    assert _sha((root / "big.bin").read_bytes()) == _sha(big.read_bytes())
