"""Direct writes of large raw-path bodies (storage/direct.py, asked for with STREAMER_DIRECT_IO=1).

Every test reads ``result.direct_io`` (or the --json field) so that a change which quietly
sends these bodies back to the page cache fails here. In-process tests shrink the pool's
buffers to 64 KiB and drop the size threshold (module constants), so that small bodies cross
many buffers and block boundaries; the real-process tests run the defaults. The rules: the
file is the body byte for byte whatever its length against the block and buffer sizes; a
resume from an odd length continues exactly; a cut, a cancellation or a kill -9 leaves a
``.part`` holding only body bytes (no padding, no hole) that resumes exactly; a file system
that refuses a direct write loses nothing; the switch and the threshold keep the page cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from pytest_aiohttp import AiohttpServer

import streamer
from streamer import Client
from streamer.core.events import Progress
from streamer.storage import direct
from streamer.storage.files import part_path, sidecar_path
from tests.conftest import CLIENT_DEFAULTS
from tests.faults import ClientFactory, data
from tests.helpers import o_direct_dir, takes_o_direct
from tests.resource_server import Act, Resource, make_resource_app
from tests.test_tls import server_context, tls_site

BUF = 64 * 1024
BLOCK = direct.BLOCK


@pytest.fixture
def direct_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Direct writes asked for, for bodies of any size, through 64 KiB buffers."""
    monkeypatch.setenv(direct.ENV_SWITCH, "1")
    monkeypatch.setattr(direct, "DIRECT_MIN", 0)
    monkeypatch.setattr(direct, "BUFFER_BYTES", BUF)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """Where the downloads go: a directory whose file system takes O_DIRECT."""
    with o_direct_dir(tmp_path) as where:
        yield where


@pytest.fixture
async def dl(make_client: ClientFactory) -> Client:
    """A client whose raw buffer (chunk_size) is 16 KiB: reads land across the pool's buffers."""
    return await make_client(chunk_size=16 * 1024)


async def serve(aiohttp_server: AiohttpServer, body: bytes) -> Resource:
    res = Resource(body)
    server = await aiohttp_server(make_resource_app(res), host="127.0.0.1")
    res.url = str(server.make_url("/resource"))
    return res


def sha256(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


# --- byte-exact at every boundary -------------------------------------------------------------


@pytest.mark.usefixtures("direct_on")
@pytest.mark.parametrize(
    "size",
    [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, BUF - 1, BUF, BUF + 1, 3 * BUF + BLOCK + 1, 40 * BUF + 7],
)
async def test_sizes_around_block_and_buffer_boundaries_are_byte_exact(
    dl: Client, aiohttp_server: AiohttpServer, disk: Path, size: int
) -> None:
    """Whatever the length against the block and buffer sizes, the file is the body (checksum
    verified in order); whole blocks go direct, a body shorter than one block only through
    the ordinary descriptor."""
    body = data(size)
    res = await serve(aiohttp_server, body)
    target = disk / "f"
    result = await dl.download(res.url, target, checksum=sha256(body))
    assert (result.body_path, result.direct_io) == ("raw", size >= BLOCK)
    assert target.read_bytes() == body and result.size == size
    assert not part_path(target).exists() and not sidecar_path(target).exists()


@pytest.mark.usefixtures("direct_on")
async def test_https_body_is_decrypted_into_the_aligned_buffers(disk: Path) -> None:
    """Over TLS asyncio's decryption fills the lent buffers as the socket does (the pause for
    a free buffer included): the file is the body and was written direct."""
    body, ca = data(7 * BUF + 333), trustme.CA()
    cafile = disk / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body)

    app = web.Application()
    app.router.add_get("/f", handler)
    async with tls_site(server_context(ca), app) as base:
        options = {**CLIENT_DEFAULTS, "chunk_size": 16 * 1024}
        async with Client(cafile=str(cafile), **options) as client:
            result = await client.download(base + "f", disk / "f", checksum=sha256(body))
    assert (result.body_path, result.direct_io) == ("raw", True)
    assert (disk / "f").read_bytes() == body


# --- cuts, resumes, cancellation ----------------------------------------------------------------


@pytest.mark.usefixtures("direct_on")
@pytest.mark.parametrize("how", ["close", "abort"])
async def test_cut_leaves_exactly_the_bytes_received_and_an_odd_resume_is_exact(
    dl: Client, aiohttp_server: AiohttpServer, disk: Path, how: str
) -> None:
    """A cut at an odd byte K keeps exactly K body bytes in the .part (the unaligned rest
    written, no padding); the resume from that odd length asks bytes=K- and, writing direct
    from the block holding K, gives the body byte for byte."""
    size, cut = 5 * BUF + 999, 2 * BUF + BLOCK + 123
    body = data(size)
    res = await serve(aiohttp_server, body)
    res.script.append(Act(cut_at=cut, how=how))
    target = disk / "f"
    with pytest.raises(streamer.BodyTruncatedError):
        await dl.download(res.url, target)
    assert part_path(target).read_bytes() == body[:cut] and sidecar_path(target).exists()
    result = await dl.download(res.url, target, checksum=sha256(body))
    assert (result.body_path, result.direct_io, result.resumed_from) == ("raw", True, cut)
    assert res.seen[1].range == f"bytes={cut}-" and res.seen[1].status == 206
    assert target.read_bytes() == body and res.sent == size


@pytest.mark.usefixtures("direct_on")
async def test_cancelled_download_keeps_every_byte_received(
    dl: Client, aiohttp_server: AiohttpServer, disk: Path
) -> None:
    """Cancelled (Ctrl-C) while the server pauses, the .part holds every byte received so far
    (the queued writes and the unaligned rest), and the next run resumes after them."""
    size, sent = 6 * BUF + 5, 3 * BUF + 777
    body, pause = data(size), asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        first = request.headers.get("Range") is None
        start = 0 if first else int(request.headers["Range"][6:-1])
        resp = web.StreamResponse(status=200 if first else 206, headers={"ETag": '"d1"'})
        if not first:
            resp.headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        resp.content_length = size - start
        await resp.prepare(request)
        await resp.write(body[start : sent if first else size])
        if first:
            await pause.wait()
        return resp

    app = web.Application()
    app.router.add_get("/f", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    url, target = str(server.make_url("/f")), disk / "f"
    got = asyncio.Event()

    def progress(p: Progress) -> None:
        if p.done >= sent:
            got.set()

    task = asyncio.create_task(dl.download(url, target, progress=progress))
    try:
        await asyncio.wait_for(got.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        pause.set()
    assert part_path(target).read_bytes() == body[:sent]
    result = await dl.download(url, target)
    assert (result.direct_io, result.resumed_from) == (True, sent)
    assert target.read_bytes() == body


# --- a kill -9 in a real process ----------------------------------------------------------------

KILL_TOTAL = 16 * 1024 * 1024 + 4097  # over the default threshold (direct.DIRECT_MIN)


@pytest.fixture
async def stalling(aiohttp_server: AiohttpServer) -> AsyncIterator[tuple[str, bytes]]:
    """A first answer that sends 9 MiB, pauses past a checkpoint's second, sends 3 MiB more and
    stalls; a ranged request gets the rest (206)."""
    body, stall = data(KILL_TOTAL), asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        rng = request.headers.get("Range")
        start = 0 if rng is None else int(rng[6:-1])
        resp = web.StreamResponse(status=200 if rng is None else 206, headers={"ETag": '"k1"'})
        if rng is not None:
            resp.headers["Content-Range"] = f"bytes {start}-{KILL_TOTAL - 1}/{KILL_TOTAL}"
        resp.content_length = KILL_TOTAL - start
        await resp.prepare(request)
        if rng is not None:
            await resp.write(body[start:])
            return resp
        await resp.write(body[: 9 << 20])
        await asyncio.sleep(1.3)  # a checkpoint comes after about a second (partial.py)
        await resp.write(body[9 << 20 : 12 << 20])
        await stall.wait()
        return resp

    app = web.Application()
    app.router.add_get("/big", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    yield str(server.make_url("/big")), body
    stall.set()


def _committed(sidecar: Path) -> int:
    try:
        return int(json.loads(sidecar.read_text())["committed"])
    except (OSError, ValueError, KeyError):
        return 0


async def test_kill_9_mid_body_leaves_a_part_of_body_bytes_that_resumes_exactly(
    stalling: tuple[str, bytes], disk: Path, dl: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `streamer get` with direct writes, killed with SIGKILL after a checkpoint: the
    .part holds only body bytes from byte 0 (never padding or a hole), the sidecar counts no
    more than it holds, and a resume from it gives the body byte for byte."""
    url, body = stalling
    target = disk / "big"
    env = {**os.environ, direct.ENV_SWITCH: "1"}
    cmd = [sys.executable, "-m", "streamer", "get", url, "-o", str(target), "--no-progress"]
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stderr=asyncio.subprocess.PIPE)
    try:
        for _ in range(600):  # at most 60 s
            if _committed(sidecar_path(target)) > 0 or proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.stderr is not None
    assert proc.returncode == -signal.SIGKILL, await proc.stderr.read()
    committed, held = _committed(sidecar_path(target)), part_path(target).read_bytes()
    assert 0 < committed <= len(held) and held == body[: len(held)]
    monkeypatch.setenv(direct.ENV_SWITCH, "1")
    monkeypatch.setattr(direct, "DIRECT_MIN", 0)  # the rest is under 8 MiB
    result = await dl.download(url, target)
    assert (result.direct_io, result.resumed_from) == (True, committed)
    assert target.read_bytes() == body


# --- where direct writes are refused, switched off or not worth it ------------------------------


@pytest.mark.usefixtures("direct_on")
async def test_a_direct_write_refused_with_einval_goes_on_through_the_page_cache(
    dl: Client, aiohttp_server: AiohttpServer, disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system that refuses a direct write (EINVAL) loses nothing: that block and the
    rest are written through the ordinary descriptor. Made real by writing in blocks of 1000
    bytes, which no disk's logical block size divides, so the kernel refuses the first one."""
    monkeypatch.setattr(direct, "BLOCK", 1000)
    body = data(5 * BUF + 4321)
    res = await serve(aiohttp_server, body)
    target = disk / "f"
    result = await dl.download(res.url, target, checksum=sha256(body))
    assert (result.body_path, result.direct_io) == ("raw", False)
    assert target.read_bytes() == body


@pytest.mark.usefixtures("direct_on")
async def test_tmpfs_output_is_byte_exact_direct_or_not(
    dl: Client, aiohttp_server: AiohttpServer
) -> None:
    """On tmpfs (/dev/shm), direct writes are used where the kernel takes O_DIRECT there
    (Linux 6.6 and later) and the page cache where it refuses the open: byte-exact either way."""
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here")
    body = data(3 * BUF + 17)
    res = await serve(aiohttp_server, body)
    with tempfile.TemporaryDirectory(dir="/dev/shm") as name:
        where = Path(name)
        expected = takes_o_direct(where)
        result = await dl.download(res.url, where / "f", checksum=sha256(body))
        assert (result.body_path, result.direct_io) == ("raw", expected)
        assert (where / "f").read_bytes() == body


@pytest.mark.parametrize("switch", [None, "0"])
async def test_without_the_switch_the_page_cache_is_used(
    dl: Client,
    aiohttp_server: AiohttpServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    switch: str | None,
) -> None:
    """Direct writes are asked for only with STREAMER_DIRECT_IO=1 (unset or 0: the page cache)."""
    monkeypatch.setattr(direct, "DIRECT_MIN", 0)
    if switch is None:
        monkeypatch.delenv(direct.ENV_SWITCH, raising=False)
    else:
        monkeypatch.setenv(direct.ENV_SWITCH, switch)
    body = data(300_000)
    res = await serve(aiohttp_server, body)
    result = await dl.download(res.url, tmp_path / "f")
    assert (result.body_path, result.direct_io) == ("raw", False)
    assert (tmp_path / "f").read_bytes() == body


async def test_a_body_under_the_threshold_uses_the_page_cache(
    dl: Client, aiohttp_server: AiohttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked for, direct writes still start only at `DIRECT_MIN` bytes (8 MiB)."""
    monkeypatch.setenv(direct.ENV_SWITCH, "1")
    body = data(300_000)
    res = await serve(aiohttp_server, body)
    result = await dl.download(res.url, tmp_path / "f")
    assert (result.body_path, result.direct_io) == ("raw", False)
    assert (tmp_path / "f").read_bytes() == body
