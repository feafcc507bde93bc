"""Redirects against real servers: followed, capped, unsafe ones refused, credentials scoped."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import trustme
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

import streamer
from streamer import Client, Phase, Progress, Result
from streamer.storage.files import part_path
from tests.faults import SEEN, ClientFactory, check_error, data, make_fault_app

SECRETS = {
    "Authorization": "Bearer top-secret-token",
    "Cookie": "session=top-secret-cookie",
    "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
}
CREDENTIAL_NAMES = {name.lower() for name in SECRETS}


def _url(server: TestServer, path: str) -> str:
    return str(server.make_url(path))


def _to(server: TestServer, target: str, status: int = 302) -> str:
    """A URL on `server` that redirects once to `target`."""
    return _url(server, f"/to?status={status}&url={quote(target, safe='')}")


def _names(server: TestServer, index: int = -1) -> set[str]:
    return {name.lower() for name in server.app[SEEN][index].headers}


def _assert_nothing_left(target: Path) -> None:
    assert not target.exists()
    assert not part_path(target).exists()


# --- following and the hop limit --------------------------------------------------------------


async def test_redirect_chain_followed(
    fault_server: TestServer, client: Client, tmp_path: Path
) -> None:
    """A chain of 3 same-origin 302s is followed; the result counts the hops."""
    events: list[Progress] = []
    target = tmp_path / "t"
    result = await client.download(
        _url(fault_server, "/redirect/3"), target, progress=events.append
    )
    assert target.read_bytes() == data(100)
    assert result.redirects == 3
    assert result.url == _url(fault_server, "/redirect/3")
    assert result.final_url == _url(fault_server, "/bytes/100")
    assert [e.phase for e in events].count(Phase.REDIRECTING) == 3
    assert [s.path for s in fault_server.app[SEEN]] == [
        "/redirect/3",
        "/redirect/2",
        "/redirect/1",
        "/bytes/100",
    ]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_each_redirect_status_followed(
    fault_server: TestServer, client: Client, status: int
) -> None:
    """301, 302, 303, 307 and 308 are all followed for a GET."""
    result = await client.fetch(_to(fault_server, "/bytes/10", status))
    assert result.body == data(10)
    assert result.redirects == 1


async def test_redirect_loop_capped(
    fault_server: TestServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    """A redirect loop stops at max_redirects with TooManyRedirects/REDIRECT_LIMIT_REACHED."""
    client = await make_client(max_redirects=2)
    target = tmp_path / "t"
    with pytest.raises(streamer.TooManyRedirects) as info:
        await client.download(_url(fault_server, "/loop"), target)
    check_error(info.value, Result.REDIRECT_LIMIT_REACHED)
    assert info.value.exit_code == 47
    assert len(fault_server.app[SEEN]) == 3  # the request and two redirects followed
    _assert_nothing_left(target)


async def test_redirect_chain_at_limit_succeeds(
    fault_server: TestServer, make_client: ClientFactory
) -> None:
    """Exactly max_redirects hops are allowed; one more is refused."""
    client = await make_client(max_redirects=2)
    assert (await client.fetch(_url(fault_server, "/redirect/2"))).redirects == 2
    with pytest.raises(streamer.TooManyRedirects):
        await client.fetch(_url(fault_server, "/redirect/3"))


async def test_max_redirects_zero_refuses_any(
    fault_server: TestServer, make_client: ClientFactory
) -> None:
    """max_redirects=0 refuses the first redirect."""
    client = await make_client(max_redirects=0)
    with pytest.raises(streamer.TooManyRedirects):
        await client.fetch(_url(fault_server, "/redirect/1"))
    assert len(fault_server.app[SEEN]) == 1


async def test_redirect_without_location_is_protocol_error(
    fault_server: TestServer, client: Client
) -> None:
    """A 302 with an empty Location is a ProtocolError, not a loop or a crash."""
    with pytest.raises(streamer.ProtocolError) as info:
        await client.fetch(_to(fault_server, ""))
    check_error(info.value, Result.INVALID_RESPONSE)


# --- unsafe targets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    ["file:///etc/passwd", "ftp://127.0.0.1/pub/file", "data:text/plain,hi", "gopher://x/"],
)
async def test_non_http_redirect_refused(
    fault_server: TestServer, client: Client, tmp_path: Path, location: str
) -> None:
    """A redirect to a non-HTTP scheme is UnsafeRedirect; nothing is fetched or written."""
    target = tmp_path / "t"
    with pytest.raises(streamer.UnsafeRedirect) as info:
        await client.download(_to(fault_server, location), target)
    check_error(info.value, Result.UNSAFE_REDIRECT)
    assert info.value.exit_code == 81
    _assert_nothing_left(target)


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(tls_ca: trustme.CA, tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    yield str(path)


@pytest.fixture
async def https_server(aiohttp_server: AiohttpServer, tls_ca: trustme.CA) -> TestServer:
    """The fault app over HTTPS on 127.0.0.1, certified by `tls_ca`."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return await aiohttp_server(make_fault_app(), host="127.0.0.1", ssl=ctx)


async def test_https_works_with_cafile(
    https_server: TestServer, make_client: ClientFactory, ca_file: str
) -> None:
    """Sanity: the HTTPS fault server is trusted through cafile."""
    client = await make_client(cafile=ca_file)
    assert (await client.fetch(_url(https_server, "/bytes/10"))).body == data(10)


async def test_https_to_http_downgrade_refused(
    https_server: TestServer,
    fault_server: TestServer,
    make_client: ClientFactory,
    ca_file: str,
    tmp_path: Path,
) -> None:
    """An https -> http redirect is UnsafeRedirect; the http server is never contacted."""
    client = await make_client(cafile=ca_file)
    target = tmp_path / "t"
    with pytest.raises(streamer.UnsafeRedirect) as info:
        await client.download(_to(https_server, _url(fault_server, "/bytes/10")), target)
    check_error(info.value, Result.UNSAFE_REDIRECT)
    assert fault_server.app[SEEN] == []
    _assert_nothing_left(target)


async def test_https_to_http_allowed_with_allow_downgrade(
    https_server: TestServer, fault_server: TestServer, make_client: ClientFactory, ca_file: str
) -> None:
    """allow_downgrade=True lets an https -> http redirect through, credentials dropped."""
    client = await make_client(cafile=ca_file, allow_downgrade=True)
    url = _to(https_server, _url(fault_server, "/bytes/10"))
    result = await client.fetch(url, headers=SECRETS)
    assert result.body == data(10)
    assert not _names(fault_server) & CREDENTIAL_NAMES


async def test_http_to_https_upgrade_followed(
    https_server: TestServer, fault_server: TestServer, make_client: ClientFactory, ca_file: str
) -> None:
    """An http -> https redirect is followed (an upgrade is never unsafe)."""
    client = await make_client(cafile=ca_file)
    result = await client.fetch(_to(fault_server, _url(https_server, "/bytes/10")))
    assert result.body == data(10)
    assert result.final_url.startswith("https://")


# --- credentials across origins ---------------------------------------------------------------


async def test_credentials_dropped_on_cross_origin_redirect(
    fault_server: TestServer, fault_server2: TestServer, client: Client, tmp_path: Path
) -> None:
    """Authorization, Cookie and Proxy-Authorization go to the first origin only."""
    url = _to(fault_server, _url(fault_server2, "/bytes/10"))
    headers = {**SECRETS, "X-Custom": "kept"}
    await client.download(url, tmp_path / "t", headers=headers)
    first, second = fault_server.app[SEEN][0].headers, fault_server2.app[SEEN][0].headers
    for name, value in SECRETS.items():
        assert first[name] == value
    assert not {n.lower() for n in second} & CREDENTIAL_NAMES
    assert second["X-Custom"] == "kept"


async def test_client_config_credentials_dropped_on_cross_origin_redirect(
    fault_server: TestServer, fault_server2: TestServer, make_client: ClientFactory
) -> None:
    """Credentials set in the client's default headers are scoped to the origin too."""
    client = await make_client(headers=SECRETS)
    await client.fetch(_to(fault_server, _url(fault_server2, "/bytes/10")))
    assert _names(fault_server, 0) >= CREDENTIAL_NAMES
    assert not _names(fault_server2, 0) & CREDENTIAL_NAMES


async def test_credentials_kept_on_same_origin_redirect(
    fault_server: TestServer, client: Client
) -> None:
    """A same-origin redirect keeps Authorization, Cookie and Proxy-Authorization."""
    await client.fetch(_to(fault_server, "/bytes/10"), headers=SECRETS)
    seen = fault_server.app[SEEN]
    assert [s.path for s in seen] == ["/to", "/bytes/10"]
    for name, value in SECRETS.items():
        assert seen[1].headers[name] == value


async def test_credentials_dropped_when_only_the_port_differs(
    fault_server: TestServer, fault_server2: TestServer, client: Client
) -> None:
    """Same host, another port is another origin: credentials are dropped."""
    assert fault_server.host == fault_server2.host
    assert fault_server.port != fault_server2.port
    await client.fetch(_to(fault_server, _url(fault_server2, "/bytes/10")), headers=SECRETS)
    assert not _names(fault_server2) & CREDENTIAL_NAMES


async def test_credentials_dropped_for_rest_of_chain_after_leaving_origin(
    fault_server: TestServer, fault_server2: TestServer, client: Client
) -> None:
    """Once dropped, credentials do not come back when the chain returns to the first origin."""
    back = _url(fault_server, "/bytes/10")
    url = _to(fault_server, _to(fault_server2, back))
    await client.fetch(url, headers=SECRETS)
    assert [s.path for s in fault_server.app[SEEN]] == ["/to", "/bytes/10"]
    assert not _names(fault_server, -1) & CREDENTIAL_NAMES


async def test_userinfo_sent_as_basic_auth_to_first_origin_only(
    fault_server: TestServer, fault_server2: TestServer, client: Client, tmp_path: Path
) -> None:
    """user:pw@ in the URL is Basic auth for its own origin and never follows a cross-origin hop."""
    base = _to(fault_server, _url(fault_server2, "/bytes/10"))
    url = base.replace("http://", "http://user:p%40ss@", 1)
    result = await client.download(url, tmp_path / "t")
    expected = "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert fault_server.app[SEEN][0].headers["Authorization"] == expected
    assert "authorization" not in _names(fault_server2, 0)
    assert "p%40ss" not in result.url and "p@ss" not in result.url


async def test_userinfo_kept_on_same_origin_redirect(
    fault_server: TestServer, client: Client
) -> None:
    """URL credentials keep going to their own origin across a same-origin redirect."""
    url = _url(fault_server, "/redirect/2").replace("http://", "http://user:pw@", 1)
    await client.fetch(url)
    expected = "Basic " + base64.b64encode(b"user:pw").decode()
    assert [s.headers.get("Authorization") for s in fault_server.app[SEEN]] == [expected] * 3


async def test_redirect_location_with_userinfo_same_origin(
    fault_server: TestServer, client: Client
) -> None:
    """A same-origin Location carrying user:pw@ is followed with those credentials as Basic auth."""
    base = _url(fault_server, "/")
    hop = base.replace("http://", "http://other:secret@", 1) + "bytes/10"
    url = base.replace("http://", "http://user:pw@", 1) + "to?url=" + quote(hop, safe="")
    result = await client.fetch(url)
    assert result.body == data(10)
    expected = "Basic " + base64.b64encode(b"other:secret").decode()
    assert fault_server.app[SEEN][-1].headers["Authorization"] == expected


async def test_userinfo_password_not_in_error(
    fault_server: TestServer, client: Client, tmp_path: Path
) -> None:
    """An error about a URL with a password never shows the password."""
    url = _url(fault_server, "/status/404").replace("http://", "http://user:hunter2@", 1)
    with pytest.raises(streamer.HTTPStatusError) as info:
        await client.download(url, tmp_path / "t")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in info.value.url
