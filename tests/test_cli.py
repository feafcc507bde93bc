"""The `streamer` command run for real: a subprocess against servers on 127.0.0.1.

Every test starts ``python -m streamer ...`` as a child process and checks what a user sees:
the exit code (curl's where curl has one), stdout, stderr and the files left behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from streamer.server.app import running_server
from tests import helpers
from tests.helpers import ENV, RUN_TIMEOUT, closed_port
from tests.helpers import one_error_line as assert_one_error_line

DATA = bytes(range(256)) * 400 + b"tail"  # 102404 bytes: several reads, odd length
KIB = b"k" * 1024  # exactly 1 KiB, for the --max-filesize boundaries


@dataclass(frozen=True)
class Run(helpers.Run):
    """What one command did; here every line of stderr counts in `err_lines`, blank ones too."""

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


async def streamer(*args: str, cwd: Path | None = None) -> Run:
    """Run ``python -m streamer ARGS`` to completion (killed after RUN_TIMEOUT seconds)."""
    run = await helpers.streamer(*args, cwd=cwd)
    return Run(run.rc, run.out, run.err)


@dataclass(frozen=True)
class Site:
    """The built-in server on `srv`, and an empty `work` directory for the client's files."""

    base: str
    srv: Path
    work: Path

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    """`running_server` on tmp/srv (data.bin, kib.bin, my file.txt, sub/deep.bin); tmp/work."""
    srv, work = tmp_path / "srv", tmp_path / "work"
    (srv / "sub").mkdir(parents=True)
    work.mkdir()
    (srv / "data.bin").write_bytes(DATA)
    (srv / "kib.bin").write_bytes(KIB)
    (srv / "my file.txt").write_bytes(b"spaces in the name\n")
    (srv / "sub" / "deep.bin").write_bytes(b"deep" * 10)
    async with running_server(srv) as base:
        yield Site(base, srv, work)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- a tiny app for what the file server does not do: redirects, echoing headers, chunking ------

MAX_HOPS = 50


async def _hop(request: web.Request) -> web.StreamResponse:
    """/hop/{n}: n more 302s before a body; /hop/0 is the body b"landed"."""
    n = int(request.match_info["n"])
    if n <= 0 or n > MAX_HOPS:
        return web.Response(body=b"landed")
    raise web.HTTPFound(f"/hop/{n - 1}")


async def _loop(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/loop")


async def _echo_header(request: web.Request) -> web.StreamResponse:
    """The body is the value of the X-Canary request header (or "<none>")."""
    return web.Response(body=request.headers.get("X-Canary", "<none>").encode())


async def _chunked(request: web.Request) -> web.StreamResponse:
    """/chunked/{n}: n bytes, chunked, so no Content-Length announces the size."""
    n = int(request.match_info["n"])
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    sent = 0
    while sent < n:
        piece = min(4096, n - sent)
        await resp.write(b"c" * piece)
        sent += piece
    await resp.write_eof()
    return resp


@pytest.fixture
async def tiny(aiohttp_server: AiohttpServer) -> TestServer:
    app = web.Application()
    app.router.add_get("/hop/{n}", _hop)
    app.router.add_get("/loop", _loop)
    app.router.add_get("/echo-header", _echo_header)
    app.router.add_get("/chunked/{n}", _chunked)
    return await aiohttp_server(app, host="127.0.0.1")


# --- success -----------------------------------------------------------------------------------


async def test_success_writes_exact_bytes_and_exits_0(site: Site) -> None:
    """A download exits 0, writes exactly the served bytes to -o PATH and leaves no .part."""
    out = site.work / "out.bin"
    run = await streamer("get", site.url("data.bin"), "-o", str(out), "--no-progress")
    assert run.rc == 0, run
    assert out.read_bytes() == DATA
    assert listing(site.work) == ["out.bin"]
    assert run.out == ""
    assert "Traceback" not in run.err


async def test_name_from_url_in_cwd(site: Site) -> None:
    """Without -o or -d the file is named after the URL's last segment, in the cwd (no query)."""
    run = await streamer("get", site.url("sub/deep.bin?x=1&y=2"), "--no-progress", cwd=site.work)
    assert run.rc == 0, run
    assert listing(site.work) == ["deep.bin"]
    assert (site.work / "deep.bin").read_bytes() == b"deep" * 10


async def test_name_from_url_is_percent_decoded(site: Site) -> None:
    """The name taken from the URL is percent-decoded: my%20file.txt saves as "my file.txt"."""
    run = await streamer("get", site.url("my%20file.txt"), "--no-progress", cwd=site.work)
    assert run.rc == 0, run
    assert listing(site.work) == ["my file.txt"]


async def test_name_for_url_ending_in_slash_is_index_html(site: Site) -> None:
    """A URL ending in "/" has no last segment, so the file is index.html (like wget)."""
    run = await streamer("get", site.base, "--no-progress", cwd=site.work)
    assert run.rc == 0, run
    assert listing(site.work) == ["index.html"]
    assert "data.bin" in (site.work / "index.html").read_text()


async def test_output_dir_uses_name_from_url(site: Site, tmp_path: Path) -> None:
    """-d DIR writes DIR/<last segment of the URL>, not into the cwd."""
    dest = tmp_path / "dest"
    dest.mkdir()
    run = await streamer("get", site.url("data.bin"), "-d", str(dest), "-q", cwd=site.work)
    assert run.rc == 0, run
    assert (dest / "data.bin").read_bytes() == DATA
    assert listing(site.work) == []


async def test_output_and_output_dir_are_exclusive(site: Site) -> None:
    """-o and -d together are a usage error (exit 2) and nothing is downloaded."""
    run = await streamer(
        "get", site.url("data.bin"), "-o", "x", "-d", str(site.work), cwd=site.work
    )
    assert run.rc == 2, run
    assert "Traceback" not in run.err
    assert listing(site.work) == []


# --- exit codes --------------------------------------------------------------------------------


async def test_404_exits_22_and_writes_nothing(site: Site) -> None:
    """HTTP 404 exits 22 with one stderr line naming URL and status; no file, no .part."""
    url = site.url("missing.bin")
    run = await streamer("get", url, "--no-progress", cwd=site.work)
    assert_one_error_line(run, 22, url, "404")
    assert listing(site.work) == []
    assert run.out == ""


async def test_404_with_output_keeps_existing_target(site: Site) -> None:
    """A failed download never touches an existing -o target."""
    out = site.work / "keep.bin"
    out.write_bytes(b"previous")
    run = await streamer("get", site.url("missing.bin"), "-o", str(out), "-q")
    assert run.rc == 22, run
    assert out.read_bytes() == b"previous"
    assert listing(site.work) == ["keep.bin"]


async def test_unresolvable_host_exits_6_naming_it(tmp_path: Path) -> None:
    """A host under .invalid (RFC 6761: never resolves) exits 6, naming the host."""
    url = "http://streamer-test.invalid/file.bin"
    run = await streamer("get", url, "--no-progress", cwd=tmp_path)
    assert_one_error_line(run, 6, url, "streamer-test.invalid")
    assert listing(tmp_path) == []


async def test_connection_refused_exits_7(tmp_path: Path) -> None:
    """A closed port on 127.0.0.1 exits 7 with "connection refused"; no file, no .part."""
    url = f"http://127.0.0.1:{closed_port()}/file.bin"
    run = await streamer("get", url, "--no-progress", cwd=tmp_path)
    assert_one_error_line(run, 7, url, "connection refused")
    assert listing(tmp_path) == []


async def test_target_is_directory_exits_23(site: Site) -> None:
    """-o naming an existing directory exits 23 naming the path; the directory is untouched."""
    target = site.work / "adir"
    target.mkdir()
    run = await streamer("get", site.url("data.bin"), "-o", str(target), "--no-progress")
    assert_one_error_line(run, 23, site.url("data.bin"), str(target), "directory")
    assert listing(site.work) == ["adir"]
    assert listing(target) == []


async def test_missing_parent_directory_exits_23(site: Site) -> None:
    """-o inside a directory that does not exist exits 23 naming it, creating nothing."""
    target = site.work / "nope" / "out.bin"
    run = await streamer("get", site.url("data.bin"), "-o", str(target), "--no-progress")
    assert_one_error_line(run, 23, site.url("data.bin"), str(target.parent))
    assert listing(site.work) == []


@pytest.mark.parametrize(
    ("limit", "rc"),
    [
        ("1024", 0),  # exactly the body size is allowed
        ("1K", 0),  # K is binary: 1024
        ("1KiB", 0),
        ("1023", 63),
        ("1KB", 63),  # KB is decimal: 1000
        ("0.5K", 63),
    ],
)
async def test_max_filesize_boundary_and_suffixes(site: Site, limit: str, rc: int) -> None:
    """--max-filesize allows a body of exactly the limit and exits 63 above it (K=1024, KB=1000)."""
    out = site.work / "kib.bin"
    run = await streamer("get", site.url("kib.bin"), "-o", str(out), "--max-filesize", limit)
    assert "Traceback" not in run.err
    if rc == 0:
        assert run.rc == 0, run
        assert out.read_bytes() == KIB
    else:
        assert_one_error_line(run, 63, site.url("kib.bin"), "limit")
        assert listing(site.work) == []


async def test_max_filesize_without_content_length_exits_63(
    tiny: TestServer, tmp_path: Path
) -> None:
    """A chunked body (no declared length) over --max-filesize also exits 63, leaving nothing."""
    url = str(tiny.make_url("/chunked/300000"))
    run = await streamer("get", url, "-o", "c.bin", "--max-filesize", "100K", cwd=tmp_path)
    assert_one_error_line(run, 63, url)
    assert listing(tmp_path) == []
    ok = await streamer("get", url, "-o", "c.bin", "--max-filesize", "300000", cwd=tmp_path)
    assert ok.rc == 0, ok
    assert (tmp_path / "c.bin").read_bytes() == b"c" * 300000


async def test_checksum_match_and_mismatch(site: Site) -> None:
    """--checksum: the right digest saves the file; a wrong one exits 80 and leaves nothing."""
    url = site.url("data.bin")
    good = hashlib.sha256(DATA).hexdigest()
    bad = hashlib.sha256(DATA + b"x").hexdigest()
    run = await streamer("get", url, "-o", "a.bin", "--checksum", f"sha256:{bad}", cwd=site.work)
    assert_one_error_line(run, 80, url, "mismatch")
    assert listing(site.work) == []
    run = await streamer("get", url, "-o", "a.bin", "--checksum", f"sha256:{good}", cwd=site.work)
    assert run.rc == 0, run
    assert (site.work / "a.bin").read_bytes() == DATA


async def test_no_clobber_existing_file_exits_73_untouched(site: Site) -> None:
    """--no-clobber with an existing target exits 73; the file keeps its bytes and mtime."""
    out = site.work / "data.bin"
    out.write_bytes(b"mine")
    os.utime(out, (1_000_000_000, 1_000_000_000))
    run = await streamer("get", site.url("data.bin"), "--no-clobber", cwd=site.work)
    assert_one_error_line(run, 73, site.url("data.bin"), "exists")
    assert out.read_bytes() == b"mine"
    assert out.stat().st_mtime == 1_000_000_000
    assert listing(site.work) == ["data.bin"]


async def test_no_clobber_without_existing_file_downloads(site: Site) -> None:
    """--no-clobber is no obstacle when the target does not exist yet."""
    run = await streamer("get", site.url("data.bin"), "--no-clobber", "-q", cwd=site.work)
    assert run.rc == 0, run
    assert (site.work / "data.bin").read_bytes() == DATA
    assert listing(site.work) == ["data.bin"]


async def test_redirects_followed_up_to_max_redirs(tiny: TestServer, tmp_path: Path) -> None:
    """--max-redirs N follows a chain of exactly N redirects; N+1 exits 47 and writes nothing."""
    ok = await streamer(
        "get", str(tiny.make_url("/hop/3")), "-o", "x", "--max-redirs", "3", cwd=tmp_path
    )
    assert ok.rc == 0, ok
    assert (tmp_path / "x").read_bytes() == b"landed"
    (tmp_path / "x").unlink()
    url = str(tiny.make_url("/hop/4"))
    run = await streamer("get", url, "-o", "x", "--max-redirs", "3", cwd=tmp_path)
    assert_one_error_line(run, 47, f"127.0.0.1:{tiny.port}/hop/", "too many redirects")
    assert listing(tmp_path) == []


async def test_redirect_failure_names_requested_url(tiny: TestServer, tmp_path: Path) -> None:
    """A redirect failure names the URL the user asked for, on stderr and in --json's url."""
    url = str(tiny.make_url("/hop/4"))
    run = await streamer("get", url, "--json", "--max-redirs", "3", cwd=tmp_path)
    assert_one_error_line(run, 47, url)
    assert json.loads(run.out)["url"] == url


async def test_redirect_loop_exits_47(tiny: TestServer, tmp_path: Path) -> None:
    """A redirect loop ends with exit 47 under the default limit, not a hang."""
    url = str(tiny.make_url("/loop"))
    run = await streamer("get", url, "--no-progress", cwd=tmp_path)
    assert_one_error_line(run, 47, url)
    assert listing(tmp_path) == []


# --- usage errors ------------------------------------------------------------------------------

USAGE_CASES = {
    "bad-option": ["--no-such-option"],
    "bad-max-filesize": ["--max-filesize", "12 parsecs"],
    "negative-max-filesize": ["--max-filesize=-5"],
    "bad-header": ["-H", "no colon here"],
    "bad-max-redirs": ["--max-redirs", "-1"],
}


@pytest.mark.parametrize("extra", list(USAGE_CASES.values()), ids=list(USAGE_CASES))
async def test_usage_errors_exit_2_without_traceback(site: Site, extra: list[str]) -> None:
    """Bad options or option values exit 2, print no traceback, and download nothing."""
    run = await streamer("get", site.url("data.bin"), *extra, cwd=site.work)
    assert run.rc == 2, run
    assert "Traceback" not in run.err
    assert run.err.strip(), "a usage error must say what is wrong"
    assert listing(site.work) == []


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--checksum", "sha256:zz"], "zz"),
        (["--checksum", "crc99:00"], "crc99"),
        (["-H", "no colon here"], "bad header starting 'no'"),  # the rest may be a secret
    ],
    ids=["checksum-format", "checksum-algo", "header"],
)
async def test_value_errors_print_one_line_naming_url(
    site: Site, extra: list[str], fragment: str
) -> None:
    """A bad --checksum or -H value is one stderr line naming the URL and the bad value (of a
    header line, only its first word)."""
    run = await streamer("get", site.url("data.bin"), *extra, cwd=site.work)
    assert listing(site.work) == []
    assert_one_error_line(run, 2, site.url("data.bin"), fragment)


@pytest.mark.parametrize(
    "extra", [["--no-such-option"], ["--max-filesize", "12 parsecs"]], ids=["option", "size"]
)
async def test_parse_errors_print_one_line(site: Site, extra: list[str]) -> None:
    """An unknown option or a bad --max-filesize prints exactly one stderr line with the URL."""
    run = await streamer("get", site.url("data.bin"), *extra, cwd=site.work)
    assert_one_error_line(run, 2, site.url("data.bin"))


async def test_non_http_url_is_usage_error(tmp_path: Path) -> None:
    """A URL that is not http(s) exits 2 with one line naming it; nothing is written."""
    run = await streamer("get", "ftp://127.0.0.1/x.bin", cwd=tmp_path)
    assert_one_error_line(run, 2, "ftp://127.0.0.1/x.bin")
    assert listing(tmp_path) == []


# --- output modes ------------------------------------------------------------------------------


async def test_json_success_object(site: Site) -> None:
    """--json prints one JSON object on stdout: url, path, size, status, result "success"."""
    url = site.url("data.bin")
    run = await streamer("get", url, "--json", "-o", "j.bin", cwd=site.work)
    assert run.rc == 0, run
    lines = run.out.splitlines()
    assert len(lines) == 1, run.out
    obj = json.loads(lines[0])
    assert obj["url"] == url
    assert obj["path"] == "j.bin"
    assert obj["size"] == len(DATA)
    assert obj["status"] == 200
    assert obj["result"] == "success"
    assert "%|" not in run.err  # --json implies no bar


async def test_json_failure_object(site: Site) -> None:
    """--json on failure prints one JSON object: result, exit_code and error, exit code kept."""
    url = site.url("missing.bin")
    run = await streamer("get", url, "--json", cwd=site.work)
    assert run.rc == 22, run
    lines = run.out.splitlines()
    assert len(lines) == 1, run.out
    obj = json.loads(lines[0])
    assert obj["result"] == "http_error"
    assert obj["exit_code"] == 22
    assert url in obj["error"]
    assert "404" in obj["error"]
    assert obj["url"] == url


async def test_json_failure_on_connect_error(tmp_path: Path) -> None:
    """--json reports a connect failure as a JSON object too (result cant_connect, exit 7)."""
    url = f"http://127.0.0.1:{closed_port()}/x"
    run = await streamer("get", url, "--json", cwd=tmp_path)
    assert run.rc == 7, run
    obj = json.loads(run.out)
    assert (obj["result"], obj["exit_code"]) == ("cant_connect", 7)


async def test_header_option_reaches_server(tiny: TestServer, tmp_path: Path) -> None:
    """-H 'Name: value' is sent to the server (the echo handler writes it into the file)."""
    url = str(tiny.make_url("/echo-header"))
    run = await streamer("get", url, "-H", "X-Canary: tweet 42", "-o", "h", "-q", cwd=tmp_path)
    assert run.rc == 0, run
    assert (tmp_path / "h").read_bytes() == b"tweet 42"


async def test_quiet_prints_nothing_on_success(site: Site) -> None:
    """-q: a successful download prints nothing at all, on stdout or stderr."""
    run = await streamer("get", site.url("data.bin"), "-q", cwd=site.work)
    assert run.rc == 0, run
    assert (run.out, run.err) == ("", "")
    assert (site.work / "data.bin").read_bytes() == DATA


async def test_quiet_still_reports_errors(site: Site) -> None:
    """-q silences success, not failure: a 404 still prints its one line."""
    run = await streamer("get", site.url("missing.bin"), "-q", cwd=site.work)
    assert_one_error_line(run, 22, site.url("missing.bin"))


async def test_progress_flag_draws_bar_without_tty(site: Site) -> None:
    """--progress draws the bar on stderr even though stderr is a pipe, reaching 100%."""
    run = await streamer("get", site.url("data.bin"), "--progress", cwd=site.work)
    assert run.rc == 0, run
    assert "100%" in run.err
    assert "data.bin" in run.err
    assert run.out == ""


async def test_no_progress_and_default_pipe_draw_no_bar(site: Site) -> None:
    """--no-progress, and the default when stderr is not a tty: only the one summary line."""
    for flags in (["--no-progress"], []):
        run = await streamer("get", site.url("data.bin"), *flags, "-o", "p.bin", cwd=site.work)
        assert run.rc == 0, run
        assert "%|" not in run.err
        assert len(run.err_lines) == 1, run.err
        assert run.err_lines[0].startswith("saved ")


# --- secrets -----------------------------------------------------------------------------------

SECRET = "s3cr3tcanary"
SECRET2 = "s3cr3tcanary2"


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["text", "json"])
async def test_secrets_never_printed(site: Site, json_flag: list[str]) -> None:
    """A URL password and a ?token= value appear in no output, on failure or on success."""
    host = site.base.removeprefix("http://")
    for path, rc in (("missing.bin", 22), ("data.bin", 0)):
        url = f"http://user:{SECRET}@{host}{path}?token={SECRET2}"
        run = await streamer("get", url, "--progress", "-o", "s.bin", *json_flag, cwd=site.work)
        assert run.rc == rc, run
        assert "canary" not in run.out + run.err, run
        if rc:
            assert "user:***@" in run.err
    assert (site.work / "s.bin").read_bytes() == DATA


# --- streamer serve ----------------------------------------------------------------------------


async def _read_ready_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stderr is not None
    line = await asyncio.wait_for(proc.stderr.readline(), RUN_TIMEOUT)
    return line.decode()


async def test_serve_subprocess_serves_files_for_get(tmp_path: Path) -> None:
    """`serve DIR --port 0` announces its URL, `get` downloads from it, SIGINT exits 130."""
    srv, work = tmp_path / "srv", tmp_path / "work"
    srv.mkdir()
    work.mkdir()
    (srv / "data.bin").write_bytes(DATA)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer",
        "serve",
        str(srv),
        "--port",
        "0",
        env=ENV,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        ready = await _read_ready_line(proc)
        assert ready.startswith("serving "), ready
        base = ready.split(" at ", 1)[1].strip()
        assert base.startswith("http://127.0.0.1:") and base.endswith("/"), base
        assert not base.endswith(":0/")
        run = await streamer("get", base + "data.bin", "-q", cwd=work)
        assert run.rc == 0, run
        assert (work / "data.bin").read_bytes() == DATA
        proc.send_signal(signal.SIGINT)
        _out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
        assert proc.returncode == 130, err
        assert b"Traceback" not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_serve_refuses_non_loopback_host(tmp_path: Path) -> None:
    """`streamer serve --host 0.0.0.0` without --allow-remote exits 2 with one line."""
    run = await streamer("serve", str(tmp_path), "--host", "0.0.0.0", "--port", "0")
    assert_one_error_line(run, 2, "0.0.0.0")


async def test_serve_missing_directory_exits_2(tmp_path: Path) -> None:
    """`streamer serve` of a directory that does not exist exits 2 naming it."""
    missing = tmp_path / "nope"
    run = await streamer("serve", str(missing), "--port", "0")
    assert_one_error_line(run, 2, str(missing))


def test_a_command_with_standard_output_closed_ends_cleanly() -> None:
    """`python -m streamer` leaves without the interpreter's teardown once main returned; a
    standard stream closed before the start (None in `sys`) is skipped, not a traceback."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "streamer", "--version"],
        env=ENV,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: os.close(1),  # the child starts with fd 1 closed
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
