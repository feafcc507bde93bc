"""`streamer put` and `streamer post` in real subprocesses against the built-in server."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ENV, RUN_TIMEOUT, ThreadedServer, peak_rss
from tests.helpers import file_digest as _sha
from tests.helpers import run_streamer as streamer

MIB = 1 << 20
MEMORY_LIMIT_KIB = 64 * 1024  # ru_maxrss is in KiB on Linux


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The served directory, with sub/."""
    base = tmp_path / "root"
    (base / "sub").mkdir(parents=True)
    return base


@pytest.fixture
def base(root: Path) -> Iterator[str]:
    """The built-in server (no upload limit) serving ``root``."""
    with ThreadedServer(root, name="upload-server") as url:
        yield url


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A 3 MiB + 5 byte local file."""
    path = tmp_path / "local.bin"
    path.write_bytes(os.urandom(3 * MIB + 5))
    return path


# --- put ------------------------------------------------------------------------------------------


def test_put_prints_server_answer(base: str, root: Path, source: Path) -> None:
    """put FILE URL stores the file and prints the server's answer on stdout (-q: no summary)."""
    proc = streamer("put", source, base + "sub/copy.bin", "-q")
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer == {
        "path": "/sub/copy.bin",
        "size": source.stat().st_size,
        "sha256": _sha(source),
    }
    assert (root / "sub" / "copy.bin").read_bytes() == source.read_bytes()
    assert proc.stderr == ""


def test_put_summary_on_stderr(base: str, source: Path) -> None:
    """Without -q, a one-line summary with the status goes to stderr."""
    proc = streamer("put", source, base + "a.bin")
    assert proc.returncode == 0
    assert "201 Created" in proc.stderr
    assert proc.stderr.startswith("sent ")


def test_put_json(base: str, source: Path) -> None:
    """--json prints one JSON object describing the upload."""
    proc = streamer("put", source, base + "j.bin", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == 201
    assert report["sent"] == source.stat().st_size
    assert report["result"] == "success"
    assert report["url"] == base + "j.bin"


def test_put_replaces_with_200(base: str, root: Path, source: Path) -> None:
    """A second put to the same URL replaces the file (200)."""
    (root / "old.bin").write_bytes(b"old")
    proc = streamer("put", source, base + "old.bin", "--json")
    assert json.loads(proc.stdout)["status"] == 200
    assert (root / "old.bin").read_bytes() == source.read_bytes()


def test_put_method_option(base: str, root: Path, source: Path) -> None:
    """-X sets the method: POST of a raw body to a file path is refused (405, exit 22)."""
    (root / "x.bin").write_bytes(b"kept")
    proc = streamer("put", source, base + "x.bin", "-X", "POST")
    assert proc.returncode == 22
    assert "405" in proc.stderr
    assert (root / "x.bin").read_bytes() == b"kept"


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_put_unreadable_source_exit_26(base: str, tmp_path: Path, what: str) -> None:
    """A source that cannot be read (missing, a directory) exits 26 and sends nothing."""
    path = tmp_path / "nope.bin" if what == "missing" else tmp_path
    proc = streamer("put", path, base + "x.bin")
    assert proc.returncode == 26
    assert proc.stdout == ""
    assert "cannot" in proc.stderr


def test_put_missing_parent_exit_22(base: str, root: Path, source: Path) -> None:
    """An HTTP error answer (409: no parent directory) exits 22 with the server's reason."""
    proc = streamer("put", source, base + "nodir/x.bin")
    assert proc.returncode == 22
    assert "409" in proc.stderr
    assert "parent directory does not exist" in proc.stderr


# --- post -----------------------------------------------------------------------------------------


def test_post_form(base: str, root: Path, source: Path) -> None:
    """post -F a=1 -F 'f=@path;type=..;filename=..' stores the file and echoes the form."""
    proc = streamer(
        "post", base + "sub/", "-F", "a=1", "-F", f"f=@{source};type=text/plain;filename=x.txt"
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["fields"] == {"a": "1"}
    assert answer["files"] == [
        {
            "name": "f",
            "filename": "x.txt",
            "content_type": "text/plain",
            "path": "/sub/x.txt",
            "size": source.stat().st_size,
            "sha256": _sha(source),
        }
    ]
    assert (root / "sub" / "x.txt").read_bytes() == source.read_bytes()


def test_post_file_keeps_base_name(base: str, root: Path, source: Path) -> None:
    """Without filename=, the file's base name is sent (never its directories)."""
    proc = streamer("post", base, "-F", f"up=@{source}", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == 200
    assert (root / source.name).read_bytes() == source.read_bytes()


def test_post_missing_directory_exit_22(base: str, source: Path) -> None:
    """A 404 (no such directory) exits 22."""
    proc = streamer("post", base + "nodir/", "-F", f"f=@{source}")
    assert proc.returncode == 22
    assert "404" in proc.stderr


def test_post_unreadable_file_exit_26(base: str, tmp_path: Path) -> None:
    """-F f=@missing exits 26."""
    proc = streamer("post", base, "-F", f"f=@{tmp_path / 'missing.bin'}")
    assert proc.returncode == 26


@pytest.mark.parametrize("spec", ["novalue", "=x", "f=@", "f=@a;type=", "f=@a,b"])
def test_post_bad_form_syntax_exit_2(base: str, root: Path, spec: str) -> None:
    """A malformed -F is a usage error (exit 2) with a one-line message; nothing is sent."""
    proc = streamer("post", base, "-F", spec)
    assert proc.returncode == 2
    assert "-F" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert list(root.iterdir()) == [root / "sub"]


# --- serve --max-upload and 413 -------------------------------------------------------------------


@pytest.fixture
def limited_server(root: Path) -> Iterator[str]:
    """``python -m streamer serve ROOT --port 0 --max-upload 1MiB`` in a subprocess; its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "serve", str(root), "--port", "0", "--max-upload", "1M"],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], 10)
        line = proc.stderr.readline() if ready else ""
        assert " at http://" in line, f"server did not start: {line!r}"
        yield line.rsplit(" at ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.fixture
def big_source(tmp_path: Path) -> Path:
    """A 64 MiB local file (sparse)."""
    path = tmp_path / "big.bin"
    with path.open("wb") as f:
        f.truncate(64 * MIB)
    return path


@pytest.mark.parametrize("command", ["put", "post"])
def test_413_exit_22(limited_server: str, root: Path, big_source: Path, command: str) -> None:
    """Over serve --max-upload: exit 22 with the server's reason; the local file untouched."""
    before = big_source.stat()
    if command == "put":
        proc = streamer("put", big_source, limited_server + "big.bin")
    else:
        proc = streamer("post", limited_server, "-F", f"f=@{big_source}")
    assert proc.returncode == 22
    assert "413" in proc.stderr
    assert f"limit of {MIB} bytes" in proc.stderr
    assert proc.stdout == ""
    after = big_source.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert list(root.iterdir()) == [root / "sub"]


def test_under_limit_accepted(limited_server: str, root: Path, tmp_path: Path) -> None:
    """serve --max-upload lets a body under the limit through."""
    small = tmp_path / "small.bin"
    small.write_bytes(b"s" * 1000)
    proc = streamer("put", small, limited_server + "small.bin", "-q")
    assert proc.returncode == 0, proc.stderr
    assert (root / "small.bin").read_bytes() == small.read_bytes()


# --- memory ---------------------------------------------------------------------------------------


def _peak_rss_kib(*args: str | Path) -> int:
    """Run ``python -m streamer ARGS`` (it must succeed); its own peak RSS in KiB."""
    cmd = [sys.executable, "-m", "streamer", *map(str, args)]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "child.log"
        report = peak_rss(cmd, RUN_TIMEOUT, log)
        assert report.rc == 0, log.read_text(errors="replace")
    peak = report.maxrss_kib
    assert report.launcher_kib < peak / 2, "the launcher could dominate the measurement"
    return peak


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units are Linux's")
def test_upload_memory_is_flat(root: Path, tmp_path: Path) -> None:
    """put and post -F of a 512 MiB file each peak at <= 64 MiB RSS in the client process."""
    big = tmp_path / "huge.bin"
    with big.open("wb") as f:
        f.truncate(512 * MIB)  # sparse: quick to make, read like any file
    with ThreadedServer(root, name="upload-server") as url:
        put_kib = _peak_rss_kib("put", big, url + "huge.bin", "-q")
        assert (root / "huge.bin").stat().st_size == 512 * MIB
        (root / "huge.bin").unlink()
        post_kib = _peak_rss_kib("post", url + "sub/", "-F", f"file=@{big}", "-q")
        assert (root / "sub" / "huge.bin").stat().st_size == 512 * MIB
        (root / "sub" / "huge.bin").unlink()
    report = f"peak RSS: put {put_kib / 1024:.1f} MiB, post {post_kib / 1024:.1f} MiB"
    assert put_kib <= MEMORY_LIMIT_KIB, report
    assert post_kib <= MEMORY_LIMIT_KIB, report
