"""README's curl-parity table, kept true: each row runs curl and streamer on the same inputs
against the same local server and compares what a user gets (exit code, stdout, the files
written, what the server received). The rows of the table and the cases here must match.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests.curl_peer import FORMS, PUTS, make_app, sign
from tests.helpers import ENV, RUN_TIMEOUT, app_servers, closed_port
from tests.test_curl_upload import GunicornLike

README = Path(__file__).resolve().parent.parent / "README.md"
CURL = shutil.which("curl") or "/usr/bin/curl"
QUERY = "sig=a%2Bb%2Fc%3D&next=%2Fx%3Fy&t=%7E%41"
WRITE_OUT = "%{http_code} %{size_download} %{url_effective} %{exitcode}\\n"


def _recent(path: Path) -> None:
    path.write_bytes(b"mine\n")
    os.utime(path, (1_640_995_200, 1_640_995_200))  # 2022: after the resource's 2020


def _named(path: Path) -> None:
    (path.parent / "my file.txt").write_bytes(b"hello\n")


def _form_files(path: Path) -> None:
    (path.parent / "x.txt").write_bytes(b"text\n")
    (path.parent / "r.bin").write_bytes(bytes(range(256)))


def _sparse(path: Path) -> None:
    with (path.parent / "big").open("wb") as f:
        f.truncate(32 << 20)


@dataclass(frozen=True)
class Case:
    """One row: curl's arguments, streamer's, and what is set up in each one's directory."""

    curl: list[str]
    streamer: list[str]
    setup: Callable[[Path], None] | None = None  # called with DIR/out
    stdin: bytes | None = None
    stderr: bool = False  # compare whether stderr is empty, and its line count
    close_early: bool = False  # read 10 bytes of stdout, then close it
    curl_racy: tuple[int, ...] = ()  # other exit codes curl gives in some runs (not streamer)


FORM = ["a=1", "f=@x.txt;type=text/x", "t=<x.txt", "g=@r.bin;encoder=base64", 'v="q;v"']

CASES: dict[str, Case] = {
    "-o FILE": Case(["-o", "out", "{u}/ok"], ["get", "{u}/ok", "-o", "out"]),
    "-o -": Case(["-o", "-", "{u}/big/300000"], ["get", "{u}/big/300000", "-o", "-", "-q"]),
    "-o - closed early": Case(
        ["-o", "-", "{u}/big/67108864"], ["get", "{u}/big/67108864", "-o", "-"], close_early=True
    ),
    "-f on 404": Case(["-f", "-o", "out", "{u}/s/404"], ["get", "{u}/s/404", "-o", "out"]),
    "-L 301": Case(["-L", "-o", "out", "{u}/s/301/loc"], ["get", "{u}/s/301/loc", "-o", "out"]),
    "-L 300 + Location": Case(
        ["-L", "-o", "out", "{u}/s/300/loc"], ["get", "{u}/s/300/loc", "-o", "out"]
    ),
    "-L 300 without Location": Case(
        ["-fL", "-o", "out", "{u}/s/300"], ["get", "{u}/s/300", "-o", "out"]
    ),
    "304 to a plain GET": Case(["-f", "-o", "out", "{u}/nm"], ["get", "{u}/nm", "-o", "out"]),
    "-J": Case(["-f", "-J", "-O", "{u}/cd"], ["get", "{u}/cd", "-J", "-d", "."]),
    "-J -o x.pdf": Case(["-J", "-o", "x.pdf", "{u}/cd"], ["get", "{u}/cd", "-J", "-o", "x.pdf"]),
    "-z FILE": Case(
        ["-z", "out", "-o", "out", "{u}/dated"],
        ["get", "{u}/dated", "-z", "out", "-o", "out"],
        setup=_recent,
    ),
    "-w": Case(
        ["-s", "-o", "out", "-w", WRITE_OUT, "{u}/ok"],
        ["get", "{u}/ok", "-s", "-o", "out", "-w", WRITE_OUT],
    ),
    "-s on an error": Case(
        ["-sf", "-o", "out", "{u}/s/404"], ["get", "{u}/s/404", "-s", "-o", "out"], stderr=True
    ),
    "-sS on an error": Case(
        ["-sSf", "-o", "out", "{u}/s/404"], ["get", "{u}/s/404", "-sS", "-o", "out"], stderr=True
    ),
    "-C -": Case(["-C", "-", "-o", "out", "{u}/ok"], ["get", "{u}/ok", "-C", "-", "-o", "out"]),
    "--create-dirs": Case(
        ["--create-dirs", "-o", "a/b/out", "{u}/ok"],
        ["get", "{u}/ok", "--create-dirs", "-o", "a/b/out"],
    ),
    "missing directory": Case(["-o", "a/b/out", "{u}/ok"], ["get", "{u}/ok", "-o", "a/b/out"]),
    "--limit-rate": Case(
        ["--limit-rate", "4M", "-o", "out", "{u}/big/200000"],
        ["get", "{u}/big/200000", "--limit-rate", "4M", "-o", "out"],
    ),
    "--compressed br": Case(
        ["--compressed", "-o", "out", "{u}/enc/br?echo=0"],
        ["get", "{u}/enc/br?echo=0", "--compressed", "-o", "out"],
    ),
    "--max-filesize": Case(
        ["--max-filesize", "2", "-o", "out", "{u}/ok"],
        ["get", "{u}/ok", "--max-filesize", "2", "-o", "out"],
    ),
    "signed query": Case(
        ["-f", "-o", "out", f"{{u}}/signed/{sign(QUERY)}?{QUERY}"],
        ["get", f"{{u}}/signed/{sign(QUERY)}?{QUERY}", "-o", "out"],
    ),
    "refused connection": Case(
        ["-o", "out", "http://127.0.0.1:{closed}/"],
        ["get", "http://127.0.0.1:{closed}/", "-o", "out"],
    ),
    "-T FILE URL/": Case(
        ["-f", "-T", "my file.txt", "{u}/put/dir/"],
        ["put", "my file.txt", "{u}/put/dir/", "-q"],
        setup=_named,
    ),
    "-T - URL": Case(
        ["-f", "-T", "-", "{u}/put/x"], ["put", "-", "{u}/put/x", "-q"], stdin=b"from a pipe\n" * 99
    ),
    "-T FILE --limit-rate": Case(
        ["-f", "-T", "my file.txt", "--limit-rate", "4M", "{u}/put/x"],
        ["put", "my file.txt", "{u}/put/x", "--limit-rate", "4M", "-q"],
        setup=_named,
    ),
    "-F list": Case(
        ["-f", *[a for f in FORM for a in ("-F", f)], "{u}/form"],
        ["post", "{u}/form", *[a for f in FORM for a in ("-F", f)], "-q"],
        setup=_form_files,
    ),
    "early 413": Case(
        ["-f", "-T", "big", "{early}/u"],
        ["put", "big", "{early}/u", "-q"],
        setup=_sparse,
        curl_racy=(55, 56),  # curl too loses the race to the reset now and then
    ),
}


def readme_rows() -> list[str]:
    """The option column of README's curl-parity table, backquotes removed."""
    text = README.read_text(encoding="utf-8")
    table = text.split("<!-- curl-parity -->")[1].split("<!-- /curl-parity -->")[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    return [row.replace("`", "") for row in rows[2:]]  # after the header and its rule


def test_every_readme_row_has_a_case() -> None:
    """README's table and this module's cases list the same rows."""
    assert readme_rows() == list(CASES)


@dataclass
class Outcome:
    rc: int
    out: bytes
    err: bytes
    files: dict[str, bytes] = field(default_factory=dict)
    seen: list[Any] = field(default_factory=list)

    @property
    def err_lines(self) -> int:
        return len([line for line in self.err.splitlines() if line.strip()])


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _close_early(cmd: list[str], cwd: Path) -> tuple[int, bytes]:
    with subprocess.Popen(
        cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.read(10)
        proc.stdout.close()
        err = proc.stderr.read()
        return proc.wait(RUN_TIMEOUT), err


async def _run(cmd: list[str], cwd: Path, case: Case) -> Outcome:
    if case.close_early:
        rc, err = await asyncio.to_thread(_close_early, cmd, cwd)
        return Outcome(rc, b"", err)
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=cwd,
        env=ENV,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(case.stdin or b""), RUN_TIMEOUT)
    assert proc.returncode is not None
    return Outcome(proc.returncode, out, err)


@pytest.fixture
async def peer() -> AsyncIterator[TestServer]:
    async with app_servers() as serve:
        yield await serve(make_app())


@pytest.mark.parametrize("row", list(CASES))
async def test_row_holds(peer: TestServer, tmp_path: Path, row: str) -> None:
    """curl and streamer given the same inputs end the same way (see the README table)."""
    case = CASES[row]
    async with GunicornLike() as early:
        values = {
            "u": str(peer.make_url("")).rstrip("/"),
            "closed": str(closed_port()),
            "early": f"http://127.0.0.1:{early.port}",
        }
        outcomes = []
        streamer = [sys.executable, "-m", "streamer", *case.streamer]
        for name, argv in (("curl", [CURL, *case.curl]), ("streamer", streamer)):
            work = tmp_path / name
            work.mkdir()
            if case.setup is not None:
                case.setup(work / "out")
            cmd = [re.sub(r"\{(u|closed|early)\}", lambda m: values[m.group(1)], a) for a in argv]
            before = len(peer.app[PUTS]) + len(peer.app[FORMS])
            outcome = await _run(cmd, work, case)
            outcome.files = _tree(work)
            outcome.seen = [*peer.app[PUTS], *peer.app[FORMS]][before:]
            outcomes.append(outcome)
    curl, ours = outcomes
    if curl.rc in case.curl_racy:
        curl.rc = ours.rc
    assert (ours.rc, ours.out, ours.files, ours.seen) == (curl.rc, curl.out, curl.files, curl.seen)
    if case.stderr:
        assert (ours.err_lines, curl.err_lines) in ((0, 0), (1, 1)), (ours.err, curl.err)
