"""What the CLI prints about a failure (issue 10, Output): streamer's own words on one line,
with the numbers, never a foreign exception's text, a terminal escape chosen by the server, a
secret, or a traceback. Real processes against raw or aiohttp servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from streamer.core.redact import redact_url
from streamer.core.resume import ResumeState, dump_state
from streamer.storage.files import part_path, sidecar_path
from tests.faults import End, RawFactory, head
from tests.helpers import RUN_TIMEOUT, one_error_line, streamer
from tests.test_tls import server_context, tls_site

ESC = "\x1b"


async def test_a_short_body_says_how_many_bytes_of_how_many(
    raw_server: RawFactory, tmp_path: Path
) -> None:
    """A body cut short names bytes read and expected, not aiohttp's ContentLengthError."""
    srv = await raw_server([head(Content_Length=1000) + b"x" * 400], End.CLOSE)
    run = await streamer("get", "-o", str(tmp_path / "f"), "--retry", "0", srv.url)
    line = one_error_line(run, 18, "body cut short: 400 of 1000 bytes")
    assert "ContentLengthError" not in line and "400," not in line


async def test_a_chunked_body_cut_short_says_so(raw_server: RawFactory, tmp_path: Path) -> None:
    """A chunked body without its last chunk: exit 18, the count, no aiohttp text."""
    srv = await raw_server([head(Transfer_Encoding="chunked") + b"5\r\nhello\r\n"], End.CLOSE)
    run = await streamer("get", "-o", str(tmp_path / "f"), "--retry", "0", srv.url)
    line = one_error_line(run, 18, "chunked body cut short after 5 bytes")
    assert "Error" not in line


async def test_a_read_timeout_says_which_timeout_and_its_value(
    raw_server: RawFactory, tmp_path: Path
) -> None:
    """A silent server: "read timeout (1 s)", not "timed out: TimeoutError"."""
    srv = await raw_server([head(Content_Length=10) + b"abc"], End.STALL)
    args = ("--read-timeout", "1", "--retry", "0")
    run = await streamer("get", "-o", str(tmp_path / "f"), *args, srv.url)
    line = one_error_line(run, 28, "read timeout (1 s)")
    assert "TimeoutError" not in line


async def test_a_total_timeout_says_which_timeout_and_its_value(
    raw_server: RawFactory, tmp_path: Path
) -> None:
    """--max-time running out is named with its value."""
    srv = await raw_server([head(Content_Length=10) + b"abc"], End.STALL)
    args = ("--max-time", "1", "--retry", "0")
    run = await streamer("get", "-o", str(tmp_path / "f"), *args, srv.url)
    line = one_error_line(run, 28, "total timeout (1 s)")
    assert "TimeoutError" not in line


async def test_an_untrusted_certificate_says_which_check_failed(tmp_path: Path) -> None:
    """A certificate from an unknown CA: which check failed, in one line, exit 60."""
    async with tls_site(server_context(trustme.CA())) as base:
        run = await streamer("get", "-o", str(tmp_path / "f"), base + "data.bin")
    line = one_error_line(run, 60, "certificate check failed", "unable to get local issuer")
    assert "SSLCertVerificationError" not in line and "ssl:" not in line


async def test_server_chosen_text_is_printed_escaped(
    raw_server: RawFactory, tmp_path: Path
) -> None:
    """A reason phrase with a C1 control (8-bit CSI) reaches stderr escaped, not raw."""
    srv = await raw_server([b"HTTP/1.1 404 Gone\x9b2J\x9b0;evil\r\nContent-Length: 0\r\n\r\n"])
    run = await streamer("get", "-o", str(tmp_path / "f"), srv.url)
    one_error_line(run, 22, "HTTP 404 Gone\\x9b2J")
    assert "\x9b" not in run.err and ESC not in run.err


async def test_an_upload_error_body_is_escaped_and_one_line(
    aiohttp_server: object, tmp_path: Path
) -> None:
    """A short text error body is shown on one line with its escapes; an HTML page is not."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        if request.path == "/text":
            return web.Response(status=403, text=f"quota {ESC}[2J\nexceeded")
        page = "<html><head><title>500</title></head><body>" + "x" * 200 + "</body></html>"
        return web.Response(status=500, text=page, content_type="text/html")

    app = web.Application()
    app.router.add_put("/{name}", answer)
    server = await aiohttp_server(app, host="127.0.0.1")  # type: ignore[operator]
    src = tmp_path / "src"
    src.write_bytes(b"data")
    base = f"http://127.0.0.1:{server.port}"
    run = await streamer("put", str(src), f"{base}/text", "--retry", "0")
    one_error_line(run, 22, "HTTP 403 Forbidden: quota \\x1b[2J exceeded")
    assert ESC not in run.err
    run = await streamer("put", str(src), f"{base}/page", "--retry", "0")
    line = one_error_line(run, 22, "HTTP 500 Internal Server Error")
    assert "<html" not in line and line.endswith("Internal Server Error")


# --- secrets never echoed ----------------------------------------------------------------------

CANARY = "Canary7Secret"


@pytest.mark.parametrize(
    "proxy",
    [
        f"http://user:{CANARY}@127.0.0.1:99999",  # a port out of range
        f"http://user:{CANARY}@[::1",  # an unclosed bracket
        f"socks5://user:{CANARY}@127.0.0.1:1080",  # a scheme we do not speak
    ],
    ids=["port", "bracket", "socks5"],
)
@pytest.mark.parametrize("json_flag", [(), ("--json",)], ids=["text", "json"])
async def test_a_bad_proxy_url_is_refused_without_its_password(
    proxy: str, json_flag: tuple[str, ...], tmp_path: Path
) -> None:
    """A malformed proxy URL is a usage error (exit 2) whose message hides the password, on
    stderr and in --json."""
    run = await streamer("get", *json_flag, "-x", proxy, "-o", str(tmp_path / "f"), "http://h/")
    assert run.rc == 2 and "Traceback" not in run.err, run
    assert CANARY not in run.err and CANARY not in run.out
    assert "proxy" in run.err


async def test_a_malformed_credential_header_is_not_echoed(tmp_path: Path) -> None:
    """-H "Authorization Bearer TOKEN" (no colon): the error names the header, not the token."""
    run = await streamer(
        "get", "-H", f"Authorization Bearer {CANARY}", "-o", str(tmp_path / "f"), "http://h/"
    )
    one_error_line(run, 2, "bad header", "Authorization")
    assert CANARY not in run.err + run.out


@pytest.mark.parametrize("json_flag", [(), ("--json",)], ids=["text", "json"])
async def test_a_bad_manifest_header_value_is_not_echoed(
    json_flag: tuple[str, ...], tmp_path: Path
) -> None:
    """A manifest header value with a control character is refused without echoing it."""
    manifest = tmp_path / "m.jsonl"
    line = {"url": "http://127.0.0.1:1/a", "headers": {"Authorization": f"Bearer {CANARY}\x01"}}
    manifest.write_text(json.dumps(line) + "\n")
    run = await streamer("get", *json_flag, "-i", str(manifest), "-d", str(tmp_path))
    assert "Traceback" not in run.err and run.rc == 2, run
    assert CANARY not in run.err + run.out
    assert "Authorization" in run.err + run.out


async def test_an_etag_quoted_in_a_resume_note_is_escaped(tmp_path: Path) -> None:
    """The note "restarting from byte 0: ETag changed ..." shows a hostile ETag escaped."""
    etag = b'ETag: "b\x9b2J\x1b[31m"\r\n'

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(RUN_TIMEOUT):
                request = await reader.readuntil(b"\r\n\r\n")
                if b"\r\nrange:" in request.lower():  # another version: a 206 of it
                    head = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 2-4/5\r\n"
                    writer.write(head + etag + b"Content-Length: 3\r\n\r\nllo")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\n" + etag + b"Content-Length: 5\r\n\r\nhello")
                await writer.drain()
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/f"
    target = tmp_path / "f"
    part_path(target).write_bytes(b"he")
    state = ResumeState(redact_url(url), url, '"v1"', None, 5, 2)
    sidecar_path(target).write_text(dump_state(state))
    try:
        run = await streamer("get", "-o", str(target), url)
    finally:
        server.close()
    assert run.rc == 0, run
    assert "ETag changed" in run.err and '"b\\x9b2J\\x1b[31m"' in run.err, run.err
    assert "\x9b" not in run.err and ESC not in run.err
    assert target.read_bytes() == b"hello"


async def test_https_to_a_plain_port_names_the_tls_failure(
    raw_server: RawFactory, tmp_path: Path
) -> None:
    """https:// to a plain-HTTP server: exit 35, "TLS handshake with HOST:PORT failed" and
    OpenSSL's reason, without aiohttp's "Cannot connect to host ... ssl:default [...]"."""
    srv = await raw_server([head("HTTP/1.1 400 Bad", Content_Length=0)], read_request=False)
    url = f"https://127.0.0.1:{srv.port}/x"
    run = await streamer("get", "-o", str(tmp_path / "f"), "--retry", "0", url)
    line = one_error_line(run, 35, f"TLS handshake with 127.0.0.1:{srv.port} failed")
    assert "Cannot connect to host" not in line and "ssl:" not in line and "_ssl.c" not in line
