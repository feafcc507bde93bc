"""Resume that never corrupts: real downloads against the scripted server of resource_server.py.

Every test ends by comparing the file with the resource's bytes: a resumed body must equal the
version served, never a splice of two versions, whatever the server did in between.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpServer

import streamer.storage.partial
from streamer import Client, StreamerError
from streamer.core.redact import redact_url
from streamer.core.resume import ResumeState, SidecarError, dump_state, load_state
from streamer.core.retry import RetryPolicy
from streamer.errors import ChecksumMismatch, HTTPStatusError
from streamer.storage.files import part_path, sidecar_path
from tests.conftest import CLIENT_DEFAULTS
from tests.faults import ClientFactory, data
from tests.resource_server import Act, Kind, Resource, Validators, make_resource_app, serve

SIZE = 200 * 1024
CHUNK = 4096
BODY = data(SIZE)


@pytest.fixture
async def resource(aiohttp_server: AiohttpServer) -> Resource:
    """The scripted resource (version 1 = BODY, ETag "v1") served on 127.0.0.1."""
    res = Resource(BODY)
    server = await aiohttp_server(make_resource_app(res), host="127.0.0.1")
    res.url = str(server.make_url("/resource"))
    return res


@pytest.fixture
async def dl(make_client: ClientFactory) -> Client:
    """A client reading 4 KiB chunks, so that cuts land mid-body."""
    return await make_client(chunk_size=CHUNK)


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return tmp_path / "resource.bin"


def _state(target: Path) -> ResumeState | None:
    path = sidecar_path(target)
    return load_state(path.read_bytes()) if path.exists() else None


def _part_size(target: Path) -> int | None:
    path = part_path(target)
    return path.stat().st_size if path.exists() else None


def _assert_sidecar_truthful(target: Path) -> None:
    """The sidecar never claims bytes the partial file does not hold."""
    state = _state(target)
    if state is not None:
        size = _part_size(target)
        assert size is not None, "a sidecar without a partial file"
        assert state.committed <= size


async def _fail(client: Client, resource: Resource, target: Path, **kw: Any) -> StreamerError:
    with pytest.raises(StreamerError) as info:
        await client.download(resource.url, target, **kw)
    assert not target.exists(), "a failed download must not create the target"
    _assert_sidecar_truthful(target)
    return info.value


def _sha256(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _restarted(notes: tuple[str, ...]) -> bool:
    return any("restarting from byte 0" in note for note in notes)


# --- cut, then resume ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cut_at", "how"),
    [(0, "close"), (1, "close"), (16 * CHUNK, "close"), (16 * CHUNK, "abort"), (SIZE - 1, "close")],
    ids=["at-0", "at-1", "chunk-boundary", "chunk-boundary-rst", "last-1"],
)
async def test_cut_then_second_run_resumes(
    dl: Client, resource: Resource, target: Path, cut_at: int, how: str
) -> None:
    """After a cut at byte K a rerun asks ``Range: bytes=K-`` with ``If-Range: "v1"`` and the
    file equals the resource; nothing held (K = 0) means a plain request."""
    resource.script.append(Act(cut_at=cut_at, how=how))
    await _fail(dl, resource, target)
    state = _state(target)
    if cut_at == 0:
        assert state is None and _part_size(target) is None
    else:
        assert state is not None
        assert (state.committed, state.etag, state.total) == (cut_at, '"v1"', SIZE)
        assert _part_size(target) == cut_at

    result = await dl.download(resource.url, target)

    assert target.read_bytes() == BODY
    second = resource.seen[1]
    if cut_at == 0:
        assert (second.range, second.if_range, second.status) == (None, None, 200)
        assert result.resumed_from == 0
    else:
        assert (second.range, second.if_range, second.status) == (f"bytes={cut_at}-", '"v1"', 206)
        assert result.resumed_from == cut_at
        assert f"resumed at byte {cut_at}" in result.notes
    assert resource.sent < 1.2 * SIZE
    assert resource.sent == SIZE
    assert not part_path(target).exists() and not sidecar_path(target).exists()


async def test_resume_with_last_modified_only(dl: Client, resource: Resource, target: Path) -> None:
    """Without an ETag a strong Last-Modified is the If-Range validator, sent byte for byte."""
    resource.script.append(Act(cut_at=5000, validators=Validators.LAST_MODIFIED))
    await _fail(dl, resource, target)
    resource.script.append(Act(validators=Validators.LAST_MODIFIED))
    result = await dl.download(resource.url, target)
    second = resource.seen[1]
    assert (second.range, second.if_range) == ("bytes=5000-", resource.version.last_modified)
    assert (second.status, result.resumed_from) == (206, 5000)
    assert target.read_bytes() == BODY


# --- the server's answer cannot be appended --------------------------------------------------


async def test_changed_resource_restarts_with_new_version(
    dl: Client, resource: Resource, target: Path
) -> None:
    """A new version between runs: If-Range mismatches, the 200 is the NEW version whole, never
    the old prefix plus the new tail; the notes say it restarted."""
    resource.script.append(Act(cut_at=100_000))
    await _fail(dl, resource, target)
    new = resource.change().body
    assert new != BODY and len(new) == SIZE

    result = await dl.download(resource.url, target)

    second = resource.seen[1]
    assert (second.range, second.if_range, second.status) == ("bytes=100000-", '"v1"', 200)
    assert target.read_bytes() == new
    assert result.resumed_from == 0
    assert _restarted(result.notes)


async def test_changed_resource_of_other_size_restarts(
    dl: Client, resource: Resource, target: Path
) -> None:
    """A new, shorter version (shorter than what we hold) also comes back whole and correct."""
    resource.script.append(Act(cut_at=100_000))
    await _fail(dl, resource, target)
    new = resource.change(data(50_000, offset=7)).body
    result = await dl.download(resource.url, target)
    assert target.read_bytes() == new
    assert (result.resumed_from, result.size) == (0, 50_000)


async def test_range_ignored_restarts_from_zero(
    dl: Client, resource: Resource, target: Path
) -> None:
    """A 200 to a Range request is the whole body: written from byte 0, not appended."""
    resource.script += [Act(cut_at=30_000), Act(kind=Kind.IGNORE_RANGE)]
    await _fail(dl, resource, target)
    result = await dl.download(resource.url, target)
    assert (resource.seen[1].range, resource.seen[1].status) == ("bytes=30000-", 200)
    assert target.read_bytes() == BODY
    assert result.resumed_from == 0
    assert _restarted(result.notes)


@pytest.mark.parametrize("kind", [Kind.WRONG_START, Kind.OTHER_LENGTH, Kind.BAD_LENGTH])
async def test_unusable_206_discards_partial_and_fetches_fresh(
    dl: Client, resource: Resource, target: Path, kind: Kind
) -> None:
    """A 206 at a wrong start, of another complete length or with a Content-Length that
    disagrees with its Content-Range is not appended: the partial is dropped, asked again whole."""
    resource.script += [Act(cut_at=30_000), Act(kind=kind)]
    await _fail(dl, resource, target)
    result = await dl.download(resource.url, target)
    assert [(s.range, s.status) for s in resource.seen[1:]] == [
        ("bytes=30000-", 206),
        (None, 200),
    ]
    assert target.read_bytes() == BODY
    assert result.resumed_from == 0
    assert _restarted(result.notes)


# --- nothing to resume from ------------------------------------------------------------------


@pytest.mark.parametrize(
    "validators", [Validators.WEAK, Validators.NONE, Validators.RECENT_LAST_MODIFIED]
)
async def test_without_strong_validator_nothing_is_kept(
    dl: Client, resource: Resource, target: Path, validators: Validators
) -> None:
    """A weak ETag, a Last-Modified under 60 s old or no validator at all cannot prove a later
    body continues this one: a failure keeps nothing and a rerun starts at 0 without Range."""
    resource.script += [Act(cut_at=50_000, validators=validators), Act(validators=validators)]
    await _fail(dl, resource, target)
    assert not sidecar_path(target).exists()
    assert not part_path(target).exists()
    result = await dl.download(resource.url, target)
    assert (resource.seen[1].range, resource.seen[1].if_range) == (None, None)
    assert (result.resumed_from, target.read_bytes()) == (0, BODY)


async def test_checksum_without_validator_resumes_without_if_range(
    dl: Client, resource: Resource, target: Path
) -> None:
    """With no validator but a checksum, resume with Range and no If-Range; the whole is hashed."""
    checksum = _sha256(BODY)
    resource.script += [Act(cut_at=50_000, validators=Validators.NONE)]
    resource.script += [Act(validators=Validators.NONE)]
    await _fail(dl, resource, target, checksum=checksum)
    state = _state(target)
    assert state is not None and (state.committed, state.checksum) == (50_000, checksum)
    result = await dl.download(resource.url, target, checksum=checksum)
    assert (resource.seen[1].range, resource.seen[1].if_range) == ("bytes=50000-", None)
    assert (result.resumed_from, result.checksum) == (50_000, checksum)
    assert target.read_bytes() == BODY


async def test_checksum_without_validator_catches_a_splice(
    dl: Client, resource: Resource, target: Path
) -> None:
    """Without a validator a changed resource is spliced by the server's 206; the checksum
    refuses it, no target appears and the bad partial is removed."""
    resource.script += [Act(cut_at=50_000, validators=Validators.NONE)]
    resource.script += [Act(validators=Validators.NONE, change=True)]
    await _fail(dl, resource, target, checksum=_sha256(BODY))
    err = await _fail(dl, resource, target, checksum=_sha256(BODY))
    assert isinstance(err, ChecksumMismatch)
    assert resource.seen[1].range == "bytes=50000-"
    assert not part_path(target).exists() and not sidecar_path(target).exists()


# --- 416 -------------------------------------------------------------------------------------


async def test_416_on_complete_partial_succeeds_without_body(
    dl: Client, resource: Resource, target: Path
) -> None:
    """A partial holding every byte: the server's 416 ``bytes */SIZE`` completes the download
    without a byte of body."""
    part_path(target).write_bytes(BODY)
    state = ResumeState(redact_url(resource.url), resource.url, '"v1"', None, SIZE, SIZE)
    sidecar_path(target).write_text(dump_state(state))
    result = await dl.download(resource.url, target)
    assert [(s.range, s.if_range, s.status) for s in resource.seen] == [
        (f"bytes={SIZE}-", '"v1"', 416)
    ]
    assert resource.sent == 0
    assert target.read_bytes() == BODY
    assert result.resumed_from == SIZE
    assert not part_path(target).exists() and not sidecar_path(target).exists()


async def test_416_complete_with_crash_leftovers_and_checksum(
    dl: Client, resource: Resource, target: Path
) -> None:
    """A complete partial followed by unrecorded bytes (a crash after the last checkpoint):
    the 416 path cuts them off before the checksum is computed, so it verifies and succeeds."""
    part_path(target).write_bytes(BODY + b"junk written after the last checkpoint")
    state = ResumeState(redact_url(resource.url), resource.url, '"v1"', None, SIZE, SIZE)
    sidecar_path(target).write_text(dump_state(state))
    checksum = "sha256:" + hashlib.sha256(BODY).hexdigest()
    result = await dl.download(resource.url, target, checksum=checksum)
    assert [s.status for s in resource.seen] == [416]
    assert target.read_bytes() == BODY
    assert result.checksum == checksum


@pytest.mark.parametrize(
    "header", [f"bytes */{SIZE}", f"bytes */{SIZE + 1}", "bytes */30000", None]
)
async def test_416_on_incomplete_partial_restarts(
    dl: Client, resource: Resource, target: Path, header: str | None
) -> None:
    """A 416 to a partial that does not hold the whole resource (or a 416 that does not say
    how long it is) is not success: the partial is dropped and the body fetched whole."""
    resource.script += [Act(cut_at=30_000), Act(kind=Kind.UNSATISFIABLE, header=header)]
    await _fail(dl, resource, target)
    result = await dl.download(resource.url, target)
    assert [(s.range, s.status) for s in resource.seen[1:]] == [("bytes=30000-", 416), (None, 200)]
    assert target.read_bytes() == BODY
    assert _restarted(result.notes)


# --- retries ---------------------------------------------------------------------------------


async def test_retry_after_is_honoured(dl: Client, resource: Resource, target: Path) -> None:
    """A 503 with ``Retry-After: 1`` makes the next attempt wait about a second."""
    resource.script.append(Act(kind=Kind.UNAVAILABLE, header="1"))
    started = time.monotonic()
    result = await dl.download(resource.url, target, retry=2)
    assert time.monotonic() - started >= 0.95
    assert result.attempts == 2
    assert [s.status for s in resource.seen] == [503, 200]
    assert target.read_bytes() == BODY


async def test_retries_exhausted_reports_attempts(
    dl: Client, resource: Resource, target: Path
) -> None:
    """When every attempt fails the error says how many were made."""
    resource.script += [Act(kind=Kind.UNAVAILABLE, header="0")] * 3
    err = await _fail(dl, resource, target, retry=2)
    assert isinstance(err, HTTPStatusError) and err.status == 503
    assert err.attempts == 3
    assert "gave up after 3 attempts" in str(err)
    assert len(resource.seen) == 3


async def test_retry_after_cut_ends_with_correct_file(
    dl: Client, resource: Resource, target: Path
) -> None:
    """Cuts mid-body with retries left are retried within the same call to a correct file."""
    resource.script += [Act(cut_at=100_000, how="abort"), Act(cut_at=150_000)]
    result = await dl.download(resource.url, target, retry=RetryPolicy(retries=3, delay=0))
    assert target.read_bytes() == BODY
    # The second answer (from 100 000) is cut at absolute byte 150 000 only if the server
    # counts from the start of the resource; either way the file is whole and every retry
    # resumed instead of starting over.
    assert result.attempts == len(resource.seen)
    assert all(seen.range is not None for seen in resource.seen[1:])


async def test_retry_after_cut_continues_from_bytes_written(
    dl: Client, resource: Resource, target: Path
) -> None:
    """A retry within one download() call continues from the bytes written (Range on the
    second request), as downloading.py's docstring promises."""
    resource.script.append(Act(cut_at=100_000))
    result = await dl.download(resource.url, target, retry=RetryPolicy(retries=1, delay=0))
    assert target.read_bytes() == BODY
    second = resource.seen[1]
    assert (second.range, second.if_range, second.status) == ("bytes=100000-", '"v1"', 206)
    assert result.resumed_from == 100_000
    assert resource.sent == SIZE


# --- what the caller or the disk says --------------------------------------------------------


async def test_resume_false_ignores_valid_partial(
    dl: Client, resource: Resource, target: Path
) -> None:
    """``resume=False`` downloads from byte 0 even when a valid partial is there."""
    resource.script.append(Act(cut_at=100_000))
    await _fail(dl, resource, target)
    assert _state(target) is not None
    result = await dl.download(resource.url, target, resume=False)
    assert resource.seen[1].range is None and resource.seen[1].if_range is None
    assert result.resumed_from == 0
    assert resource.sent == 100_000 + SIZE
    assert target.read_bytes() == BODY


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\x00\xffgarbage", id="binary"),
        pytest.param(b"{garbage", id="text"),
        pytest.param(b'{"kind": "streamer.partial", "version": 99}', id="future-version"),
        pytest.param(b"[]", id="list"),
        pytest.param(b"", id="empty"),
    ],
)
async def test_corrupt_sidecar_restarts_with_note(
    dl: Client, resource: Resource, target: Path, garbage: bytes
) -> None:
    """A sidecar that cannot be read means a restart from 0 with a note, never a crash."""
    resource.script.append(Act(cut_at=100_000))
    await _fail(dl, resource, target)
    sidecar_path(target).write_bytes(garbage)
    with pytest.raises(SidecarError):
        load_state(garbage)
    result = await dl.download(resource.url, target)
    assert resource.seen[1].range is None
    assert result.resumed_from == 0
    assert any("ignored the resume state" in note for note in result.notes)
    assert target.read_bytes() == BODY


async def test_partial_shorter_than_sidecar_claims_restarts(
    dl: Client, resource: Resource, target: Path
) -> None:
    """A partial file shorter than the committed count (lost writes) is never resumed."""
    resource.script.append(Act(cut_at=100_000))
    await _fail(dl, resource, target)
    os.truncate(part_path(target), 60_000)
    result = await dl.download(resource.url, target)
    assert resource.seen[1].range is None
    assert (result.resumed_from, target.read_bytes()) == (0, BODY)


async def test_bytes_past_committed_are_cut_off(
    dl: Client, resource: Resource, target: Path
) -> None:
    """Bytes in the partial past the committed count (written, never recorded) are discarded:
    the resume starts at the committed count and the junk never reaches the file."""
    resource.script.append(Act(cut_at=100_000))
    await _fail(dl, resource, target)
    with part_path(target).open("ab") as f:
        f.write(b"junk" * 1000)
    result = await dl.download(resource.url, target)
    assert resource.seen[1].range == "bytes=100000-"
    assert (result.resumed_from, target.read_bytes()) == (100_000, BODY)


async def test_sidecar_never_ahead_of_partial_during_checkpoints(
    dl: Client, resource: Resource, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a checkpoint every KiB, the sidecar on disk never claims more than the partial
    holds, at any progress report and after the failure; the checkpoints do get written."""
    monkeypatch.setattr(streamer.storage.partial, "CHECKPOINT_BYTES", 1024)
    seen: list[tuple[int, int]] = []

    def watch(_progress: object) -> None:
        state = _state(target)
        size = _part_size(target)
        if state is not None and size is not None:
            seen.append((state.committed, size))

    resource.script.append(Act(cut_at=150_000, how="abort", pace=0.004))
    with pytest.raises(StreamerError):
        await dl.download(resource.url, target, progress=watch)
    _assert_sidecar_truthful(target)
    assert seen, "no progress report saw a sidecar"
    assert all(committed <= size for committed, size in seen)
    assert max(committed for committed, _ in seen) > 0, "no checkpoint was recorded mid-body"
    state = _state(target)
    assert state is not None and state.committed == _part_size(target) == 150_000


# --- any sequence of mishaps -----------------------------------------------------------------

_STEPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("cut"), st.integers(0, SIZE // 8 - 1), st.sampled_from(["close", "abort"])
        ),
        st.tuples(st.just("change"), st.integers(0, 1), st.just("")),
        st.tuples(st.just("ignore_range"), st.integers(0, SIZE // 8 - 1), st.just("")),
        st.tuples(st.just("416"), st.integers(0, 1), st.just("")),
    ),
    max_size=5,
)


async def _run_steps(steps: list[tuple[str, int, str]], workdir: Path) -> None:
    """Run one download per step (each may fail), then a clean one; check the file."""
    size = SIZE // 8
    resource = Resource(data(size))
    server = await serve(resource)
    target = workdir / "file.bin"
    try:
        async with Client(**CLIENT_DEFAULTS, chunk_size=1024) as client:
            for kind, n, how in steps:
                if kind == "change":
                    resource.change(data(size - 1000 * n, offset=resource.version.number * 11))
                    continue
                if kind == "cut":
                    act = Act(cut_at=min(n, len(resource.version.body) - 1), how=how)
                elif kind == "ignore_range":
                    act = Act(kind=Kind.IGNORE_RANGE, cut_at=n)
                else:
                    length = len(resource.version.body) + n
                    act = Act(kind=Kind.UNSATISFIABLE, header=f"bytes */{length}")
                resource.script.append(act)
                try:
                    await client.download(resource.url, target)
                except StreamerError:
                    pass
                else:
                    assert target.read_bytes() == resource.version.body
                    target.unlink()
                resource.script.clear()
                _assert_sidecar_truthful(target)
            await client.download(resource.url, target)
        assert target.read_bytes() == resource.version.body
    finally:
        await server.close()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(steps=_STEPS)
def test_any_sequence_of_mishaps_ends_with_the_final_version(
    steps: list[tuple[str, int, str]],
) -> None:
    """Whatever cuts, version changes, ignored ranges and 416s come first, a clean run leaves
    exactly the final version in the file: never a splice, never stale bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run_steps(steps, Path(tmp)))
