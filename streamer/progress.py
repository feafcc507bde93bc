"""The tqdm renderer of progress reports: the only module that imports tqdm."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

from .core.events import Phase, Progress
from .core.text import printable


class TqdmProgress:
    """A progress callback that draws one tqdm bar on stderr.

    Updates are throttled here (tqdm's own per-call cost was measurable per chunk), and the bar
    shows a redacted URL, never the raw one.
    """

    def __init__(
        self, label: str, *, file: TextIO | None = None, min_interval: float = 0.1
    ) -> None:
        self._label = printable(label)  # a name may come from the server
        self._file = file if file is not None else sys.stderr
        self._min_interval = min_interval
        self._bar: tqdm[Any] | None = None
        self._last = 0.0
        self._shown = 0
        self._latest = 0  # the newest count reported, drawn on close even if throttled

    def __call__(self, p: Progress) -> None:
        if p.phase not in (Phase.BODY, Phase.UPLOADING):
            if p.phase in (Phase.FINALIZING, Phase.DONE) and self._bar is not None:
                self._latest = p.done
                self._advance(p.done, force=True)
            return
        self._latest = p.done
        if self._bar is None:
            self._bar = tqdm(
                total=p.total,
                desc=self._label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=self._file,
                dynamic_ncols=True,
                leave=True,
            )
        self._advance(p.done, force=False)

    def _advance(self, done: int, *, force: bool) -> None:
        now = time.monotonic()
        if self._bar is None or (not force and now - self._last < self._min_interval):
            return
        self._last = now
        if done < self._shown:
            # A restart from zero (a resource that changed, a server that ignored Range).
            self._bar.reset(total=self._bar.total)
            self._shown = 0
        self._bar.update(done - self._shown)
        self._shown = done

    def close(self) -> None:
        """Draw the last count (a failed transfer shows where it stopped), then end the bar."""
        if self._bar is not None:
            self._advance(self._latest, force=True)
            self._bar.close()
            self._bar = None
