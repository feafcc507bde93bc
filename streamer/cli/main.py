"""The `streamer` command: curl's option names where curl has one, curl's exit codes likewise.

Errors print one line naming the URL and the reason (never a traceback) and exit with the code
of their `Result` (see README.md for the table).

Start-up is part of every small transfer, so building the parser imports only the commands'
option tables: each command's runner (and asyncio, aiohttp, tqdm, the server) loads after
parsing, and only for the command that needs it. tests/test_layers.py pins what each step loads.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .. import __version__
from ..core.redact import redact_url
from ..errors import StreamerError, exit_code
from . import get, serve, upload
from .curlopts import apply_silence
from .options import USAGE_EXIT, ask_password, size_arg
from .output import error_line


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
    _add_demo_parser(sub)
    return parser


def _add_demo_parser(sub: Any) -> None:
    """`demo`'s options live here: its module loads threads, subprocesses and urllib."""
    demo = sub.add_parser("demo", help="serve a generated file locally and download it")
    demo.add_argument("--size", type=size_arg, default=1 << 30, metavar="SIZE")
    demo.add_argument("--dir", metavar="DIR", help="work directory (default: a temporary one)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `streamer` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else USAGE_EXIT
    apply_silence(args)
    from .tuning import tune_malloc  # ctypes: only for a command that moves bytes

    tune_malloc()
    try:
        return _dispatch(parser, args)
    except KeyboardInterrupt:
        print("streamer: interrupted; a partial download is kept for resuming", file=sys.stderr)
        return 130
    except StreamerError as exc:
        error_line(args, str(exc))
        return exit_code(exc.result)
    except BaseException as exc:
        if not _cancelled(exc):
            raise
        print("streamer: terminated; a partial download is kept for resuming", file=sys.stderr)
        return 143


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    ask_password(args)  # -u USER: before any work, on the terminal
    if args.command == "get":
        return get.run_command(parser, args)
    if args.command in ("put", "post"):
        return upload.run_upload_command(args)
    if args.command == "serve":
        return serve.run_serve(args)
    from .demo import run_demo

    return run_demo(args)


def _cancelled(exc: BaseException) -> bool:
    """asyncio's CancelledError (SIGTERM, see signals.py), without importing asyncio here:
    when no command loaded it, nothing can have been cancelled."""
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)
