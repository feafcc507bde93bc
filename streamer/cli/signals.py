"""Signals on the command line: SIGTERM cancels the transfer as Ctrl-C does."""

from __future__ import annotations

import asyncio
import contextlib
import signal


def stop_on_sigterm() -> None:
    """SIGTERM cancels the transfer like Ctrl-C does: writes settle, the sidecar is saved."""
    task = asyncio.current_task()
    if task is None:
        return

    def stop() -> None:
        # Once: a second cancel would interrupt the cleanup the first one started.
        if not task.cancelling():
            task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop)
