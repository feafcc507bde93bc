"""Proxy and ~/.netrc from the environment: looked up once per origin by the client (EnvRoutes),
with the same outcome as aiohttp's own per-request trust_env lookups."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from streamer import Client
from streamer.http.routes import EnvRoutes

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "NETRC")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-such-netrc"))


@asynccontextmanager
async def recorder() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A server that answers every request with its request line and keeps the requests."""
    seen: list[web.Request] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request)
        return web.Response(text=f"{request.method} {request.raw_path}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_http_proxy_from_env_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    async with recorder() as (proxy, seen):
        monkeypatch.setenv("http_proxy", proxy.replace("http://", "http://pu:pw@"))
        async with Client(connect_timeout=5.0, read_timeout=5.0) as client:
            for _ in range(3):
                got = await client.fetch("http://example.invalid/a/b")
    assert got.body == b"GET http://example.invalid/a/b"  # absolute form: sent to the proxy
    assert len(seen) == 3
    basic = "Basic " + base64.b64encode(b"pu:pw").decode()
    assert {r.headers.get("Proxy-Authorization") for r in seen} == {basic}
    assert {r.headers.get("Authorization") for r in seen} == {None}


async def test_no_proxy_and_trust_env_false_go_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    async with recorder() as (proxy, seen), recorder() as (origin, direct):
        monkeypatch.setenv("http_proxy", proxy)
        async with Client(trust_env=False, connect_timeout=5.0) as client:
            assert (await client.fetch(origin + "/x")).body == b"GET /x"
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        async with Client(connect_timeout=5.0) as client:
            assert (await client.fetch(origin + "/y")).body == b"GET /y"
    assert not seen
    assert len(direct) == 2


async def test_netrc_credentials_unless_the_request_has_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login user password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    async with recorder() as (origin, seen), Client(connect_timeout=5.0) as client:
        await client.fetch(origin + "/n")
        await client.fetch(origin + "/h", headers={"Authorization": "Bearer t0ken"})
    basic = "Basic " + base64.b64encode(b"user:s3cret").decode()
    assert [r.headers.get("Authorization") for r in seen] == [basic, "Bearer t0ken"]


def test_routes_are_looked_up_once_per_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    routes = EnvRoutes()
    first = routes.lookup("http://a.invalid/x")
    assert str(first.proxy) == "http://proxy.invalid:3128"
    monkeypatch.delenv("http_proxy")
    assert routes.lookup("http://a.invalid/other?q=1") is first  # cached for the client's life
    assert routes.lookup("http://b.invalid/").proxy is None
    assert routes.lookup("https://a.invalid/").proxy is None  # https has no proxy set


# --- bulk runs: the small-file lane never goes around the environment ------------------------


async def test_bulk_jobs_go_through_the_proxy_from_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With http_proxy set, every bulk job goes to the proxy and none to the (reachable)
    origin: the lane, which speaks only to origins directly, is not used for it."""
    async with recorder() as (proxy, seen), recorder() as (origin, direct):
        monkeypatch.setenv("http_proxy", proxy)
        async with Client(connect_timeout=5.0, read_timeout=5.0) as client:
            urls = [f"{origin}/f{i}.bin" for i in range(3)]
            results = [r async for r in client.download_many(urls, tmp_path / "out")]
    assert all(r.ok for r in results), [str(r.error) for r in results]
    assert sorted(r.raw_path for r in seen) == sorted(urls)  # absolute form: to the proxy
    assert direct == []


async def test_bulk_jobs_get_netrc_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With a netrc entry for the host, bulk jobs carry its credentials (the full engine adds
    them; the lane, which would not, is not used for that origin)."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login user password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    async with recorder() as (origin, seen), Client(connect_timeout=5.0) as client:
        urls = [f"{origin}/f{i}.bin" for i in range(3)]
        results = [r async for r in client.download_many(urls, tmp_path / "out")]
    assert all(r.ok for r in results), [str(r.error) for r in results]
    basic = "Basic " + base64.b64encode(b"user:s3cret").decode()
    assert [r.headers.get("Authorization") for r in seen] == [basic] * 3


async def test_bulk_jobs_take_the_lane_when_the_environment_adds_nothing(
    tmp_path: Path,
) -> None:
    """No proxy variable and no netrc file: bulk jobs go straight to the origin on the lane
    (which, unlike aiohttp, sends no Accept field)."""
    async with recorder() as (origin, seen), Client(connect_timeout=5.0) as client:
        urls = [f"{origin}/f{i}.bin" for i in range(3)]
        results = [r async for r in client.download_many(urls, tmp_path / "out")]
    assert all(r.ok for r in results), [str(r.error) for r in results]
    assert [r.headers.get("Accept") for r in seen] == [None] * 3
