"""Files planted next to the target: streamer never writes through a link it did not make.

Each test plants a symlink where streamer keeps one of its helper files (``T.part``,
``T.part.json``, ``T.part.json.tmp``, the bulk journal), pointing at a file outside the output
directory, runs a real ``python -m streamer`` and checks that the outside file is byte for byte
what it was. Partials and temporary files: the stray link is replaced (as a link at ``T`` is).
The journal: refused with exit 23 naming it (it is the run's record, not a scratch file).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import data
from tests.helpers import MIB, one_error_line, running_slow_server, streamer
from tests.range_origin import Origin, serving
from tests.slow_server import Resource, body_digest

PRECIOUS = b"precious bytes outside the output directory\n" * 100
HELPERS = (".part", ".part.json", ".part.json.tmp")


def _plant(out: Path, name: str, outside: Path) -> None:
    outside.write_bytes(PRECIOUS)
    (out / name).symlink_to(outside)


def _check_outside(outside: Path) -> None:
    assert not outside.is_symlink()
    assert outside.read_bytes() == PRECIOUS


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "out"
    out.mkdir()
    return out, tmp_path / "outside.txt"


@pytest.mark.parametrize("suffix", HELPERS)
@pytest.mark.parametrize("split", ["1", "3"])
async def test_planted_helper_link_is_not_followed(tmp_path: Path, suffix: str, split: str) -> None:
    """A link at T.part, T.part.json or T.part.json.tmp is replaced, never written through
    (single stream and --split); T is a regular file with the body."""
    out, outside = _dirs(tmp_path)
    _plant(out, "f" + suffix, outside)
    size = 3 * MIB  # above the small-body limit: a sidecar is written
    async with serving(Origin(size)) as origin:
        run = await streamer("get", origin.url, "-o", str(out / "f"), "-q", "--split", split)
    assert run.rc == 0, run.err
    if split != "1":  # really split: one probe, then a request per segment
        assert sum(r is not None and not r.endswith("-") for r in origin.ranges) == int(split)
    _check_outside(outside)
    target = out / "f"
    assert not target.is_symlink()
    assert target.read_bytes() == data(size)
    assert sorted(p.name for p in out.iterdir()) == ["f"]


@pytest.mark.parametrize("size", [1000, 3 * MIB], ids=["lane", "full-engine"])
@pytest.mark.parametrize("suffix", HELPERS)
async def test_bulk_planted_helper_link_is_not_followed(
    tmp_path: Path, size: int, suffix: str
) -> None:
    """In bulk mode (small bodies on the lane, larger on the full engine) a planted link at a
    helper name is replaced, never written through."""
    out, outside = _dirs(tmp_path)
    _plant(out, "f" + suffix, outside)
    manifest = tmp_path / "m.txt"
    async with running_slow_server() as srv:
        srv.resources["f"] = Resource(size=size)
        manifest.write_text(srv.url("f") + "\n")
        run = await streamer("get", "-i", str(manifest), "-d", str(out), "-q")
    assert run.rc == 0, run.err
    _check_outside(outside)
    assert not (out / "f").is_symlink()
    assert (out / "f").read_bytes() == data(size)


async def test_planted_journal_link_is_refused(tmp_path: Path) -> None:
    """A symlink at DIR/.streamer-journal.jsonl: exit 23 naming it; nothing appended to its
    target."""
    out, outside = _dirs(tmp_path)
    _plant(out, ".streamer-journal.jsonl", outside)
    manifest = tmp_path / "m.txt"
    async with running_slow_server() as srv:
        srv.resources["f"] = Resource(size=1000)
        manifest.write_text(srv.url("f") + "\n")
        run = await streamer("get", "-i", str(manifest), "-d", str(out), "-q")
    one_error_line(run, 23, ".streamer-journal.jsonl", "symbolic link")
    _check_outside(outside)


async def test_target_link_replaced_target_untouched(tmp_path: Path) -> None:
    """T itself a symlink: the link is replaced by the download, its target untouched."""
    out, outside = _dirs(tmp_path)
    _plant(out, "f", outside)
    async with running_slow_server() as srv:
        srv.resources["f"] = Resource(size=5000)
        run = await streamer("get", srv.url("f"), "-o", str(out / "f"), "-q")
    assert run.rc == 0, run.err
    _check_outside(outside)
    assert not (out / "f").is_symlink()
    assert body_digest(5000) == __import__("hashlib").sha256((out / "f").read_bytes()).hexdigest()


async def test_manifest_reserved_and_long_paths_fail_only_their_jobs(tmp_path: Path) -> None:
    """A job writing the journal, a helper name or a path component over NAME_MAX is refused
    with its line number; the other jobs run and the journal stays the run's own."""
    out, _ = _dirs(tmp_path)
    manifest = tmp_path / "m.jsonl"
    async with running_slow_server() as srv:
        srv.resources["f"] = Resource(size=1000)
        url = srv.url("f")
        manifest.write_text(
            f'{{"url": "{url}", "path": "good"}}\n'
            f'{{"url": "{url}", "path": ".streamer-journal.jsonl"}}\n'
            f'{{"url": "{url}", "path": "{"x" * 300}"}}\n'
            f'{{"url": "{url}", "path": "good.part.json"}}\n'
        )
        run = await streamer("get", "-i", str(manifest), "-d", str(out), "-q")
    assert "Traceback" not in run.err
    assert run.rc == 2, run
    for line in (2, 3, 4):
        assert f"line {line}" in run.err, run.err
    assert (out / "good").read_bytes() == data(1000)
    journal = (out / ".streamer-journal.jsonl").read_text().splitlines()
    assert [__import__("json").loads(j)["target"] for j in journal] == ["good"]


async def test_remote_name_equal_to_own_sidecar_is_refused(tmp_path: Path) -> None:
    """-J --clobber with a server name equal to the download's sidecar (or partial) name:
    a typed error (exit 23), nothing saved under it and nothing deleted."""
    out, _ = _dirs(tmp_path)
    keep = out / "keep.txt"
    keep.write_bytes(PRECIOUS)
    async with running_slow_server() as srv:
        srv.resources["f"] = Resource(
            size=3 * MIB, disposition='attachment; filename="f.part.json"'
        )
        # -J names the file only without -o (curl: -o wins), so the target is DIR/f here.
        run = await streamer("get", srv.url("f"), "-d", str(out), "-J", "--clobber")
    one_error_line(run, 23, "f.part.json", "reserved")
    assert keep.read_bytes() == PRECIOUS
    assert not (out / "f").exists() and not (out / "f.part.json").exists()


async def test_output_name_over_name_max_is_one_line(tmp_path: Path) -> None:
    """-o with a 300-byte file name: one error line, exit 23, no traceback."""
    out, _ = _dirs(tmp_path)
    async with running_slow_server() as srv:
        srv.resources["f"] = Resource(size=1000)
        run = await streamer("get", srv.url("f"), "-o", str(out / ("n" * 300)), "-q")
    one_error_line(run, 23, "too long")
    assert list(out.iterdir()) == []
