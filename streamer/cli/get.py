"""`streamer get`: one download from the command line, with a tqdm bar and a one-line outcome."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

from ..client import Client
from ..config import ClientConfig
from ..core.redact import redact_url
from ..core.retry import RetryPolicy
from ..core.sizes import format_size
from ..errors import StreamerError, UsageError, exit_code
from ..results import DownloadResult
from ..sync import run


def parse_headers(lines: list[str], url: str = "") -> dict[str, str]:
    """curl's -H 'Name: value' lines; a line without a colon is a usage error."""
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or any(c in line for c in "\r\n"):
            raise UsageError(f"bad header {line!r}: expected 'Name: value'", url=redact_url(url))
        headers[name.strip()] = value.strip()
    return headers


def client_config(args: argparse.Namespace, *, accept_gzip: bool = False) -> ClientConfig:
    """The client options that the transfer flags describe."""
    return ClientConfig(
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        total_timeout=args.max_time,
        speed_limit=args.speed_limit,
        speed_time=args.speed_time,
        max_redirects=args.max_redirs,
        allow_downgrade=args.proto_redir_downgrade,
        proxy=args.proxy,
        trust_env=not args.noproxy_env,
        verify=not args.insecure,
        cafile=args.cacert,
        certfile=args.cert,
        keyfile=args.key,
        accept_gzip=accept_gzip,
    )


def wants_bar(args: argparse.Namespace) -> bool:
    if args.quiet or args.no_progress or args.json:
        return False
    return bool(args.progress or sys.stderr.isatty())


def run_get(args: argparse.Namespace) -> int:
    from .main import default_output

    url = args.url
    path = default_output(url, args.output, args.output_dir)
    bar = None
    if wants_bar(args):
        from ..progress import TqdmProgress  # tqdm costs start-up; only load it for a bar

        bar = TqdmProgress(path.name)
    config = client_config(args, accept_gzip=args.compressed)
    headers = parse_headers(args.header, url)

    retry = RetryPolicy(retries=args.retry, delay=args.retry_delay, max_time=args.retry_max_time)

    async def go() -> DownloadResult:
        stop_on_sigterm()
        async with Client(config) as client:
            return await client.download(
                url, path, max_bytes=args.max_filesize, checksum=args.checksum,
                headers=headers, no_clobber=args.no_clobber, progress=bar,
                resume=not args.no_resume, retry=retry, remote_name=args.remote_header_name,
                clobber=args.clobber, split=max(args.split, 1), wait_lock=args.wait_lock,
            )  # fmt: skip

    try:
        result = run(go())
    except StreamerError as exc:
        if bar is not None:
            bar.close()
        return report_failure(args, url, exc)
    if bar is not None:
        bar.close()
    report_success(args, result)
    return 0


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


def report_success(args: argparse.Namespace, result: DownloadResult) -> None:
    if not args.quiet and not args.json:
        for note in result.notes:
            print(f"streamer: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json()), flush=True)
    elif not args.quiet:
        rate = result.size / result.elapsed if result.elapsed > 0 else 0.0
        note = "" if result.length_verified else " (length unverified: no Content-Length)"
        print(
            f"saved {result.path} ({format_size(result.size)} in {result.elapsed:.2f} s, "
            f"{format_size(int(rate))}/s){note}",
            file=sys.stderr,
        )


def failure_json(url: str, exc: StreamerError) -> dict[str, Any]:
    return {
        "url": exc.url or redact_url(url),
        "result": exc.result.value,
        "exit_code": exit_code(exc.result),
        "error": str(exc),
        "retryable": exc.retryable,
        "status": getattr(exc, "status", None),
        "path": exc.path,
    }


def report_failure(args: argparse.Namespace, url: str, exc: StreamerError) -> int:
    if args.json:
        print(json.dumps(failure_json(url, exc)), flush=True)
    if not exc.url:
        exc.url = redact_url(url)
    print(f"streamer: {exc}", file=sys.stderr)
    return exit_code(exc.result)
