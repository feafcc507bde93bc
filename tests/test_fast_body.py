"""The raw body path (transfer/fastpath.py, lane/bulkbody.py) keeps every promise of a download.

Each test checks ``result.body_path == "raw"`` (or that a failing download never went to the
engine), so a change that quietly sends these downloads back to aiohttp fails here: resume
byte for byte after a cut, no splice of a changed resource, limits before damage, checksums,
the stall window and read timeout, chunked bodies (hostile ones too), redirects, and flat
memory in a real process.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
import trustme
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

import streamer
from streamer import Client, Result
from streamer.core.retry import RetryPolicy
from streamer.storage.direct import ENV_SWITCH as DIRECT_SWITCH
from streamer.storage.files import part_path, sidecar_path
from streamer.transfer.fastopen import ENV_SWITCH
from tests.conftest import CLIENT_DEFAULTS
from tests.faults import SEEN, ClientFactory, End, RawFactory, check_error, data, head
from tests.helpers import ThreadedServer, assert_nothing_left, o_direct_dir, peak_rss, url_of
from tests.resource_server import Act, Resource, make_resource_app
from tests.test_tls import DATA as TLS_DATA
from tests.test_tls import server_context, tls_site

SIZE = 300 * 1024
BODY = data(SIZE)
OLD = b"an existing file, never to be touched by a failure\n"


@pytest.fixture
async def resource(aiohttp_server: AiohttpServer) -> Resource:
    res = Resource(BODY)
    server = await aiohttp_server(make_resource_app(res), host="127.0.0.1")
    res.url = str(server.make_url("/resource"))
    return res


@pytest.fixture
async def dl(make_client: ClientFactory) -> Client:
    """A client whose raw buffer (chunk_size) is 16 KiB, so that cuts land between writes."""
    return await make_client(chunk_size=16 * 1024)


# --- the path is taken, and only when it may be ----------------------------------------------


async def test_plain_http_download_takes_the_raw_path(
    dl: Client, resource: Resource, tmp_path: Path
) -> None:
    """A plain http GET answered 200 with a length is read on the raw path, byte for byte."""
    result = await dl.download(resource.url, tmp_path / "f")
    assert result.body_path == "raw"
    assert (tmp_path / "f").read_bytes() == BODY
    assert (result.status, result.size, result.length_verified) == (200, SIZE, True)
    assert result.to_json()["body_path"] == "raw"


async def test_fast_body_off_and_decoding_keep_the_engine(
    make_client: ClientFactory, resource: Resource, tmp_path: Path
) -> None:
    """fast_body=False and a body to decode stay on aiohttp; a rate limit does not (the raw
    path pays it with reading stopped, tests/test_download_pacing.py)."""
    cases = (({"fast_body": False}, "engine"), ({"accept_gzip": True}, "engine"))
    for options, path in (*cases, ({"limit_rate": 1 << 30}, "raw")):
        client = await make_client(**options)
        result = await client.download(resource.url, tmp_path / "f")
        assert result.body_path == path, options
        assert (tmp_path / "f").read_bytes() == BODY


async def test_a_head_larger_than_the_chunk_size_is_read(
    raw_server: RawFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    """A 20 KiB head with a 4 KiB chunk_size is read whole (the buffer makes room for any
    head the engine takes), and the body follows."""
    big = head(Content_Length=5, X_Pad="p" * 8000, X_Pad2="q" * 8000, X_Pad3="r" * 4000)
    srv = await raw_server([big + b"hello"])
    client = await make_client(chunk_size=4096)
    result = await client.download(srv.url + "f", tmp_path / "f")
    assert (result.body_path, (tmp_path / "f").read_bytes()) == ("raw", b"hello")


async def test_redirect_followed_on_the_raw_path(
    fault_server: TestServer, client: Client, tmp_path: Path
) -> None:
    """A redirect is followed under the engine's rules without asking twice (one request
    per hop), and the result names the hop count and the final URL."""
    final = url_of(fault_server, "/bytes/5000")
    result = await client.download(url_of(fault_server, "/to?url=/bytes/5000"), tmp_path / "r")
    assert (result.body_path, result.redirects, result.final_url) == ("raw", 1, final)
    assert (tmp_path / "r").read_bytes() == data(5000)
    seen = [s.path for s in fault_server.app[SEEN]]
    assert seen == ["/to", "/bytes/5000"]


async def test_https_is_read_on_the_raw_path_and_verified(tmp_path: Path) -> None:
    """An https download is decrypted into the raw path's buffer (asyncio's TLS layer), with
    the client's CA; a certificate from an unknown CA is still refused, as CertificateError."""
    ca = trustme.CA()
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    async with tls_site(server_context(ca)) as base:
        async with Client(cafile=str(cafile), **CLIENT_DEFAULTS) as client:
            result = await client.download(base + "data.bin", tmp_path / "ok")
        async with Client(**CLIENT_DEFAULTS) as untrusting:
            with pytest.raises(streamer.CertificateError):
                await untrusting.download(base + "data.bin", tmp_path / "refused")
    assert (result.body_path, (tmp_path / "ok").read_bytes()) == ("raw", TLS_DATA)
    assert_nothing_left(tmp_path / "refused")


# --- resume and retries -------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_cut_mid_body_resumes_byte_exact(
    dl: Client, resource: Resource, tmp_path: Path, how: str
) -> None:
    """A cut at byte K keeps K bytes and a sidecar; the next run asks Range bytes=K- with
    If-Range and the file equals the resource, every byte sent once."""
    target, cut = tmp_path / "f", 123_457
    resource.script.append(Act(cut_at=cut, how=how))
    with pytest.raises(streamer.BodyTruncatedError) as info:
        await dl.download(resource.url, target)
    assert (info.value.received, info.value.expected) == (cut, SIZE)
    assert part_path(target).stat().st_size == cut and sidecar_path(target).exists()
    result = await dl.download(resource.url, target)
    assert (result.body_path, result.resumed_from) == ("raw", cut)
    second = resource.seen[1]
    assert (second.range, second.if_range, second.status) == (f"bytes={cut}-", '"v1"', 206)
    assert target.read_bytes() == BODY and resource.sent == SIZE


async def test_retry_within_one_call_continues_on_the_raw_path(
    dl: Client, resource: Resource, tmp_path: Path
) -> None:
    """A cut with a retry left continues from the bytes written, in the same call."""
    resource.script.append(Act(cut_at=70_000))
    result = await dl.download(resource.url, tmp_path / "f", retry=RetryPolicy(1, delay=0))
    assert (result.body_path, result.attempts, result.resumed_from) == ("raw", 2, 70_000)
    assert (tmp_path / "f").read_bytes() == BODY


async def test_changed_resource_is_not_spliced(
    dl: Client, resource: Resource, tmp_path: Path
) -> None:
    """After a cut the resource changes: If-Range no longer holds, the server sends the new
    version whole (200), and the file is that version, never old bytes + new bytes."""
    target = tmp_path / "f"
    resource.script.append(Act(cut_at=100_000))
    with pytest.raises(streamer.BodyTruncatedError):
        await dl.download(resource.url, target)
    new = data(SIZE + 999, offset=5)
    resource.change(new)
    result = await dl.download(resource.url, target)
    assert (result.body_path, result.resumed_from) == ("raw", 0)
    assert resource.seen[1].status == 200
    assert target.read_bytes() == new


# --- limits and checksums ------------------------------------------------------------------------


async def test_declared_length_over_max_is_refused_before_a_byte(
    dl: Client, resource: Resource, tmp_path: Path
) -> None:
    """Content-Length over max_bytes: BodyTooLarge, no target, no partial, nothing written."""
    target = tmp_path / "f"
    target.write_bytes(OLD)
    with pytest.raises(streamer.BodyTooLarge) as info:
        await dl.download(resource.url, target, max_bytes=SIZE - 1)
    check_error(info.value, Result.BODY_SIZE_LIMIT_EXCEEDED)
    assert target.read_bytes() == OLD and not part_path(target).exists()


async def test_chunked_body_over_max_is_refused_while_streaming(
    fault_server: TestServer, client: Client, tmp_path: Path
) -> None:
    """A chunked body (no length to check first) is counted: BodyTooLarge, nothing kept."""
    target = tmp_path / "f"
    with pytest.raises(streamer.BodyTooLarge) as info:
        await client.download(url_of(fault_server, "/chunked/65536"), target, max_bytes=1000)
    check_error(info.value, Result.BODY_SIZE_LIMIT_EXCEEDED)
    assert_nothing_left(target)


async def test_more_bytes_than_declared_is_refused(
    raw_server: RawFactory, client: Client, tmp_path: Path
) -> None:
    """Bytes past the Content-Length arriving with the body (RFC 9112 6.3: the server is out
    of step) fail the download with INVALID_RESPONSE, as on the engine; no target appears."""
    srv = await raw_server([head(Content_Length=10), b"0123456789EXTRA"], delay=0.05)
    with pytest.raises(streamer.ProtocolError) as info:
        await client.download(srv.url + "f", tmp_path / "f")
    check_error(info.value, Result.INVALID_RESPONSE)
    assert not (tmp_path / "f").exists()


async def test_checksum_mismatch_never_shows_a_partial(
    dl: Client, resource: Resource, tmp_path: Path
) -> None:
    """A wrong checksum (computed while streaming) fails with CHECKSUM_MISMATCH: the old
    target keeps its bytes and neither the partial nor the sidecar stays; the right one saves."""
    target = tmp_path / "f"
    target.write_bytes(OLD)
    with pytest.raises(streamer.ChecksumMismatch) as info:
        await dl.download(resource.url, target, checksum="sha256:" + "0" * 64)
    check_error(info.value, Result.CHECKSUM_MISMATCH)
    assert target.read_bytes() == OLD
    assert not part_path(target).exists() and not sidecar_path(target).exists()
    right = "sha256:" + hashlib.sha256(BODY).hexdigest()
    result = await dl.download(resource.url, target, checksum=right)
    assert result.body_path == "raw" and target.read_bytes() == BODY


# --- timers ------------------------------------------------------------------------------------


async def test_stalled_body_hits_the_stall_window(
    raw_server: RawFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    """Bytes then silence: the stall window (speed_limit over speed_time) fails the download
    with TOO_SLOW, and what came is kept for a resume."""
    srv = await raw_server([head(Content_Length=100_000, ETag='"s"'), data(5000)], End.STALL)
    client = await make_client(speed_limit=1000, speed_time=1.0, read_timeout=30.0)
    with pytest.raises(streamer.TooSlowError) as info:
        await client.download(srv.url + "f", tmp_path / "f")
    check_error(info.value, Result.TOO_SLOW)
    assert part_path(tmp_path / "f").stat().st_size == 5000


async def test_silent_server_hits_the_read_timeout(
    raw_server: RawFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    """No byte for read_timeout seconds mid-body is TIMEOUT, naming the timeout and the bytes."""
    srv = await raw_server([head(Content_Length=100_000), data(3000)], End.STALL)
    client = await make_client(read_timeout=0.5)
    with pytest.raises(streamer.TransferTimeout) as info:
        await client.download(srv.url + "f", tmp_path / "f")
    check_error(info.value, Result.TIMEOUT)
    assert "read timeout (0.5 s)" in str(info.value) and "3000 bytes" in str(info.value)


async def test_total_deadline_holds_on_the_raw_path(
    raw_server: RawFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    """A body still coming when total_timeout (curl's --max-time) runs out is TIMEOUT, even
    while bytes keep arriving (a drip that the read timeout never catches)."""
    drip = [head(Content_Length=1000), *(b"x" for _ in range(200))]
    srv = await raw_server(drip, delay=0.05)
    client = await make_client(total_timeout=1.0, read_timeout=30.0)
    with pytest.raises(streamer.TransferTimeout) as info:
        await client.download(srv.url + "f", tmp_path / "f")
    check_error(info.value, Result.TIMEOUT)
    assert "total timeout (1 s)" in str(info.value)


# --- chunked bodies ------------------------------------------------------------------------------


def _chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


CHUNKED_HEAD = head(Transfer_Encoding="chunked")
TINY = data(3000)


@pytest.mark.parametrize(
    "script",
    [
        [CHUNKED_HEAD + _chunked(TINY[:1000], TINY[1000:])],
        [CHUNKED_HEAD, *(_chunked(TINY)[i : i + 7] for i in range(0, len(_chunked(TINY)), 7))],
        [CHUNKED_HEAD + _chunked(*(TINY[i : i + 1] for i in range(3000)))],
        [CHUNKED_HEAD + b"BB8;name=value\r\n" + TINY + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"],
    ],
    ids=["two-chunks", "split-every-7-bytes", "one-byte-chunks", "extension-and-trailer"],
)
async def test_chunked_bodies_are_decoded(
    raw_server: RawFactory, client: Client, tmp_path: Path, script: list[bytes]
) -> None:
    """Chunked bodies however cut by the network, of one-byte chunks, with extensions and
    trailers (RFC 9112 7.1) are saved as their data, length-verified, on the raw path."""
    srv = await raw_server(script)
    result = await client.download(srv.url + "f", tmp_path / "f")
    assert (result.body_path, result.length_verified) == ("raw", True)
    assert (tmp_path / "f").read_bytes() == TINY


@pytest.mark.parametrize(
    ("body", "kind", "result"),
    [
        (b"zz\r\nabc\r\n", streamer.ProtocolError, Result.INVALID_RESPONSE),
        (b"-5\r\nabc\r\n", streamer.ProtocolError, Result.INVALID_RESPONSE),
        (b"1" * 20 + b"\r\nabc", streamer.ProtocolError, Result.INVALID_RESPONSE),
        (b"ffffffffffffff\r\nabc", streamer.BodyTruncatedError, Result.CHUNKED_BODY_SIZE_MISMATCH),
        (b"3\r\nabcdef\r\n0\r\n\r\n", streamer.ProtocolError, Result.INVALID_RESPONSE),
        (b"3;" + b"x" * 10_000 + b"\r\nabc", streamer.ProtocolError, Result.INVALID_RESPONSE),
    ],
    ids=[
        "not-hex",
        "negative",
        "size-too-long",
        "huge-size-then-cut",
        "data-past-size",
        "long-ext",
    ],
)
async def test_hostile_chunk_sizes_fail_cleanly(
    raw_server: RawFactory,
    client: Client,
    tmp_path: Path,
    *,
    body: bytes,
    kind: type[Exception],
    result: Result,
) -> None:
    """Chunk sizes that are not hex, too long, larger than what comes, or lines that never
    end: a typed error, one request, and no file under the target name."""
    srv = await raw_server([CHUNKED_HEAD, body])
    target = tmp_path / "f"
    target.write_bytes(OLD)
    with pytest.raises(kind) as info:
        await client.download(srv.url + "f", target)
    check_error(info.value, result)
    assert target.read_bytes() == OLD and len(srv.requests) == 1


# --- memory ------------------------------------------------------------------------------------

RSS_CEILING = 48 << 20
BIG_MIB = 200


@pytest.mark.parametrize("direct_io", [False, True])
def test_peak_rss_of_a_large_raw_download(tmp_path: Path, direct_io: bool) -> None:
    """A real `streamer get` of 200 MiB on the raw path stays under 48 MiB of peak RSS, through
    the page cache and with direct writes (STREAMER_DIRECT_IO=1: its pool of aligned buffers
    is bounded, whatever the size)."""
    root = tmp_path / "www"
    root.mkdir()
    block = os.urandom(1 << 20)
    with (root / "big.bin").open("wb") as f:
        for _ in range(BIG_MIB):
            f.write(block)
    log = tmp_path / "get.log"
    with ThreadedServer(root) as base, o_direct_dir(tmp_path) as disk:
        out = disk / "big.out"
        cmd = [sys.executable, "-m", "streamer", "get", base + "big.bin", "-o", str(out)]
        env = {DIRECT_SWITCH: "1" if direct_io else "0"}
        report = peak_rss([*cmd, "--json", "--no-progress"], 120.0, log, env=env)
        assert report.rc == 0, log.read_text(errors="replace")
        assert out.stat().st_size == BIG_MIB << 20
    line = next(x for x in log.read_text().splitlines() if x.startswith("{"))
    assert (json.loads(line)["body_path"], json.loads(line)["direct_io"]) == ("raw", direct_io)
    assert report.maxrss_kib * 1024 < RSS_CEILING, f"peak RSS {report.maxrss_kib} KiB"


def test_env_switch_keeps_the_engine(tmp_path: Path) -> None:
    """STREAMER_FAST_BODY=0 sends a real `streamer get` through aiohttp (a diagnostic switch)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "f.bin").write_bytes(BODY)
    out, log = tmp_path / "f.out", tmp_path / "get.log"
    with ThreadedServer(root) as base:
        cmd = [sys.executable, "-m", "streamer", "get", base + "f.bin", "-o", str(out), "--json"]
        report = peak_rss(cmd, 60.0, log, env={ENV_SWITCH: "0"})
    assert report.rc == 0, log.read_text(errors="replace")
    line = next(x for x in log.read_text().splitlines() if x.startswith("{"))
    assert json.loads(line)["body_path"] == "engine"
    assert out.read_bytes() == BODY
