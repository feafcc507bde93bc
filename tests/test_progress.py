"""The tqdm renderer of progress reports (streamer/progress.py), drawn into a text buffer."""

from __future__ import annotations

import io

from streamer import Phase, Progress
from streamer.progress import TqdmProgress


def _bar(out: io.StringIO) -> TqdmProgress:
    return TqdmProgress("file.bin", file=out, min_interval=3600.0)  # throttle every update


def test_upload_progress_draws_a_bar() -> None:
    """Uploads report Phase.UPLOADING, and the bar shows them like a download's body."""
    out = io.StringIO()
    bar = _bar(out)
    bar(Progress("u", Phase.UPLOADING, 512 << 10, 1 << 20))
    bar(Progress("u", Phase.DONE, 1 << 20, 1 << 20))
    bar.close()
    assert "file.bin" in out.getvalue()
    assert "1.00M/1.00M" in out.getvalue()


def test_close_draws_the_last_count_of_a_failed_transfer() -> None:
    """A transfer that fails mid-way leaves the bar at the last count, not at a throttled one."""
    out = io.StringIO()
    bar = _bar(out)
    bar(Progress("u", Phase.BODY, 1 << 10, 4 << 20))  # first update drawn
    bar(Progress("u", Phase.BODY, 3 << 20, 4 << 20))  # throttled away
    bar.close()  # the failure path: no FINALIZING or DONE report came
    assert "3.00M/4.00M" in out.getvalue()
