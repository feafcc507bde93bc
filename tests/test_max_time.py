"""--max-time bounds one file's whole transfer on every path (curl: "each transfer").

A tus upload, an S3 multipart upload and a --split download are one transfer of many requests:
they share one deadline per attempt. Each run below is paced (--limit-rate, or an origin that
sends slowly and cuts its answers) so that every request is shorter than --max-time and the
whole is longer: the run ends with 28, its resumable state stays, and a rerun without
--max-time completes with the exact bytes. Bulk -i gives each file a deadline of its own.
Real processes and real peers (@tus/server, SeaweedFS) on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.core import tus
from streamer.storage.files import sidecar_path
from streamer.storage.upload_state import load_state
from tests.faults import data
from tests.helpers import file_digest, one_error_line
from tests.helpers import streamer as run_cli
from tests.range_origin import Origin, serving
from tests.s3_helpers import (
    BUCKET,
    PART,
    env,
    listed_parts,
    make_file,
    make_plan,
    remembered_id,
    sha,
)
from tests.s3_helpers import streamer as s3_cli
from tests.seaweed import Seaweed
from tests.tus_peer import TusPeer, start_tus

__all__ = ["env"]  # a fixture, used by name

KIB = 1 << 10


@pytest.fixture(scope="module")
def tus_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusPeer]:
    with start_tus(tmp_path_factory.mktemp("tus-store")) as server:
        yield server


async def test_tus_upload_shares_one_deadline(
    tus_peer: TusPeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """put --tus --max-time bounds the whole upload, not each PATCH: 64 KiB PATCHes at
    --limit-rate 256K (1/4 s each) of a 1 MiB file end in 28 at 1.5 s, with one error line;
    the server holds part of the file and the upload stays remembered; the rerun without
    --max-time resumes from the server's offset and the server's file is exact."""
    state = {"XDG_STATE_HOME": str(tmp_path / "state")}
    monkeypatch.setenv("XDG_STATE_HOME", state["XDG_STATE_HOME"])
    src = tmp_path / "tus.bin"
    src.write_bytes(os.urandom(1 << 20))
    args = ("put", "--tus", str(src), tus_peer.endpoint, "--chunk-size", "64K")
    run = await run_cli(*args, "--limit-rate", "256K", "--max-time", "1.5", env=state)
    one_error_line(run, 28, "timed out", "1.5 s")
    record, _ = load_state("tus", tus.state_key(tus_peer.endpoint, str(src.resolve())))
    assert record is not None and isinstance(record["url"], str)
    held = tus_peer.stored(record["url"]).stat().st_size
    assert 0 < held < src.stat().st_size
    again = await run_cli(*args, "--json", env=state)
    assert again.rc == 0, again.err
    doc = again.json()
    assert doc["resumed_from"] >= held
    assert doc["sent"] == src.stat().st_size - doc["resumed_from"]
    assert file_digest(tus_peer.stored(doc["url"])) == file_digest(src)


async def test_tus_retries_each_get_a_fresh_deadline(
    tus_peer: TusPeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --retry, each attempt has its own --max-time (curl's rule) and --retry-max-time
    bounds the retrying: --retry 9 lets each attempt resume from the server's offset until
    the file, which needs more than one --max-time at this rate, is whole (0, exact bytes);
    --retry-max-time 1 starts no retry after a first attempt timed out at 1.5 s (28)."""
    state = {"XDG_STATE_HOME": str(tmp_path / "state")}
    monkeypatch.setenv("XDG_STATE_HOME", state["XDG_STATE_HOME"])
    paced = ("--limit-rate", "256K", "--max-time", "1.5", "--retry-delay", "0.1", "--retry", "9")
    sources = [tmp_path / "a.bin", tmp_path / "b.bin"]
    for src in sources:
        src.write_bytes(os.urandom(1 << 20))  # 4 s at 256K/s
    args = ("put", "--tus", str(sources[0]), tus_peer.endpoint, "--chunk-size", "64K", "--json")
    began = time.monotonic()
    run = await run_cli(*args, *paced, env=state)
    assert run.rc == 0, run.err
    assert time.monotonic() - began > 1.5  # more than one attempt's time: a fresh deadline
    assert file_digest(tus_peer.stored(run.json()["url"])) == file_digest(sources[0])
    args = ("put", "--tus", str(sources[1]), tus_peer.endpoint, "--chunk-size", "64K")
    run = await run_cli(*args, *paced, "--retry-max-time", "1", env=state)
    one_error_line(run, 28, "timed out", "1.5 s")


async def test_s3_multipart_shares_one_deadline(
    seaweed: Seaweed, env: dict[str, str], tmp_path: Path
) -> None:
    """put s3:// -j 2 --max-time bounds create, every part and complete together: six 5 MiB
    parts at --limit-rate 8M (two in flight, about 1.3 s each) end in 28 at 2 s; the upload
    stays remembered with fewer parts stored than planned and no object; the rerun sends
    only the missing parts and the object is exact."""
    src = make_file(tmp_path / "mt.bin", 6 * PART + 99)
    key = "maxtime.bin"
    args = ("put", src, f"s3://{BUCKET}/{key}", "--part-size", "5M", "-j", "2")
    rc, _out, err = await s3_cli(env, *args, "--limit-rate", "8M", "--max-time", "2")
    assert rc == 28, err
    assert "timed out" in err and "Traceback" not in err
    upload_id = remembered_id(src, key, env["AWS_ENDPOINT_URL"])
    assert upload_id is not None
    assert sum(listed_parts(seaweed, key, upload_id).values()) < src.stat().st_size
    status, _ = seaweed.fetch("HEAD", f"/{BUCKET}/{key}")
    assert status == 404
    rc, out, err = await s3_cli(env, *args, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["sent"] == src.stat().st_size - doc["resumed_parts"] * PART
    back = tmp_path / "back.bin"
    rc, _, err = await s3_cli(env, "get", f"s3://{BUCKET}/{key}", "-o", back, "-q")
    assert rc == 0, err
    assert sha(back) == sha(src)


async def test_presigned_plan_shares_one_deadline(
    seaweed: Seaweed, env: dict[str, str], tmp_path: Path
) -> None:
    """put --s3-presigned -j 2 --max-time: the parts in flight and the completion share one
    deadline; six parts at --limit-rate 8M end in 28 at 2 s, with no object yet; the rerun
    of the same plan sends only the parts not confirmed and the object is exact."""
    src = make_file(tmp_path / "pre.bin", 6 * PART + 5)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(make_plan(seaweed, "pre-mt.bin", src.stat().st_size, True)))
    bare = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    args = ("put", "--s3-presigned", plan, src, "-j", "2")
    rc, _out, err = await s3_cli(bare, *args, "--limit-rate", "8M", "--max-time", "2")
    assert rc == 28, err
    assert "timed out" in err and "Traceback" not in err
    assert seaweed.fetch("HEAD", f"/{BUCKET}/pre-mt.bin")[0] == 404
    rc, out, err = await s3_cli(bare, *args, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["sent"] == src.stat().st_size - doc["resumed_parts"] * PART
    status, body = seaweed.fetch("GET", f"/{BUCKET}/pre-mt.bin")
    assert (status, hashlib.sha256(body).hexdigest()) == (200, sha(src))


async def test_split_download_shares_one_deadline(tmp_path: Path) -> None:
    """get --split 2 --max-time bounds the probe, both segments and their re-requests: an
    origin that sends 256 KiB per answer at 512 KiB/s and then cuts it (1/2 s per request)
    makes each 1 MiB segment take four requests, so the run ends in 28 at 1.5 s; the
    .part and its sidecar stay, the target does not appear; the rerun resumes every segment
    where it stopped (no range from a segment's start) and the file is exact."""
    size = 2 << 20  # two segments of the smallest size (core.segments.MIN_SEGMENT)
    target = tmp_path / "out.bin"
    origin = Origin(size, rate=512 * KIB, cut=256 * KIB)
    async with serving(origin):
        args = ("get", origin.url, "-o", str(target), "--split", "2", "--retry", "20")
        run = await run_cli(*args, "--retry-delay", "0.05", "--max-time", "1.5")
        one_error_line(run, 28, "timed out", "1.5 s")
        part = target.with_name(target.name + ".part")
        assert part.exists() and sidecar_path(target).exists() and not target.exists()
        asked = len(origin.ranges)
        origin.cut = origin.rate = None
        again = await run_cli(*args, "-q")
        assert again.rc == 0, again.err
    assert target.read_bytes() == data(size)
    starts = sorted(int((r or "=").split("=")[1].split("-")[0]) for r in origin.ranges[asked:])
    assert len(starts) == 2 and 0 < starts[0] < size // 2 < starts[1] < size, starts


async def test_bulk_gives_each_file_its_own_deadline(tmp_path: Path) -> None:
    """get -i --max-time 2 -j 1: three files of 1 s each (the origin's pace), one after
    the other, all succeed: the deadline is per file, not per run."""
    origin = Origin(256 * KIB, rate=256 * KIB)
    async with serving(origin):
        manifest = tmp_path / "list.txt"
        manifest.write_text(
            "".join(f'{{"url": "{origin.url}", "path": "f{i}"}}\n' for i in range(3))
        )
        out = tmp_path / "out"
        out.mkdir()
        run = await run_cli(
            "get", "-i", str(manifest), "-d", str(out), "-j", "1", "--max-time", "2"
        )
        assert run.rc == 0, run.err
    assert len(origin.ranges) == 3
    for i in range(3):
        assert (out / f"f{i}").read_bytes() == data(256 * KIB)
