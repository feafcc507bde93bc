"""`streamer get` against servers that answer like real ones, as a user coming from curl expects
(issue 11): rate limits, stdout, -J with -o, any 3xx, 304, Latin-1 names, -z, -w, -s, -C -."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from streamer.server.app import running_server
from tests.conftest import RawFactory
from tests.curl_peer import TEXT, make_app, pattern, sign
from tests.faults import head
from tests.helpers import ENV, RUN_TIMEOUT, app_servers, one_error_line, streamer

KIB = 1 << 10


@pytest.fixture
async def peer() -> AsyncIterator[str]:
    """The curl_peer app on 127.0.0.1; yields its base URL (no trailing slash)."""
    async with app_servers() as serve:
        server: TestServer = await serve(make_app())
        yield str(server.make_url("")).rstrip("/")


@pytest.fixture
async def files(tmp_path: Path) -> AsyncIterator[str]:
    """The built-in server (ranges, validators, conditional requests) on tmp/srv."""
    srv = tmp_path / "srv"
    srv.mkdir()
    (srv / "blob.bin").write_bytes(pattern(768 * KIB))
    async with running_server(srv) as base:
        yield base


@pytest.mark.parametrize("split", ["1", "2"])
async def test_limit_rate_holds_for_one_download(files: str, tmp_path: Path, split: str) -> None:
    """--limit-rate caps a single download and a --split one (all segments together): 768 KiB
    at 256 KiB/s cannot finish before (768 - 64 KiB of burst) / 256 KiB/s = 2.75 s."""
    out = tmp_path / "blob.bin"
    started = time.monotonic()
    run = await streamer(
        "get", files + "blob.bin", "-o", str(out), "--limit-rate", "256K", "--split", split, "-q"
    )
    elapsed = time.monotonic() - started
    assert run.rc == 0, run
    assert out.read_bytes() == pattern(768 * KIB)
    assert elapsed >= 2.5, elapsed


async def test_output_dash_writes_the_body_to_stdout(peer: str, tmp_path: Path) -> None:
    """-o - sends the body to stdout: no file named '-', no .part, no sidecar."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer",
        "get",
        f"{peer}/big/300000",
        "-o",
        "-",
        "-q",
        cwd=tmp_path,
        env=ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
    assert proc.returncode == 0, err
    assert out == pattern(300000)
    assert list(tmp_path.iterdir()) == []


def _read_a_little_then_close(url: str, cwd: Path) -> tuple[int, bytes]:
    """Start `streamer get URL -o -`, read 10 bytes of its stdout, close the pipe, reap it."""
    cmd = [sys.executable, "-m", "streamer", "get", url, "-o", "-"]
    with subprocess.Popen(
        cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as p:
        assert p.stdout is not None and p.stderr is not None
        assert len(p.stdout.read(10)) == 10
        p.stdout.close()
        err = p.stderr.read()
        return p.wait(RUN_TIMEOUT), err


async def test_broken_stdout_pipe_exits_23_without_a_traceback(peer: str, tmp_path: Path) -> None:
    """A reader that goes away (`| head -c 10`) ends the download with curl's exit 23 and one
    line, never a traceback, and leaves no file behind."""
    rc, err = await asyncio.to_thread(_read_a_little_then_close, f"{peer}/big/67108864", tmp_path)
    text = err.decode(errors="replace")
    assert rc == 23, text
    assert "Traceback" not in text and "Exception ignored" not in text, text
    assert "broken pipe" in text
    assert list(tmp_path.iterdir()) == []


async def test_output_dash_is_refused_with_split(peer: str) -> None:
    """-o - with --split cannot write at offsets, and --json would mix with the body: refused
    up front (exit 2) naming both options."""
    run = await streamer("get", f"{peer}/ok", "-o", "-", "--split", "2")
    one_error_line(run, 2, "--split", "-o -")
    run = await streamer("get", f"{peer}/ok", "-o", "-", "--json")
    one_error_line(run, 2, "--json", "-o -")


async def test_remote_header_name_with_output_writes_the_output(peer: str, tmp_path: Path) -> None:
    """-J -o x.pdf writes x.pdf, as curl does: -o names the file; -J alone uses the header."""
    run = await streamer("get", f"{peer}/cd", "-J", "-o", str(tmp_path / "x.pdf"), "-q")
    assert run.rc == 0, run
    assert sorted(os.listdir(tmp_path)) == ["x.pdf"]
    run = await streamer("get", f"{peer}/cd", "-J", "-d", str(tmp_path), "-q")
    assert run.rc == 0, run
    assert sorted(os.listdir(tmp_path)) == ["report.pdf", "x.pdf"]


@pytest.mark.parametrize("status", [300, 305, 306, 399])
async def test_any_3xx_with_a_location_is_followed(peer: str, tmp_path: Path, status: int) -> None:
    """A 300/305/306/399 with a Location is followed like curl -L (the body of /ok arrives)."""
    out = tmp_path / "out"
    run = await streamer("get", f"{peer}/s/{status}/loc", "-o", str(out), "-q")
    assert run.rc == 0, run
    assert out.read_bytes() == b"ok\n"


async def test_3xx_without_location_is_the_final_answer(peer: str, tmp_path: Path) -> None:
    """A 300 without a Location is the HTTP result: saved (as curl -fL, exit 0) and named as
    such on the outcome, with -w %{http_code} showing 300, not a silent empty success."""
    out = tmp_path / "out"
    run = await streamer("get", f"{peer}/s/300", "-o", str(out), "-w", "%{http_code}")
    assert run.rc == 0, run
    assert run.out == "300"
    assert "HTTP 300 without a Location" in run.err


async def test_304_to_a_plain_get_creates_no_file(peer: str, tmp_path: Path) -> None:
    """A 304 to a GET with no file: nothing is created (no empty file), exit 0, one line."""
    out = tmp_path / "out"
    run = await streamer("get", f"{peer}/nm", "-o", str(out))
    assert run.rc == 0, run
    assert list(tmp_path.iterdir()) == []
    assert run.err_lines == ["streamer: 304 Not Modified: no file written"]


async def test_304_with_an_existing_file_has_one_outcome(peer: str, tmp_path: Path) -> None:
    """A 304 with an existing file keeps it and says so once (no 'saved' line besides)."""
    out = tmp_path / "out"
    out.write_bytes(b"mine")
    run = await streamer("get", f"{peer}/nm", "-o", str(out))
    assert run.rc == 0, run
    assert out.read_bytes() == b"mine"
    assert run.err_lines == [f"streamer: 304 Not Modified: kept the existing file {out}"]


async def test_latin1_filename_is_decoded(raw_server: RawFactory, tmp_path: Path) -> None:
    """-J with filename="r\\xe9sum\\xe9.txt" in ISO-8859-1 bytes (RFC 6266 C.1) is résumé.txt."""
    cd = b'Content-Disposition: attachment; filename="r\xe9sum\xe9.txt"\r\n'
    srv = await raw_server([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + cd + b"\r\nhi"])
    run = await streamer("get", srv.url + "x", "-J", "-d", str(tmp_path), "-q")
    assert run.rc == 0, run
    assert os.listdir(tmp_path) == ["résumé.txt"]


async def test_utf8_filename_stays_utf8(raw_server: RawFactory, tmp_path: Path) -> None:
    """-J with a filename in valid UTF-8 bytes keeps it (what most servers send today)."""
    cd = 'Content-Disposition: attachment; filename="naïve.txt"\r\n'.encode()
    srv = await raw_server([head(Content_Length=2)[:-2] + cd + b"\r\nhi"])
    run = await streamer("get", srv.url + "x", "-J", "-d", str(tmp_path), "-q")
    assert run.rc == 0, run
    assert os.listdir(tmp_path) == ["naïve.txt"]


async def test_time_cond_keeps_a_current_file(files: str, tmp_path: Path) -> None:
    """-z FILE: If-Modified-Since from the file's mtime; the server's 304 keeps the file, and
    a file older than the resource is downloaded anew (a date works the same way)."""
    out = tmp_path / "blob.bin"
    out.write_bytes(b"current")
    run = await streamer("get", files + "blob.bin", "-o", str(out), "-z", str(out))
    assert run.rc == 0, run
    assert out.read_bytes() == b"current"
    assert "304 Not Modified" in run.err
    os.utime(out, (0, 0))  # 1970: older than the resource
    run = await streamer("get", files + "blob.bin", "-o", str(out), "-z", str(out), "-q")
    assert run.rc == 0, run
    assert out.read_bytes() == pattern(768 * KIB)
    run = await streamer(
        "get", files + "blob.bin", "-o", str(out), "-z", "Sun, 06 Nov 2050 08:49:37 GMT"
    )
    assert "304 Not Modified" in run.err


async def test_write_out_silent_and_continue_at(peer: str, tmp_path: Path) -> None:
    """-w prints curl's variables on stdout, -s silences everything but -w, -S brings errors
    back, -f and -C - are accepted; -C with an offset is refused (exit 2)."""
    out = tmp_path / "out"
    fmt = "%{http_code} %{size_download} %{exitcode} %{url_effective}\\n"
    run = await streamer("get", f"{peer}/ok", "-o", str(out), "-s", "-f", "-C", "-", "-w", fmt)
    assert (run.rc, run.out, run.err) == (0, f"200 3 0 {peer}/ok\n", "")
    run = await streamer("get", f"{peer}/s/404", "-o", str(out), "-s", "-w", fmt)
    assert (run.rc, run.err) == (22, "")
    assert run.out.startswith("404 0 22 ")
    run = await streamer("get", f"{peer}/s/404", "-o", str(out), "-sS")
    one_error_line(run, 22, "404")
    run = await streamer("get", f"{peer}/ok", "-o", str(out), "-C", "100")
    one_error_line(run, 2, "-C")


async def test_create_dirs(peer: str, tmp_path: Path) -> None:
    """Without --create-dirs a missing directory is exit 23 (curl too); with it, it is made."""
    out = tmp_path / "a" / "b" / "out"
    run = await streamer("get", f"{peer}/ok", "-o", str(out), "-q")
    assert run.rc == 23, run
    run = await streamer("get", f"{peer}/ok", "-o", str(out), "-q", "--create-dirs")
    assert run.rc == 0, run
    assert out.read_bytes() == b"ok\n"


# --- 8: the URL goes on the wire as given ------------------------------------------------------

SIGNED_QUERY = "sig=a%2Bb%2Fc%3D&next=%2Fx%3Fy&t=%7E%41"


async def test_signed_query_is_sent_byte_for_byte(peer: str, tmp_path: Path) -> None:
    """A query signed over its raw bytes (%2F, %3F, %7E, %41 as written) passes the server's
    HMAC check on the full engine (one download) and on the bulk lane alike."""
    url = f"{peer}/signed/{sign(SIGNED_QUERY)}?{SIGNED_QUERY}"
    run = await streamer("get", url, "-o", str(tmp_path / "one"), "-q")
    assert run.rc == 0, run
    manifest = tmp_path / "urls.jsonl"
    manifest.write_text(json.dumps({"url": url, "path": "lane"}) + "\n")
    run = await streamer("get", "-i", str(manifest), "-d", str(tmp_path), "-q")
    assert run.rc == 0, run
    assert (tmp_path / "one").read_bytes() == (tmp_path / "lane").read_bytes() == b"signed ok\n"


async def test_only_unsendable_characters_are_encoded(peer: str, tmp_path: Path) -> None:
    """A space and a non-ASCII letter cannot go on the wire: they (only) are percent-encoded
    as UTF-8, so a query signed in its encoded form still matches."""
    wire = "q=a%20b&n=%C3%A9&keep=%2f"
    url = f"{peer}/signed/{sign(wire)}?q=a b&n=é&keep=%2f"
    run = await streamer("get", url, "-o", str(tmp_path / "out"), "-q")
    assert run.rc == 0, run


# --- 9: br and zstd ------------------------------------------------------------------------------


@pytest.mark.parametrize("coding", ["br", "zstd"])
async def test_compressed_asks_for_and_decodes_br_and_zstd(
    peer: str, tmp_path: Path, coding: str
) -> None:
    """--compressed asks for br and zstd (installed here) and saves the decoded body."""
    out = tmp_path / "out"
    run = await streamer("get", f"{peer}/enc/{coding}", "-o", str(out), "--compressed", "-q")
    assert run.rc == 0, run
    assert out.read_bytes() == b"gzip, deflate, br, zstd\n" + TEXT


@pytest.mark.parametrize("coding", ["br", "zstd"])
async def test_br_and_zstd_bombs_stop_at_the_limit(peer: str, tmp_path: Path, coding: str) -> None:
    """256 MiB of zeros in a small br or zstd body stops at --max-filesize (exit 63), counted
    in decoded bytes, and leaves nothing behind."""
    out = tmp_path / "out"
    run = await streamer(
        "get", f"{peer}/bomb/{coding}", "-o", str(out), "--compressed", "--max-filesize", "4M"
    )
    one_error_line(run, 63)
    assert list(tmp_path.iterdir()) == []
