"""`-o` naming a FIFO or a device node: the body is written straight into it, as curl does.

No ``.part``, no sidecar, no rename (a rename would replace the device node by a regular file,
which as root destroys ``/dev/null``), no resume.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import data
from tests.helpers import MIB, running_slow_server, streamer
from tests.slow_server import Resource

DEV_NULL = Path("/dev/null")
NULL_DEVICE = os.makedev(1, 3)


@contextlib.contextmanager
def dev_null_guard() -> Iterator[None]:
    """Should a regression replace /dev/null by a file, put the device node back."""
    try:
        yield
    finally:
        if not stat.S_ISCHR(os.stat(DEV_NULL).st_mode):
            DEV_NULL.unlink()
            os.mknod(DEV_NULL, stat.S_IFCHR | 0o666, NULL_DEVICE)
            os.chmod(DEV_NULL, 0o666)


def _null_twin(tmp_path: Path) -> Path:
    """A character device node like /dev/null (same major/minor) inside the test's directory."""
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root (CI runs as root)")
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, NULL_DEVICE)
    return node


@pytest.mark.parametrize("which", ["dev-null", "twin"])
async def test_output_to_device_writes_into_it(tmp_path: Path, which: str) -> None:
    """-o naming a character device: exit 0, the node is still that device, no helper files."""
    node = DEV_NULL if which == "dev-null" else _null_twin(tmp_path)
    with dev_null_guard():
        async with running_slow_server() as srv:
            srv.resources["f"] = Resource(size=3 * MIB)
            run = await streamer("get", srv.url("f"), "-o", str(node), "-q")
        assert run.rc == 0, run.err
        mode = os.stat(node).st_mode
        assert stat.S_ISCHR(mode) and os.stat(node).st_rdev == NULL_DEVICE
    for suffix in (".part", ".part.json", ".part.json.tmp"):
        assert not node.with_name(node.name + suffix).exists()


async def test_output_to_fifo_streams_into_it(tmp_path: Path) -> None:
    """-o naming a FIFO: the reader gets the body byte for byte; the FIFO stays a FIFO."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    size = 3 * MIB + 17
    try:
        async with running_slow_server() as srv:
            srv.resources["f"] = Resource(size=size)
            run = await streamer("get", srv.url("f"), "-o", str(fifo), "-q")
    finally:
        if reader.is_alive():  # nothing opened the FIFO for writing: give the reader its EOF
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(10)
    assert run.rc == 0, run.err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got == [data(size)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


# -J is not among them: with -o, -o names the target and -J chooses nothing (curl's rule).
@pytest.mark.parametrize("extra", [["--split", "4"], ["--no-clobber"], ["--retry", "2"]], ids=str)
async def test_what_cannot_hold_for_a_device_is_refused(tmp_path: Path, extra: list[str]) -> None:
    """--split, --no-clobber and --retry cannot hold for a device written straight in:
    each is refused (exit 2, naming it) before any request, and the node stays a device."""
    node = _null_twin(tmp_path)
    async with running_slow_server() as srv:
        srv.resources["f"] = Resource(size=MIB)
        run = await streamer("get", srv.url("f"), "-o", str(node), *extra)
        assert srv.requests == []
    assert run.rc == 2, run.err
    assert "FIFO or a device" in run.err and len(run.err_lines) == 1
    assert stat.S_ISCHR(os.stat(node).st_mode)
