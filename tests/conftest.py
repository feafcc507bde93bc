"""Shared fixtures: the fault servers of tests/faults.py and open clients (see its docstring)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, settings
from pytest_aiohttp import AiohttpServer

from streamer import Client
from tests.faults import ClientFactory, End, RawFactory, RawServer, data, make_fault_app

# Property tests judge correctness, not speed: no per-example deadline (a loaded 2-core CI
# machine would turn slowness into flaky failures).
settings.register_profile("streamer", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("streamer")

# Short enough that a broken test fails fast, long enough for a loaded CI machine.
CLIENT_DEFAULTS: dict[str, Any] = {"connect_timeout": 5.0, "read_timeout": 5.0, "trust_env": False}


@pytest.fixture
def payload() -> bytes:
    """64 KiB of deterministic bytes: the body of ``/bytes/65536``."""
    return data(65536)


@pytest.fixture
async def fault_server(aiohttp_server: AiohttpServer) -> TestServer:
    """The fault app of tests/faults.py on 127.0.0.1."""
    return await aiohttp_server(make_fault_app(), host="127.0.0.1")


@pytest.fixture
async def fault_server2(aiohttp_server: AiohttpServer) -> TestServer:
    """A second fault app on another port: another origin."""
    return await aiohttp_server(make_fault_app(), host="127.0.0.1")


@pytest.fixture
async def raw_server() -> AsyncIterator[RawFactory]:
    """Factory of scripted raw socket servers: ``await raw_server(parts, End.CLOSE, ...)``."""
    servers: list[RawServer] = []

    async def start(script: Sequence[bytes], end: End = End.CLOSE, **kw: Any) -> RawServer:
        server = await RawServer(list(script), end, **kw).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """Factory of open clients: ``await make_client(**options)`` (short timeouts by default)."""
    clients: list[Client] = []

    async def open_client(**options: Any) -> Client:
        client = await Client(**{**CLIENT_DEFAULTS, **options}).__aenter__()
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.aclose()


@pytest.fixture
async def client(make_client: ClientFactory) -> Client:
    """An open Client with short timeouts and no proxy from the environment."""
    return await make_client()


@pytest.fixture
async def serve_lane() -> AsyncIterator[Any]:
    """``srv = await serve_lane(handler)``: a keep-alive `tests.test_lane.LaneServer` (which
    misbehaves as `handler` says), stopped at teardown."""
    from tests.test_lane import LaneServer

    servers: list[LaneServer] = []

    async def start(handler: Any) -> LaneServer:
        server = await LaneServer(handler).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()
