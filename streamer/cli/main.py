"""The `streamer` command: curl's option names where curl has one, curl's exit codes likewise.

Errors print one line naming the URL and the reason (never a traceback) and exit with the code
of their `Result` (see README.md for the table).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .. import __version__
from ..core.redact import redact_url
from ..core.sizes import parse_size
from ..errors import StreamerError, UsageError, exit_code
from .tuning import tune_malloc

USAGE_EXIT = 2


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, not {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text!r}")
    return value


def add_transfer_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that talks to a server."""
    p.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header (repeatable)",
    )
    p.add_argument("--connect-timeout", type=_seconds, metavar="SECONDS", default=30.0)
    p.add_argument(
        "--max-time", type=_seconds, metavar="SECONDS", help="maximum time for the whole transfer"
    )
    p.add_argument(
        "--read-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=60.0,
        help="maximum idle time between two reads (default 60)",
    )
    p.add_argument(
        "--speed-limit",
        type=_size,
        metavar="BYTES",
        help="abort when slower than this many bytes/s for --speed-time",
    )
    p.add_argument("--speed-time", type=_seconds, metavar="SECONDS", default=30.0)
    p.add_argument("--max-redirs", type=_count, default=8, metavar="N")
    p.add_argument(
        "--proto-redir-downgrade",
        action="store_true",
        help="allow redirects from https to http (refused by default)",
    )
    p.add_argument("--cacert", metavar="FILE", help="CA bundle to verify the server with")
    p.add_argument("--cert", metavar="FILE", help="client certificate (PEM)")
    p.add_argument("--key", metavar="FILE", help="client certificate's private key (PEM)")
    p.add_argument("-k", "--insecure", action="store_true", help="do not verify certificates")
    p.add_argument("-x", "--proxy", metavar="URL")
    p.add_argument(
        "--noproxy-env",
        action="store_true",
        help="ignore http_proxy/https_proxy/no_proxy from the environment",
    )
    p.add_argument(
        "--retry",
        type=_count,
        default=0,
        metavar="N",
        help="retry transient failures N times (0: none); downloads resume",
    )
    p.add_argument(
        "--retry-delay",
        type=_seconds,
        metavar="SECONDS",
        help="fixed wait between retries (default: exponential backoff)",
    )
    p.add_argument(
        "--retry-max-time",
        type=_seconds,
        metavar="SECONDS",
        help="start no retry after this many seconds",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--progress",
        action="store_true",
        help="show the progress bar even when stderr is not a terminal",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per transfer on stdout")


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

    get = sub.add_parser("get", help="download a URL into a file")
    get.add_argument("url", metavar="URL", nargs="?", help="the URL (or use -i MANIFEST)")
    bulk = get.add_argument_group("many downloads (-i)")
    bulk.add_argument(
        "-i",
        "--input-file",
        metavar="MANIFEST",
        help="URLs, JSON Lines or CSV/TSV with a url column; - for stdin",
    )
    bulk.add_argument(
        "-j", "--jobs", type=_count, default=16, metavar="N", help="transfers at once (default 16)"
    )
    bulk.add_argument(
        "--max-per-host",
        type=_count,
        default=16,
        metavar="N",
        help="transfers at once to one host (default 16)",
    )
    bulk.add_argument(
        "--limit-rate",
        type=_size,
        metavar="BYTES",
        help="total download rate limit in bytes/s (K, M, G suffixes)",
    )
    bulk.add_argument(
        "--processes",
        type=_count,
        metavar="N",
        help="worker processes sharing the jobs (default: 2 when 2 CPUs are usable, for manifest"
        " files of 1000 jobs or more; else 1)",
    )
    bulk.add_argument(
        "--dry-run",
        action="store_true",
        help="plan every job (targets, duplicates, journal) without fetching",
    )
    bulk.add_argument(
        "--host-request-rate",
        type=_seconds,
        metavar="N",
        help="at most N new requests per second to any one host",
    )
    bulk.add_argument(
        "--memory-budget",
        type=_size,
        default=64 << 20,
        metavar="SIZE",
        help="bytes buffered by all transfers together (default 64M)",
    )
    bulk.add_argument(
        "--journal", metavar="PATH", help="run journal (default DIR/.streamer-journal.jsonl)"
    )
    where = get.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", metavar="PATH", help="write to PATH")
    where.add_argument(
        "-d", "--output-dir", metavar="DIR", help="write into DIR under the name from the URL"
    )
    get.add_argument(
        "--max-filesize",
        type=_size,
        metavar="SIZE",
        help="refuse bodies larger than SIZE (K, M, G, KiB, MiB, GiB)",
    )
    get.add_argument("--checksum", metavar="ALGO:HEX", help="e.g. sha256:<hex>")
    get.add_argument(
        "--compressed", action="store_true", help="ask for gzip/deflate and save the decoded body"
    )
    get.add_argument("--no-clobber", action="store_true", help="never overwrite an existing file")
    get.add_argument(
        "-J",
        "--remote-header-name",
        action="store_true",
        help="name the file from Content-Disposition (safe name, in -d DIR)",
    )
    get.add_argument(
        "--clobber", action="store_true", help="with -J: allow replacing an existing file"
    )
    get.add_argument(
        "--wait-lock",
        type=_seconds,
        metavar="SECONDS",
        help="if another streamer is downloading the same target, wait for it",
    )
    get.add_argument(
        "--split",
        type=_count,
        default=1,
        metavar="N",
        help="fetch one file over N connections in byte ranges (like aria2 -x/-s)",
    )
    get.add_argument(
        "--no-resume", action="store_true", help="ignore a partial download and start over"
    )
    add_transfer_options(get)

    serve = sub.add_parser("serve", help="serve a directory on 127.0.0.1 (the built-in server)")
    serve.add_argument("directory", nargs="?", default=".", metavar="DIR")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_count, default=8000)
    serve.add_argument(
        "--allow-remote", action="store_true", help="allow binding to a non-loopback address"
    )
    serve.add_argument(
        "--max-upload",
        type=_size,
        metavar="SIZE",
        help="refuse PUT/POST bodies larger than SIZE with 413 (default: no limit)",
    )

    from .upload import add_upload_commands

    add_upload_commands(sub)

    demo = sub.add_parser("demo", help="serve a generated file locally and download it")
    demo.add_argument("--size", type=_size, default=parse_size("1GiB"), metavar="SIZE")
    demo.add_argument("--dir", metavar="DIR", help="work directory (default: a temporary one)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `streamer` console script; returns the exit code."""
    tune_malloc()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else USAGE_EXIT
    try:
        if args.command == "get":
            return _get(parser, args)
        if args.command in ("put", "post"):
            from .upload import run_upload_command

            return run_upload_command(args)
        if args.command == "serve":
            from .serve import run_serve

            return run_serve(args)
        from .demo import run_demo

        return run_demo(args)
    except KeyboardInterrupt:
        print("streamer: interrupted; a partial download is kept for resuming", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        print("streamer: terminated; a partial download is kept for resuming", file=sys.stderr)
        return 143
    except StreamerError as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return exit_code(exc.result)


def _get(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if (args.url is None) == (args.input_file is None):
        parser.error("give one URL, or -i MANIFEST")
    if args.input_file is not None:
        if args.output or args.remote_header_name:
            parser.error("-o and -J name one file; with -i use -d DIR")
        from .bulk import run_bulk

        return run_bulk(args)
    from .get import run_get

    return run_get(args)


def default_output(url: str, output: str | None, output_dir: str | None) -> Path:
    """-o PATH as given; otherwise the URL's last segment (made safe) in -d DIR or the cwd."""
    from ..core.names import name_from_url

    if output is not None:
        return Path(output)
    return Path(output_dir or ".") / name_from_url(url)
