"""S3 test helpers: the per-test AWS environment and client, files whose parts differ, a
CLI runner, and the server's own view (ListParts, ListMultipartUploads, presigned plans).

The SeaweedFS server itself is the session fixture `seaweed` of tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from streamer import Client
from streamer.core.s3 import parse_list_parts, parse_xml
from streamer.storage.upload_state import load_state
from tests.helpers import ENV
from tests.seaweed import ACCESS_KEY, SECRET_KEY, Seaweed

MIB = 1 << 20
PART = 5 * MIB  # S3's smallest part size: keeps the files of these tests small
BUCKET = "streamer-test"


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


def presign(
    seaweed: Seaweed, method: str, path_query: str, expires: int = 600, base: str | None = None
) -> str:
    """A presigned URL made with botocore's query signer (what a backend would hand out),
    for the server itself or for `base` (a relay in front of it: the Host is signed)."""
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method=method, url=(base or seaweed.endpoint) + path_query)
    S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1", expires).add_auth(req)
    return str(req.url)


def make_plan(
    seaweed: Seaweed,
    key: str,
    size: int,
    complete: bool,
    expires: int = 600,
    *,
    base: str | None = None,
    upload_id: str | None = None,
) -> dict[str, Any]:
    """What a backend hands a client: a new upload's presigned part URLs (and completion);
    with `upload_id`, that upload's URLs signed anew."""
    from streamer.core.s3 import parse_upload_id

    if upload_id is None:
        status, body = seaweed.fetch("POST", f"/{BUCKET}/{key}?uploads")
        assert status == 200, body
        upload_id = parse_upload_id(body)
    count = max(1, -(-size // PART))
    where = f"/{BUCKET}/{key}?uploadId={upload_id}"
    parts = [
        {"part_number": n, "url": presign(seaweed, "PUT", f"{where}&partNumber={n}", expires, base)}
        for n in range(1, count + 1)
    ]
    plan: dict[str, Any] = {"part_size": PART, "parts": parts, "upload_id": upload_id}
    if complete:
        plan["complete_url"] = presign(seaweed, "POST", where, expires, base)
    return plan


def object_head(seaweed: Seaweed, key: str) -> dict[str, str]:
    """The stored object's headers, as a signed HEAD sees them."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{seaweed.endpoint}/{BUCKET}/{key}"
    req = AWSRequest(method="HEAD", url=url)
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(req)
    http = urllib.request.Request(url, method="HEAD", headers=dict(req.headers))
    with urllib.request.urlopen(http, timeout=10) as resp:
        return {k.lower(): v for k, v in resp.headers.items()}


def multipart_uploads(seaweed: Seaweed, key: str) -> list[str]:
    """The UploadIds the server holds open for `key` (a signed ListMultipartUploads)."""
    status, body = seaweed.fetch("GET", f"/{BUCKET}?uploads&prefix={key}")
    assert status == 200, body
    ids = []
    for upload in parse_xml(body):
        if upload.tag.rpartition("}")[2] != "Upload":
            continue
        fields = {child.tag.rpartition("}")[2]: child.text or "" for child in upload}
        if fields.get("Key") == key:
            ids.append(fields.get("UploadId", ""))
    return ids
