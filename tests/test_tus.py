"""`streamer put --tus` and `upload_resumable` against the real tus server (@tus/server).

The server is the judge: every upload is checked by the SHA-256 of the file @tus/file-store
wrote, and resumes by the bytes that reached it (counted by a relay in between). CLI tests run
real processes; each gets its own state directory (XDG_STATE_HOME).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import streamer
from streamer import Client
from streamer.core import tus
from streamer.storage.upload_state import load_state
from tests.conftest import CLIENT_DEFAULTS
from tests.helpers import file_digest, kill, one_error_line, peak_rss, spawn, wait_for
from tests.helpers import streamer as run_cli
from tests.tus_peer import Relay, TusPeer, start_tus

MIB = 1 << 20


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusPeer]:
    """One real tus server for the module (no size limit, no expiration)."""
    with start_tus(tmp_path_factory.mktemp("tus-store")) as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A state directory of the test's own, for child processes and for this process."""
    state = str(tmp_path / "state")
    monkeypatch.setenv("XDG_STATE_HOME", state)
    return {"XDG_STATE_HOME": state}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """3 MiB + 7 bytes of random data."""
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(3 * MIB + 7))
    return path


@pytest.fixture
async def relay(peer: TusPeer) -> AsyncIterator[Relay]:
    """A relay to the module's server; the test arms it before use."""
    r = await Relay(peer.port).start()
    yield r
    await r.stop()


def remembered(endpoint: str, path: Path) -> dict[str, object] | None:
    record, _ = load_state("tus", tus.state_key(endpoint, str(path.resolve())))
    return record


# --- uploads ------------------------------------------------------------------------------------


async def test_put_tus_stores_the_file(peer: TusPeer, source: Path, env: dict[str, str]) -> None:
    """put --tus: exit 0, the upload URL on stdout, the server holds the exact file, the
    metadata carries filename and each --meta, and the remembered upload is forgotten."""
    run = await run_cli(
        "put", "--tus", str(source), peer.endpoint, "--meta", "kind=test", "--meta", "note=é x",
        "-q", env=env,
    )  # fmt: skip
    assert run.rc == 0, run.err
    url = run.out.strip()
    assert url.startswith(peer.endpoint + "/")
    assert file_digest(peer.stored(url)) == file_digest(source)
    info = json.loads(peer.stored(url).with_suffix(".json").read_text())
    assert info["metadata"] == {"filename": "data.bin", "kind": "test", "note": "é x"}
    assert remembered(peer.endpoint, source) is None


async def test_chunked_with_checksum_json(peer: TusPeer, source: Path, env: dict[str, str]) -> None:
    """--chunk-size 1M --tus-checksum sha256 --json: one object {url,size,resumed_from,sent};
    every PATCH carried a checksum the server verified; the file is exact."""
    run = await run_cli(
        "put", "--tus", str(source), peer.endpoint, "--chunk-size", "1M",
        "--tus-checksum", "sha256", "--json", env=env,
    )  # fmt: skip
    assert run.rc == 0, run.err
    doc = run.json()
    size = source.stat().st_size
    assert set(doc) == {"url", "size", "resumed_from", "sent"}
    assert (doc["size"], doc["resumed_from"], doc["sent"]) == (size, 0, size)
    assert file_digest(peer.stored(doc["url"])) == file_digest(source)


async def test_api_async_and_sync(peer: TusPeer, source: Path, env: dict[str, str]) -> None:
    """Client.upload_resumable and streamer.upload_resumable return a frozen TusResult."""
    async with Client(**CLIENT_DEFAULTS) as client:
        result = await client.upload_resumable(
            peer.endpoint, source, chunk_size=MIB, metadata={"a": "b"}, checksum="md5"
        )
    assert (result.size, result.resumed_from, result.sent) == (
        source.stat().st_size,
        0,
        result.size,
    )
    assert file_digest(peer.stored(result.url)) == file_digest(source)
    other = await asyncio.to_thread(streamer.upload_resumable, peer.endpoint, source, retry=0)
    assert isinstance(other, streamer.TusResult) and other.url != result.url
    assert file_digest(peer.stored(other.url)) == file_digest(source)
    with pytest.raises(AttributeError):
        other.url = "x"  # type: ignore[misc]


async def test_kill_9_then_rerun_sends_only_the_rest(
    peer: TusPeer, relay: Relay, tmp_path: Path, env: dict[str, str]
) -> None:
    """A `put --tus` killed with SIGKILL mid-PATCH: the rerun asks HEAD and sends only the
    bytes the server lacks; the server received at most 1.05x the file."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(24 * MIB))
    relay.hold_at = 9 * MIB
    proc = await spawn("put", "--tus", str(big), relay.endpoint, "-q", env=env)
    try:
        await asyncio.wait_for(relay.held.wait(), 30)
    finally:
        kill(proc)
        await proc.wait()
    relay.release()
    record = remembered(relay.endpoint, big)
    assert record is not None, "the upload URL is remembered before the first PATCH"
    stored = peer.stored(str(record["url"]))
    await wait_for(lambda: stored.stat().st_size > 8 * MIB, "the server to keep the bytes")
    await _settled(stored)
    held = stored.stat().st_size
    run = await run_cli("put", "--tus", str(big), relay.endpoint, "--json", env=env)
    assert run.rc == 0, run.err
    doc = run.json()
    assert doc["url"] == record["url"]
    assert doc["resumed_from"] == held
    assert doc["sent"] == big.stat().st_size - held
    assert file_digest(stored) == file_digest(big)
    # A broken PATCH can lose what was still in the server's buffers: 1.05x, as the issue asks.
    assert relay.forwarded <= 1.05 * big.stat().st_size


async def _settled(path: Path) -> None:
    """Until the file's size stays the same for 0.3 s (the server finished the broken PATCH)."""
    last = -1
    while (size := path.stat().st_size) != last:
        last = size
        await asyncio.sleep(0.3)


async def test_retry_resumes_within_one_run(
    peer: TusPeer, relay: Relay, tmp_path: Path, env: dict[str, str]
) -> None:
    """--retry: a connection cut mid-PATCH is resumed in the same run from the server's offset;
    the server received at most 1.05x the file."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(8 * MIB))
    relay.cut_at = 3 * MIB
    run = await run_cli(
        "put", "--tus", str(big), relay.endpoint, "--retry", "2", "--retry-delay", "0.2",
        "--json", env=env,
    )  # fmt: skip
    assert run.rc == 0, run.err
    doc = run.json()
    assert doc["resumed_from"] == 0
    assert doc["sent"] > big.stat().st_size  # what the cut lost in buffers went again
    assert relay.forwarded <= 1.05 * big.stat().st_size
    assert file_digest(peer.stored(doc["url"])) == file_digest(big)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units are Linux's")
def test_memory_flat_256_mib(peer: TusPeer, tmp_path: Path, env: dict[str, str]) -> None:
    """A 256 MiB put --tus (one PATCH) peaks at <= 64 MiB RSS in the uploading process."""
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        block = os.urandom(MIB)
        for i in range(256):
            f.write(i.to_bytes(8, "big") + block[8:])
    log = tmp_path / "put.log"
    cmd = [sys.executable, "-m", "streamer", "put", "--tus", str(big), peer.endpoint, "-q"]
    report = peak_rss(cmd, 120.0, log, env=env)
    assert report.rc == 0, log.read_text()
    assert report.maxrss_kib <= 64 * 1024, report
    url = log.read_text().strip().splitlines()[-1]
    assert file_digest(peer.stored(url)) == file_digest(big)


# --- bad input ----------------------------------------------------------------------------------


async def test_abort_deletes_the_upload(
    peer: TusPeer, relay: Relay, source: Path, env: dict[str, str]
) -> None:
    """--abort: DELETE of the remembered upload (termination); the server drops it, the state
    is forgotten, and a second --abort has nothing to terminate (exit 2)."""
    relay.cut_at = MIB
    first = await run_cli("put", "--tus", str(source), relay.endpoint, "-q", env=env)
    assert first.rc == 56, first.err
    record = remembered(relay.endpoint, source)
    assert record is not None
    await wait_for(lambda: peer.stored(str(record["url"])).exists(), "the partial upload")
    run = await run_cli("put", "--tus", "--abort", str(source), relay.endpoint, env=env)
    assert run.rc == 0, run.err
    assert run.out.strip() == record["url"]
    await wait_for(lambda: not peer.stored(str(record["url"])).exists(), "the upload's removal")
    assert remembered(relay.endpoint, source) is None
    again = await run_cli("put", "--tus", "--abort", str(source), relay.endpoint, env=env)
    one_error_line(again, 2, "no remembered tus upload")
