"""The README's demo command, end to end on a small size, as a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_downloads_resumes_and_uploads_back(tmp_path: Path) -> None:
    """`streamer demo` interrupts a download, resumes it, uploads it back, uploads it with tus
    interrupted and resumed, and all match."""
    run = subprocess.run(
        [sys.executable, "-m", "streamer", "demo", "--size", "160MiB", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    err = run.stderr
    assert "exit 143" in err  # the first download was stopped by SIGTERM
    assert "resumed at byte" in err
    assert "checksum verified" in err
    assert err.count("identical: sha256:") == 2  # put, then put --tus
    assert "resumable upload (tus 1.0.0)" in err
    assert "published as payload-1.bin" in err  # served/payload.bin was not replaced
    assert "Traceback" not in err
    assert not list((tmp_path / "downloads").glob("*.part*"))
