"""Uploads as curl does them against servers that behave like real ones (issue 11): an early
413 from a server that stops reading, `put FILE URL/` naming the file, `put -` from stdin."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streamer import Client
from streamer.errors import HTTPStatusError, StreamerError
from tests.helpers import ENV, RUN_TIMEOUT, streamer

MIB = 1 << 20
REFUSAL = (
    b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large"
)


class GunicornLike:
    """Reads the head, says 100 Continue, reads 1 MiB of body, answers 413 and closes without
    reading the rest: the kernel resets the connection under the client's writes."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            async with asyncio.timeout(RUN_TIMEOUT):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await reader.readexactly(MIB)
                writer.write(REFUSAL)
                await writer.drain()
        writer.close()

    async def __aenter__(self) -> GunicornLike:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    with path.open("wb") as f:
        f.truncate(32 * MIB)
    return path


async def test_early_413_from_a_server_that_stops_reading_is_22_every_time(
    big_file: Path,
) -> None:
    """A 413 answered before the body is read, then a reset under our writes: the answer that
    is already in the socket decides (HTTP 413, exit 22), in every one of 10 runs, never
    "Can not write request body" (exit 56, retryable)."""
    outcomes: Counter[str] = Counter()
    async with GunicornLike() as srv, Client(read_timeout=RUN_TIMEOUT) as client:
        for _ in range(10):
            try:
                await client.upload(f"http://127.0.0.1:{srv.port}/u", big_file)
                outcomes["success"] += 1
            except HTTPStatusError as exc:
                outcomes[f"{exc.status} exit {exc.exit_code}"] += 1
            except StreamerError as exc:
                outcomes[f"exit {exc.exit_code}: {exc.message}"] += 1
    assert outcomes == Counter({"413 exit 22": 10})


# --- 7: put FILE URL/ and put - URL ------------------------------------------------------------


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    """An aiohttp app answering 201 to every PUT; yields its base URL and what it received
    (the raw path, the headers, the body)."""
    from aiohttp import web

    from tests.helpers import app_servers

    seen: list[tuple[str, dict[str, str], bytes]] = []

    async def put(request: web.Request) -> web.Response:
        seen.append((request.raw_path, dict(request.headers), await request.read()))
        return web.Response(status=201, body=b"stored\n")

    app = web.Application()
    app.router.add_put("/{tail:.*}", put)
    async with app_servers() as serve:
        server = await serve(app)
        yield str(server.make_url("/")), seen


async def test_put_to_a_directory_url_appends_the_file_name(
    recorder: tuple[str, list[tuple[str, dict[str, str], bytes]]], tmp_path: Path
) -> None:
    """`put FILE http://host/dir/` PUTs to /dir/FILE (name percent-encoded, as curl -T does);
    a URL with a file part is kept as given."""
    base, seen = recorder
    local = tmp_path / "my file.txt"
    local.write_bytes(b"hello\n")
    run = await streamer("put", str(local), base + "dir/", "-q")
    assert run.rc == 0, run
    run = await streamer("put", str(local), base + "dir/other.txt", "-q")
    assert run.rc == 0, run
    assert [(path, body) for path, _, body in seen] == [
        ("/dir/my%20file.txt", b"hello\n"),
        ("/dir/other.txt", b"hello\n"),
    ]


def _put_stdin(
    url: str, stdin: int | None, data: bytes | None
) -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, "-m", "streamer", "put", "-", url, "-q"]
    return subprocess.run(
        cmd, input=data, stdin=stdin, capture_output=True, env=ENV, timeout=RUN_TIMEOUT, check=False
    )


async def test_put_dash_reads_stdin(
    recorder: tuple[str, list[tuple[str, dict[str, str], bytes]]], tmp_path: Path
) -> None:
    """`put - URL` sends standard input: chunked from a pipe, with Content-Length when stdin is
    a regular file (curl -T -)."""
    base, seen = recorder
    piped = await asyncio.to_thread(_put_stdin, base + "piped", None, b"from a pipe\n" * 1000)
    assert piped.returncode == 0, piped.stderr
    local = tmp_path / "in.bin"
    local.write_bytes(b"from a file\n" * 1000)
    with local.open("rb") as f:
        filed = await asyncio.to_thread(_put_stdin, base + "filed", f.fileno(), None)
    assert filed.returncode == 0, filed.stderr
    (p1, h1, b1), (p2, h2, b2) = seen
    assert (p1, b1, h1.get("Transfer-Encoding")) == ("/piped", b"from a pipe\n" * 1000, "chunked")
    assert (p2, b2, h2.get("Content-Length")) == ("/filed", b"from a file\n" * 1000, "12000")


async def test_put_write_out_and_silent(
    recorder: tuple[str, list[tuple[str, dict[str, str], bytes]]], tmp_path: Path
) -> None:
    """-w works for uploads too (after the server's answer on stdout); -s silences the rest."""
    base, _seen = recorder
    local = tmp_path / "f.txt"
    local.write_bytes(b"x")
    run = await streamer("put", str(local), base + "w/", "-s", "-w", "%{http_code} %{exitcode}")
    assert (run.rc, run.out, run.err) == (0, "stored\n201 0", "")


async def test_tus_refuses_write_out_and_stdin(tmp_path: Path) -> None:
    """--tus has no -w and no stdin source: refused up front (exit 2) naming the option."""
    local = tmp_path / "f.bin"
    local.write_bytes(b"x")
    run = await streamer(
        "put", "--tus", str(local), "http://127.0.0.1:9/files", "-w", "%{http_code}"
    )
    assert run.rc == 2 and "-w/--write-out" in run.err, run
    run = await streamer("put", "--tus", "-", "http://127.0.0.1:9/files")
    assert run.rc == 2 and "stdin" in run.err, run
