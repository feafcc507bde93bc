"""What commands print: the progress bar decision, the one-line outcome, the JSON object."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from ..core.redact import redact_text, redact_url
from ..core.sizes import format_size
from ..core.text import printable
from ..errors import StreamerError, evolve, exit_code

if TYPE_CHECKING:
    from ..results import DownloadResult


def say(line: str) -> None:
    """Print one line on stderr: the output edge, where text a server chose (a reason phrase,
    an error body, an ETag, a name) has its control characters escaped (`core.text`)."""
    print(printable(redact_text(line)), file=sys.stderr, flush=True)


def error_line(args: argparse.Namespace, text: str) -> None:
    """An error's one line, unless -s without -S (curl's --silent / --show-error)."""
    if getattr(args, "silent", False) and not getattr(args, "show_error", False):
        return
    say(f"streamer: {text}")


def wants_bar(args: argparse.Namespace) -> bool:
    if args.quiet or args.no_progress or args.json:
        return False
    return bool(args.progress or sys.stderr.isatty())


def report_success(args: argparse.Namespace, result: DownloadResult) -> None:
    if not args.quiet and not args.json:
        for note in result.notes:
            say(f"streamer: {note}")
    if args.json:
        print(json.dumps(result.to_json()), flush=True)
    elif not args.quiet and result.status != 304:  # a 304's one line is its note
        rate = result.size / result.elapsed if result.elapsed > 0 else 0.0
        note = "" if result.length_verified else " (length unverified: no Content-Length)"
        say(
            f"saved {result.path} ({format_size(result.size)} in {result.elapsed:.2f} s, "
            f"{format_size(int(rate))}/s){note}"
        )


def failure_json(url: str, exc: StreamerError) -> dict[str, Any]:
    return {
        "url": exc.url or redact_url(url),
        "result": exc.result.value,
        "exit_code": exit_code(exc.result),
        "error": redact_text(str(exc)),
        "retryable": exc.retryable,
        "status": getattr(exc, "status", None),
        "path": exc.path,
    }


def report_failure(args: argparse.Namespace, url: str, exc: StreamerError) -> int:
    if args.json:
        print(json.dumps(failure_json(url, exc)), flush=True)
    shown = exc if exc.url else evolve(exc, url=redact_url(url))
    error_line(args, str(shown))
    return exit_code(exc.result)
