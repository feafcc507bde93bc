"""Ordinary mistakes on the command line end with one line and the usual exit code, never a
traceback (issue 10, Output): a manifest that is missing or a directory, a port out of range,
a port already taken. Real processes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.helpers import one_error_line, streamer


@pytest.mark.parametrize("kind", ["missing", "directory"])
async def test_get_i_with_an_unreadable_manifest_is_one_line(kind: str, tmp_path: Path) -> None:
    """`get -i` naming a missing file or a directory: exit 26 (read error, as `put` of a
    missing file), the path named, nothing downloaded."""
    manifest = tmp_path / "nope.txt" if kind == "missing" else tmp_path
    run = await streamer("get", "-i", str(manifest), "-d", str(tmp_path))
    one_error_line(run, 26, "cannot read manifest", str(manifest))


async def test_serve_with_a_port_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    """`serve --port 70000`: argparse's usage error (exit 2), no traceback."""
    run = await streamer("serve", str(tmp_path), "--port", "70000")
    assert "Traceback" not in run.err and run.rc == 2, run
    assert "not a TCP port" in run.err


async def test_serve_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    """`serve` on a port another socket listens on: one line naming it, exit 7."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = await streamer("serve", str(tmp_path), "--port", str(port))
    one_error_line(run, 7, f"cannot listen on 127.0.0.1:{port}", "in use")
