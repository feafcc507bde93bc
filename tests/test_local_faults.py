"""Local file faults of `streamer get`, and names chosen by the server (-J).

Local faults exit 23 with one line naming the path, before any request when the target cannot
possibly be written (streamer/files.py `preflight`, the `.part` open). Disk-full cases run on a
small tmpfs mounted for the test (skipped where `mount` is not permitted). Server-chosen names
(streamer/core/names.py) must always be one safe component inside the directory asked for.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import unicodedata
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from streamer import Client, Result, StreamerError
from streamer.core.names import name_from_url
from tests.faults import End, RawFactory, data, head
from tests.helpers import file_digest, one_error_line, running_slow_server, streamer
from tests.slow_server import MIB, Resource, SlowServer, body_digest, sidecar_committed


@pytest.fixture
async def slow() -> AsyncIterator[SlowServer]:
    async with running_slow_server() as server:
        yield server


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=10, check=False)


@contextlib.contextmanager
def tmpfs(where: Path, size: str, *, ro: bool = False) -> Iterator[Path]:
    """A fresh tmpfs of `size` on `where` for the block; skip the test if mounting is refused."""
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size},mode=0755" + (",ro" if ro else "")
    try:
        done = _mount("-t", "tmpfs", "-o", opts, "tmpfs", str(where))
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot run mount: {exc}")
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True, timeout=10, check=False)


def remount(where: Path, size: str) -> None:
    done = _mount("-o", f"remount,size={size}", str(where))
    assert done.returncode == 0, done.stderr


# --- the target cannot be written ---------------------------------------------------------


async def test_missing_parent_directory_is_23_before_any_request(
    slow: SlowServer, tmp_path: Path
) -> None:
    """A target whose directory does not exist: exit 23 naming it, and no request is made."""
    slow.resources["f"] = Resource(size=1000)
    target = tmp_path / "no" / "such" / "f.bin"
    run = await streamer("get", slow.url("f"), "-o", str(target))
    one_error_line(run, 23, str(target.parent), "does not exist")
    assert slow.requests == []
    assert not (tmp_path / "no").exists()


async def test_target_is_a_directory_is_23_before_any_request(
    slow: SlowServer, tmp_path: Path
) -> None:
    """A target that is a directory: exit 23 naming it, no request, the directory untouched."""
    slow.resources["f"] = Resource(size=1000)
    target = tmp_path / "adir"
    target.mkdir()
    (target / "keep").write_text("keep")
    run = await streamer("get", slow.url("f"), "-o", str(target))
    one_error_line(run, 23, str(target), "directory")
    assert slow.requests == []
    assert [p.name for p in target.iterdir()] == ["keep"]
    assert not (tmp_path / "adir.part").exists()


async def test_read_only_file_system_is_23_before_any_request(
    slow: SlowServer, tmp_path: Path
) -> None:
    """A read-only file system (works as root, unlike mode bits): exit 23 naming the path."""
    slow.resources["f"] = Resource(size=1000)
    with tmpfs(tmp_path / "ro", "1m", ro=True) as ro:
        target = ro / "f.bin"
        run = await streamer("get", slow.url("f"), "-o", str(target))
        line = one_error_line(run, 23, str(target))
        assert "read-only" in line.lower()
        assert list(ro.iterdir()) == []
    assert slow.requests == []


# --- disk full ----------------------------------------------------------------------------


async def test_known_length_larger_than_free_space_refused_before_body(
    slow: SlowServer, tmp_path: Path
) -> None:
    """Content-Length > free space: exit 23 "not enough space" with NO body bytes transferred."""
    # The server holds the body back for 5 s after the head: a client that checks the space
    # leaves before a byte of it is sent; one that does not would fill the disk instead.
    slow.resources["big"] = Resource(size=32 * MIB, head_delay=5.0)
    with tmpfs(tmp_path / "small", "8m") as small:
        run = await streamer("get", slow.url("big"), "-o", str(small / "big.bin"))
        one_error_line(run, 23, "not enough space", str(small))
        assert list(small.iterdir()) == []  # no target, no .part, no sidecar
    [req] = slow.requests
    assert req.sent == 0


async def test_disk_full_while_writing_chunked_body(slow: SlowServer, tmp_path: Path) -> None:
    """ENOSPC mid-body: exit 23 "no space left"; .part + sidecar consistent; re-run completes.

    A chunked body has no length to check in advance, so the writes hit ENOSPC. The sidecar
    written when the body started (committed 0) stays true: the full disk refuses the final
    progress record, and with nothing committed a re-run starts over from byte 0 (it cannot
    resume bytes it never recorded as durable) and completes once there is space.
    """
    size = 32 * MIB
    slow.resources["c"] = Resource(size=size, chunked=True)
    with tmpfs(tmp_path / "small", "8m") as small:
        target = small / "c.bin"
        run = await streamer("get", slow.url("c"), "-o", str(target))
        one_error_line(run, 23, "no space left", str(small))
        assert not target.exists()
        part = small / "c.bin.part"
        committed = sidecar_committed(small / "c.bin.part.json")
        assert part.exists() and committed is not None
        assert committed <= part.stat().st_size
        # What was written is a prefix of the body (no garbage from the failed write).
        held = part.read_bytes()
        assert len(held) > 4 * MIB and held == data(len(held))

        remount(small, "64m")
        again = await streamer("get", slow.url("c"), "-o", str(target), "--json")
        assert again.rc == 0, again
        assert again.json()["resumed_from"] == committed == 0
        assert file_digest(target) == body_digest(size)
        assert "Range" not in slow.requests[1].headers
        # Nothing is left behind: no .part, no sidecar, no temp file of a refused sidecar write.
        assert sorted(p.name for p in small.iterdir()) == ["c.bin"]


# --- names from Content-Disposition (-J) --------------------------------------------------

# (Content-Disposition value, the name it must give or None for "the URL's name")
HOSTILE_DISPOSITIONS: list[tuple[str, str | None]] = [
    ('attachment; filename="../../etc/passwd"', "passwd"),
    ("attachment; filename*=UTF-8''..%2F..%2Fevil", "evil"),
    ('attachment; filename="..\\\\..\\\\win.ini"', "win.ini"),
    ('attachment; filename="/etc/shadow"', "shadow"),
    ('attachment; filename="C:\\\\Windows\\\\evil.exe"', "evil.exe"),
    ("attachment; filename*=UTF-8''a%00b%0D%0Ac.txt", "abc.txt"),
    ("attachment; filename*=UTF-8''evil%E2%80%AEtxt.exe", "eviltxt.exe"),
    ('attachment; filename=".bashrc"', "bashrc"),
    ('attachment; filename="con.txt"', "_con.txt"),
    ('attachment; filename=".."', None),
    ('attachment; filename=""', None),
    ("attachment", None),
    ("attachment; filename*=UTF-8''" + "%E2%82%AC" * 100 + ".txt", None),  # 300+ bytes
    ('attachment; filename="a.txt"; filename="../b.txt"', None),  # duplicate: ambiguous
]


def assert_safe_single_name(name: str) -> None:
    assert name not in ("", ".", "..")
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not name.startswith(".")
    assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name), ascii(name)
    assert len(name.encode("utf-8")) <= 255


async def download_or_error(client: Client, url: str, out: Path) -> StreamerError | None:
    """Download like `get URL -J -d OUT` does; the error, or None on success."""
    try:
        await client.download(url, out / name_from_url(url), remote_name=True)
    except StreamerError as exc:
        return exc
    return None


def only_file_under(root: Path) -> Path:
    """The one file anywhere under `root` (the test fails if there are more or none)."""
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) == 1, files
    return files[0]


async def test_hostile_content_disposition_names_stay_inside_output_dir(
    slow: SlowServer, client: Client, tmp_path: Path
) -> None:
    """remote_name (-J): every hostile Content-Disposition gives one safe name directly in OUT.

    The corpus runs through the engine in-process (what `get -J -d OUT` calls, see cli.py
    `default_output`) to stay fast; the next test runs one case as a real process.
    """
    body = 4096
    cases = []
    for i, (value, expected) in enumerate(HOSTILE_DISPOSITIONS):
        slow.resources[f"case{i}.bin"] = Resource(size=body, disposition=value)
        out = tmp_path / f"case{i}" / "deep" / "out"
        out.mkdir(parents=True)
        cases.append((i, value, expected, out))

    results = [
        await download_or_error(client, slow.url(f"case{i}.bin"), out) for i, _, _, out in cases
    ]
    for (i, value, expected, out), outcome in zip(cases, results, strict=True):
        assert outcome is None, (value, outcome)
        landed = only_file_under(tmp_path / f"case{i}")
        assert landed.parent == out, (value, landed)
        assert_safe_single_name(landed.name)
        if expected is not None:
            assert landed.name == expected, (value, landed.name)
        elif "%E2%82%AC" in value:
            assert landed.name.endswith(".txt") and landed.name.startswith("\u20ac")
        else:
            assert landed.name == f"case{i}.bin", (value, landed.name)
        assert landed.read_bytes() == data(body), value


async def test_one_cli_process_with_hostile_name_lands_inside_output_dir(
    slow: SlowServer, tmp_path: Path
) -> None:
    """The real `streamer get -J -d OUT` process: a "../../" name lands in OUT, nowhere else."""
    slow.resources["x.bin"] = Resource(size=5000, disposition=HOSTILE_DISPOSITIONS[0][0])
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    run = await streamer("get", slow.url("x.bin"), "-J", "-d", str(out), "-q")
    assert run.rc == 0, run
    assert only_file_under(tmp_path) == out / "passwd"


RAW_DISPOSITIONS = [
    b'attachment; filename="a\x00b.txt"',
    b'attachment; filename="a\rb.txt"',
    b'attachment; filename="\xc3\xa9t\xc3\xa9.txt"',
    b'attachment; filename="\x1b[31mred.txt"',
    b'attachment; filename="a\x7fb/../c.txt"',
]


async def test_raw_control_bytes_in_disposition_never_escape(
    raw_server: RawFactory, client: Client, tmp_path: Path
) -> None:
    """Raw NUL/CR/ESC/8-bit bytes in the header: refused (exit 8), or one safe file inside OUT."""
    body = b"hello"
    cases = []
    for i, raw in enumerate(RAW_DISPOSITIONS):
        srv = await raw_server(
            [
                head(Content_Length=len(body), Connection="close")[:-2]
                + b"Content-Disposition: "
                + raw
                + b"\r\n\r\n"
                + body
            ],
            End.CLOSE,
        )
        out = tmp_path / f"case{i}" / "deep" / "out"
        out.mkdir(parents=True)
        cases.append((raw, srv.url + "x.bin", out))

    results = [await download_or_error(client, url, out) for _, url, out in cases]
    for i, ((raw, _, out), outcome) in enumerate(zip(cases, results, strict=True)):
        files = [p for p in (tmp_path / f"case{i}").rglob("*") if p.is_file()]
        if outcome is None:
            [landed] = files
            assert landed.parent == out, raw
            assert_safe_single_name(landed.name)
            assert landed.read_bytes() == body
        else:
            # A header the HTTP parser refuses: a malformed response (exit 8), nothing written.
            assert outcome.result is Result.INVALID_RESPONSE, (raw, outcome)
            assert files == [], raw


async def test_server_chosen_name_does_not_clobber_without_flag(
    slow: SlowServer, tmp_path: Path
) -> None:
    """-J never replaces an existing file (exit 73, file intact); --clobber does replace it."""
    slow.resources["dl"] = Resource(size=10000, disposition='attachment; filename="report.txt"')
    out = tmp_path / "out"
    out.mkdir()
    precious = out / "report.txt"
    precious.write_bytes(b"precious")
    run = await streamer("get", slow.url("dl"), "-J", "-d", str(out))
    one_error_line(run, 73, str(precious))
    assert precious.read_bytes() == b"precious"
    # The message says the download was kept; it is, under the URL's name, with its sidecar.
    assert sorted(p.name for p in out.iterdir()) == ["dl.part", "dl.part.json", "report.txt"]

    again = await streamer("get", slow.url("dl"), "-J", "-d", str(out), "--clobber", "-q")
    assert again.rc == 0, again
    assert precious.read_bytes() == data(10000)
    assert sorted(p.name for p in out.iterdir()) == ["report.txt"]


async def test_no_clobber_for_url_name_refuses_before_any_request(
    slow: SlowServer, tmp_path: Path
) -> None:
    """--no-clobber with the URL's name: an existing file is kept, exit 73, no request."""
    slow.resources["name.bin"] = Resource(size=1000)
    out = tmp_path / "out"
    out.mkdir()
    existing = out / "name.bin"
    existing.write_bytes(b"mine")
    run = await streamer("get", slow.url("name.bin"), "-d", str(out), "--no-clobber")
    one_error_line(run, 73, str(existing))
    assert existing.read_bytes() == b"mine"
    assert slow.requests == []
    assert sorted(p.name for p in out.iterdir()) == ["name.bin"]


def test_a_lock_on_a_renamed_or_removed_partial_is_not_taken_as_ours(tmp_path: Path) -> None:
    """PartFile.open checks, after taking the lock, that the `.part` name still names the
    locked file: a file its last holder renamed (to the target) or removed between our open
    and our lock is not the partial any more, and writing it would corrupt the target."""
    from streamer.storage.files import _still_named

    part = tmp_path / "t.bin.part"
    part.write_bytes(b"x")
    fd = os.open(part, os.O_RDWR)
    try:
        assert _still_named(fd, part)
        os.rename(part, tmp_path / "t.bin")  # what publish does while holding the lock
        assert not _still_named(fd, part)
        part.write_bytes(b"new")  # another download's new partial under the old name
        assert not _still_named(fd, part)
        os.unlink(part)
        assert not _still_named(fd, part)
    finally:
        os.close(fd)
