"""What a failed S3 upload leaves behind, against a real SeaweedFS: a presigned plan's
confirmed parts are remembered (never its URLs) so a rerun sends only the rest; a file that
changed leaves no multipart upload on the server and no state here, whether it changed during
the run or between a failed run and the next.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from streamer import Client, S3Error
from tests.helpers import wait_for
from tests.s3_helpers import (
    BUCKET,
    PART,
    client,
    env,
    make_file,
    make_plan,
    multipart_uploads,
    remembered_id,
    sha,
    streamer,
)
from tests.seaweed import Relay, Seaweed

__all__ = ["client", "env"]  # fixtures, used by name


def state_files(env: dict[str, str]) -> list[Path]:
    return sorted((Path(env["XDG_STATE_HOME"]) / "streamer").glob("*.json"))


async def test_presigned_rerun_sends_only_unconfirmed_parts(
    seaweed: Seaweed, env: dict[str, str], tmp_path: Path
) -> None:
    """A presigned upload that failed at part 3 remembers parts 1-2 (their ETags, keyed by a
    hash of the plan: no URL or signature is written); the rerun, even with the same upload's
    plan signed anew, sends parts 3-4 only and completes a whole object."""
    src = make_file(tmp_path / "plan.bin", 3 * PART + 99)
    size = src.stat().st_size
    relay = Relay(int(seaweed.endpoint.rsplit(":", 1)[1]), fail_part=3)
    base = f"http://127.0.0.1:{await relay.start()}"
    plan = make_plan(seaweed, "plan.bin", size, complete=True, base=base)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    bare = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    args = ("put", "--s3-presigned", tmp_path / "plan.json", src, "-j", "1")
    rc, _out, err = await streamer(bare, *args)
    assert rc == 22 and "500" in err, err
    files = state_files(env)
    assert len(files) == 1
    text = files[0].read_text()
    assert "Signature" not in text and "http" not in text and plan["upload_id"] not in text
    resigned = make_plan(
        seaweed, "plan.bin", size, True, expires=900, base=base, upload_id=plan["upload_id"]
    )
    assert resigned["parts"][0]["url"] != plan["parts"][0]["url"]
    (tmp_path / "plan.json").write_text(json.dumps(resigned))
    relay.part_requests.clear()
    rc, out, err = await streamer(bare, *args, "--json")
    await relay.stop()
    assert rc == 0, err
    doc = json.loads(out)
    assert (doc["resumed_parts"], doc["sent"]) == (2, size - 2 * PART)
    assert relay.part_requests == [3, 4]
    assert [p["part_number"] for p in doc["parts"]] == [1, 2, 3, 4]
    assert state_files(env) == []
    status, body = seaweed.fetch("GET", f"/{BUCKET}/plan.bin")
    assert status == 200 and len(body) == size
    back = tmp_path / "back.bin"
    back.write_bytes(body)
    assert sha(back) == sha(src)


async def test_cli_file_changed_mid_upload_is_83_and_leaves_no_upload(
    seaweed: Seaweed, env: dict[str, str], tmp_path: Path
) -> None:
    """A file modified while `streamer put` sends its parts: exit 83, the multipart upload is
    aborted (ListMultipartUploads shows none for the key) and no state is left."""
    src = make_file(tmp_path / "chg.bin", 5 * PART)
    relay = Relay(int(seaweed.endpoint.rsplit(":", 1)[1]), delay=0.004)
    endpoint = f"http://127.0.0.1:{await relay.start()}"
    child_env = {**env, "AWS_ENDPOINT_URL": endpoint}
    args = ("put", src, f"s3://{BUCKET}/chg-cli.bin", "--part-size", "5M", "-j", "1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer",
        *map(str, args),
        env=child_env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for(lambda: 2 in relay.part_requests, "part 2 under way", timeout=60)
        assert len(multipart_uploads(seaweed, "chg-cli.bin")) == 1
        with src.open("r+b") as f:
            f.write(b"changed!")
        _out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await relay.stop()
    assert proc.returncode == 83, err
    assert b"changed" in err and b"Traceback" not in err
    assert multipart_uploads(seaweed, "chg-cli.bin") == []
    assert state_files(env) == []


async def test_changed_file_rerun_aborts_the_stale_upload(
    seaweed: Seaweed, env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    """A resumable failure keeps its upload; when the file then changes, the next run cannot
    resume it, so it aborts it before starting anew: the server holds no orphan afterwards."""
    src = make_file(tmp_path / "stale.bin", 2 * PART + 5)
    relay = Relay(int(seaweed.endpoint.rsplit(":", 1)[1]), fail_part=2)
    endpoint = f"http://127.0.0.1:{await relay.start()}"
    url = f"s3://{BUCKET}/stale.bin"
    try:
        try:
            await client.upload_s3(src, url, endpoint_url=endpoint, part_size=PART, parallel=1)
        except S3Error as exc:
            assert exc.retryable
        old = remembered_id(src, "stale.bin", endpoint)
        assert old is not None and multipart_uploads(seaweed, "stale.bin") == [old]
        with src.open("ab") as f:
            f.write(b"more")
        os.utime(src, ns=(0, src.stat().st_mtime_ns + 1))
        result = await client.upload_s3(src, url, endpoint_url=endpoint, part_size=PART)
    finally:
        await relay.stop()
    assert any("aborted the remembered upload" in n for n in result.notes)
    assert multipart_uploads(seaweed, "stale.bin") == []
    assert state_files(env) == []


async def test_presigned_rerun_after_the_file_changed_sends_every_part(
    seaweed: Seaweed, env: dict[str, str], tmp_path: Path
) -> None:
    """Confirmed parts of a file that has changed since are never reused: the rerun of the
    same plan sends every part, drops the stale record, and the object is the new file."""
    src = make_file(tmp_path / "plan2.bin", 2 * PART + 7)
    relay = Relay(int(seaweed.endpoint.rsplit(":", 1)[1]), fail_part=2)
    base = f"http://127.0.0.1:{await relay.start()}"
    plan = make_plan(seaweed, "plan2.bin", src.stat().st_size, complete=True, base=base)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    args = ("put", "--s3-presigned", tmp_path / "plan.json", src, "-j", "1")
    rc, _out, err = await streamer(env, *args)
    assert rc == 22, err
    assert len(state_files(env)) == 1
    with src.open("r+b") as f:
        f.write(b"new bytes")
    os.utime(src, ns=(0, src.stat().st_mtime_ns + 1))
    relay.part_requests.clear()
    rc, out, err = await streamer(env, *args, "--json")
    await relay.stop()
    assert rc == 0, err
    assert relay.part_requests == [1, 2, 3]
    assert json.loads(out)["resumed_parts"] == 0
    assert state_files(env) == []
    status, body = seaweed.fetch("GET", f"/{BUCKET}/plan2.bin")
    assert status == 200 and body == src.read_bytes()
