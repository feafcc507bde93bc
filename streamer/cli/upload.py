"""`streamer put FILE URL` and `streamer post URL -F ...`: curl's -T and -F, streamed from disk."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..core.sizes import format_size
from ..core.wire import with_file_name
from ..errors import StreamerError
from . import s3
from .curlopts import emit_write_out
from .options import (
    USAGE_EXIT,
    add_transfer_options,
    add_upload_rate,
    parse_headers,
    request_lines,
    upload_config,
)
from .output import error_line, report_failure, say, wants_bar
from .tus import add_tus_options, run_tus_command

if TYPE_CHECKING:
    from ..http.bodies import FilePart, Source, TextPart
    from ..results import UploadResult


def add_upload_commands(sub: Any) -> None:
    put = sub.add_parser("put", help="upload a file as the request body (curl -T)")
    put.add_argument("file", metavar="FILE", help="the file to send; - for standard input")
    put.add_argument("url", metavar="URL", nargs="?", help="http(s):// or s3://BUCKET/KEY")
    put.add_argument("-X", "--request", default="PUT", metavar="METHOD")
    put.add_argument("--content-type", metavar="MIME")
    add_transfer_options(put)
    add_upload_rate(put)
    add_tus_options(put)
    post = sub.add_parser("post", help="send a multipart/form-data form (curl -F)")
    post.add_argument("url", metavar="URL")
    post.add_argument(
        "-F",
        "--form",
        action="append",
        default=[],
        metavar="NAME=VALUE|@FILE",
        help="a part, as curl -F: name=value, name=@file, name=<file; then ;type=MIME"
        ' ;filename=NAME ;headers=LINE ;encoder=base64 (quote a value with "...")',
    )
    post.add_argument("-X", "--request", default="POST", metavar="METHOD")
    add_transfer_options(post)
    add_upload_rate(post)
    s3.add_put_options(put)


def run_upload_command(args: argparse.Namespace) -> int:
    if args.command == "put" and (code := s3.route_put(args)) is not None:
        return code
    if args.command == "put" and (args.tus or args.abort):
        if args.write_out is not None or args.file == "-":
            what = "-w/--write-out" if args.write_out is not None else "- (stdin)"
            error_line(args, f"{what} does not apply to --tus uploads")
            return USAGE_EXIT
        return run_tus_command(args)
    from ..client import Client  # the runner loads after the parse (see main.py)
    from ..core.retry import RetryPolicy
    from ..sync import run
    from .signals import stop_on_sigterm

    lines = parse_headers(request_lines(args), args.url)
    config = upload_config(args, lines)
    headers = lines.headers
    retry = RetryPolicy(retries=args.retry, delay=args.retry_delay, max_time=args.retry_max_time)
    label = args.file if args.command == "put" else "form"
    bar = None
    if wants_bar(args):
        from ..progress import TqdmProgress  # tqdm costs start-up; only load it for a bar

        bar = TqdmProgress(str(label))

    async def go() -> UploadResult:
        stop_on_sigterm()
        async with Client(config) as client:
            if args.command == "put":
                url, source = put_source(args.url, args.file)
                return await client.upload(
                    url,
                    source,
                    method=args.request,
                    headers=headers,
                    content_type=args.content_type,
                    retry=retry,
                    cross_origin=args.location_trusted,
                    progress=bar,
                )
            return await client.upload_form(
                args.url,
                files=form_parts(args.form),
                method=args.request,
                headers=headers,
                retry=retry,
                cross_origin=args.location_trusted,
                progress=bar,
            )

    started = time.monotonic()
    try:
        result = run(go())
    except StreamerError as exc:
        if bar is not None:
            bar.close()
        code = report_failure(args, args.url, exc)
        emit_write_out(args, (getattr(exc, "status", None), 0, started, exc.url, code))
        return code
    if bar is not None:
        bar.close()
    _report(args, result)
    emit_write_out(args, (result.status, len(result.body), started, result.final_url, 0))
    return 0


def put_source(url: str, file: str) -> tuple[str, Source]:
    """curl -T's URL and body: FILE's name appended to a URL ending in "/"; "-" is stdin, sent
    with its length when it is a regular file (replayable), else chunked and sent once."""
    if file != "-":
        return with_file_name(url, os.path.basename(file)), file
    if stat.S_ISREG(os.fstat(sys.stdin.fileno()).st_mode):
        return url, sys.stdin.buffer
    return url, _stdin_chunks()


async def _stdin_chunks() -> AsyncIterator[bytes]:
    """Standard input in reads of up to 1 MiB, off the event loop (a pipe may block)."""
    import asyncio

    fd = sys.stdin.fileno()
    while chunk := await asyncio.to_thread(os.read, fd, 1 << 20):
        yield chunk


def form_parts(specs: list[str]) -> list[TextPart | FilePart]:
    """The -F list as curl builds it: parts in the order given, a part with a file name typed
    by its extension (curl's table) unless ``type=`` says otherwise."""
    from ..core.formspec import curl_content_type, parse_form_arg
    from ..core.multipart import DEFAULT_FILE_TYPE
    from ..http.bodies import FilePart, TextPart

    parts: list[TextPart | FilePart] = []
    for spec in specs:
        arg = parse_form_arg(spec)
        for warning in arg.warnings:
            say(f"streamer: warning: -F {spec!r}: {warning}")
        if arg.path is None:
            ctype = arg.content_type or curl_content_type(arg.filename)
            parts.append(
                TextPart(arg.name, arg.value, ctype, arg.filename, arg.headers, arg.encoder)
            )
            continue
        filename = None if arg.as_text else arg.filename or os.path.basename(arg.path)
        ctype = arg.content_type or curl_content_type(filename)
        if ctype is None and not arg.as_text:
            ctype = DEFAULT_FILE_TYPE
        parts.append(
            FilePart(
                arg.name,
                arg.path,
                filename,
                ctype,
                headers=arg.headers,
                encoder=arg.encoder,
                send_filename=not arg.as_text,
            )
        )
    return parts


def _report(args: argparse.Namespace, result: UploadResult) -> None:
    if args.json:
        print(json.dumps(result.to_json()), flush=True)
        return
    sys.stdout.buffer.write(result.body)
    sys.stdout.flush()
    if not args.quiet:
        rate = result.sent / result.elapsed if result.elapsed > 0 else 0.0
        say(
            f"sent {format_size(result.sent)} in {result.elapsed:.2f} s "
            f"({format_size(int(rate))}/s): {result.status} {result.reason}"
        )
