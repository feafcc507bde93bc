"""`streamer put --tus FILE URL`: a resumable upload (tus 1.0.0) to a creation endpoint."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from ..core.sizes import format_size
from ..core.tus import CHECKSUM_ALGORITHMS, parse_meta_arg
from ..errors import StreamerError, UsageError
from .options import parse_headers, request_lines, size_arg, upload_config
from .output import report_failure, wants_bar

if TYPE_CHECKING:
    from ..results import TusResult


def add_tus_options(put: argparse.ArgumentParser) -> None:
    group = put.add_argument_group("resumable uploads (tus 1.0.0)")
    group.add_argument(
        "--tus", action="store_true", help="URL is a tus creation endpoint; resume when possible"
    )
    group.add_argument(
        "--chunk-size", type=size_arg, metavar="SIZE", help="at most SIZE bytes per PATCH"
    )
    group.add_argument(
        "--tus-checksum", choices=CHECKSUM_ALGORITHMS, help="send Upload-Checksum with each PATCH"
    )
    group.add_argument(
        "--meta", action="append", default=[], metavar="KEY=VALUE", help="Upload-Metadata pair"
    )
    group.add_argument(
        "--abort", action="store_true", help="terminate the remembered upload (DELETE)"
    )


def run_tus_command(args: argparse.Namespace) -> int:
    """put --tus: exit 0 with the upload URL on stdout, or one line and the failure's code."""
    import asyncio

    from ..client import Client  # the runner loads after the parse (see main.py)
    from ..core.retry import RetryPolicy
    from ..sync import run
    from .signals import stop_on_sigterm

    try:
        lines = parse_headers(request_lines(args), args.url)
        config = upload_config(args, lines)
        headers = lines.headers
        metadata = [parse_meta_arg(m) for m in args.meta]
        if args.chunk_size is not None and args.chunk_size <= 0:
            raise UsageError("--chunk-size must be at least 1 byte")
    except StreamerError as exc:
        return report_failure(args, args.url, exc)
    retry = RetryPolicy(retries=args.retry, delay=args.retry_delay, max_time=args.retry_max_time)
    bar = None
    if wants_bar(args) and not args.abort:
        from ..progress import TqdmProgress  # tqdm costs start-up; only load it for a bar

        bar = TqdmProgress(str(args.file))

    async def go() -> TusResult | str:
        stop_on_sigterm()
        async with Client(config) as client:
            if args.abort:
                return await client.abort_resumable(args.url, args.file, headers=headers)
            return await client.upload_resumable(
                args.url,
                args.file,
                chunk_size=args.chunk_size,
                metadata=metadata,
                checksum=args.tus_checksum,
                retry=retry,
                headers=headers,
                progress=bar,
            )

    try:
        result = run(go())
    except StreamerError as exc:
        return report_failure(args, args.url, exc)
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        return _interrupted(args, exc)
    finally:
        if bar is not None:
            bar.close()
    _report(args, result)
    return 0


def _interrupted(args: argparse.Namespace, exc: BaseException) -> int:
    """Ctrl-C (130) or SIGTERM (143). The server keeps what it received and the upload's URL
    is remembered (saved right after the POST), so the same command resumes: say so."""
    what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "terminated"
    if not args.abort:
        print(f"streamer: {what}; run the same command to resume the upload", file=sys.stderr)
    return 130 if isinstance(exc, KeyboardInterrupt) else 143


def _report(args: argparse.Namespace, result: TusResult | str) -> None:
    if isinstance(result, str):
        print(json.dumps({"url": result, "aborted": True}) if args.json else result, flush=True)
        return
    if not args.quiet:
        for note in result.notes:
            print(f"streamer: {note}", file=sys.stderr)
    print(json.dumps(result.to_json()) if args.json else result.url, flush=True)
    if not args.quiet and not args.json:
        resumed = f", resumed at {result.resumed_from}" if result.resumed_from else ""
        print(
            f"sent {format_size(result.sent)} of {format_size(result.size)} in "
            f"{result.elapsed:.2f} s{resumed}",
            file=sys.stderr,
        )
