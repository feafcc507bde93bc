"""S3 uploads and downloads against a real SeaweedFS (one server per session, SigV4 checked).

Multipart and single PutObject uploads, resume after kill -9, --no-resume, presigned plans,
`get s3://` with --split, and each bad input: a wrong secret, no credentials, an expired
presigned URL, NoSuchUpload on resume, a part answered 500 or cut (retried alone), a file
changed mid-way, a plan that does not cover the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from streamer import Client, S3Error, SourceChangedError
from tests.helpers import peak_rss, wait_for
from tests.s3_helpers import (
    BUCKET,
    MIB,
    PART,
    client,
    env,
    listed_parts,
    make_file,
    make_plan,
    remembered_id,
    sha,
    streamer,
)
from tests.seaweed import Relay, Seaweed

__all__ = ["client", "env"]  # fixtures, used by name

# --- uploads that work ---------------------------------------------------------------------------


async def test_multipart_upload_then_get_split(
    env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    """A file over the part size goes as a multipart upload of exact parts; `get s3://` with
    --split fetches it back byte for byte; the remembered state is gone after success."""
    src = make_file(tmp_path / "src.bin", 3 * PART + 12345)
    result = await client.upload_s3(src, f"s3://{BUCKET}/multi/a b~c.bin", part_size=PART)
    assert [n for n, _ in result.parts] == [1, 2, 3, 4]
    assert result.etag is not None and result.etag.endswith('-4"')
    assert (result.size, result.sent, result.resumed_parts) == (src.stat().st_size,) * 2 + (0,)
    assert remembered_id(src, "multi/a b~c.bin", env["AWS_ENDPOINT_URL"]) is None
    out = tmp_path / "back.bin"
    rc, _out, err = await streamer(
        env, "get", f"s3://{BUCKET}/multi/a b~c.bin", "-o", out, "--split", "3", "-q"
    )
    assert rc == 0, err
    assert sha(out) == sha(src)


async def test_small_file_is_one_put_object(env: dict[str, str], tmp_path: Path) -> None:
    """A file no larger than the part size goes in one PutObject (no parts), via the CLI."""
    src = make_file(tmp_path / "small.bin", 100_000)
    rc, out, err = await streamer(env, "put", src, f"s3://{BUCKET}/small.bin", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert (doc["parts"], doc["size"], doc["sent"]) == ([], 100_000, 100_000)
    back = tmp_path / "back.bin"
    rc, _, err = await streamer(env, "get", f"s3://{BUCKET}/small.bin", "-o", back, "-q")
    assert rc == 0, err
    assert back.read_bytes() == src.read_bytes()


async def test_resume_after_kill_sends_only_missing_parts(
    seaweed: Seaweed, env: dict[str, str], tmp_path: Path
) -> None:
    """After kill -9 of a real `streamer put`, the rerun lists the stored parts and sends only
    the others (bytes sent = the missing parts), and the object is whole."""
    src = make_file(tmp_path / "resume.bin", 6 * PART + 777)
    relay = Relay(int(seaweed.endpoint.rsplit(":", 1)[1]), delay=0.004)
    endpoint = f"http://127.0.0.1:{await relay.start()}"
    child_env = {**env, "AWS_ENDPOINT_URL": endpoint}
    args = ("put", src, f"s3://{BUCKET}/resume.bin", "--part-size", "5M", "-j", "1", "-q")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer",
        *map(str, args),
        env=child_env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_for(lambda: remembered_id(src, "resume.bin", endpoint), "the UploadId saved")
        upload_id = remembered_id(src, "resume.bin", endpoint)
        assert upload_id is not None

        def two_parts_stored() -> bool:
            return len(listed_parts(seaweed, "resume.bin", upload_id)) >= 2

        await wait_for(two_parts_stored, "two parts stored", timeout=60)
    finally:
        proc.kill()
        await proc.wait()
    relay.delay = 0.0
    await wait_for(lambda: relay.active == 0, "the relay to forward what it holds")
    relay.sent = 0
    rc, out, err = await streamer(child_env, *args[:-1], "--json")
    await relay.stop()
    assert rc == 0, err
    doc = json.loads(out)
    # The parts stored before the kill (a part in flight may still have landed) are not sent
    # again: this run sent exactly the others, as the relay's byte count confirms.
    assert 2 <= doc["resumed_parts"] <= 6
    assert doc["sent"] == src.stat().st_size - doc["resumed_parts"] * PART
    assert doc["sent"] <= relay.sent <= doc["sent"] + 64 * 1024
    back = tmp_path / "back.bin"
    rc, _, err = await streamer(env, "get", f"s3://{BUCKET}/resume.bin", "-o", back, "-q")
    assert rc == 0, err
    assert sha(back) == sha(src)


async def _failed_upload(client: Client, seaweed: Seaweed, src: Path, key: str) -> str:
    """A multipart upload whose part 2 is answered 500 with no retry: it fails resumable, so
    its UploadId stays remembered (the endpoint is SeaweedFS itself); returns that id."""
    relay = Relay(int(seaweed.endpoint.rsplit(":", 1)[1]), fail_part=2)
    port = await relay.start()
    try:
        with pytest.raises(S3Error) as info:
            await client.upload_s3(
                src,
                f"s3://{BUCKET}/{key}",
                endpoint_url=f"http://127.0.0.1:{port}",
                part_size=PART,
                parallel=1,
            )
    finally:
        await relay.stop()
    assert (info.value.status, info.value.code, info.value.retryable) == (
        500,
        "InternalError",
        True,
    )
    # The same upload, remembered under the relay's endpoint: move it to the server's own.
    upload_id = remembered_id(src, key, f"http://127.0.0.1:{port}")
    assert upload_id is not None
    return upload_id


async def test_no_resume_aborts_the_remembered_upload(
    seaweed: Seaweed, env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    """A failed run that can be resumed keeps its UploadId; resume=False aborts that upload on
    the server (NoSuchUpload afterwards) and uploads everything anew."""
    src = make_file(tmp_path / "nores.bin", 2 * PART + 1)
    first = await _start_and_stop(client, seaweed, src, "nores.bin")
    result = await client.upload_s3(src, f"s3://{BUCKET}/nores.bin", part_size=PART, resume=False)
    assert (result.resumed_parts, result.sent) == (0, src.stat().st_size)
    status, body = seaweed.fetch("GET", f"/{BUCKET}/nores.bin?uploadId={first}")
    assert (status, b"NoSuchUpload" in body) == (404, True)
    assert remembered_id(src, "nores.bin", seaweed.endpoint) is None


async def _start_and_stop(client: Client, seaweed: Seaweed, src: Path, key: str) -> str:
    """Leave a remembered, resumable upload of `src` to `key` at SeaweedFS's own endpoint:
    its first part fails with 500 through a relay, then the record is copied over."""
    from streamer.storage.upload_state import save_state

    upload_id = await _failed_upload(client, seaweed, src, key)
    st = src.stat()
    save_state(
        "s3",
        {
            "endpoint": seaweed.endpoint,
            "bucket": BUCKET,
            "key": key,
            "path": str(src.absolute()),
            "size": st.st_size,
            "mtime": st.st_mtime_ns,
        },
        {"upload_id": upload_id, "part_size": PART},
    )
    return upload_id


async def test_no_such_upload_on_resume_is_85_and_forgotten(
    seaweed: Seaweed, env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    """A remembered UploadId the server no longer knows ends in UPLOAD_EXPIRED (exit 85) and
    the record is dropped, so the next run starts afresh and succeeds."""
    src = make_file(tmp_path / "gone.bin", 2 * PART + 3)
    upload_id = await _start_and_stop(client, seaweed, src, "gone.bin")
    assert seaweed.request("DELETE", f"/{BUCKET}/gone.bin?uploadId={upload_id}") == 204
    rc, _out, err = await streamer(env, "put", src, f"s3://{BUCKET}/gone.bin", "--part-size", "5M")
    assert rc == 85, err
    assert "NoSuchUpload" in err and "Traceback" not in err
    assert remembered_id(src, "gone.bin", seaweed.endpoint) is None
    rc, _out, err = await streamer(env, "put", src, f"s3://{BUCKET}/gone.bin", "--part-size", "5M")
    assert rc == 0, err


@pytest.mark.parametrize("mode", ["500", "cut"])
async def test_failed_part_is_retried_alone(
    seaweed: Seaweed, env: dict[str, str], client: Client, tmp_path: Path, mode: str
) -> None:
    """A part answered 500, or cut mid-body, is sent again by itself; the other parts once."""
    src = make_file(tmp_path / f"retry{mode}.bin", 3 * PART + 5)
    relay = Relay(int(seaweed.endpoint.rsplit(":", 1)[1]), fail_part=2, mode=mode)
    port = await relay.start()
    try:
        result = await client.upload_s3(
            src,
            f"s3://{BUCKET}/retry{mode}.bin",
            endpoint_url=f"http://127.0.0.1:{port}",
            part_size=PART,
            retry=2,
        )
    finally:
        await relay.stop()
    assert relay.failed == 1
    assert sorted(relay.part_requests) == [1, 2, 2, 3, 4]
    assert [n for n, _ in result.parts] == [1, 2, 3, 4]
    back = tmp_path / "back.bin"
    rc, _, err = await streamer(env, "get", f"s3://{BUCKET}/retry{mode}.bin", "-o", back, "-q")
    assert rc == 0, err
    assert sha(back) == sha(src)


async def test_parts_share_kept_connections(
    seaweed: Seaweed, env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    """Over plain http the parts go on kept connections, at most one per part in flight: 9
    parts two at a time take 2 connections (plus the control requests' own), not 9."""
    src = make_file(tmp_path / "kept.bin", 8 * PART + 3)
    relay = Relay(int(seaweed.endpoint.rsplit(":", 1)[1]))
    port = await relay.start()
    try:
        result = await client.upload_s3(
            src,
            f"s3://{BUCKET}/kept.bin",
            endpoint_url=f"http://127.0.0.1:{port}",
            part_size=PART,
            parallel=2,
        )
    finally:
        await relay.stop()
    assert sorted(relay.part_requests) == list(range(1, 10))
    assert [n for n, _ in result.parts] == list(range(1, 10))
    assert relay.accepted <= 2 + 2  # two for the parts; create and complete (aiohttp's)
    back = tmp_path / "back.bin"
    rc, _, err = await streamer(env, "get", f"s3://{BUCKET}/kept.bin", "-o", back, "-q")
    assert rc == 0, err
    assert sha(back) == sha(src)


async def test_wrong_secret_is_22_without_the_secret(env: dict[str, str], tmp_path: Path) -> None:
    """A wrong secret key: exit 22, one line naming 403 and SignatureDoesNotMatch, and neither
    the secret nor a signature is printed."""
    src = make_file(tmp_path / "w.bin", 1000)
    secret = "wrong-secret-Zq8vX"
    bad = {**env, "AWS_SECRET_ACCESS_KEY": secret}
    for extra in ((), ("--part-size", "5M")):
        rc, out, err = await streamer(bad, "put", src, f"s3://{BUCKET}/w.bin", *extra)
        assert rc == 22, err
        assert "403" in err and "SignatureDoesNotMatch" in err
        assert len(err.strip().splitlines()) == 1
        for text in (out, err):
            assert secret not in text and "Signature=" not in text


async def test_missing_credentials_is_2(env: dict[str, str], tmp_path: Path) -> None:
    """No AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for an s3:// target: usage error, exit 2."""
    src = make_file(tmp_path / "m.bin", 10)
    bare = {k: v for k, v in env.items() if not k.startswith("AWS_ACCESS")}
    for args in (("put", src, f"s3://{BUCKET}/m.bin"), ("get", f"s3://{BUCKET}/m.bin")):
        rc, _out, err = await streamer(bare, *args)
        assert rc == 2, err
        assert "AWS_ACCESS_KEY_ID" in err and "Traceback" not in err


async def test_presigned_plan_with_complete_url(
    seaweed: Seaweed, env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    """A presigned plan with complete_url: parts go to their URLs, the upload is completed, and
    no credentials are needed."""
    src = make_file(tmp_path / "pre.bin", 2 * PART + 99)
    plan = make_plan(seaweed, "pre.bin", src.stat().st_size, complete=True)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.pop(name)
    result = await client.upload_presigned_parts(src, plan, parallel=2)
    assert result.etag is not None and result.etag.endswith('-3"')
    assert [n for n, _ in result.parts] == [1, 2, 3]
    status, body = seaweed.fetch("GET", f"/{BUCKET}/pre.bin")
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == sha(src)


async def test_presigned_plan_without_complete_url_prints_parts(
    seaweed: Seaweed, env: dict[str, str], tmp_path: Path
) -> None:
    """Without complete_url, the CLI prints {"parts": [...]} (ETags for whoever completes it),
    never a signed query; completing with those ETags yields the file."""
    from streamer.core.s3 import complete_xml

    src = make_file(tmp_path / "pre2.bin", 2 * PART + 7)
    plan = make_plan(seaweed, "pre2.bin", src.stat().st_size, complete=False)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    bare = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    rc, out, err = await streamer(bare, "put", "--s3-presigned", tmp_path / "plan.json", src)
    assert rc == 0, err
    assert "X-Amz-Signature" not in out + err
    parts = [(p["part_number"], p["etag"]) for p in json.loads(out)["parts"]]
    assert [n for n, _ in parts] == [1, 2, 3]
    query = f"/{BUCKET}/pre2.bin?uploadId={plan['upload_id']}"
    assert seaweed.fetch("POST", query, complete_xml(parts))[0] == 200
    status, body = seaweed.fetch("GET", f"/{BUCKET}/pre2.bin")
    assert (status, hashlib.sha256(body).hexdigest()) == (200, sha(src))


async def test_expired_presigned_url_is_22(
    seaweed: Seaweed, env: dict[str, str], tmp_path: Path
) -> None:
    """A presigned part URL past its expiry: exit 22 naming 403 and the S3 code; no signature
    printed."""
    src = make_file(tmp_path / "exp.bin", 1000)
    plan = make_plan(seaweed, "exp.bin", 1000, complete=True, expires=1)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    await asyncio.sleep(2.1)  # past X-Amz-Expires=1
    rc, out, err = await streamer(env, "put", "--s3-presigned", tmp_path / "plan.json", src)
    assert rc == 22, err
    assert "403" in err and "AccessDenied" in err, err
    signature = plan["parts"][0]["url"].split("X-Amz-Signature=")[1].split("&")[0]
    assert len(signature) == 64 and signature not in out + err
    assert "X-Amz-Signature=REDACTED" in err


@pytest.mark.parametrize(
    "change", [{"part_size": PART, "drop": 1}, {"part_size": PART // 2}, {"part_size": 0}]
)
async def test_bad_plan_is_2(
    seaweed: Seaweed, env: dict[str, str], tmp_path: Path, change: dict[str, int]
) -> None:
    """A plan whose parts do not cover the file exactly (too few, too small, no size): exit 2,
    before any request."""
    src = make_file(tmp_path / "bad.bin", 2 * PART + 1)
    plan = {
        "part_size": change["part_size"],
        "parts": [{"part_number": n, "url": f"http://127.0.0.1:9/p{n}"} for n in (1, 2, 3)],
    }
    if change.get("drop"):
        plan["parts"] = plan["parts"][:-1]
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    rc, _out, err = await streamer(env, "put", "--s3-presigned", tmp_path / "plan.json", src)
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


async def test_file_changed_during_upload_is_83_and_aborted(
    seaweed: Seaweed, env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    """A file modified while its parts are sent: SourceChangedError (exit 83 on the CLI), the
    multipart upload is aborted on the server and forgotten here."""
    src = make_file(tmp_path / "chg.bin", 4 * PART)
    relay = Relay(int(seaweed.endpoint.rsplit(":", 1)[1]), delay=0.004)
    port = await relay.start()
    endpoint = f"http://127.0.0.1:{port}"
    task = asyncio.create_task(
        client.upload_s3(
            src, f"s3://{BUCKET}/chg.bin", endpoint_url=endpoint, part_size=PART, parallel=1
        )
    )
    await wait_for(lambda: 2 in relay.part_requests or task.done(), "part 2 under way")
    upload_id = remembered_id(src, "chg.bin", endpoint)
    with src.open("r+b") as f:
        f.write(b"changed!")
    with pytest.raises(SourceChangedError) as info:
        await task
    await relay.stop()
    assert info.value.exit_code == 83
    status, body = seaweed.fetch("GET", f"/{BUCKET}/chg.bin?uploadId={upload_id}")
    assert (status, b"NoSuchUpload" in body) == (404, True)


async def test_without_botocore_s3_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    """Where botocore cannot be imported, an s3:// target is a usage error (exit 2) naming the
    extra streamer[s3]; nothing else needs it."""
    src = make_file(tmp_path / "nb.bin", 10)
    blocked = "import sys; sys.modules['botocore'] = None; from streamer.cli.main import main; "
    code = blocked + "raise SystemExit(main(sys.argv[1:]))"
    for args in (("put", src, f"s3://{BUCKET}/nb.bin"), ("get", f"s3://{BUCKET}/nb.bin")):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            *map(str, args),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 2, err
        assert b"streamer[s3]" in err and b"Traceback" not in err


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units are Linux's")
def test_multipart_memory_is_flat(env: dict[str, str], tmp_path: Path) -> None:
    """`streamer put` of 256 MiB to S3 (16 parts, 4 at once) peaks at <= 64 MiB RSS."""
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(256 * MIB)  # sparse: quick to make, read like any file
    aws = [f"{k}={v}" for k, v in env.items() if k.startswith(("AWS_", "XDG_"))]
    cmd = [
        "/usr/bin/env",
        *aws,
        sys.executable,
        "-m",
        "streamer",
        "put",
        str(big),
        f"s3://{BUCKET}/big.bin",
        "-q",
    ]
    log = tmp_path / "child.log"
    report = peak_rss(cmd, 120.0, log)
    assert report.rc == 0, log.read_text(errors="replace")
    assert report.launcher_kib < report.maxrss_kib / 2, "the launcher could dominate"
    assert report.maxrss_kib <= 64 * 1024, f"peak RSS {report.maxrss_kib / 1024:.1f} MiB"


async def test_get_s3_resumes_after_interrupt(
    seaweed: Seaweed, env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    """`get s3://` stopped (SIGTERM) mid-body resumes on the rerun although each run signs a
    new URL: the partial download is named by the object's unsigned URL, the ETag guards it."""
    src = make_file(tmp_path / "dl.bin", 12 * MIB)
    await client.upload_s3(src, f"s3://{BUCKET}/dl.bin")
    relay = Relay(int(seaweed.endpoint.rsplit(":", 1)[1]), delay=0.01)
    endpoint = f"http://127.0.0.1:{await relay.start()}"
    out = tmp_path / "dl.out"
    args = ("get", f"s3://{BUCKET}/dl.bin", "-o", out, "--endpoint-url", endpoint)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer",
        *map(str, args),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    part = out.with_name(out.name + ".part")
    try:
        await wait_for(lambda: part.exists() and part.stat().st_size >= 2 * MIB, "2 MiB saved")
    finally:
        proc.terminate()
        await proc.wait()
    relay.delay = 0.0
    rc, _out, err = await streamer(env, *args)
    await relay.stop()
    assert rc == 0, err
    assert "resumed at byte" in err, err
    assert sha(out) == sha(src)
