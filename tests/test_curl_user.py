"""curl's -u/--user, -A/--user-agent, -e/--referer and --location-trusted, on every path.

Seen as the exact request heads a raw server records (tests/recorder.py): a single download
(raw fast path and engine), ``--split``, ``-i`` with and without worker processes, ``put``
(raw and from stdin), ``post -F`` and ``put --tus``. -u's credentials (RFC 7617) are dropped
on a redirect to another origin (RFC 9110 15.4) unless ``--location-trusted``; the password
is never printed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ENV, streamer
from tests.recorder import SMALL, recorder
from tests.test_header_edits import LEAST, PATHS

PASSWORD = "CANARY-pw-7f3a"
BASIC = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
SUGAR = ["-u", f"alice:{PASSWORD}", "-A", "probe/1.0", "-e", "http://127.0.0.1/from"]


def _leaks(text: str) -> bool:
    return PASSWORD in text or BASIC.split()[1] in text


@pytest.mark.parametrize("path", PATHS)
async def test_user_agent_and_referer_on_every_request_path(path: str, tmp_path: Path) -> None:
    """-u sends Basic credentials (RFC 7617), -A replaces the User-Agent and -e sends a
    Referer, on every request of every path, each field once."""
    async with recorder() as rec:
        run = await PATHS[path](rec, tmp_path, SUGAR)
    assert run.rc == 0, run
    assert len(rec.heads) >= LEAST.get(path, 1), rec.heads
    for fields in rec.fields():
        names = [n for n, _ in fields]
        assert [v for n, v in fields if n == "authorization"] == [BASIC], fields
        assert [v for n, v in fields if n == "user-agent"] == ["probe/1.0"], fields
        assert [v for n, v in fields if n == "referer"] == ["http://127.0.0.1/from"], fields
        assert names.count("host") == 1, fields
    assert not _leaks(run.out + run.err)


@pytest.mark.parametrize("path", ["get", "get-i", "put"])
async def test_a_later_header_line_wins_and_empty_agent_removes_it(
    path: str, tmp_path: Path
) -> None:
    """-H after -u/-e about the same name wins (curl's order), -H 'Authorization:' drops
    -u's header as it drops URL credentials, and -A '' sends no User-Agent at all."""
    edits = [*SUGAR, "-A", "", "-H", "Referer: http://127.0.0.1/h", "-H", "Authorization:"]
    async with recorder() as rec:
        run = await PATHS[path](rec, tmp_path, edits)
    assert run.rc == 0, run
    assert len(rec.heads) >= LEAST.get(path, 1)
    for fields in rec.fields():
        names = [n for n, _ in fields]
        assert "authorization" not in names and "user-agent" not in names, fields
        assert [v for n, v in fields if n == "referer"] == ["http://127.0.0.1/h"], fields


async def _redirected(
    cmd: list[str], trusted: bool, tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[list[str], int]:
    """Run `cmd` (with {src}, {url}, {out} filled in) against a 307 to another origin; the
    Authorization values the second origin received, and the exit code."""
    (tmp_path / "src").write_bytes(SMALL)
    async with recorder() as first, recorder() as second:
        first.away = second.url  # another port of 127.0.0.1: another origin (RFC 6454 4)
        fill = {"src": str(tmp_path / "src"), "url": first.url, "out": str(tmp_path / "o")}
        argv = [a.format(**fill) for a in cmd]
        extra = ["--location-trusted"] if trusted else []
        run = await streamer(*argv, "-u", f"alice:{PASSWORD}", *extra, env=env)
    assert len(first.heads) >= 1 and dict(first.fields()[0])["authorization"] == BASIC
    assert not _leaks(run.out + run.err)
    return [dict(f).get("authorization", "") for f in second.fields()], run.rc


@pytest.mark.parametrize("trusted", [False, True], ids=["default", "location-trusted"])
@pytest.mark.parametrize("fast", ["1", "0"], ids=["raw", "engine"])
async def test_get_drops_user_credentials_on_another_origin(
    trusted: bool, fast: str, tmp_path: Path
) -> None:
    """A download redirected to another origin sends -u's credentials there only with
    --location-trusted (RFC 9110 15.4, curl), on the raw path's switch and the engine."""
    env = {"STREAMER_FAST_BODY": fast}
    cmd = ["get", "{url}/away/big", "-o", "{out}", "--clobber"]
    sent, rc = await _redirected(cmd, trusted, tmp_path, env)
    assert rc == 0
    assert sent == ([BASIC] if trusted else [""])


@pytest.mark.parametrize("trusted", [False, True], ids=["default", "location-trusted"])
async def test_raw_download_path_keeps_a_cookie_only_when_trusted(
    trusted: bool, tmp_path: Path
) -> None:
    """The raw fast path (a download without credentials of its own) follows a redirect to
    another origin itself; a -H Cookie goes along only with --location-trusted."""
    async with recorder() as first, recorder() as second:
        first.away = second.url
        extra = ["--location-trusted"] if trusted else []
        out = str(tmp_path / "o")
        run = await streamer("get", f"{first.url}/away/big", "-o", out, "-H", "Cookie: c=1", *extra)
    assert run.rc == 0, run
    assert [dict(f).get("cookie") for f in second.fields()] == ["c=1" if trusted else None]


async def test_bulk_drops_user_credentials_on_another_origin(tmp_path: Path) -> None:
    """A -i job redirected to another origin keeps -u's credentials only when trusted."""
    for trusted in (False, True):
        manifest, out = tmp_path / f"m{trusted}.txt", tmp_path / f"d{trusted}"
        out.mkdir()
        async with recorder() as first, recorder() as second:
            first.away = second.url
            manifest.write_text(f"{first.url}/away/small\n")
            extra = ["--location-trusted"] if trusted else []
            run = await streamer(
                "get", "-i", str(manifest), "-d", str(out), "-u", f"alice:{PASSWORD}", *extra
            )
        assert run.rc == 0, run
        sent = [dict(f).get("authorization", "") for f in second.fields()]
        assert sent == ([BASIC] if trusted else [""]), (trusted, sent)


@pytest.mark.parametrize("command", ["put", "post"])
async def test_upload_follows_another_origin_with_credentials_only_when_trusted(
    command: str, tmp_path: Path
) -> None:
    """An upload is not handed to another origin without --location-trusted (exit 2x, the
    second origin sees nothing); with it the body and -u's credentials both go there."""
    cmd = (
        ["put", "{src}", "{url}/away/up"]
        if command == "put"
        else ["post", "-F", "f=@{src}", "{url}/away/up"]
    )
    sent, rc = await _redirected(cmd, False, tmp_path)
    assert rc != 0 and sent == []
    sent, rc = await _redirected(cmd, True, tmp_path)
    assert rc == 0 and sent == [BASIC]


async def test_user_without_password_and_no_terminal_is_a_usage_error(tmp_path: Path) -> None:
    """-u USER asks for the password on a terminal; with stdin not one, exit 2 before any
    request (streamer's tests run with stdin from /dev/null)."""
    async with recorder() as rec:
        run = await streamer("get", f"{rec.url}/big", "-o", str(tmp_path / "o"), "-u", "alice")
    assert run.rc == 2, run
    assert "-u" in run.err and "terminal" in run.err and len(run.err_lines) == 1
    assert rec.heads == []


async def test_password_is_never_printed_on_failure_or_in_json(tmp_path: Path) -> None:
    """Neither the password nor its base64 appears in the output of a 401, a refused
    connection, a --json summary of a success or of a bulk run, nor in its journal."""
    async with recorder() as rec:
        runs = [
            await streamer("get", f"{rec.url}/deny", "-o", str(tmp_path / "o"), *SUGAR),
            await streamer("get", f"{rec.url}/deny", "-o", str(tmp_path / "o"), "--json", *SUGAR),
            await streamer("get", f"{rec.url}/small", "-o", str(tmp_path / "s"), "--json", *SUGAR),
        ]
        (tmp_path / "src").write_bytes(SMALL)
        runs.append(await streamer("put", str(tmp_path / "src"), f"{rec.url}/deny", *SUGAR))
        (tmp_path / "m.txt").write_text(f"{rec.url}/small\n{rec.url}/deny\n")
        bulk = ["get", "-i", str(tmp_path / "m.txt"), "-d", str(tmp_path), "--json"]
        runs.append(await streamer(*bulk, "--journal", str(tmp_path / "j.jsonl"), *SUGAR))
    closed = rec.url  # the recorder is gone: its port refuses connections now
    runs.append(await streamer("get", f"{closed}/big", "-o", str(tmp_path / "o"), *SUGAR))
    assert [r.rc for r in runs] == [22, 22, 0, 22, 22, 7], runs
    journal = (tmp_path / "j.jsonl").read_text()
    assert "/small" in journal and not _leaks(journal)
    assert json.loads(runs[2].out)["result"] == "success"
    for run in runs:
        assert not _leaks(run.out + run.err), run


@pytest.mark.parametrize(
    "argv",
    [
        ["put", "{src}", "s3://bucket/key"],
        ["get", "s3://bucket/key", "-o", "{out}"],
        ["get", "-i", "{src}", "--dask", "tcp://127.0.0.1:9"],
    ],
    ids=["s3-put", "s3-get", "dask"],
)
async def test_user_is_refused_where_it_cannot_travel_safely(
    argv: list[str], tmp_path: Path
) -> None:
    """S3 requests are signed (a Basic header has no place there) and a Dask run would put
    the password in the task graph: -u is refused there with exit 2, saying why."""
    (tmp_path / "src").write_text("http://127.0.0.1:9/x\n")
    fill = {"src": str(tmp_path / "src"), "out": str(tmp_path / "o")}
    env = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    run = await streamer(*[a.format(**fill) for a in argv], "-u", f"a:{PASSWORD}", env=env)
    assert run.rc == 2, run
    assert "-u" in run.err and len(run.err_lines) == 1, run.err
    assert not _leaks(run.out + run.err)


# Make stdin (the pty) the controlling terminal, then become `python -m streamer ARGV`.
_TTY_THEN_STREAMER = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, '-m', 'streamer', *sys.argv[1:]])"
)


def _on_terminal(argv: list[str], password: str) -> tuple[int, bytes, str]:
    """Run ``streamer ARGV`` with a pseudo-terminal as its stdin and controlling terminal;
    type `password` once the prompt shows. Returns (exit code, what the terminal showed,
    stdout and stderr)."""
    master, slave = os.openpty()

    proc = subprocess.Popen(
        [sys.executable, "-c", _TTY_THEN_STREAMER, *argv],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=ENV,
        start_new_session=True,  # a session leader without a terminal: it may take the pty
    )
    os.close(slave)
    shown = b""
    try:
        deadline = time.monotonic() + 30
        while b"password" not in shown and time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                shown += os.read(master, 4096)
        os.write(master, password.encode() + b"\n")
        out, _ = proc.communicate(timeout=60)
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed its side
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return proc.returncode, shown, out.decode()


@pytest.mark.parametrize("path", ["get", "get-i-processes"])
async def test_user_without_password_asks_on_the_terminal(path: str, tmp_path: Path) -> None:
    """-u USER asks for the password on the terminal (getpass: not echoed); what is typed
    goes out as Basic credentials, also from forked --processes workers, whose command line
    is the parent's (no password on it)."""
    async with recorder() as rec:
        out = tmp_path / "out"
        out.mkdir()
        if path == "get":
            argv = ["get", f"{rec.url}/big", "-o", str(out / "big"), "-q"]
        else:
            lines = [f"{rec.url}/small{i}" for i in range(4)]
            (tmp_path / "m.txt").write_text("\n".join(lines) + "\n")
            argv = ["get", "-i", str(tmp_path / "m.txt"), "-d", str(out), "--processes", "2"]
        loop = asyncio.get_running_loop()
        rc, shown, output = await loop.run_in_executor(
            None, _on_terminal, [*argv, "-u", "alice", "-q"], PASSWORD
        )
    assert rc == 0, (shown, output)
    assert b"Enter host password for user 'alice'" in shown
    assert not _leaks(shown.decode(errors="replace") + output), shown
    sent = [dict(f).get("authorization") for f in rec.fields()]
    assert len(sent) >= LEAST.get(path, 1) and set(sent) == {BASIC}, sent
