"""--limit-rate on uploads (curl -T/-F --limit-rate): every path holds the body to the rate.

An upload of N bytes at R bytes/s cannot end before (N - one burst) / R seconds: the throttle's
bucket starts full (`core.ratelimit.burst_for`) and every later byte is paid for before it goes.
Each test checks that lower bound (never an upper one) and that the server received the exact
bytes (its SHA-256): the built-in server for put and post, on the zero-copy path and through
aiohttp, the real tus server (@tus/server) across a kill and a resume, and SeaweedFS for an S3
multipart upload whose concurrent parts share one rate.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from streamer import Client
from streamer.core.events import Phase, Progress
from streamer.core.ratelimit import burst_for
from streamer.lane import sendbody
from streamer.server.app import running_server
from tests.conftest import CLIENT_DEFAULTS
from tests.helpers import file_digest, kill, one_error_line, spawn, streamer, wait_for
from tests.s3_helpers import BUCKET, MIB, PART, env, make_file, make_plan, sha
from tests.s3_helpers import streamer as s3_streamer
from tests.seaweed import Seaweed
from tests.tus_peer import TusPeer, start_tus

__all__ = ["env"]  # the S3 fixture, used by name

KIB = 1 << 10
RATE = 64 * KIB
BURST = burst_for(RATE)  # 64 KiB: what may go before the first wait
SIZE = 192 * KIB


def least(sent: int, rate: int = RATE) -> float:
    """The shortest time `sent` body bytes can take at `rate` (one burst goes at once)."""
    return (sent - burst_for(rate)) / rate


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "root"
    base.mkdir()
    return base


@pytest.fixture
async def base(root: Path) -> AsyncIterator[str]:
    """The built-in server (PUT stores a file, POST a form's files; both answer their SHA-256)."""
    async with running_server(root) as url:
        yield url


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "local.bin"
    path.write_bytes(os.urandom(SIZE))
    return path


async def test_api_put_goes_by_sendfile_in_slices_at_the_rate(
    base: str, root: Path, source: Path
) -> None:
    """Client(limit_rate=R).upload of a file on the zero-copy path: sendfile still carries it,
    in slices (several calls), no sooner than (N - burst)/R, exact bytes, and progress grows
    step by step to N."""
    seen: list[int] = []

    def progress(p: Progress) -> None:
        if p.phase is Phase.UPLOADING:
            seen.append(p.done)

    before = sendbody.SENDFILE_CALLS[0]
    async with Client(**CLIENT_DEFAULTS, limit_rate=RATE) as client:
        started = time.monotonic()
        result = await client.upload(base + "api.bin", source, progress=progress)
        elapsed = time.monotonic() - started
    assert result.status == 201
    assert json.loads(result.body)["sha256"] == file_digest(source)
    assert file_digest(root / "api.bin") == file_digest(source)
    # 128 KiB by sendfile (the last 64 KiB are held back for the change check): 2 slices.
    assert sendbody.SENDFILE_CALLS[0] >= before + 2
    assert elapsed >= least(SIZE), elapsed
    assert len(seen) >= 3 and seen == sorted(seen) and seen[-1] == SIZE, seen


async def test_cli_put_raw_path_holds_the_rate(base: str, root: Path, source: Path) -> None:
    """put --limit-rate 64K of 192 KiB (plain http: the raw path) takes >= 2 s, bytes exact."""
    started = time.monotonic()
    run = await streamer("put", str(source), base + "raw.bin", "--limit-rate", "64K", "-q")
    elapsed = time.monotonic() - started
    assert run.rc == 0, run.err
    assert run.json()["sha256"] == file_digest(source)
    assert elapsed >= least(SIZE), elapsed


async def test_cli_put_through_aiohttp_holds_the_rate_without_a_stall(
    base: str, root: Path, source: Path
) -> None:
    """With a stall window (--speed-limit sends the body through aiohttp) the rate holds too,
    and our own waits are never taken for a stall: the window judges the peer (fast, on
    loopback), so even a minimum of 1 MiB/s over 1 s lets a 64 KiB/s upload finish."""
    limits = ("--limit-rate", "64KiB", "--speed-limit", "1M", "--speed-time", "1")
    started = time.monotonic()
    run = await streamer("put", str(source), base + "engine.bin", *limits, "-q")
    elapsed = time.monotonic() - started
    assert run.rc == 0, run.err
    assert file_digest(root / "engine.bin") == file_digest(source)
    assert elapsed >= least(SIZE), elapsed


async def test_a_peer_that_stops_answering_is_still_too_slow(source: Path) -> None:
    """Throttled or not, a peer that takes the body and never answers ends the upload with
    exit 28 once a stall window passes with nothing moving (the throttle's waits aside)."""

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            await reader.read()  # takes the body, answers nothing, until the client leaves
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/f"
    try:
        limits = ("--limit-rate", "64K", "--speed-limit", "16K", "--speed-time", "1")
        run = await streamer("put", str(source), url, *limits, "--read-timeout", "60")
    finally:
        server.close()
        await server.wait_closed()
    one_error_line(run, 28, "too slow")


@pytest.mark.parametrize("encoder", ["", ";encoder=base64"])
async def test_cli_post_form_holds_the_rate(
    base: str, root: Path, source: Path, encoder: str
) -> None:
    """post -F file=@F --limit-rate: the whole multipart body (framing included) is held to
    the rate, zero-copy (plain part) and through aiohttp (a base64 part goes that way)."""
    started = time.monotonic()
    form = ("-F", "note=hello", "-F", f"file=@{source}{encoder}")
    run = await streamer("post", base, *form, "--limit-rate", "64K", "-q")
    elapsed = time.monotonic() - started
    assert run.rc == 0, run.err
    (stored,) = run.json()["files"]
    data = (root / stored["path"].lstrip("/")).read_bytes()
    if encoder:
        data = base64.b64decode(data)  # the server keeps the part as it came: base64 lines
    assert hashlib.sha256(data).hexdigest() == file_digest(source)
    assert elapsed >= least(stored["size"]), elapsed


async def test_max_time_still_ends_a_limited_upload(base: str, root: Path, source: Path) -> None:
    """--max-time 1 on a put that the rate stretches to 2 s: exit 28, one line, no file."""
    run = await streamer(
        "put", str(source), base + "late.bin", "--limit-rate", "64K", "--max-time", "1"
    )
    one_error_line(run, 28, "timed out")
    assert not (root / "late.bin").exists()


@pytest.mark.parametrize("rate", ["0", "-1", "fast", "0.5"])
@pytest.mark.parametrize("command", ["put", "post"])
async def test_bad_rate_is_a_usage_error(
    base: str, source: Path, tmp_path: Path, rate: str, command: str
) -> None:
    """A rate of 0, below one byte/s, negative or not a size: exit 2, one line naming the
    option, nothing sent."""
    args = ["put", str(source), base] if command == "put" else ["post", base, "-F", f"f=@{source}"]
    run = await streamer(*args, f"--limit-rate={rate}")
    one_error_line(run, 2, "--limit-rate")


# --- tus -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tus_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusPeer]:
    with start_tus(tmp_path_factory.mktemp("tus-store")) as server:
        yield server


async def test_tus_patches_share_the_rate_across_a_resume(
    tus_peer: TusPeer, tmp_path: Path
) -> None:
    """put --tus --chunk-size 64K --limit-rate 64K: killed once the server holds two PATCHes
    (which took >= 1 s), the rerun resumes and its PATCHes together take >= (rest - burst)/R;
    the server holds the exact file."""
    state = {"XDG_STATE_HOME": str(tmp_path / "state")}
    src = tmp_path / "tus.bin"
    src.write_bytes(os.urandom(320 * KIB))
    args = ("put", "--tus", str(src), tus_peer.endpoint, "--chunk-size", "64K")
    started = time.monotonic()
    proc = await spawn(*args, "--limit-rate", "64K", "-q", env=state)
    try:
        stored: list[Path] = []

        def two_patches() -> bool:
            stored[:] = [p for p in tus_peer.store.iterdir() if p.suffix != ".json"]
            return any(p.stat().st_size >= 128 * KIB for p in stored)

        await wait_for(two_patches, "the server to hold two PATCHes", timeout=30)
    finally:
        kill(proc)
        await proc.wait()
    assert time.monotonic() - started >= least(128 * KIB)
    started = time.monotonic()
    run = await streamer(*args, "--limit-rate", "64K", "--json", env=state)
    elapsed = time.monotonic() - started
    assert run.rc == 0, run.err
    doc = run.json()
    assert doc["resumed_from"] >= 128 * KIB
    assert doc["sent"] == src.stat().st_size - doc["resumed_from"]
    assert file_digest(tus_peer.stored(doc["url"])) == file_digest(src)
    assert elapsed >= least(doc["sent"]), (elapsed, doc)


# --- S3 ------------------------------------------------------------------------------------------


async def test_s3_parts_in_parallel_share_one_rate(env: dict[str, str], tmp_path: Path) -> None:
    """put s3:// -j 2 --limit-rate 4M of 10 MiB + 1 (three parts, two at once): the parts
    share the rate, so it takes >= (N - burst)/4 MiB/s (2.25 s), not half that; the object
    reads back byte for byte."""
    src = make_file(tmp_path / "s3.bin", 2 * PART + 1)
    key = f"s3://{BUCKET}/rate/s3.bin"
    started = time.monotonic()
    rc, out, err = await s3_streamer(
        env, "put", src, key, "--part-size", "5M", "-j", "2", "--limit-rate", "4M", "--json"
    )
    elapsed = time.monotonic() - started
    assert rc == 0, err
    doc = json.loads(out)
    assert [p["part_number"] for p in doc["parts"]] == [1, 2, 3]
    back = tmp_path / "back.bin"
    rc, _, err = await s3_streamer(env, "get", key, "-o", back, "-q")
    assert rc == 0, err
    assert sha(back) == sha(src)
    assert elapsed >= least(src.stat().st_size, 4 * MIB), elapsed


async def test_presigned_parts_share_the_clients_rate(
    seaweed: Seaweed, env: dict[str, str], tmp_path: Path
) -> None:
    """Client(limit_rate=4 MiB/s).upload_presigned_parts, two parts at once: the parts share
    the client's rate (>= (N - burst)/R), and the object is the file byte for byte."""
    src = make_file(tmp_path / "pre.bin", 2 * PART + 1)
    plan = make_plan(seaweed, "rate/pre.bin", src.stat().st_size, complete=True)
    async with Client(**CLIENT_DEFAULTS, limit_rate=4 * MIB) as client:
        started = time.monotonic()
        result = await client.upload_presigned_parts(src, plan, parallel=2)
        elapsed = time.monotonic() - started
    assert [n for n, _ in result.parts] == [1, 2, 3]
    status, body = seaweed.fetch("GET", f"/{BUCKET}/rate/pre.bin")
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == sha(src)
    assert elapsed >= least(src.stat().st_size, 4 * MIB), elapsed
