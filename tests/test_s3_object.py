"""What `put s3://` tells the object and the user, against a real SeaweedFS: the object's
Content-Type (guessed from the file name, or given with -H / --content-type), the progress of
confirmed parts (API callback and the CLI's bar), and the --json line shared with `put`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer import Client, S3Error
from streamer.core.events import Phase, Progress
from tests.s3_helpers import (
    BUCKET,
    PART,
    client,
    env,
    make_file,
    object_head,
    sha,
    streamer,
)
from tests.seaweed import Relay, Seaweed

__all__ = ["client", "env"]  # fixtures, used by name


@pytest.mark.parametrize("size", [1000, 2 * PART + 1], ids=["put-object", "multipart"])
async def test_content_type_is_guessed_from_the_file_name(
    seaweed: Seaweed, env: dict[str, str], tmp_path: Path, size: int
) -> None:
    """PutObject and CreateMultipartUpload carry a Content-Type guessed from the file's name
    (`mimetypes`), application/octet-stream for an unknown extension; --json names it."""
    for name, expected in (("page.html", "text/html"), ("blob.zzq9", "application/octet-stream")):
        src = make_file(tmp_path / name, size)
        key = f"ct/{size}/{name}"
        rc, out, err = await streamer(
            env, "put", src, f"s3://{BUCKET}/{key}", "--part-size", "5M", "--json"
        )
        assert rc == 0, err
        assert json.loads(out)["content_type"] == expected
        assert object_head(seaweed, key)["content-type"] == expected


@pytest.mark.parametrize("size", [1000, 2 * PART + 1], ids=["put-object", "multipart"])
async def test_content_type_given_with_h_or_content_type_wins(
    seaweed: Seaweed, env: dict[str, str], tmp_path: Path, size: int
) -> None:
    """-H 'Content-Type: X' (as for a plain `put`) replaces the guess, --content-type replaces
    both; other -H headers (x-amz-meta-*) are signed and stored with the object."""
    src = make_file(tmp_path / "page.html", size)
    cases = (
        (("-H", "Content-Type: text/x-one", "-H", "x-amz-meta-origin: tests"), "text/x-one"),
        (("-H", "content-type: text/x-one", "--content-type", "text/x-two"), "text/x-two"),
    )
    for i, (extra, expected) in enumerate(cases):
        key = f"ct-given/{size}/{i}.html"
        rc, _out, err = await streamer(
            env, "put", src, f"s3://{BUCKET}/{key}", "--part-size", "5M", *extra
        )
        assert rc == 0, err
        head = object_head(seaweed, key)
        assert head["content-type"] == expected
        if i == 0:
            assert head.get("x-amz-meta-origin") == "tests"


async def test_progress_counts_confirmed_parts_only(
    seaweed: Seaweed, env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    """The progress callback moves only by whole parts the server stored (never by bytes
    queued or in flight), never backwards, and ends with DONE at the file's size."""
    src = make_file(tmp_path / "prog.bin", 3 * PART + 4321)
    size = src.stat().st_size
    seen: list[Progress] = []
    relay = Relay(int(seaweed.endpoint.rsplit(":", 1)[1]), delay=0.002)
    port = await relay.start()
    try:
        await client.upload_s3(
            src,
            f"s3://{BUCKET}/prog.bin",
            endpoint_url=f"http://127.0.0.1:{port}",
            part_size=PART,
            parallel=2,
            progress=seen.append,
        )
    finally:
        await relay.stop()
    done = [p.done for p in seen]
    assert done == sorted(done) and done[0] == 0
    assert set(done) <= {0, PART, 2 * PART, 3 * PART, 2 * PART + 4321, PART + 4321, 4321, size}
    assert len(set(done)) == 5  # 0, then one step per part
    assert (seen[-1].phase, seen[-1].done, seen[-1].total) == (Phase.DONE, size, size)
    assert all(p.total == size for p in seen)


async def test_cli_bar_on_request_off_when_not_a_terminal(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`put s3://` draws put's tqdm bar with --progress (to 100 %), none on a non-terminal by
    default, with --no-progress or -s; --json has put's keys (url, sent, elapsed, result)."""
    src = make_file(tmp_path / "bar.bin", 2 * PART + 10)
    url = f"s3://{BUCKET}/bar.bin"
    rc, _out, err = await streamer(env, "put", src, url, "--part-size", "5M", "--progress")
    assert rc == 0, err
    assert "bar.bin" in err and "100%" in err and "10.0M/10.0M" in err, err
    for extra in ((), ("--no-progress",)):
        rc, out, err = await streamer(env, "put", src, url, "--part-size", "5M", *extra)
        assert rc == 0, err
        assert "%|" not in err and "uploaded s3://" in err
    rc, out, err = await streamer(env, "put", src, url, "-s", "--progress")
    assert (rc, out, err) == (0, "", "")
    rc, out, err = await streamer(env, "put", src, url, "--progress", "--json")
    assert rc == 0, err
    assert "%|" not in err
    doc = json.loads(out)
    assert {"url", "sent", "elapsed", "result"} <= doc.keys()
    assert (doc["url"], doc["sent"], doc["result"]) == (url, src.stat().st_size, "success")


async def test_presigned_progress_and_bar(
    seaweed: Seaweed, env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    """--s3-presigned reports confirmed parts the same way (whole parts, DONE at the size)."""
    from tests.s3_helpers import make_plan

    src = make_file(tmp_path / "pbar.bin", 2 * PART + 3)
    size = src.stat().st_size
    plan = make_plan(seaweed, "pbar.bin", size, complete=True)
    seen: list[Progress] = []
    result = await client.upload_presigned_parts(src, plan, parallel=1, progress=seen.append)
    assert result.etag is not None
    assert [p.done for p in seen] == [0, PART, 2 * PART, size, size]
    assert seen[-1].phase is Phase.DONE
    back = tmp_path / "back.bin"
    rc, _out, err = await streamer(env, "get", f"s3://{BUCKET}/pbar.bin", "-o", back, "-q")
    assert rc == 0, err
    assert sha(back) == sha(src)


async def test_headers_with_a_presigned_plan_are_a_usage_error(
    env: dict[str, str], tmp_path: Path
) -> None:
    """-H or --content-type with --s3-presigned: exit 2 before any request (the plan's maker
    created the upload, and with it the object's headers)."""
    src = make_file(tmp_path / "p.bin", 10)
    plan = {"part_size": 10, "parts": [{"part_number": 1, "url": "http://127.0.0.1:9/p"}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    for extra in (("-H", "Content-Type: text/plain"), ("--content-type", "text/plain")):
        rc, _out, err = await streamer(
            env, "put", "--s3-presigned", tmp_path / "plan.json", src, *extra
        )
        assert rc == 2, err
        assert "--s3-presigned" in err and len(err.strip().splitlines()) == 1


async def test_resumed_progress_starts_at_the_stored_parts(
    seaweed: Seaweed, env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    """A resumed upload's first progress report is the bytes of the parts already stored
    (listed by the server), so a bar starts where the last run stopped."""
    src = make_file(tmp_path / "again.bin", 2 * PART + 9)
    relay = Relay(int(seaweed.endpoint.rsplit(":", 1)[1]), fail_part=2)
    endpoint = f"http://127.0.0.1:{await relay.start()}"
    url = f"s3://{BUCKET}/again.bin"
    seen: list[Progress] = []
    try:
        with pytest.raises(S3Error):
            await client.upload_s3(src, url, endpoint_url=endpoint, part_size=PART, parallel=1)
        result = await client.upload_s3(
            src, url, endpoint_url=endpoint, part_size=PART, progress=seen.append
        )
    finally:
        await relay.stop()
    assert result.resumed_parts == 1
    done = [p.done for p in seen]
    assert done[0] == PART and done == sorted(done) and done[-1] == 2 * PART + 9
    assert len(set(done)) == 3  # the stored part, then one step per part sent
