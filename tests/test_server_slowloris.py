"""`streamer serve` against slowloris clients (issue 10, Peers): a request head must arrive
within the head timeout, and connections without a complete head are capped (the oldest is
closed to make room), so idle or dripping connections cannot hold the server. The server runs
as a real `streamer serve` process; the clients are raw sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import kill, spawn

START_TIMEOUT = 20.0  # seconds for the server to say where it listens
CLOSE_WAIT = 30.0  # seconds a test waits at most for the server to close a connection


@contextlib.asynccontextmanager
async def served(root: Path, *options: str) -> AsyncIterator[tuple[str, int]]:
    """`streamer serve ROOT --port 0 OPTIONS` running; yields (host, port)."""
    proc = await spawn("serve", str(root), "--port", "0", *options)
    try:
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), START_TIMEOUT)
        found = re.search(rb"http://127\.0\.0\.1:(\d+)/", line)
        assert found is not None, line
        yield "127.0.0.1", int(found.group(1))
    finally:
        kill(proc)
        await proc.wait()


async def _closed(reader: asyncio.StreamReader) -> bool:
    """Wait until the server closes the connection (EOF or reset); True if it did."""
    try:
        async with asyncio.timeout(CLOSE_WAIT):
            while await reader.read(4096):
                pass
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return True


async def _get(host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(CLOSE_WAIT):
            return await reader.read()
    finally:
        writer.close()


@pytest.mark.timeout(90)
async def test_a_head_dripped_one_byte_per_two_seconds_is_closed(tmp_path: Path) -> None:
    """A client sending its head 1 byte every 2 s is disconnected (head timeout 1 s) before the
    head is complete."""
    async with served(tmp_path, "--head-timeout", "1") as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

        async def drip() -> None:
            for i in range(len(head) - 2):  # never the final CRLF
                writer.write(head[i : i + 1])
                await writer.drain()
                await asyncio.sleep(2)

        dripping = asyncio.create_task(drip())
        try:
            assert await _closed(reader)
            assert not dripping.done() or dripping.exception() is not None
        finally:
            dripping.cancel()
            with contextlib.suppress(BaseException):
                await dripping
            writer.close()


@pytest.mark.timeout(90)
async def test_idle_connections_are_capped_and_a_normal_request_is_served(
    tmp_path: Path,
) -> None:
    """With 20 connections that never send a head (cap 8, head timeout 60 s), the oldest are
    closed to make room, and a normal GET is still answered 200."""
    (tmp_path / "a.txt").write_bytes(b"hello")
    async with served(tmp_path, "--head-timeout", "60", "--max-pending", "8") as (host, port):
        idle = [await asyncio.open_connection(host, port) for _ in range(20)]
        try:
            answer = await _get(host, port)
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello")
            closed = await asyncio.gather(*(_closed(r) for r, _ in idle[:12]))
            assert all(closed)
        finally:
            for _, writer in idle:
                writer.close()


@pytest.mark.timeout(90)
async def test_a_second_head_dripped_on_a_kept_alive_connection_is_closed(
    tmp_path: Path,
) -> None:
    """After one answered request, a next head dripped 1 byte per 2 s is disconnected too."""
    (tmp_path / "a.txt").write_bytes(b"hello")
    async with served(tmp_path, "--head-timeout", "1") as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(CLOSE_WAIT):
            first = await reader.readuntil(b"hello")
        assert first.startswith(b"HTTP/1.1 200")

        async def drip() -> None:
            for byte in b"GET /a.txt HTTP/1.1\r\nHost: x\r\n":
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(2)

        dripping = asyncio.create_task(drip())
        try:
            assert await _closed(reader)
        finally:
            dripping.cancel()
            with contextlib.suppress(BaseException):
                await dripping
            writer.close()
