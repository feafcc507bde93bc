"""`streamer put FILE URL` and `streamer post URL -F ...`: curl's -T and -F, streamed from disk."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..client import Client
from ..core.formspec import parse_form_arg
from ..core.retry import RetryPolicy
from ..core.s3 import is_s3_url
from ..core.sizes import format_size
from ..errors import StreamerError, UsageError
from ..http.bodies import FilePart
from ..results import UploadResult
from ..sync import run
from . import s3
from .options import add_transfer_options, client_config, parse_headers
from .output import report_failure, say, wants_bar
from .signals import stop_on_sigterm
from .tus import add_tus_options, run_tus_command


def add_upload_commands(sub: Any) -> None:
    put = sub.add_parser("put", help="upload a file as the request body (curl -T)")
    put.add_argument("file", metavar="FILE")
    put.add_argument("url", metavar="URL", nargs="?", help="http(s):// or s3://BUCKET/KEY")
    put.add_argument("-X", "--request", default="PUT", metavar="METHOD")
    put.add_argument("--content-type", metavar="MIME")
    add_transfer_options(put)
    add_tus_options(put)
    post = sub.add_parser("post", help="send a multipart/form-data form (curl -F)")
    post.add_argument("url", metavar="URL")
    post.add_argument(
        "-F",
        "--form",
        action="append",
        default=[],
        metavar="NAME=VALUE|@FILE",
        help="a field, or a file with name=@path[;type=MIME][;filename=NAME]",
    )
    post.add_argument("-X", "--request", default="POST", metavar="METHOD")
    post.add_argument(
        "--location-trusted",
        action="store_true",
        help="follow redirects to another origin with the body",
    )
    add_transfer_options(post)
    put.add_argument(
        "--location-trusted",
        action="store_true",
        help="follow redirects to another origin with the body",
    )
    s3.add_put_options(put)


def run_upload_command(args: argparse.Namespace) -> int:
    if args.command == "put":
        presigned = getattr(args, "s3_presigned", None)
        if (args.url is None) == (presigned is None):
            raise UsageError("give FILE URL, or --s3-presigned PLAN.json FILE")
        if presigned is not None or is_s3_url(args.url):
            return s3.run_s3_put(args)
    if args.command == "put" and (args.tus or args.abort):
        return run_tus_command(args)
    config = client_config(args)
    headers = parse_headers(args.header, args.url)
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
                return await client.upload(
                    args.url, args.file, method=args.request, headers=headers,
                    content_type=args.content_type, retry=retry,
                    cross_origin=args.location_trusted, progress=bar,
                )  # fmt: skip
            fields, files = _form(args.form)
            return await client.upload_form(
                args.url, fields=fields, files=files, method=args.request, headers=headers,
                retry=retry, cross_origin=args.location_trusted, progress=bar,
            )  # fmt: skip

    try:
        result = run(go())
    except StreamerError as exc:
        return report_failure(args, args.url, exc)
    finally:
        if bar is not None:
            bar.close()
    _report(args, result)
    return 0


def _form(specs: list[str]) -> tuple[list[tuple[str, str]], list[FilePart]]:
    fields: list[tuple[str, str]] = []
    files: list[FilePart] = []
    for spec in specs:
        arg = parse_form_arg(spec)
        if arg.path is None:
            fields.append((arg.name, arg.value))
        else:
            files.append(FilePart(arg.name, arg.path, arg.filename, arg.content_type))
    return fields, files


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
