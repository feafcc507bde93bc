"""Progress reports as plain values: what a transfer is doing and how far it got."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass


class Phase(enum.Enum):
    """Where a transfer is, like Godot's HTTPClient status."""

    RESOLVING = "resolving"
    CONNECTING = "connecting"
    REQUESTING = "requesting"
    UPLOADING = "uploading"
    REDIRECTING = "redirecting"
    BODY = "body"
    FINALIZING = "finalizing"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Progress:
    """One report: the (redacted) URL, the phase, bytes moved so far and the total when known."""

    url: str
    phase: Phase
    done: int = 0
    total: int | None = None


ProgressCallback = Callable[[Progress], None]
