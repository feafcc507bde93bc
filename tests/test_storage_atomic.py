"""One "temp name, fsync, rename, fsync the directory" (storage/atomic.py), off the event loop.

The engine's publication, the lane, the sidecars and the built-in server all publish through
`rename_into_place`; no other module renames or links a file into place. Every fsync of a
download or an upload runs in a worker thread, never on the event loop's thread.
"""

from __future__ import annotations

import ast
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import streamer
from streamer import Client
from tests.faults import data
from tests.helpers import MIB
from tests.range_origin import Origin, serving

PACKAGE = Path(streamer.__file__).parent
PUBLISHING = {"replace", "rename", "link"}


def _os_calls(path: Path) -> Iterator[tuple[str, int]]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "os"
        ):
            yield node.func.attr, node.lineno


def test_one_place_renames_into_place() -> None:
    """os.replace / os.rename / os.link appear only in storage/atomic.py."""
    found = [
        f"{path.relative_to(PACKAGE)}:{line} os.{name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "atomic.py" or path.parent.name != "storage"
        for name, line in _os_calls(path)
        if name in PUBLISHING
    ]
    assert found == []


@pytest.fixture
def sync_threads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every os.fsync / os.fdatasync call, with the id of the thread that made it."""
    calls: list[tuple[str, int]] = []

    def recording(name: str, real: Callable[[int], None]) -> Callable[[int], None]:
        def call(fd: int) -> None:
            calls.append((name, threading.get_ident()))
            real(fd)

        return call

    for name in ("fsync", "fdatasync"):
        monkeypatch.setattr(os, name, recording(name, getattr(os, name)))
    return calls


@pytest.mark.parametrize("split", [1, 3])
async def test_download_never_fsyncs_on_the_loop(
    tmp_path: Path, sync_threads: list[tuple[str, int]], split: int
) -> None:
    """A download with a sidecar (single stream and --split): every fsync (data, sidecar,
    directory) runs in a worker thread."""
    loop_thread = threading.get_ident()
    async with serving(Origin(3 * MIB)) as origin, Client(trust_env=False) as client:
        res = await client.download(origin.url, tmp_path / "f", split=split)
    assert res.path.read_bytes() == data(3 * MIB)
    assert len(origin.ranges) == (1 if split == 1 else 1 + split)
    assert sync_threads, "no fsync at all: the test measures nothing"
    on_loop = [name for name, ident in sync_threads if ident == loop_thread]
    assert on_loop == []


async def test_server_upload_never_fsyncs_on_the_loop(
    tmp_path: Path, sync_threads: list[tuple[str, int]]
) -> None:
    """A PUT to the built-in server: the file's and the directory's fsyncs run in a thread."""
    from streamer.server.app import running_server

    loop_thread = threading.get_ident()
    source = tmp_path / "src.bin"
    source.write_bytes(data(300_000))
    root = tmp_path / "root"
    root.mkdir()
    async with running_server(root) as base, Client(trust_env=False) as client:
        res = await client.upload(base + "up.bin", source)
    assert res.status == 201
    assert (root / "up.bin").read_bytes() == data(300_000)
    assert sync_threads
    assert [name for name, ident in sync_threads if ident == loop_thread] == []


def test_write_atomic_replaces_a_planted_temp_link(tmp_path: Path) -> None:
    """A symlink at the temporary name is replaced, its target untouched; the file is whole."""
    from streamer.storage.atomic import write_atomic

    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    target = tmp_path / "state.json"
    (tmp_path / "state.json.tmp").symlink_to(outside)
    write_atomic(target, b'{"v": 2}')
    assert target.read_bytes() == b'{"v": 2}'
    assert outside.read_bytes() == b"keep"
    assert not (tmp_path / "state.json.tmp").exists()
