"""The real tus server for tests and the bench, and a raw TCP relay that misbehaves on purpose.

- `TusPeer` / `start_tus`: ``node tests/peers/tus_server.mjs`` (@tus/server + @tus/file-store,
  installed by .ci/setup into .peers/tus) on 127.0.0.1 on a free port, stopped by its pid.
  Without node or the modules the test fails under CI and is skipped (saying why) otherwise.
- `Relay`: a byte relay between a client and the server that counts what the client sent and
  can, once each, cut the connection after N bytes, hold it after N bytes until released,
  rewrite bytes going to the server, or answer a PATCH itself (a 423, say) instead of
  passing it on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = ROOT / ".peers" / "tus" / "node_modules"
LAUNCHER = ROOT / "tests" / "peers" / "tus_server.mjs"
START_TIMEOUT = 20.0


def require_tus() -> str:
    """The node binary; fails (under CI) or skips the test when the peer is not installed."""
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not installed"
    elif not (MODULES / "@tus" / "server" / "package.json").is_file():
        missing = f"@tus/server is not installed in {MODULES} (run bash .ci/setup)"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the real tus server is required: {missing}")
        pytest.skip(f"the real tus server is missing: {missing}")
    assert node is not None
    return node


@dataclass
class TusPeer:
    """A running launcher: its endpoint (``BASE/files``), its store directory, its process."""

    proc: subprocess.Popen[bytes]
    port: int
    store: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/files"

    def stored(self, url: str) -> Path:
        """The file holding the upload at `url` (@tus/file-store names it by the upload id)."""
        return self.store / url.rstrip("/").rsplit("/", 1)[-1]


@contextlib.contextmanager
def start_tus(store: Path, *, max_size: int = 0, expire_ms: int = 0) -> Iterator[TusPeer]:
    """The launcher on a free port; waits for its "listening PORT" line, kills it by pid."""
    node = require_tus()
    store.mkdir(parents=True, exist_ok=True)
    cmd = [node, str(LAUNCHER), str(MODULES), str(store), str(max_size), str(expire_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        line = proc.stdout.readline().decode() if ready else ""
        if not line.startswith("listening "):
            raise RuntimeError(f"the tus launcher did not start: {line!r}")
        yield TusPeer(proc, int(line.split()[1]), store)
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass
class Relay:
    """127.0.0.1:port → the upstream port, counting and (once each) damaging the client's bytes."""

    upstream: int
    cut_at: int | None = None  # close both sides after this many bytes from the client
    hold_at: int | None = None  # stop passing bytes on after this many, until `release()`
    rewrite: tuple[bytes, bytes] | None = None  # replace in what the client sends
    rewrite_always: bool = False  # every occurrence, not only the first
    answer_patch: bytes | None = None  # the answer to the next PATCH, which is not passed on
    forwarded: int = 0  # bytes from the client passed to the server
    rewrites: int = 0
    answered: int = 0
    connections: int = 0  # accepted from the client
    port: int = 0
    held: asyncio.Event = field(default_factory=asyncio.Event)
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/files"

    def release(self) -> None:
        self._release.set()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        self._release.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        back = asyncio.create_task(self._pump_back(up_reader, writer))
        try:
            await self._pump(reader, writer, up_writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, up_writer):
                w.transport.abort()
            back.cancel()
            await asyncio.gather(back, return_exceptions=True)
            self._tasks.discard(task)

    async def _pump_back(self, up: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await up.read(1 << 16):
                client.write(data)
                await client.drain()
        client.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, client: asyncio.StreamWriter, up: asyncio.StreamWriter
    ) -> None:
        while data := await reader.read(1 << 16):
            if self.answer_patch is not None and data.startswith(b"PATCH "):
                await self._answer(data, reader, client)
                return
            data = self._rewritten(data)
            limit = self.cut_at if self.cut_at is not None else self.hold_at
            if limit is not None and self.forwarded + len(data) >= limit:
                up.write(data[: limit - self.forwarded])
                await up.drain()
                self.forwarded = limit
                if self.cut_at is not None:
                    self.cut_at = None
                    return
                self.hold_at = None
                self.held.set()
                await self._release.wait()
                return
            up.write(data)
            await up.drain()
            self.forwarded += len(data)

    def _rewritten(self, data: bytes) -> bytes:
        if self.rewrite is None or self.rewrite[0] not in data:
            return data
        old, new = self.rewrite
        self.rewrites += 1
        if not self.rewrite_always:
            self.rewrite = None
            return data.replace(old, new, 1)
        return data.replace(old, new)

    async def _answer(
        self, data: bytes, reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        """Answer the PATCH that `data` begins with, after reading its body (unless it waits
        for 100-continue), and close the connection."""
        while b"\r\n\r\n" not in data:
            data += await reader.read(1 << 16)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").lower().split("\r\n")
        fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        if fields.get("expect") != "100-continue":
            rest = int(fields.get("content-length", "0")) - len(body)
            if rest > 0:
                await reader.readexactly(rest)
        assert self.answer_patch is not None
        client.write(self.answer_patch)
        await client.drain()
        self.answer_patch = None
        self.answered += 1


LOCKED = (
    b"HTTP/1.1 423 Locked\r\nTus-Resumable: 1.0.0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)
