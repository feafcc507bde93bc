"""TLS: certificate verification, private CAs, -k, hostname checks and client certificates.

A trustme CA issues the certificates; the servers are aiohttp apps with an SSLContext on
127.0.0.1, and the client is the real `Client` (and the real `streamer get` for exit codes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from streamer import (
    CertificateError,
    Client,
    NetworkError,
    Result,
    TLSError,
    UsageError,
)
from streamer.server.app import make_app, running_server

DATA = bytes(range(256)) * 64  # 16 KiB
RUN_TIMEOUT = 30.0
NO_ENV = {"trust_env": False, "connect_timeout": 10.0, "read_timeout": 10.0}

_DROP = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ssl_cert_file", "ssl_cert_dir"}
ENV = {k: v for k, v in os.environ.items() if k.lower() not in _DROP}


async def _data(request: web.Request) -> web.StreamResponse:
    return web.Response(body=DATA, content_type="application/octet-stream")


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/data.bin", _data)
    return app


@contextlib.asynccontextmanager
async def tls_site(ctx: ssl.SSLContext, app: web.Application | None = None) -> AsyncIterator[str]:
    """Serve `app` (default: /data.bin) with TLS on 127.0.0.1; yields "https://127.0.0.1:P/"."""
    runner = web.AppRunner(app if app is not None else _app())
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx).start()
        port = runner.addresses[0][1]
        yield f"https://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


def server_context(
    ca: trustme.CA, *names: str, require_client_cert: bool = False
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(names or ("127.0.0.1", "localhost"))).configure_cert(ctx)
    if require_client_cert:
        ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cafile(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
async def https_base(ca: trustme.CA) -> AsyncIterator[str]:
    """A TLS server with a certificate for 127.0.0.1 signed by the test CA."""
    async with tls_site(server_context(ca)) as base:
        yield base


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def cli(*args: str, cwd: Path) -> tuple[int, str]:
    """Run ``python -m streamer ARGS``; returns (exit code, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer",
        *args,
        cwd=cwd,
        env=ENV,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


# --- verification ------------------------------------------------------------------------------


async def test_cafile_verifies_server(https_base: str, cafile: str, tmp_path: Path) -> None:
    """With the issuing CA as cafile, fetch and download over https succeed with exact bytes."""
    out = tmp_path / "out.bin"
    async with Client(cafile=cafile, **NO_ENV) as client:
        fetched = await client.fetch(https_base + "data.bin")
        result = await client.download(https_base + "data.bin", out)
    assert fetched.body == DATA
    assert result.size == len(DATA)
    assert out.read_bytes() == DATA


async def test_default_trust_rejects_private_ca(https_base: str, tmp_path: Path) -> None:
    """Without cafile, a certificate from an unknown CA is a CertificateError; nothing written."""
    out = tmp_path / "out.bin"
    async with Client(**NO_ENV) as client:
        with pytest.raises(CertificateError) as info:
            await client.download(https_base + "data.bin", out)
    assert info.value.result is Result.CERTIFICATE_ERROR
    assert info.value.exit_code == 60
    assert info.value.retryable is False
    assert https_base in str(info.value)
    assert listing(tmp_path) == []


async def test_verify_false_accepts_untrusted(https_base: str) -> None:
    """verify=False (curl -k) accepts a certificate no trusted CA signed."""
    async with Client(verify=False, **NO_ENV) as client:
        fetched = await client.fetch(https_base + "data.bin")
    assert fetched.body == DATA


async def test_hostname_mismatch_is_certificate_error(
    ca: trustme.CA, cafile: str, tmp_path: Path
) -> None:
    """A trusted certificate for another name is refused as CERTIFICATE_ERROR; -k accepts it."""
    async with tls_site(server_context(ca, "other.example")) as base:
        async with Client(cafile=cafile, **NO_ENV) as client:
            with pytest.raises(CertificateError) as info:
                await client.download(base + "data.bin", tmp_path / "x")
        async with Client(verify=False, **NO_ENV) as client:
            assert (await client.fetch(base + "data.bin")).body == DATA
    assert info.value.result is Result.CERTIFICATE_ERROR
    assert listing(tmp_path) == ["ca.pem"]


async def test_plain_http_server_is_tls_handshake_error(cafile: str, tmp_path: Path) -> None:
    """https:// to a plain-HTTP server is TLS_HANDSHAKE_ERROR, not a certificate problem."""
    (tmp_path / "f.bin").write_bytes(DATA)
    async with running_server(tmp_path) as base, Client(cafile=cafile, **NO_ENV) as client:
        url = base.replace("http://", "https://", 1) + "f.bin"
        with pytest.raises(TLSError) as info:
            await client.fetch(url)
    assert type(info.value) is TLSError
    assert info.value.result is Result.TLS_HANDSHAKE_ERROR
    assert info.value.exit_code == 35


async def test_plain_http_never_loads_the_ca_store(tmp_path: Path) -> None:
    """A client that only speaks plain http builds no TLS context (loading the system's CAs is
    ~15 ms of every small command); its first https request builds it, and keeps it."""
    (tmp_path / "f.bin").write_bytes(DATA)
    async with running_server(tmp_path) as base, Client(**NO_ENV) as client:
        await client.download(base + "f.bin", tmp_path / "got.bin")
        assert (await client.fetch(base + "f.bin")).body == DATA
        assert client._context is None
        with pytest.raises(TLSError):
            await client.fetch(base.replace("http://", "https://", 1) + "f.bin")
        made = client._context
        assert made is not None and client.tls_context() is made


async def test_unreadable_cafile_is_usage_error(tmp_path: Path) -> None:
    """A cafile that does not exist is a UsageError naming it, raised when the client opens."""
    missing = str(tmp_path / "no-such-ca.pem")
    with pytest.raises(UsageError, match=r"no-such-ca\.pem"):
        async with Client(cafile=missing, **NO_ENV):
            pass


# --- client certificates -----------------------------------------------------------------------


async def test_client_certificate_required(ca: trustme.CA, cafile: str, tmp_path: Path) -> None:
    """A server that requires a client certificate accepts certfile/keyfile and fails without."""
    leaf = ca.issue_cert("client@example.test")
    certfile, keyfile = tmp_path / "client.crt", tmp_path / "client.key"
    for blob in leaf.cert_chain_pems:
        with certfile.open("ab") as f:
            f.write(blob.bytes())
    leaf.private_key_pem.write_to_path(str(keyfile))
    async with tls_site(server_context(ca, require_client_cert=True)) as base:
        url = base + "data.bin"
        async with Client(
            cafile=cafile, certfile=str(certfile), keyfile=str(keyfile), **NO_ENV
        ) as client:
            result = await client.download(url, tmp_path / "ok.bin")
        assert result.size == len(DATA)
        assert (tmp_path / "ok.bin").read_bytes() == DATA
        async with Client(cafile=cafile, **NO_ENV) as client:
            # TLS 1.3 finishes the client's handshake before the server checks the client's
            # certificate, so the refusal may surface as a lost connection: any NetworkError.
            with pytest.raises(NetworkError):
                await client.download(url, tmp_path / "no.bin")
    assert not (tmp_path / "no.bin").exists()
    assert not (tmp_path / "no.bin.part").exists()


# --- the command line --------------------------------------------------------------------------


async def test_cli_tls_exit_codes(https_base: str, cafile: str, tmp_path: Path) -> None:
    """streamer get: untrusted exits 60 with one line; --cacert and -k/--insecure succeed."""
    url = https_base + "data.bin"
    rc, err = await cli("get", url, "-o", "a.bin", "--no-progress", cwd=tmp_path)
    assert rc == 60, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and url in err
    assert not (tmp_path / "a.bin").exists()
    for flags in (["--cacert", cafile], ["-k"], ["--insecure"]):
        rc, err = await cli("get", url, "-o", "a.bin", "-q", *flags, cwd=tmp_path)
        assert rc == 0, (flags, err)
        assert (tmp_path / "a.bin").read_bytes() == DATA
        (tmp_path / "a.bin").unlink()


async def test_cli_plain_http_over_https_exits_35(tmp_path: Path) -> None:
    """streamer get https:// against a plain-HTTP server exits 35, one line, no traceback."""
    (tmp_path / "f.bin").write_bytes(DATA)
    async with running_server(tmp_path) as base:
        url = base.replace("http://", "https://", 1) + "f.bin"
        rc, err = await cli("get", url, "-o", "out.bin", "--no-progress", cwd=tmp_path)
    assert rc == 35, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and url in err
    assert listing(tmp_path) == ["f.bin"]


async def test_cli_client_certificate(ca: trustme.CA, cafile: str, tmp_path: Path) -> None:
    """streamer get --cert/--key passes a server that requires a client certificate."""
    leaf = ca.issue_cert("client@example.test")
    pem = tmp_path / "client.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(pem))
    async with tls_site(server_context(ca, require_client_cert=True)) as base:
        rc, err = await cli(
            "get",
            base + "data.bin",
            "-o",
            "c.bin",
            "-q",
            "--cacert",
            cafile,
            "--cert",
            str(pem),
            "--key",
            str(pem),
            cwd=tmp_path,
        )
    assert rc == 0, err
    assert (tmp_path / "c.bin").read_bytes() == DATA


# --- the built-in server over TLS ---------------------------------------------------------------


async def test_builtin_server_serves_files_over_tls(
    ca: trustme.CA, cafile: str, tmp_path: Path
) -> None:
    """make_app(root) behind an SSLContext serves a file whole (sendfile falls back to chunks)."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(DATA)
    site = tls_site(server_context(ca), make_app(root))
    async with site as base, Client(cafile=cafile, **NO_ENV) as client:
        fetched = await client.fetch(base + "f.bin")
    assert fetched.body == DATA


# --- bulk runs: the small-file lane over TLS ----------------------------------------------------


def _counting_app(seen: list[str]) -> web.Application:
    async def data(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Accept", "-"))  # aiohttp sends Accept, the lane not
        return web.Response(body=DATA, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/{name}", data)
    return app


async def test_bulk_lane_over_tls_verifies_with_the_configured_ca(
    ca: trustme.CA, cafile: str, tmp_path: Path
) -> None:
    """Small files over https take the lane, with the client's CA: every file arrives whole and
    no request came from the full engine (the lane sends no Accept field)."""
    seen: list[str] = []
    site = tls_site(server_context(ca), _counting_app(seen))
    async with site as base, Client(cafile=cafile, **NO_ENV) as client:
        urls = [f"{base}f{i}.bin" for i in range(20)]
        results = [r async for r in client.download_many(urls, tmp_path / "out")]
    assert all(r.ok for r in results), [str(r.error) for r in results if not r.ok]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"f{i}.bin" for i in range(20)
    )
    assert all((tmp_path / "out" / f"f{i}.bin").read_bytes() == DATA for i in range(20))
    assert seen == ["-"] * 20


async def test_bulk_lane_over_tls_refuses_an_untrusted_certificate(
    ca: trustme.CA, tmp_path: Path
) -> None:
    """Without the CA the lane cannot connect, and the full engine reports the certificate
    error for each job (CERTIFICATE_ERROR), writing nothing."""
    seen: list[str] = []
    site = tls_site(server_context(ca), _counting_app(seen))
    async with site as base, Client(**NO_ENV) as client:
        urls = [f"{base}f{i}.bin" for i in range(3)]
        results = [r async for r in client.download_many(urls, tmp_path / "out")]
    assert [r.result for r in results] == [Result.CERTIFICATE_ERROR] * 3
    assert list((tmp_path / "out").iterdir()) == []
    assert seen == []
