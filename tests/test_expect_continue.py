"""Expect: 100-continue for uploads (RFC 9110 10.1.1), against raw socket servers on 127.0.0.1.

Each server reads the request head, then behaves as scripted: answers 100 and reads the body,
ignores the expectation, answers a final status at once, or answers 417. It records the heads
it saw and how many body bytes arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from streamer import Client, HTTPStatusError, Result

BODY = bytes(range(256)) * 8192  # 2 MiB: above the 1 MiB threshold for Expect


@dataclass
class Script:
    mode: str  # "continue" | "ignore" | "early-413" | "417-then-ok"
    heads: list[bytes] = field(default_factory=list)
    body_bytes: list[int] = field(default_factory=list)


async def _read_body(reader: asyncio.StreamReader, length: int, wait: float) -> int:
    got = 0
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(wait):
            while got < length:
                data = await reader.read(65536)
                if not data:
                    break
                got += len(data)
    return got


def _length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


OK = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


async def _serve(
    script: Script, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    script.heads.append(head)
    expects = b"expect: 100-continue" in head.lower()
    length = _length(head)
    if script.mode == "early-413":
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n\r\ntoo big!")
        await writer.drain()
        script.body_bytes.append(await _read_body(reader, length, 2.0))
    elif script.mode == "417-then-ok" and expects:
        writer.write(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        script.body_bytes.append(await _read_body(reader, length, 2.0))
    else:
        if script.mode == "continue" and expects:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        script.body_bytes.append(await _read_body(reader, length, 10.0))
        writer.write(OK)
        await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def raw_upload_server(script: Script) -> AsyncIterator[str]:
    """Serve `script`; on exit, wait (bounded) for every connection's handler to finish."""
    handlers: list[asyncio.Task[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await _serve(script, reader, writer)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(serve(reader, writer))
        handlers.append(task)
        await task

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/up"
    finally:
        if handlers:
            await asyncio.wait(handlers, timeout=5)
        server.close()
        await server.wait_closed()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "body.bin"
    path.write_bytes(BODY)
    return path


async def test_large_upload_waits_for_100_continue(source: Path) -> None:
    """A body of 1 MiB or more is announced with Expect: 100-continue and sent after the 100."""
    script = Script("continue")
    async with raw_upload_server(script) as url, Client(trust_env=False) as client:
        result = await client.upload(url, source)
    assert result.status == 201
    assert b"expect: 100-continue" in script.heads[0].lower()
    assert script.body_bytes == [len(BODY)]


async def test_small_upload_does_not_expect(source: Path) -> None:
    """A small body is sent at once, without Expect (one round trip saved)."""
    script = Script("continue")
    async with raw_upload_server(script) as url, Client(trust_env=False) as client:
        await client.upload(url, b"tiny")
    assert b"expect:" not in script.heads[0].lower()


async def test_server_ignoring_expect_gets_the_body_after_the_timeout(source: Path) -> None:
    """No 100 and no final answer: the body is sent anyway after expect_timeout, not stalled."""
    script = Script("ignore")
    started = time.monotonic()
    async with (
        raw_upload_server(script) as url,
        Client(trust_env=False, expect_timeout=0.3, read_timeout=30) as client,
    ):
        result = await client.upload(url, source)
    assert result.status == 201
    assert script.body_bytes == [len(BODY)]
    assert time.monotonic() - started < 30  # the read timeout (30 s) was not waited out


async def test_immediate_final_status_means_no_body_is_sent(source: Path) -> None:
    """A 413 before the 100: the error is reported and the body never leaves."""
    script = Script("early-413")
    async with (
        raw_upload_server(script) as url,
        Client(trust_env=False, expect_timeout=1.0) as client,
    ):
        with pytest.raises(HTTPStatusError) as info:
            await client.upload(url, source)
    assert info.value.status == 413
    assert info.value.result is Result.HTTP_ERROR
    assert "too big!" in str(info.value)
    assert script.body_bytes == [0]


async def test_417_is_retried_once_without_expect(source: Path) -> None:
    """417 Expectation Failed: the same request again, without Expect, succeeds."""
    script = Script("417-then-ok")
    async with raw_upload_server(script) as url, Client(trust_env=False) as client:
        result = await client.upload(url, source)
    assert result.status == 201
    assert len(script.heads) == 2
    assert b"expect:" in script.heads[0].lower()
    assert b"expect:" not in script.heads[1].lower()
    assert script.body_bytes[-1] == len(BODY)


async def test_expect_continue_can_be_turned_off(source: Path) -> None:
    """expect_continue=False sends a large body without asking first."""
    script = Script("continue")
    async with raw_upload_server(script) as url, Client(trust_env=False) as client:
        await client.upload(url, source, expect_continue=False)
    assert b"expect:" not in script.heads[0].lower()
    assert script.body_bytes == [len(BODY)]


async def test_an_empty_expect_header_turns_it_off_as_in_curl(source: Path) -> None:
    """`put -H 'Expect:'` (curl's idiom): no Expect header at all, empty or not, and the large
    body goes at once, with no wait for a 100 (a real CLI process)."""
    script = Script("continue")
    async with raw_upload_server(script) as url:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamer", "put", str(source), url, "-q", "-H", "Expect:"
        )
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert b"expect" not in script.heads[0].lower()
    assert script.body_bytes == [len(BODY)]


async def test_omitting_expect_in_the_api_turns_it_off_for_files_and_forms(source: Path) -> None:
    """`Client(omit_headers={"Expect"})` is the API's -H 'Expect:': neither a large file
    upload nor a large form announces the body, and each body goes at once."""
    from streamer import FilePart

    script = Script("continue")
    async with (
        raw_upload_server(script) as url,
        Client(trust_env=False, omit_headers={"Expect"}) as client,
    ):
        await client.upload(url, source)
        await client.upload_form(url, files=[FilePart("f", source)])
    assert len(script.heads) == 2
    assert all(b"expect" not in head.lower() for head in script.heads)
    assert script.body_bytes[0] == len(BODY)
    assert script.body_bytes[1] > len(BODY)  # the file part and its framing
