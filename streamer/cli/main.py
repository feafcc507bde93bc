"""The `streamer` command: curl's option names where curl has one, curl's exit codes likewise.

Errors print one line naming the URL and the reason (never a traceback) and exit with the code
of their `Result` (see README.md for the table).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from ..core.redact import redact_url
from ..errors import StreamerError, exit_code
from . import demo, get, serve, upload
from .curlopts import apply_silence
from .options import USAGE_EXIT
from .output import error_line
from .tuning import tune_malloc


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage is behind --help)."""

    def error(self, message: str) -> NoReturn:
        urls = [redact_url(a) for a in sys.argv[1:] if "://" in a]
        where = f"{urls[0]}: " if urls else ""
        self.exit(USAGE_EXIT, f"streamer: {where}{message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="streamer", description="Streaming downloads with flat memory and typed failures."
    )
    parser.add_argument("--version", action="version", version=f"streamer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    get.add_parser(sub)
    serve.add_parser(sub)
    upload.add_upload_commands(sub)
    demo.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `streamer` console script; returns the exit code."""
    tune_malloc()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else USAGE_EXIT
    apply_silence(args)
    try:
        if args.command == "get":
            return get.run_command(parser, args)
        if args.command in ("put", "post"):
            return upload.run_upload_command(args)
        if args.command == "serve":
            return serve.run_serve(args)
        return demo.run_demo(args)
    except KeyboardInterrupt:
        print("streamer: interrupted; a partial download is kept for resuming", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        print("streamer: terminated; a partial download is kept for resuming", file=sys.stderr)
        return 143
    except StreamerError as exc:
        error_line(args, str(exc))
        return exit_code(exc.result)
