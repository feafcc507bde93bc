"""`streamer put FILE s3://B/K`, `streamer put --s3-presigned PLAN.json FILE`, and the s3://
side of `streamer get` (a presigned GET handed to the ordinary download path, --split included).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from ..core.sizes import format_size
from ..errors import StreamerError, UsageError
from .options import (
    USAGE_EXIT,
    count_arg,
    parse_headers,
    request_lines,
    size_arg,
    upload_config,
)
from .output import error_line, report_failure, wants_bar

if TYPE_CHECKING:
    from ..core.events import ProgressCallback
    from ..results import S3UploadResult

# A presigned GET for `get s3://` lives this long: long enough for a slow large download
# whose ranges (--split) and retries all reuse the same URL.
GET_EXPIRES = 12 * 3600


def add_endpoint_options(p: argparse._ActionsContainer) -> None:
    p.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="S3 endpoint (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS)",
    )
    p.add_argument(
        "--region", metavar="R", help="S3 region (default: AWS_REGION, AWS_DEFAULT_REGION)"
    )


def add_put_options(put: argparse.ArgumentParser) -> None:
    s3 = put.add_argument_group("S3 (URL s3://BUCKET/KEY; credentials from AWS_* variables)")
    add_endpoint_options(s3)
    s3.add_argument(
        "--part-size",
        type=size_arg,
        # None: core.s3's DEFAULT_PART_SIZE, resolved when the upload runs (see main.py)
        metavar="SIZE",
        help="multipart part size (default 16M; grown to stay within 10,000 parts)",
    )
    s3.add_argument(
        "-j", "--jobs", type=count_arg, default=4, metavar="N", help="parts at once (default 4)"
    )
    s3.add_argument(
        "--no-resume",
        action="store_true",
        help="abort a remembered multipart upload of this file and start over",
    )
    s3.add_argument(
        "--s3-presigned",
        metavar="PLAN.json",
        help="upload FILE to the presigned part URLs of PLAN.json (no credentials needed)",
    )


def refuse_user(args: argparse.Namespace) -> None:
    """-u has no place in an S3 request: SigV4 (or the presigned URL's query) is its one
    authentication, and a second Authorization would only make S3 refuse it."""
    if args.user is not None:
        raise UsageError(
            "-u/--user does not apply to s3:// or presigned S3 transfers: they are signed with"
            " the AWS credentials (AWS_ACCESS_KEY_ID, ...), not HTTP Basic"
        )


def route_put(args: argparse.Namespace) -> int | None:
    """`put` to s3:// or with --s3-presigned: run it, and give its exit code; None for any
    other URL (the caller sends the file as usual)."""
    from ..core.wire import is_s3_url  # not core.s3 (dataclasses, xml): see main.py

    presigned = args.s3_presigned
    if (args.url is None) == (presigned is None):
        raise UsageError("give FILE URL, or --s3-presigned PLAN.json FILE")
    if presigned is None and not is_s3_url(args.url):
        return None
    refuse_user(args)
    if args.write_out is not None or args.file == "-":
        what = "-w/--write-out" if args.write_out is not None else "- (stdin)"
        error_line(args, f"{what} does not apply to S3 uploads")
        return USAGE_EXIT
    if presigned is not None and (args.header or args.content_type):
        # The object's headers were fixed by whoever created the upload behind the plan.
        error_line(args, "-H and --content-type do not apply to --s3-presigned")
        return USAGE_EXIT
    return run_s3_put(args)


def run_s3_put(args: argparse.Namespace) -> int:
    """`put` to s3:// or through a presigned plan; one line (or JSON) on success.

    As for any `put`: a progress bar on a terminal (off with --no-progress, -s or --json),
    here of the bytes whose parts the server confirmed; -H headers and --content-type go with
    the request that creates the object (the type is otherwise guessed from FILE's name)."""
    label = args.url or args.file
    lines = parse_headers(request_lines(args), label if "://" in label else "")
    if lines.omit:  # SigV4 signs the request's fields: a removal must not break a signature
        error_line(
            args, "-H 'Name:' (remove a header) does not apply to S3 uploads: they are signed"
        )
        return USAGE_EXIT
    headers = lines.headers
    bar = None
    if wants_bar(args):
        from ..progress import TqdmProgress  # tqdm costs start-up; only load it for a bar

        bar = TqdmProgress(os.path.basename(args.file))
    from ..sync import run  # the runner loads after the parse (see main.py)

    try:
        result = run(_upload(args, headers, bar))
    except StreamerError as exc:
        if bar is not None:
            bar.close()
        return report_failure(args, label if "://" in label else "", exc)
    if bar is not None:
        bar.close()
    _report(args, result)
    return 0


async def _upload(
    args: argparse.Namespace, headers: dict[str, str], bar: ProgressCallback | None
) -> S3UploadResult:
    from ..client import Client
    from ..core.retry import RetryPolicy
    from ..core.s3 import DEFAULT_PART_SIZE
    from .signals import stop_on_sigterm

    stop_on_sigterm()
    retry = RetryPolicy(retries=args.retry, delay=args.retry_delay, max_time=args.retry_max_time)
    async with Client(upload_config(args)) as client:
        if args.s3_presigned:
            plan = _load_plan(args.s3_presigned)
            return await client.upload_presigned_parts(
                args.file, plan, parallel=max(1, args.jobs), retry=retry, progress=bar
            )
        return await client.upload_s3(
            args.file,
            args.url,
            endpoint_url=args.endpoint_url,
            region=args.region,
            part_size=DEFAULT_PART_SIZE if args.part_size is None else args.part_size,
            parallel=max(1, args.jobs),
            retry=retry,
            resume=not args.no_resume,
            content_type=args.content_type,
            headers=headers,
            progress=bar,
        )


def _load_plan(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read(16 << 20))
    except OSError as exc:
        raise UsageError(f"cannot read the plan {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"the plan {path} is not JSON: {exc}") from None


def _report(args: argparse.Namespace, result: S3UploadResult) -> None:
    if args.json:
        print(json.dumps(result.to_json()), flush=True)
        return
    if args.s3_presigned and result.etag is None:
        # No complete_url: whoever holds the credentials completes the upload with these.
        parts = [{"part_number": n, "etag": e} for n, e in result.parts]
        print(json.dumps({"parts": parts}), flush=True)
    if not args.quiet:
        for note in result.notes:
            print(f"streamer: {note}", file=sys.stderr)
        rate = result.sent / result.elapsed if result.elapsed > 0 else 0.0
        resumed = f", {result.resumed_parts} already stored" if result.resumed_parts else ""
        print(
            f"uploaded {result.url} ({format_size(result.size)}, {len(result.parts) or 1} "
            f"part(s){resumed}; sent {format_size(result.sent)} in {result.elapsed:.2f} s, "
            f"{format_size(int(rate))}/s)",
            file=sys.stderr,
        )


def presigned_get(url: str, endpoint_url: str | None, region: str | None) -> tuple[str, str]:
    """The presigned http(s) URL that fetches ``s3://B/K`` (credentials from the environment),
    and the object's unsigned URL, which names the download across runs (for resuming)."""
    from ..core.s3 import parse_s3_url, resolve_credentials, resolve_endpoint
    from ..http.s3sign import presign_url, require_signer

    location = parse_s3_url(url)
    require_signer()
    endpoint = resolve_endpoint(endpoint_url, region, os.environ, location.bucket)
    creds = resolve_credentials(None, None, None, os.environ)
    plain = endpoint.object_url(location)
    return presign_url("GET", plain, creds, endpoint.region, GET_EXPIRES), plain
