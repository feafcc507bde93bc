"""A tus run over plain http on one kept connection (`lane.keepalive`, `rawsend.send_body`).

The real tus server (@tus/server) keeps connections open; a relay in front counts the
connections the client makes. A small raw server that drops a kept connection on purpose
pins what happens when the server closed it meanwhile (RFC 9112 9.3.1).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from streamer import Client, ConnectionLostError
from streamer.core.retry import RetryPolicy
from streamer.http.bodies import BytesBody
from streamer.lane import sendbody
from streamer.lane.keepalive import RawPool
from streamer.transfer.rawsend import send_body
from tests.conftest import CLIENT_DEFAULTS
from tests.helpers import file_digest
from tests.tus_peer import Relay, TusPeer, start_tus

MIB = 1 << 20


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusPeer]:
    with start_tus(tmp_path_factory.mktemp("tus-store")) as server:
        yield server


@pytest.fixture
async def relay(peer: TusPeer) -> AsyncIterator[Relay]:
    r = await Relay(peer.port).start()
    yield r
    await r.stop()


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """5 MiB + 3 bytes of random data; a state directory of the test's own."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(5 * MIB + 3))
    return path


async def test_one_connection_carries_the_whole_run(
    peer: TusPeer, relay: Relay, source: Path
) -> None:
    """OPTIONS, the creation POST and six PATCHes go on one connection the server keeps open;
    the PATCHes still go out by sendfile, and the server holds the exact file."""
    before = sendbody.SENDFILE_CALLS[0]
    async with Client(**CLIENT_DEFAULTS) as c:
        result = await c.upload_resumable(relay.endpoint, source, chunk_size=MIB, retry=0)
    assert relay.connections == 1
    assert sendbody.SENDFILE_CALLS[0] >= before + 5  # the last PATCH's 3 bytes: held back
    assert file_digest(peer.stored(result.url)) == file_digest(source)


async def test_a_cut_connection_is_replaced_once(peer: TusPeer, relay: Relay, source: Path) -> None:
    """A connection cut mid-PATCH is not kept: the next attempt's HEAD and the remaining
    PATCHes share one new connection (two in all), and the file arrives whole."""
    relay.cut_at = 2 * MIB
    retry = RetryPolicy(retries=2, delay=0.1)
    async with Client(**CLIENT_DEFAULTS) as c:
        result = await c.upload_resumable(relay.endpoint, source, chunk_size=MIB, retry=retry)
    assert relay.connections == 2
    assert result.resumed_from == 0
    assert file_digest(peer.stored(result.url)) == file_digest(source)


@dataclass
class Dropper:
    """Answers 200 (Content-Length: 2, no ``Connection: close``) to the first request on each
    connection; a second request on the same connection is read, then the connection is
    closed without a byte of answer: a keep-alive timeout that fired as the request went."""

    close_field: bool = False  # answer with "Connection: close" (and keep listening)
    connections: int = 0
    answered: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for n in range(2):
                head = await reader.readuntil(b"\r\n\r\n")
                method = head.split(b" ", 1)[0].decode()
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":")[1]))
                if n == 1:
                    self.dropped.append(method)
                    return
                self.answered.append(method)
                body = b"" if method == "HEAD" else b"ok"  # RFC 9110 9.3.2: HEAD, no body
                close = b"Connection: close\r\n" if self.close_field else b""
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + close + b"\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture(params=[False], ids=["keep-alive"])
async def dropper(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Dropper, str]]:
    d = Dropper(close_field=request.param)
    server = await asyncio.start_server(d.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield d, f"http://127.0.0.1:{port}/files/x"
    server.close()
    await server.wait_closed()


async def test_a_request_found_unanswered_on_a_kept_connection_goes_again(
    dropper: tuple[Dropper, str],
) -> None:
    """RFC 9112 9.3.1: a HEAD (idempotent) that the server dropped unanswered on the kept
    connection goes once more on a new connection; a POST (not idempotent) fails instead."""
    d, url = dropper
    async with Client(**CLIENT_DEFAULTS) as c:
        with RawPool() as pool:
            for method in ("OPTIONS", "HEAD"):
                async with send_body(c, method, url, body=None, pool=pool) as reply:
                    assert reply.status == 200
            assert (d.connections, d.answered, d.dropped) == (2, ["OPTIONS", "HEAD"], ["HEAD"])
            with pytest.raises(ConnectionLostError):
                async with send_body(c, "POST", url, body=BytesBody(b"x"), pool=pool):
                    pass
    assert (d.connections, d.dropped) == (2, ["HEAD", "POST"])


@pytest.mark.parametrize("dropper", [True], ids=["close"], indirect=True)
async def test_an_answer_saying_close_is_not_followed_on_its_connection(
    dropper: tuple[Dropper, str],
) -> None:
    """RFC 9112 9.6: after an answer with "Connection: close" the next request opens a new
    connection, even when the server has not closed the old one yet."""
    d, url = dropper
    async with Client(**CLIENT_DEFAULTS) as c:
        with RawPool() as pool:
            for method in ("OPTIONS", "HEAD", "POST"):
                body = BytesBody(b"x") if method == "POST" else None
                async with send_body(c, method, url, body=body, pool=pool) as reply:
                    assert reply.status == 200
    assert (d.connections, d.answered, d.dropped) == (3, ["OPTIONS", "HEAD", "POST"], [])
