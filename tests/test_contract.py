"""One contract for every transfer path: each `get` option holds on every path or is refused.

The table is `streamer/cli/contract.py`. These tests walk the real parser, so an option added
without a row (or a mode without a decision) fails here; every refusal is run as a real process
(exit 2, naming the option and the mode, no request made); and the options that must hold
everywhere are checked on every path against a real server: one stream, `--split`, the bulk
lane (small files), the bulk engine (files the lane hands over) and worker processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from pytest_aiohttp import AiohttpServer

from streamer.cli import get as get_command
from streamer.cli.contract import CONTRACT, MODE_OPTIONS, Mode
from streamer.cli.main import build_parser
from streamer.storage.files import part_path
from streamer.storage.journal import JOURNAL_NAME
from streamer.transfer.fastopen import ENV_SWITCH
from tests.faults import data
from tests.helpers import Run, streamer

SMALL = data(16 * 1024)
BIG = data(5 * (1 << 20) + 4321, offset=7)
SEEN = web.AppKey("seen", list[web.Request])

# A value for each option that differs from its default (the refusal matrix runs them all).
SAMPLES: dict[str, list[str]] = {
    "output_dir": ["-d", "."],
    "max_filesize": ["--max-filesize", "1M"],
    "no_clobber": ["--no-clobber"],
    "no_resume": ["--no-resume"],
    "header": ["-H", "X-Probe: 1"],
    "user": ["-u", "probe:pw"],
    "user_agent": ["-A", "probe/1"],
    "referer": ["-e", "http://127.0.0.1/from"],
    "location_trusted": ["--location-trusted"],
    "connect_timeout": ["--connect-timeout", "5"],
    "max_time": ["--max-time", "50"],
    "read_timeout": ["--read-timeout", "5"],
    "speed_limit": ["--speed-limit", "1"],
    "speed_time": ["--speed-time", "5"],
    "max_redirs": ["--max-redirs", "3"],
    "proto_redir_downgrade": ["--proto-redir-downgrade"],
    "cacert": ["--cacert", "ca.pem"],
    "cert": ["--cert", "c.pem"],
    "key": ["--key", "k.pem"],
    "insecure": ["-k"],
    "proxy": ["-x", "http://127.0.0.1:9"],
    "noproxy_env": ["--noproxy-env"],
    "retry": ["--retry", "1"],
    "retry_delay": ["--retry-delay", "1"],
    "retry_max_time": ["--retry-max-time", "5"],
    "quiet": ["-q"],
    "no_progress": ["--no-progress"],
    "progress": ["--progress"],
    "json": ["--json"],
    "compressed": ["--compressed"],
    "checksum": ["--checksum", "sha256:" + "0" * 64],
    "output": ["-o", "x.bin"],
    "remote_header_name": ["-J"],
    "clobber": ["--clobber"],
    "wait_lock": ["--wait-lock", "3"],
    "endpoint_url": ["--endpoint-url", "http://127.0.0.1:9"],
    "region": ["--region", "eu-west-1"],
    "limit_rate": ["--limit-rate", "1M"],
    "jobs": ["-j", "3"],
    "max_per_host": ["--max-per-host", "3"],
    "pipeline": ["--pipeline", "2"],
    "processes": ["--processes", "2"],
    "dry_run": ["--dry-run"],
    "host_request_rate": ["--host-request-rate", "5"],
    "memory_budget": ["--memory-budget", "32M"],
    "journal": ["--journal", "j.jsonl"],
    "continue_at": ["-C", "-"],
    "create_dirs": ["--create-dirs"],
    "silent": ["-s"],
    "show_error": ["-S"],
    "fail": ["-f"],
    "write_out": ["-w", "%{http_code}"],
    "time_cond": ["-z", "Sun, 06 Nov 1994 08:49:37 GMT"],
    "dask": ["--dask", "tcp://127.0.0.1:9"],
    "shards": ["--shards", "2"],
}


def _get_options() -> set[str]:
    build_parser()  # fills the contract's view of the parser
    return set(get_command.GET_DEFAULTS)


def test_every_get_option_has_a_row_and_every_row_an_option() -> None:
    """Each option of `streamer get` is decided in the contract table, and no row is stale."""
    options = _get_options()
    undecided = options - set(CONTRACT) - MODE_OPTIONS
    assert not undecided, f"options without a contract row: {sorted(undecided)}"
    stale = set(CONTRACT) - options
    assert not stale, f"contract rows for options that do not exist: {sorted(stale)}"


def test_every_refusal_says_why_and_every_option_has_a_sample() -> None:
    """A row that refuses a mode carries the reason printed; the matrix below can run every row."""
    for dest, rule in CONTRACT.items():
        assert rule.honoured <= set(Mode)
        if rule.honoured != set(Mode):
            assert rule.why, dest
        assert dest in SAMPLES, f"no sample value for {dest}"


@dataclass
class Origin:
    url: str
    seen: list[web.Request]

    def paths(self) -> list[str]:
        return [r.path for r in self.seen]


@web.middleware
async def _record(request: web.Request, handler: Handler) -> web.StreamResponse:
    request.app[SEEN].append(request)
    return await handler(request)


@pytest.fixture
async def origin(aiohttp_server: AiohttpServer, tmp_path: Path) -> Origin:
    """The built-in server (ranges, strong ETag) with small and big files, recording requests."""
    from streamer.server.app import make_app

    root = tmp_path / "srv"
    root.mkdir()
    for i in range(3):
        (root / f"s{i}.bin").write_bytes(SMALL)
    (root / "big.bin").write_bytes(BIG)
    app = make_app(root)
    app[SEEN] = []
    app.middlewares.append(_record)
    server = await aiohttp_server(app, host="127.0.0.1")
    return Origin(str(server.make_url("/")), app[SEEN])


def _mode_args(mode: Mode, origin: Origin, tmp_path: Path) -> list[str]:
    if mode is Mode.MANY:
        manifest = tmp_path / "m.txt"
        manifest.write_text(origin.url + "s0.bin\n")
        return ["get", "-i", str(manifest)]  # into the working directory: -o and -d exclude
    args = ["get", origin.url + "big.bin"]
    return [*args, "--split", "4"] if mode is Mode.SPLIT else args


REFUSALS = [
    (dest, mode)
    for dest, rule in sorted(CONTRACT.items())
    for mode in Mode
    if mode not in rule.honoured
]


async def test_each_refused_option_exits_2_naming_option_and_mode(
    origin: Origin, tmp_path: Path
) -> None:
    """Every (option, mode) the table refuses exits 2 before any request, naming both."""
    (tmp_path / "out").mkdir()

    async def one(dest: str, mode: Mode) -> tuple[str, Mode, Run]:
        argv = [*_mode_args(mode, origin, tmp_path), *SAMPLES[dest]]
        return dest, mode, await streamer(*argv, cwd=tmp_path)

    assert REFUSALS, "the table refuses something"
    runs = await asyncio.gather(*(one(d, m) for d, m in REFUSALS))
    for dest, mode, run in runs:
        flag = SAMPLES[dest][0]
        assert run.rc == 2, (dest, mode, run.err)
        assert flag in run.err and mode.value in run.err, (dest, run.err)
        assert len(run.err_lines) == 1, run.err
    assert origin.seen == [], "a refused run makes no request"


# --- options honoured on every path -----------------------------------------------------------

# "one" reads its body on the raw path (transfer/fastpath.py); "one-engine" is the same
# download kept on aiohttp by the diagnostic switch.
PATHS = ["one", "one-engine", "split", "lane", "engine", "processes"]


def _env(path: str) -> dict[str, str]:
    return {ENV_SWITCH: "0"} if path == "one-engine" else {}


def _run_args(path: str, origin: Origin, tmp_path: Path) -> tuple[list[str], list[Path]]:
    """The command for `path` and the files it should write."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    if path in ("one", "one-engine", "split"):
        target = out / "big.bin"
        args = ["get", origin.url + "big.bin", "-o", str(target)]
        return ([*args, "--split", "4"] if path == "split" else args), [target]
    names = {"lane": ["s0.bin"], "engine": ["big.bin"], "processes": ["s0.bin", "s1.bin"]}[path]
    manifest = tmp_path / "m.txt"
    manifest.write_text("".join(origin.url + n + "\n" for n in names))
    args = ["get", "-i", str(manifest), "-d", str(out)]
    if path == "processes":
        args += ["--processes", "2", "-j", "2"]
    return args, [out / n for n in names]


def _body(target: Path) -> bytes:
    return BIG if target.name == "big.bin" else SMALL


@pytest.mark.parametrize("path", PATHS)
async def test_max_filesize_holds_on_every_path(origin: Origin, tmp_path: Path, path: str) -> None:
    """--max-filesize below the body: exit 63, no target and no partial, on every path."""
    args, targets = _run_args(path, origin, tmp_path)
    run = await streamer(*args, "--max-filesize", "8K", env=_env(path))
    assert run.rc == 63, run.err
    for target in targets:
        assert not target.exists() and not part_path(target).exists()


@pytest.mark.parametrize("path", PATHS)
async def test_no_clobber_keeps_an_existing_file_on_every_path(
    origin: Origin, tmp_path: Path, path: str
) -> None:
    """--no-clobber: an existing target is kept byte for byte and the run fails with exit 73."""
    args, targets = _run_args(path, origin, tmp_path)
    for target in targets:
        target.write_bytes(b"mine")
    run = await streamer(*args, "--no-clobber", env=_env(path))
    assert run.rc == 73, run.err
    assert all(t.read_bytes() == b"mine" for t in targets)


@pytest.mark.parametrize("path", PATHS)
async def test_headers_reach_the_server_on_every_path(
    origin: Origin, tmp_path: Path, path: str
) -> None:
    """-H goes out with every request of every path (probe, segments, lane, engine, workers)."""
    args, targets = _run_args(path, origin, tmp_path)
    run = await streamer(*args, "-H", "X-Probe: yes", "-q", env=_env(path))
    assert run.rc == 0, run.err
    assert all(t.read_bytes() == _body(t) for t in targets)
    assert origin.seen and all(r.headers.get("X-Probe") == "yes" for r in origin.seen)


@pytest.mark.parametrize("path", PATHS)
async def test_json_reports_each_file_on_every_path(
    origin: Origin, tmp_path: Path, path: str
) -> None:
    """--json prints one object per file with its path and size, whatever the path."""
    args, targets = _run_args(path, origin, tmp_path)
    run = await streamer(*args, "--json", env=_env(path))
    assert run.rc == 0, run.err
    objects = [json.loads(line) for line in run.out.splitlines() if line.strip()]
    if path.startswith("one"):  # the path a single download took is the one asked for
        assert [o["body_path"] for o in objects] == ["raw" if path == "one" else "engine"]
    assert sorted(Path(o["path"]).name for o in objects) == sorted(t.name for t in targets)
    assert all(o["size"] == len(_body(Path(o["path"]))) for o in objects)


@pytest.mark.parametrize("path", ["one", "one-engine", "split"])
async def test_checksum_holds_for_one_file(origin: Origin, tmp_path: Path, path: str) -> None:
    """--checksum: a wrong one fails with exit 80 and leaves nothing; the right one saves."""
    args, (target,) = _run_args(path, origin, tmp_path)
    wrong = await streamer(*args, "--checksum", "sha256:" + "0" * 64, env=_env(path))
    assert wrong.rc == 80, wrong.err
    assert not target.exists() and not part_path(target).exists()
    right = "sha256:" + hashlib.sha256(BIG).hexdigest()
    run = await streamer(*args, "--checksum", right, env=_env(path))
    assert run.rc == 0, run.err
    assert target.read_bytes() == BIG


async def test_a_changed_job_is_fetched_again_not_skipped(origin: Origin, tmp_path: Path) -> None:
    """The journal vouches for the job it recorded: the same target asked with another URL or a
    checksum the file fails is fetched again; the same job is skipped without a request."""
    out = tmp_path / "out"
    out.mkdir()
    manifest = tmp_path / "m.jsonl"

    async def run_with(line: dict[str, str]) -> Run:
        manifest.write_text(json.dumps(line) + "\n")
        return await streamer("get", "-i", str(manifest), "-d", str(out), "--json")

    first = await run_with({"url": origin.url + "s0.bin", "path": "t.bin"})
    assert first.rc == 0 and (out / "t.bin").read_bytes() == SMALL
    assert (out / JOURNAL_NAME).exists()
    again = await run_with({"url": origin.url + "s0.bin", "path": "t.bin"})
    assert json.loads(again.out)["skipped"] is True
    requests = len(origin.seen)
    (origin_root := tmp_path / "srv" / "s1.bin").write_bytes(SMALL[::-1])
    moved = await run_with({"url": origin.url + "s1.bin", "path": "t.bin"})
    assert json.loads(moved.out)["skipped"] is False, moved.out
    assert (out / "t.bin").read_bytes() == origin_root.read_bytes()
    assert len(origin.seen) > requests
    sums = "sha256:" + hashlib.sha256(SMALL).hexdigest()
    checked = await run_with({"url": origin.url + "s1.bin", "path": "t.bin", "checksum": sums})
    assert checked.rc == 80, checked.out
    assert json.loads(checked.out)["skipped"] is False
