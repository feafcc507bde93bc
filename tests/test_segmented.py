"""Segmented downloads (`split=N`, ``streamer get --split N``) against real servers on 127.0.0.1.

The rules (streamer/segmented.py): a ``bytes=0-`` probe answered by a 206 with a complete length
and a strong validator (or a checksum) splits the file into N ranged requests written at their
offsets; a server that ignores Range, or a resource with nothing to prove its identity, gets
one plain stream; a cut segment is retried from where it stopped; a resource that changes
between segment requests is never spliced (one stream fetches the new version whole); a killed
run resumes every segment from its checkpointed offset; a checksum covers the assembled file.
Every test ends by comparing the file with the bytes served.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from pytest_aiohttp import AiohttpServer

from streamer import Client, Result, StreamerError
from streamer.core.retry import RetryPolicy
from streamer.core.segments import split
from streamer.server.app import make_app
from streamer.storage.files import part_path, sidecar_path
from tests.faults import data
from tests.helpers import file_digest, finish, kill, spawn, streamer, wait_for
from tests.resource_server import Act, Kind, Resource, Validators, make_resource_app

MIB = 1 << 20
SIZE = 5 * MIB + 12_345  # at least 4 x MIN_SEGMENT, and not a multiple of 4
BODY = data(SIZE)
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
RANGES = web.AppKey("ranges", list[str | None])


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def bounds(value: str | None) -> tuple[int, int | None]:
    """(first, last) of ``bytes=FIRST-[LAST]``."""
    match = _RANGE.fullmatch(value or "")
    assert match is not None, value
    return int(match[1]), int(match[2]) if match[2] else None


@web.middleware
async def _record_range(request: web.Request, handler: Handler) -> web.StreamResponse:
    request.app[RANGES].append(request.headers.get("Range"))
    return await handler(request)


@pytest.fixture
async def builtin(aiohttp_server: AiohttpServer, tmp_path: Path) -> tuple[str, list[str | None]]:
    """The built-in server (strong ETag, real Range support) serving BODY at the URL returned,
    with the list of Range headers it receives."""
    root = tmp_path / "srv"
    root.mkdir()
    (root / "big.bin").write_bytes(BODY)
    app = make_app(root)
    app[RANGES] = []
    app.middlewares.append(_record_range)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("/big.bin")), app[RANGES]


@pytest.fixture
async def resource(aiohttp_server: AiohttpServer) -> Resource:
    """The scripted resource of tests/resource_server.py serving BODY (ETag "v1")."""
    res = Resource(BODY)
    server = await aiohttp_server(make_resource_app(res), host="127.0.0.1")
    res.url = str(server.make_url("/resource"))
    return res


def tiles(ranges: list[str | None], total: int) -> bool:
    """Whether closed ``bytes=a-b`` ranges cover [0, total) exactly, without overlap."""
    spans = sorted(bounds(r) for r in ranges)
    at = 0
    for first, last in spans:
        if first != at or last is None:
            return False
        at = last + 1
    return at == total


async def test_split_four_byte_for_byte(
    client: Client, builtin: tuple[str, list[str | None]], tmp_path: Path
) -> None:
    """split=4 gives the exact bytes via a probe plus 4 tiling ranges, and the notes say so."""
    url, ranges = builtin
    out = tmp_path / "out.bin"
    res = await client.download(url, out, split=4)
    assert out.read_bytes() == BODY
    assert res.size == SIZE
    assert any("4 segments" in note for note in res.notes), res.notes
    assert ranges[0] == "bytes=0-"  # the probe
    assert len(ranges) == 5
    assert len(set(ranges[1:])) == 4
    assert tiles(ranges[1:], SIZE)
    assert not part_path(out).exists() and not sidecar_path(out).exists()


async def test_cli_split_four(builtin: tuple[str, list[str | None]], tmp_path: Path) -> None:
    """`streamer get URL -o P --split 4` writes the file whole and notes the 4 segments."""
    url, ranges = builtin
    out = tmp_path / "out.bin"
    run = await streamer("get", url, "-o", str(out), "--split", "4")
    assert run.rc == 0, run.err
    assert "downloaded in 4 segments" in run.err
    assert out.read_bytes() == BODY
    assert tiles(ranges[1:], SIZE)


async def test_server_ignoring_range_gets_one_stream(
    client: Client, resource: Resource, tmp_path: Path
) -> None:
    """A server answering 200 to every Range gets one plain request after the probe."""
    resource.script.extend(Act(kind=Kind.IGNORE_RANGE) for _ in range(6))
    out = tmp_path / "out.bin"
    res = await client.download(resource.url, out, split=4)
    assert out.read_bytes() == BODY
    assert not any("segments" in note for note in res.notes)
    assert [s.range for s in resource.seen] == ["bytes=0-", None]


async def test_no_validator_no_checksum_gets_one_stream(
    client: Client, resource: Resource, tmp_path: Path
) -> None:
    """No ETag, no Last-Modified and no checksum: nothing ties ranges together, so one stream."""
    resource.script.extend(Act(validators=Validators.NONE) for _ in range(6))
    out = tmp_path / "out.bin"
    res = await client.download(resource.url, out, split=4)
    assert out.read_bytes() == BODY
    assert not any("segments" in note for note in res.notes)
    assert [s.range for s in resource.seen] == ["bytes=0-", None]


async def test_no_validator_but_checksum_is_split(
    client: Client, resource: Resource, tmp_path: Path
) -> None:
    """Without validators a checksum is identity enough: the file is split and verified."""
    resource.script.extend(Act(validators=Validators.NONE) for _ in range(6))
    out = tmp_path / "out.bin"
    res = await client.download(resource.url, out, split=4, checksum="sha256:" + sha256(BODY))
    assert out.read_bytes() == BODY
    assert any("4 segments" in note for note in res.notes), res.notes
    assert len(resource.seen) == 5


async def test_cut_segment_is_retried_in_the_same_call(
    client: Client, resource: Resource, tmp_path: Path
) -> None:
    """A segment cut mid-way is re-asked from where it stopped in the same call (retry=2)."""
    resource.script.extend([Act(), Act(cut_at=300_000)])
    out = tmp_path / "out.bin"
    res = await client.download(
        resource.url, out, split=4, retry=RetryPolicy(retries=2, delay=0.05)
    )
    assert out.read_bytes() == BODY
    assert any("4 segments" in note for note in res.notes)
    segments = split(SIZE, 4)
    starts = {s.start for s in segments}
    ranges = [s.range for s in resource.seen[1:]]
    assert len(ranges) == 5  # four segments and one retry
    resumed = [bounds(r) for r in ranges if bounds(r)[0] not in starts]
    assert len(resumed) == 1
    cut = next(s for s in resource.seen[1:] if s.sent == 300_000)
    first, _ = bounds(cut.range)
    assert resumed[0][0] == first + 300_000
    assert resource.sent - resource.seen[0].sent < SIZE + 300_000


async def test_resource_changing_mid_download_is_never_spliced(
    client: Client, resource: Resource, tmp_path: Path
) -> None:
    """A new version mid-download is never spliced: one stream fetches the new one whole."""
    resource.script.extend([Act(), Act(change=True)])
    out = tmp_path / "out.bin"
    res = await client.download(resource.url, out, split=4)
    new = resource.version.body
    assert resource.version.number == 2 and new != BODY
    assert out.read_bytes() == new
    assert any("restarted with one stream" in note for note in res.notes), res.notes
    assert resource.seen[-1].range is None and resource.seen[-1].status == 200
    assert not part_path(out).exists() and not sidecar_path(out).exists()


async def test_checksum_covers_the_assembled_file(
    client: Client, builtin: tuple[str, list[str | None]], tmp_path: Path
) -> None:
    """The checksum covers the assembled file: mismatch leaves no target and no partial."""
    url, _ = builtin
    out = tmp_path / "out.bin"
    with pytest.raises(StreamerError) as info:
        await client.download(url, out, split=4, checksum="sha256:" + sha256(b"other"))
    assert info.value.result is Result.CHECKSUM_MISMATCH
    assert not out.exists()
    assert not part_path(out).exists() and not sidecar_path(out).exists()
    res = await client.download(url, out, split=4, checksum="sha256:" + sha256(BODY))
    assert any("4 segments" in note for note in res.notes)
    assert out.read_bytes() == BODY


# --- a killed run resumes every segment ---------------------------------------------------------

BIG = 24 * MIB
PACE = 0.004  # seconds per 4 KiB piece: about 1 MiB/s per connection


def _segments_started(sidecar: Path, parts: int) -> bool:
    """Whether the sidecar's segment map shows progress in every one of `parts` segments."""
    try:
        doc = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    segments = doc.get("segments") or []
    return len(segments) == parts and all(done > 0 for _, _, done in segments)


async def test_killed_split_run_resumes_each_segment(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """After kill -9 every segment resumes past its start; the file is whole, < 1.5x sent."""
    body = data(BIG)
    res = Resource(body)
    server = await aiohttp_server(make_resource_app(res), host="127.0.0.1")
    res.url = str(server.make_url("/resource"))
    res.script.extend(Act(pace=PACE) for _ in range(5))  # probe + 4 throttled segments
    out = tmp_path / "big.bin"
    proc = await spawn("get", res.url, "-o", str(out), "--split", "4", "-q")
    try:
        await wait_for(lambda: _segments_started(sidecar_path(out), 4), "a segment checkpoint")
        kill(proc)
        await finish(proc)
    finally:
        kill(proc)
    assert proc.returncode == -9
    assert not out.exists()
    res.script.clear()
    first_run = len(res.seen)
    run = await streamer("get", res.url, "-o", str(out), "--split", "4", "-q")
    assert run.rc == 0, run.err
    assert file_digest(out) == sha256(body)
    second = res.seen[first_run:]
    starts = [s.start for s in split(BIG, 4)]
    resumed = sorted(bounds(s.range)[0] for s in second)
    assert len(resumed) == 4
    assert all(s.if_range == '"v1"' for s in second)
    for start, next_start, at in zip(starts, [*starts[1:], BIG], resumed, strict=True):
        assert start < at < next_start  # past the segment's start, inside it
    assert res.sent < 1.5 * BIG, res.sent


# --- the contract of one download holds on --split too -------------------------------------------


async def test_last_modified_only_resource_changed_under_a_server_ignoring_if_range(
    client: Client, resource: Resource, tmp_path: Path
) -> None:
    """A resource with only a strong Last-Modified, changed between runs, from a server that
    ignores If-Range (206 from the new version): the segments are never spliced; the file is
    the new version whole."""
    lm = Validators.LAST_MODIFIED
    resource.script.extend([Act(validators=lm), Act(validators=lm, cut_at=200_000)])
    out = tmp_path / "out.bin"
    with pytest.raises(StreamerError):
        await client.download(resource.url, out, split=4)
    assert sidecar_path(out).exists(), "the first run leaves a resumable segmented partial"
    resource.change()
    new = resource.version.body
    resource.script.extend(Act(kind=Kind.IGNORE_IF_RANGE, validators=lm) for _ in range(12))
    res = await client.download(resource.url, out, split=4)
    assert out.read_bytes() == new
    assert any("restarted with one stream" in note for note in res.notes), res.notes


async def test_split_names_the_file_from_content_disposition(
    client: Client, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """-J (remote_name) holds with split: the file is saved under the server's safe name."""
    root = tmp_path / "srv"
    root.mkdir()
    (root / "big.bin").write_bytes(BODY)

    async def disposition(_request: web.Request, resp: web.StreamResponse) -> None:
        resp.headers["Content-Disposition"] = 'attachment; filename="../../named.bin"'

    app = make_app(root)
    app.on_response_prepare.append(disposition)
    server = await aiohttp_server(app, host="127.0.0.1")
    out = tmp_path / "out"
    out.mkdir()
    res = await client.download(
        str(server.make_url("/big.bin")), out / "big.bin", split=4, remote_name=True
    )
    assert res.path == out / "named.bin"
    assert (out / "named.bin").read_bytes() == BODY
    assert not (out / "big.bin").exists()


async def test_split_reports_progress_up_to_the_whole_file(
    client: Client, builtin: tuple[str, list[str | None]], tmp_path: Path
) -> None:
    """A progress callback sees split's bytes rise to the total, then FINALIZING and DONE."""
    from streamer import Phase, Progress

    url, _ = builtin
    seen: list[Progress] = []
    await client.download(url, tmp_path / "out.bin", split=4, progress=seen.append)
    body = [p for p in seen if p.phase is Phase.BODY]
    assert body and all(p.total == SIZE for p in body)
    assert [p.done for p in body] == sorted(p.done for p in body)
    assert body[-1].done == SIZE
    assert [p.phase for p in seen[-2:]] == [Phase.FINALIZING, Phase.DONE]


async def test_split_refuses_a_body_over_max_bytes_before_any_segment(
    client: Client, builtin: tuple[str, list[str | None]], tmp_path: Path
) -> None:
    """max_bytes holds with split: the probe's complete length is refused, no segment asked."""
    url, ranges = builtin
    out = tmp_path / "out.bin"
    with pytest.raises(StreamerError) as info:
        await client.download(url, out, split=4, max_bytes=MIB)
    assert info.value.result is Result.BODY_SIZE_LIMIT_EXCEEDED
    assert ranges == ["bytes=0-"]
    assert not out.exists() and not part_path(out).exists()


async def test_split_with_decoding_is_refused(
    client: Client, builtin: tuple[str, list[str | None]], tmp_path: Path
) -> None:
    """split with accept_gzip is a UsageError before any request: ranges of an encoding cannot
    be joined into the decoded file."""
    url, ranges = builtin
    with pytest.raises(StreamerError) as info:
        await client.download(url, tmp_path / "out.bin", split=4, accept_gzip=True)
    assert info.value.result is Result.INVALID_INPUT
    assert ranges == []
